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
        """Decode, typed when ``type`` is given."""
        if type is None:
            return _DECODER.decode(data)
        return _TYPED.get(type).decode(data)
