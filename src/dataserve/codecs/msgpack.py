"""MessagePack via msgspec as ``application/msgpack`` (opt-in)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ._base import JsonCodec, TypedDecoderCache

__all__ = ["MsgpackCodec"]

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder()
_TYPED: Final = TypedDecoderCache(msgspec.msgpack.Decoder)
_SYNTAX: Final = msgspec.msgpack.Decoder(msgspec.Raw)  # checks the body, builds nothing


class MsgpackCodec:
    """MessagePack as ``application/msgpack``, claiming the same types as JSON.

    Register it on both sides to prefer it over JSON::

        registry = CodecRegistry()
        registry.register(MsgpackCodec())
        client = HTTPDataClient(port=5001, registry=registry)
    """

    media_type: Final = "application/msgpack"
    types: Final[tuple[type, ...]] = JsonCodec.types

    def encode(self, value: object, /) -> bytes:
        """Encode with a shared ``msgspec.msgpack.Encoder``."""
        return _ENCODER.encode(value)

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Any:
        """Decode, typed when ``type`` is given.

        Raises:
            msgspec.ValidationError: The body is valid MessagePack but does not match ``type``.
            msgspec.DecodeError: The body is not valid MessagePack.
        """
        if type is None:
            return _DECODER.decode(data)
        try:
            return _TYPED.get(type).decode(data)
        except msgspec.ValidationError:
            _SYNTAX.decode(data)  # a malformed body raises its own DecodeError instead
            raise
