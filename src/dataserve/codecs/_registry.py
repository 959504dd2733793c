"""The codec registry: which codec encodes a value, and which decodes a media type.

Encoding looks the value's exact type up in a dict; a miss walks the MRO once and caches the
answer, so the common path is one dict lookup. ``register()`` clears the caches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec

from .._errors import DecodeError, EncodeError
from ._base import BytesCodec, Codec, JsonCodec, TextCodec

__all__ = ["CodecRegistry", "decode_failure", "default_registry", "register", "type_name"]

ENTRY_POINT_GROUP: Final = "dataserve.codecs"
_CACHE_LIMIT: Final = 1024
_log: Final = logging.getLogger("dataserve")

_JSON: Final = JsonCodec()
_BUILTINS: Final[tuple[Codec[Any], ...]] = (_JSON, TextCodec(), BytesCodec())

# What a codec may raise for a value it cannot encode or a body it cannot decode.
ENCODE_ERRORS: Final = (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError)
DECODE_ERRORS: Final = (
    ValueError,
    TypeError,
    LookupError,
    OverflowError,
    RecursionError,
    msgspec.DecodeError,
)


def type_name(target: object) -> str:
    """A type form as code spells it: ``Point``, ``list[int]``, ``int | None``, ``Literal['a']``."""
    if isinstance(target, type):
        return target.__qualname__
    return repr(target).replace("typing.", "")


def decode_failure(media_type: str, target: object, exc: BaseException, what: str) -> str:
    """The message for a body that failed to decode, telling the two failures apart.

    A body that is valid for its codec but does not fit the typed target (msgspec's
    `ValidationError`, whose message ends in the path, e.g. `` at `$[1]` ``) "does not match"
    it; any other failure means the body "could not be decoded" as its media type at all.

    Args:
        media_type: The bare media type of the body.
        target: The typed target, or ``None`` for an untyped decode.
        exc: What the codec raised.
        what: What was decoded, e.g. ``"body"`` or ``"reply of PUT http://host:5001/x"``.
    """
    if target is not None and isinstance(exc, msgspec.ValidationError):
        return f"the {media_type} {what} is valid but does not match {type_name(target)}: {exc}"
    return f"the {media_type} {what} could not be decoded: {exc}"


def _load_plugins() -> list[Codec[Any]]:
    """Codecs named by installed packages in the ``dataserve.codecs`` entry-point group."""
    from importlib.metadata import entry_points

    codecs: list[Codec[Any]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            codec = obj() if callable(obj) and not hasattr(obj, "encode") else obj
            if isinstance(codec, type):
                codec = codec()
            _check_codec(codec)
        except Exception:
            _log.exception("dataserve: skipping codec plug-in %r (%s)", ep.name, ep.value)
            continue
        codecs.append(codec)
    return codecs


def _check_codec(codec: object) -> None:
    missing = [
        name for name in ("media_type", "types", "encode", "decode") if not hasattr(codec, name)
    ]
    if missing:
        raise TypeError(f"{codec!r} is not a codec: it lacks {', '.join(missing)}")
    media_type = codec.media_type  # type: ignore[attr-defined]
    if not isinstance(media_type, str) or "/" not in media_type:
        raise TypeError(f"{codec!r} has media_type {media_type!r}; expected e.g. 'application/x'")
    types = codec.types  # type: ignore[attr-defined]
    if not isinstance(types, tuple) or not all(isinstance(t, type) for t in types):
        raise TypeError(f"{codec!r} has types {types!r}; expected a tuple of classes")


class CodecRegistry:
    """The codecs a client or server uses, and the rules that choose between them.

    ``CodecRegistry()`` holds the three built-ins (JSON, text, bytes) and the codecs of installed
    plug-ins (loaded on first use); ``CodecRegistry(plugins=False)`` leaves plug-ins out.

    Encoding picks a codec by the value's type: user codecs (most recently registered first),
    then plug-ins, then built-ins; the exact type first, then the class hierarchy in MRO order;
    then JSON for anything msgspec encodes. Decoding picks the codec by its bare media type.

    A registry is safe to share between threads and between clients and servers; register
    codecs before serving, as a server decodes whatever its registry holds.

    Args:
        plugins: Include the codecs of installed ``dataserve.codecs`` entry points.
    """

    def __init__(self, *, plugins: bool = True) -> None:
        self._user: list[Codec[Any]] = []
        self._plugins: list[Codec[Any]] | None = None if plugins else []
        self._lock = threading.Lock()
        self._by_type: dict[type, Codec[Any]] = {}
        self._by_media_type: dict[str, Codec[Any]] = {}
        self._negotiated: dict[tuple[tuple[str, ...], type], Codec[Any]] = {}
        self._order: tuple[Codec[Any], ...] = ()
        self.version = 0
        """Incremented by every `register`; lets clients rebuild cached headers."""
        self._rebuild()

    def register(self, codec: Codec[Any]) -> None:
        """Add a codec, ahead of every codec already held.

        A codec with the media type of one already held replaces it for decoding.

        Raises:
            TypeError: ``codec`` lacks ``media_type``, ``types``, ``encode`` or ``decode``.
        """
        _check_codec(codec)
        with self._lock:
            self._user.insert(0, codec)
            self._rebuild()

    @property
    def codecs(self) -> tuple[Codec[Any], ...]:
        """Every codec held, in order of preference."""
        self._ensure_plugins()
        return self._order

    @property
    def media_types(self) -> tuple[str, ...]:
        """The media types this registry decodes, in order of preference (no duplicates)."""
        self._ensure_plugins()
        return tuple(self._by_media_type)

    def codec_for_media_type(self, media_type: str) -> Codec[Any] | None:
        """The codec that decodes a bare, lower-cased media type, or ``None``."""
        codec = self._by_media_type.get(media_type)
        if codec is None and self._plugins is None:
            self._ensure_plugins()
            codec = self._by_media_type.get(media_type)
        return codec

    def codec_for_type(self, cls: type) -> Codec[Any]:
        """The codec that encodes values of class ``cls`` (JSON when no codec claims it)."""
        codec = self._by_type.get(cls)
        if codec is None:
            codec = self._resolve(cls)
        return codec

    def encode(self, value: object, resource: str = "") -> tuple[Codec[Any], Any]:
        """Encode a value with the codec chosen by its type.

        Returns:
            The codec and the encoded body (``bytes``, ``bytearray`` or ``memoryview``).
        Raises:
            EncodeError: No codec encodes the value.
        """
        cls = value.__class__
        codec = self._by_type.get(cls)
        if codec is None:
            codec = self._resolve(cls)
        return codec, self._encode_with(codec, value, resource)

    def encode_for(
        self, value: object, accepted: tuple[str, ...], resource: str = ""
    ) -> tuple[Codec[Any], Any]:
        """Encode a reply with the first accepted media type whose codec claims the value.

        Args:
            value: The value to send.
            accepted: Media types in the peer's order of preference (from ``Accept``); empty
                when the peer sent none, which means "by type".
            resource: Named in the error message.
        """
        if not accepted:
            return self.encode(value, resource)
        cls = value.__class__
        key = (accepted, cls)
        negotiated = self._negotiated  # the cache of this registry version (see _rebuild)
        codec = negotiated.get(key)
        if codec is None:
            codec = self._negotiate(accepted, cls)
            if len(negotiated) >= _CACHE_LIMIT:
                negotiated.clear()
            negotiated[key] = codec
        return codec, self._encode_with(codec, value, resource)

    def content_type(self, codec: Codec[Any], value: object) -> str:
        """The ``Content-Type`` to send with a value that ``codec`` encoded.

        The codec's ``media_type``, unless the codec defines ``content_type(value)`` to add
        parameters that depend on the value (as `NumpyCodec` does with dtype and shape).
        """
        with_params = self._with_params.get(id(codec))
        if with_params is None:
            return codec.media_type
        try:
            header = with_params(value)
        except ENCODE_ERRORS as exc:
            raise EncodeError(
                f"{codec.media_type} codec has no Content-Type for it: {exc}"
            ) from exc
        if "\r" in header or "\n" in header:
            raise EncodeError(f"{codec!r} gave an invalid Content-Type {header!r}")
        return header

    def decode(
        self, codec: Codec[Any], data: Any, params: Mapping[str, str], target: object = None
    ) -> Any:
        """Decode a body with a codec, turning its failures into `DecodeError`.

        Raises:
            DecodeError: Chained to what the codec raised (``__cause__``); its message says
                whether the body does not match ``target`` or could not be decoded at all
                (see `decode_failure`).
        """
        try:
            return (
                codec.decode(data, params, target)
                if target is not None
                else codec.decode(data, params)
            )
        except DECODE_ERRORS as exc:
            raise DecodeError(decode_failure(codec.media_type, target, exc, "body")) from exc

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _encode_with(codec: Codec[Any], value: object, resource: str) -> Any:
        try:
            return codec.encode(value)
        except ENCODE_ERRORS as exc:
            where = f" (sending to {resource!r})" if resource else ""
            cls = value.__class__
            name = cls.__name__
            if any(base in codec.types for base in cls.__mro__):
                # A codec that claims the type refused this value: its reason says why.
                raise EncodeError(
                    f"The {codec.media_type} codec cannot encode this {name!r} value{where}: {exc}"
                ) from exc
            raise EncodeError(
                f"No codec encodes values of type {name!r}{where}: {exc}; "
                f"send a JSON-able value, str or bytes, or register a codec for {name}"
            ) from exc

    def _ensure_plugins(self) -> None:
        if self._plugins is None:
            with self._lock:
                if self._plugins is None:
                    self._plugins = _load_plugins()
                    self._rebuild()

    def _rebuild(self) -> None:
        plugins = self._plugins or []
        self._order = (*self._user, *plugins, *_BUILTINS)
        self._with_params: dict[int, Callable[[Any], str]] = {
            id(codec): codec.content_type  # type: ignore[attr-defined]
            for codec in self._order
            if callable(getattr(codec, "content_type", None))
        }
        self._by_media_type = self._media_type_map()
        # The caches last: a lookup that sees a new cache sees the new state it depends on.
        self._by_type = {}
        self._negotiated = {}
        self.version += 1

    def _media_type_map(self) -> dict[str, Codec[Any]]:
        by_media_type: dict[str, Codec[Any]] = {}
        for codec in self._order:
            by_media_type.setdefault(codec.media_type.lower(), codec)
        return by_media_type

    def _claim(self, cls: type, codecs: Iterable[Codec[Any]]) -> Codec[Any] | None:
        for base in cls.__mro__:
            for codec in codecs:
                if base in codec.types:
                    return codec
        return None

    def _resolve(self, cls: type) -> Codec[Any]:
        self._ensure_plugins()
        # Read the cache and the order together: a register() in between replaces both, and
        # the answer computed from the old order then lands in the old, discarded cache.
        by_type, order = self._by_type, self._order
        codec = self._claim(cls, order) or _JSON
        if len(by_type) >= _CACHE_LIMIT:
            by_type.clear()
        by_type[cls] = codec
        return codec

    def _negotiate(self, accepted: tuple[str, ...], cls: type) -> Codec[Any]:
        by_type = self.codec_for_type(cls)
        for media_type in accepted:
            if media_type in ("*/*", by_type.media_type):
                return by_type
            codec = self.codec_for_media_type(media_type)
            if codec is not None and self._claim(cls, (codec,)) is not None:
                return codec
        return by_type


_default: Final = CodecRegistry()


def default_registry() -> CodecRegistry:
    """The process-wide registry used by clients and servers created without ``registry=``."""
    return _default


def register(codec: Codec[Any]) -> None:
    """Register a codec on the process-wide default registry.

    Clients and servers created without ``registry=`` use it, including those already created.
    """
    _default.register(codec)
