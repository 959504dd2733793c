"""User codecs against the `Codec` protocol, without inheriting from it. Checked, never run."""

from __future__ import annotations

import decimal
import fractions
from collections.abc import Mapping
from typing import Any, Final, assert_type

import dataserve.codecs
from dataserve import HTTPDataClient, HTTPDataHandler, HTTPDataServer
from dataserve.codecs import (
    BytesCodec,
    Codec,
    CodecRegistry,
    JsonCodec,
    MsgpackCodec,
    TextCodec,
    default_registry,
    register,
)


class FractionCodec:
    """A plain class: plain attributes, no base class."""

    media_type = "application/x-fraction"
    types = (fractions.Fraction,)

    def encode(self, value: fractions.Fraction, /) -> bytes:
        return f"{value.numerator}/{value.denominator}".encode()

    def decode(
        self, data: bytes, params: Mapping[str, str], type: object = None
    ) -> fractions.Fraction:
        return fractions.Fraction(data.decode())


class DecimalCodec:
    """``Final`` class attributes and a bytearray result."""

    media_type: Final = "application/x-decimal"
    types: Final = (decimal.Decimal,)

    def encode(self, value: decimal.Decimal, /) -> bytearray:
        return bytearray(str(value).encode())

    def decode(
        self, data: bytes, params: Mapping[str, str], type: object = None
    ) -> decimal.Decimal:
        return decimal.Decimal(data.decode(params.get("charset", "ascii")))


class SetCodec:
    """Instance attributes set in ``__init__``."""

    def __init__(self) -> None:
        self.media_type = "application/x-set"
        self.types: tuple[type[frozenset[int]], ...] = (frozenset,)

    def encode(self, value: frozenset[int], /) -> memoryview:
        return memoryview(",".join(map(str, sorted(value))).encode())

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> frozenset[int]:
        return frozenset(int(x) for x in data.decode().split(",") if x)


class Passthrough(HTTPDataHandler):
    def handle_request(self, resource: str, payload: Any) -> object:
        return payload


def registration() -> None:
    registry = CodecRegistry()
    registry.register(FractionCodec())
    registry.register(DecimalCodec())
    registry.register(SetCodec())
    registry.register(MsgpackCodec())
    register(FractionCodec())
    dataserve.codecs.register(DecimalCodec())
    default_registry().register(SetCodec())
    assert_type(default_registry(), CodecRegistry)
    assert_type(CodecRegistry(plugins=False), CodecRegistry)

    HTTPDataClient(port=5001, registry=registry)
    HTTPDataServer(Passthrough, registry=registry)


def protocol_types() -> None:
    fraction_codec: Codec[fractions.Fraction] = FractionCodec()
    decimal_codec: Codec[decimal.Decimal] = DecimalCodec()
    set_codec: Codec[frozenset[int]] = SetCodec()
    text: Codec[str] = TextCodec()
    builtins: list[Codec[Any]] = [JsonCodec(), TextCodec(), BytesCodec(), MsgpackCodec()]
    assert_type(fraction_codec.decode(b"1/2", {}), fractions.Fraction)
    assert_type(fraction_codec.media_type, str)
    assert_type(text.decode(b"hi", {"charset": "utf-8"}), str)
    print(decimal_codec, set_codec, builtins)


def registry_api(registry: CodecRegistry) -> None:
    assert_type(registry.codecs, tuple[Codec[Any], ...])
    assert_type(registry.media_types, tuple[str, ...])
    assert_type(registry.codec_for_media_type("application/json"), Codec[Any] | None)
    assert_type(registry.codec_for_type(fractions.Fraction), Codec[Any])
