"""The codec protocol and the three built-in codecs (text, JSON, bytes).

A codec turns values of the types it claims into bytes and back. The built-ins put exactly
``text/plain``, ``application/json`` and ``application/octet-stream`` on the wire, as
dataserve 0.1 did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Protocol, TypeVar

import msgspec

__all__ = [
    "BytesCodec",
    "Codec",
    "JsonCodec",
    "TextCodec",
    "TypedDecoderCache",
]

T = TypeVar("T")

# Targets that mean "whatever the codec naturally produces".
_UNTYPED: Final[frozenset[object]] = frozenset({None, object, Any})


class Codec(Protocol[T]):
    """What dataserve needs of a codec; a codec need not inherit from this class.

    ``media_type`` and ``types`` may be plain attributes or ``Final`` class attributes.
    A codec is shared by every thread of a client or server: ``encode`` and ``decode`` must be
    safe to call concurrently.

    A codec whose ``Content-Type`` depends on the value may also define
    ``content_type(value) -> str``, the whole header with parameters (the NumPy codec sends
    ``application/x-numpy; dtype="<f8"; shape="3,4"``); the parameters reach ``decode`` as
    ``params``. Without it, the bare ``media_type`` is sent.
    """

    @property
    def media_type(self) -> str:
        """The bare media type this codec puts in ``Content-Type``, e.g. ``"application/json"``."""
        ...

    @property
    def types(self) -> tuple[type[T], ...]:
        """The Python types this codec claims when encoding (subclasses included)."""
        ...

    def encode(self, value: T, /) -> bytes | bytearray | memoryview:
        """Turn a value into the body to send."""
        ...

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> T:
        """Turn a received body back into a value.

        Args:
            data: The body (any bytes-like object; may be a ``memoryview``).
            params: The media-type parameters, names lower-cased (e.g. ``{"charset": "utf-8"}``).
            type: The typed target of ``send(..., type=T)`` or of a typed route, or ``None``.
        Raises:
            msgspec.ValidationError: The body is valid but does not fit ``type`` (reported as
                "does not match"; end the message with the path, as msgspec does).
            ValueError: Any other failure (reported as "could not be decoded"); also
                ``TypeError``, ``LookupError``, ``OverflowError`` and ``RecursionError``.
        """
        ...


class TypedDecoderCache:
    """One msgspec decoder per target type, built on first use and then reused.

    Args:
        factory: Builds a decoder for a type, e.g. ``msgspec.json.Decoder``.
    """

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._decoders: dict[object, Any] = {}

    def get(self, target: object) -> Any:
        """The decoder for ``target``, built once (unhashable type forms are not cached)."""
        try:
            return self._decoders[target]
        except KeyError:
            decoder = self._decoders[target] = self._factory(target)
            return decoder
        except TypeError:
            return self._factory(target)


def _convert(value: object, target: object) -> Any:
    """Convert an already decoded value to a typed target with msgspec's strict rules."""
    if target in _UNTYPED:
        return value
    return msgspec.convert(value, target)


_UTF8_NAMES: Final = frozenset({"utf-8", "utf8"})
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class TextCodec:
    """``str`` as ``text/plain``: UTF-8 on the way out, the ``charset`` parameter on the way in.

    A body without a ``charset`` parameter is read as UTF-8.
    """

    media_type: Final = "text/plain"
    types: Final[tuple[type[str], ...]] = (str,)

    def encode(self, value: str, /) -> bytes:
        """Encode as UTF-8."""
        return value.encode("utf-8")

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Any:
        """Decode with the ``charset`` parameter (UTF-8 by default).

        Raises:
            ValueError: The body is not valid in that charset, or the charset yields text
                that UTF-8 cannot hold (lone surrogates, e.g. from ``unicode_escape``).
        """
        charset = params.get("charset")
        if charset is None or charset.lower() in _UTF8_NAMES:
            text = str(data, "utf-8")  # never yields a lone surrogate
        else:
            text = str(data, charset)
            if not text.isascii() and _SURROGATE.search(text):
                raise ValueError(f"charset {charset!r} decoded to text with lone surrogates")
        if type is str:
            return text
        return _convert(text, type)


_JSON_ENCODER: Final = msgspec.json.Encoder()
_JSON_DECODER: Final = msgspec.json.Decoder()
_JSON_TYPED: Final = TypedDecoderCache(msgspec.json.Decoder)
_JSON_SYNTAX: Final = msgspec.json.Decoder(msgspec.Raw)  # checks the syntax, builds nothing
_MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder()

# Non-finite floats, written as Python's json module writes them (and dataserve 0.1 did).
_NAN: Final = msgspec.Raw(b"NaN")
_INFINITY: Final = msgspec.Raw(b"Infinity")
_MINUS_INFINITY: Final = msgspec.Raw(b"-Infinity")
_NULL: Final = re.compile(rb"null")
# A msgpack float64 (msgspec writes every float so) whose exponent bits are all ones: an
# infinity or a NaN. UTF-8 text never holds these bytes; an int or bytes value may (rarely).
_NON_FINITE_FLOAT64: Final = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")
_NON_FINITE_TOKEN: Final = re.compile(rb"NaN|Infinity")


def _encode_json(value: object) -> bytes:
    """JSON as msgspec writes it, except that NaN and infinities are written as ``NaN``,
    ``Infinity`` and ``-Infinity`` where msgspec writes ``null``.

    The common case costs one msgspec encode and a scan of its output: msgspec writes a
    non-finite float as ``null``, so a body without ``null`` (one ``memchr`` for ``u`` settles
    most bodies of numbers) is already right. A body with ``null`` may hold ``None``; a
    msgpack encode (C, about as fast) tells whether a non-finite float is there, and only then
    is the value rebuilt with those floats as raw JSON tokens.
    """
    data = _JSON_ENCODER.encode(value)
    if b"u" not in data or _NULL.search(data) is None:
        return data
    try:
        if _NON_FINITE_FLOAT64.search(_MSGPACK_ENCODER.encode(value)) is None:
            return data
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
        pass  # the exact check below decides
    builtins = msgspec.to_builtins(value, str_keys=True)
    return _JSON_ENCODER.encode(_with_raw_non_finite(builtins))


def _with_raw_non_finite(value: Any) -> Any:
    """``value`` (made of builtins only) with each non-finite float as a raw JSON token."""
    if isinstance(value, float):
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
            return value
        if value != value:
            return _NAN
        return _INFINITY if value > 0 else _MINUS_INFINITY
    if isinstance(value, (list, tuple)):
        return [_with_raw_non_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _with_raw_non_finite(item) for key, item in value.items()}
    return value


def _decode_json_fallback(data: Any, target: object, error: msgspec.DecodeError) -> Any:
    """Decode a body that msgspec refused, if what it refused is ``NaN`` or ``Infinity``.

    msgspec reads standard JSON only; Python's json module (dataserve 0.1 included) writes
    non-finite floats as ``NaN``, ``Infinity`` and ``-Infinity``. Such a body is parsed by the
    json module, then converted to ``target`` with msgspec's rules for JSON (``str_keys``).

    Raises:
        msgspec.DecodeError: ``error``, when the body holds no such token or is not valid JSON
            for the json module either.
        msgspec.ValidationError: The body is valid but does not match ``target``.
    """
    if _NON_FINITE_TOKEN.search(data) is None:
        raise error
    import json

    try:
        value = json.loads(str(data, "utf-8"))
    except (ValueError, RecursionError):
        raise error from None
    if target is None:
        return value
    return msgspec.convert(value, target, str_keys=True)


class JsonCodec:
    """JSON via msgspec as ``application/json``.

    Claims dicts, lists, tuples, numbers, bools and ``None``; the registry also falls back to it
    for anything else msgspec encodes (dataclasses, Structs, datetime, UUID, Decimal, enums).
    Typed decoding uses one cached ``msgspec.json.Decoder(T)`` per type.

    Non-finite floats travel as Python's json module writes them: ``NaN``, ``Infinity`` and
    ``-Infinity`` (not standard JSON, but what dataserve 0.1 and ``json.dumps`` write), never as
    ``null``. Both directions; a body holding them is read with the json module, then typed.
    """

    media_type: Final = "application/json"
    types: Final[tuple[type, ...]] = (dict, list, tuple, int, float, bool, type(None))

    def encode(self, value: object, /) -> bytes:
        """Encode with a shared ``msgspec.json.Encoder`` (non-finite floats as ``NaN``...)."""
        return _encode_json(value)

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Any:
        """Decode (JSON is always UTF-8; a ``charset`` parameter is ignored).

        Raises:
            msgspec.ValidationError: The body is valid JSON but does not match ``type``.
            msgspec.DecodeError: The body is not valid JSON.
        """
        try:
            if type is None:
                return _JSON_DECODER.decode(data)
            return _JSON_TYPED.get(type).decode(data)
        except msgspec.ValidationError:
            if type is None:
                raise  # e.g. a number out of range
            # A typed decode stops at the first mismatch: it is one only if the whole body is
            # valid JSON (NaN and Infinity included).
            try:
                _JSON_SYNTAX.decode(data)
            except msgspec.DecodeError as exc:
                return _decode_json_fallback(data, type, exc)
            raise
        except msgspec.DecodeError as exc:
            return _decode_json_fallback(data, type, exc)


class BytesCodec:
    """``bytes``, ``bytearray`` and ``memoryview`` as ``application/octet-stream``, untouched.

    Encoding hands the caller's buffer to the transport without copying it.
    """

    media_type: Final = "application/octet-stream"
    types: Final[tuple[type, ...]] = (bytes, bytearray, memoryview)

    def encode(self, value: bytes | bytearray | memoryview, /) -> bytes | bytearray | memoryview:
        """Return the buffer itself (a ``memoryview`` as a flat view of unsigned bytes).

        Raises:
            TypeError: A ``memoryview`` that is not C-contiguous (copy it with ``bytes()``).
        """
        if isinstance(value, memoryview):
            if not value.c_contiguous:
                raise TypeError("a non-contiguous memoryview cannot be sent; pass bytes(view)")
            if not value.nbytes:
                return b""
            if value.ndim != 1 or value.format != "B":
                return value.cast("B")
        return value

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Any:
        """Return the body as ``bytes`` (or converted to ``type``)."""
        if type is None or type is bytes or type in _UNTYPED:
            return data if data.__class__ is bytes else bytes(data)
        if type is bytearray:
            return bytearray(data)
        if type is memoryview:
            return memoryview(data)
        return _convert(bytes(data), type)
