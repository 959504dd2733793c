"""The codec registry: selection by type, media types on the wire, user codecs, plug-ins."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from hypothesis import given, settings

from dataserve import (
    EncodeError,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    UnsupportedMediaType,
    route,
)
from dataserve.codecs import BytesCodec, CodecRegistry, JsonCodec, MsgpackCodec, TextCodec

from .conftest import Echo, ScriptedServer, put, raw_exchange
from .strategies import json_values, same


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents


class MoneyCodec:  # a codec need not inherit from Codec
    media_type: Final = "application/x-money"
    types: Final = (Money,)

    def encode(self, value: Money, /) -> bytes:
        return str(value.cents).encode()

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Money:
        return Money(int(data))


@pytest.mark.parametrize(
    ("value", "media_type"),
    [
        ("héllo", "text/plain"),
        ([1, 2], "application/json"),
        ({"a": None}, "application/json"),
        (3.5, "application/json"),
        (True, "application/json"),
        (b"\x00", "application/octet-stream"),
        (bytearray(b"\x01"), "application/octet-stream"),
        (memoryview(b"\x02"), "application/octet-stream"),
    ],
)
def test_builtin_media_types_are_exact_on_the_wire(
    echo_server: HTTPDataServer, value: Any, media_type: str
) -> None:
    registry = CodecRegistry()
    codec, body = registry.encode(value)
    assert codec.media_type == media_type
    reply = raw_exchange(echo_server.port, put("/echo", bytes(body), media_type))
    assert reply.headers["content-type"] == media_type  # no parameters: 0.1 peers compare strings


def test_selection_follows_mro_with_user_codecs_first() -> None:
    registry = CodecRegistry(plugins=False)
    assert isinstance(registry.codec_for_type(collections.OrderedDict), JsonCodec)
    assert isinstance(registry.codec_for_type(type("S", (str,), {})), TextCodec)
    assert isinstance(registry.codec_for_type(bool), JsonCodec)

    class Loud(str):
        pass

    class LoudCodec(TextCodec):
        media_type: Final = "text/x-loud"  # type: ignore[misc]
        types: Final = (Loud,)  # type: ignore[misc]

    registry.register(LoudCodec())
    assert registry.codec_for_type(Loud).media_type == "text/x-loud"
    assert registry.codec_for_type(type("L2", (Loud,), {})).media_type == "text/x-loud"
    assert registry.codec_for_type(str).media_type == "text/plain"  # exact type still wins
    assert registry.media_types[0] == "text/x-loud"


def test_register_clears_the_type_cache() -> None:
    registry = CodecRegistry(plugins=False)
    assert isinstance(registry.codec_for_type(Money), JsonCodec)  # fallback, cached
    registry.register(MoneyCodec())
    assert registry.codec_for_type(Money).media_type == "application/x-money"


def test_register_rejects_non_codecs() -> None:
    with pytest.raises(TypeError, match="lacks"):
        CodecRegistry().register(object())  # type: ignore[arg-type]


def test_unencodable_value_error_names_type() -> None:
    with pytest.raises(EncodeError, match=r"'Money'.*'/r'"):
        CodecRegistry(plugins=False).encode(Money(1), "/r")


def test_value_refused_by_the_codec_claiming_its_type_says_that_codec_refused_it() -> None:
    # JSON claims lists: the fault is an item, and "register a codec for list" would be untrue.
    with pytest.raises(EncodeError) as info:
        CodecRegistry(plugins=False).encode([1, Money(1)], "/r")
    assert str(info.value) == (
        "The application/json codec cannot encode this 'list' value (sending to '/r'): "
        "Encoding objects of type Money is unsupported"
    )


def test_custom_codec_round_trip_with_registries() -> None:
    registry = CodecRegistry()
    registry.register(MoneyCodec())
    with HTTPDataServer(Echo, registry=registry) as server:
        with HTTPDataClient(url=server.url, registry=registry) as client:
            assert client.send("/echo", Money(1234)) == Money(1234)
            assert client.send("/echo", [1]) == [1]
        with HTTPDataClient(url=server.url) as plain, pytest.raises(EncodeError):
            plain.send("/echo", Money(1))
    # A server without the codec refuses its media type: the registry is an allow-list.
    with HTTPDataServer(Echo) as server, HTTPDataClient(url=server.url, registry=registry) as c:
        with pytest.raises(UnsupportedMediaType, match="application/x-money"):
            c.send("/echo", Money(1))


def test_process_wide_register_reaches_clients_and_servers(tmp_path: Path) -> None:
    # In a subprocess: the process-wide registry is global state.
    script = textwrap.dedent("""
        from dataserve import HTTPDataClient, HTTPDataHandler, HTTPDataServer
        from dataserve.codecs import register

        class Money:
            def __init__(self, cents): self.cents = cents

        class MoneyCodec:
            media_type = "application/x-money"
            types = (Money,)
            def encode(self, value): return str(value.cents).encode()
            def decode(self, data, params, type=None): return Money(int(data))

        class H(HTTPDataHandler):
            def handle_request(self, resource, payload):
                return Money(payload.cents + 1)

        with HTTPDataServer(H) as server, HTTPDataClient(url=server.url) as client:
            register(MoneyCodec())   # after both exist: they use the default registry
            print(client.send("/m", Money(41)).cents)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "42"


def test_msgpack_preferred_by_both_sides_is_used_both_ways(echo_server: HTTPDataServer) -> None:
    registry = CodecRegistry()
    registry.register(MsgpackCodec())
    with HTTPDataServer(Echo, registry=registry) as server:
        with HTTPDataClient(url=server.url, registry=registry) as client:
            assert client.send("/echo", {"a": [1, 2]}) == {"a": [1, 2]}
            assert client.send("/echo", "text") == "text"
        raw = raw_exchange(
            server.port,
            put("/echo", b"[1]", extra="Accept: application/msgpack, application/json\r\n"),
        )
        assert raw.headers["content-type"] == "application/msgpack"
        assert raw.body == MsgpackCodec().encode([1])
        # A peer without Accept (0.1) gets exactly the 0.1 media types.
        assert (
            raw_exchange(server.port, put("/echo", b"[1]")).headers["content-type"]
            == "application/json"
        )


def test_accept_q_values_order_preferences(echo_server: HTTPDataServer) -> None:
    registry = CodecRegistry()
    registry.register(MsgpackCodec())
    with HTTPDataServer(Echo, registry=registry) as server:
        reply = raw_exchange(
            server.port,
            put("/echo", b"[1]", extra="Accept: application/msgpack;q=0.5, application/json\r\n"),
        )
        assert reply.headers["content-type"] == "application/json"


def test_text_charset_parameter_and_case_insensitive_media_types(
    echo_server: HTTPDataServer,
) -> None:
    latin = raw_exchange(
        echo_server.port, put("/echo", "é".encode("latin-1"), "text/plain; charset=latin-1")
    )
    assert latin.body == "é".encode()  # decoded as Latin-1, echoed as UTF-8
    upper = raw_exchange(echo_server.port, put("/echo", b"[1]", "Application/JSON"))
    assert upper.body == b"[1]"
    quoted = raw_exchange(echo_server.port, put("/echo", b"ok", 'TEXT/PLAIN; Charset="utf-8"'))
    assert quoted.body == b"ok"


class _ParamsValue:
    pass


def type_name_of(exc: BaseException) -> str:
    return exc.__class__.__name__


class _ParamsCodec:
    """Decodes any body as the parameters it was handed, after trying to change them."""

    media_type = "application/x-params"
    types = (_ParamsValue,)

    def __init__(self) -> None:
        self.refused: list[str] = []

    def encode(self, value: _ParamsValue) -> bytes:
        return b""

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> object:
        try:
            params["charset"] = "changed by a codec"  # type: ignore[index]
        except TypeError as exc:
            self.refused.append(type_name_of(exc))
        return dict(params)


def test_media_type_parameters_are_quoted_strings_and_read_only() -> None:
    codec = _ParamsCodec()
    registry = CodecRegistry()
    registry.register(codec)
    header = 'application/x-params; charset="a;b"; note="say \\"hi\\""; flag; Q = 1'
    with HTTPDataServer(Echo, registry=registry) as server:
        for _ in range(2):  # the second request gets the same (cached) parameters, unchanged
            reply = raw_exchange(server.port, put("/echo", b"", header))
            assert reply.status == 200
            assert json.loads(reply.body) == {"charset": "a;b", "note": 'say "hi"', "q": "1"}
        assert codec.refused == ["TypeError", "TypeError"]
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", [1]) == [1]  # and the server still serves


def test_builtin_decode_round_trips() -> None:
    assert TextCodec().decode(b"\xe9", {"charset": "latin-1"}) == "é"
    assert JsonCodec().decode(b"[1]", {}, list[int]) == [1]
    assert BytesCodec().decode(b"ab", {}) == b"ab"


def test_entry_point_plugins_join_default_registry_lazily(tmp_path: Path) -> None:
    (tmp_path / "plugcodec.py").write_text(
        textwrap.dedent("""
        class Thing: ...
        class ThingCodec:
            media_type = "application/x-thing"
            types = (Thing,)
            def encode(self, value): return b"thing"
            def decode(self, data, params, type=None): return Thing()
    """)
    )
    dist = tmp_path / "plugcodec-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugcodec\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dataserve.codecs]\nthing = plugcodec:ThingCodec\nbroken = plugcodec:Missing\n"
    )
    script = textwrap.dedent("""
        import sys
        from dataserve.codecs import CodecRegistry, default_registry
        assert "plugcodec" not in sys.modules            # lazily, on first use
        print(default_registry().media_types)
        print(CodecRegistry(plugins=False).media_types)
        import plugcodec
        print(default_registry().encode(plugcodec.Thing())[0].media_type)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        check=True,
    )
    lines = out.stdout.splitlines()
    assert "application/x-thing" in lines[0]
    assert "application/x-thing" not in lines[1]
    assert lines[2] == "application/x-thing"
    assert "broken" in out.stderr  # a broken plug-in is logged and skipped, not fatal


# -- non-finite floats in JSON (SPEC section 3) -----------------------------------------------

NAN, INF = float("nan"), float("inf")


class Measurement(msgspec.Struct):
    value: float
    error: float = 0.0


class Floats(HTTPDataHandler):
    """Tells what the handler was given, and takes floats on a typed route."""

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/repr":
            return repr(payload)
        return payload

    @route("/typed")
    def typed(self, payload: list[float]) -> list[str]:
        return [repr(x) for x in payload]


@pytest.fixture(scope="module")
def floats_server() -> Iterator[HTTPDataServer]:
    with HTTPDataServer(Floats) as server:
        yield server


def test_nan_and_infinities_reach_the_handler_and_come_back(floats_server: HTTPDataServer) -> None:
    with HTTPDataClient(url=floats_server.url) as client:
        assert client.send("/repr", [1.0, NAN, INF, -INF]) == "[1.0, nan, inf, -inf]"
        assert client.send("/typed", [1.0, NAN, INF]) == ["1.0", "nan", "inf"]
        assert same(client.send("/echo", [1.0, NAN, INF, -INF]), [1.0, NAN, INF, -INF])
        assert same(client.send("/echo", {"a": [NAN]}), {"a": [NAN]})
        assert same(client.send("/echo", NAN, type=float), NAN)
        back = client.send("/echo", Measurement(NAN, INF), type=Measurement)
        assert repr(back) == "Measurement(value=nan, error=inf)"


def test_client_writes_nan_and_infinity_on_the_wire_as_python_json_does() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        body = b"[NaN,Infinity,-Infinity]"
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )

    with ScriptedServer(script) as server, HTTPDataClient(url=server.url) as client:
        reply = client.send("/x", [1.0, NAN, INF, -INF, None])
        assert same(reply, [NAN, INF, -INF])
        assert same(client.send("/x", type=list[float]), [NAN, INF, -INF])
    body = server.requests[0].partition(b"\r\n\r\n")[2]
    assert body == b"[1.0,NaN,Infinity,-Infinity,null]"
    assert body == json.dumps([1.0, NAN, INF, -INF, None], separators=(",", ":")).encode()


def test_nan_body_is_decoded_and_server_keeps_serving(floats_server: HTTPDataServer) -> None:
    reply = raw_exchange(floats_server.port, put("/repr", b"[NaN, Infinity, -Infinity]"))
    assert (reply.status, reply.body) == (200, b"[nan, inf, -inf]")
    reply = raw_exchange(floats_server.port, put("/echo", b'{"a": [1.5, NaN, -Infinity]}'))
    assert (reply.status, reply.body) == (200, b'{"a":[1.5,NaN,-Infinity]}')
    reply = raw_exchange(floats_server.port, put("/typed", b"[NaN, 2]"))
    assert (reply.status, reply.json()) == (200, ["nan", "2.0"])
    with HTTPDataClient(url=floats_server.url) as client:
        assert client.send("/echo", [1]) == [1]


@pytest.mark.parametrize(
    "body",
    [b'["NaN"', b"[NaN", b"[nan]", b"[NaN,]", b"[Infinity x]", b'{"a": NaN NaN}'],
    ids=["string", "truncated", "lower-case", "trailing-comma", "junk", "two-values"],
)
def test_malformed_body_with_nan_is_still_400_and_server_keeps_serving(
    floats_server: HTTPDataServer, body: bytes
) -> None:
    reply = raw_exchange(floats_server.port, put("/echo", body))
    assert reply.status == 400
    assert "could not be decoded" in reply.json()["detail"]
    with HTTPDataClient(url=floats_server.url) as client:
        assert same(client.send("/echo", [NAN]), [NAN])


def test_json_without_non_finite_floats_is_msgspec_byte_for_byte() -> None:
    value = {"a": [1.5, None, "null", True], "n": None, "s": Measurement(2.0)}
    assert JsonCodec().encode(value) == msgspec.json.encode(value)


def test_non_finite_floats_in_other_types_are_written_as_tokens() -> None:
    @dataclasses.dataclass
    class Row:
        at: datetime.datetime
        price: decimal.Decimal
        blob: bytes
        reading: Measurement
        note: None

    at = datetime.datetime(2026, 1, 2, 3, 4, 5)
    value = [
        Row(at, decimal.Decimal("1.5"), b"\x00", Measurement(NAN, 1.0), None),
        (INF,),
        {1: -INF},
    ]
    assert JsonCodec().encode(value) == (
        b'[{"at":"2026-01-02T03:04:05","price":"1.5","blob":"AA==",'
        b'"reading":{"value":NaN,"error":1.0},"note":null},[Infinity],{"1":-Infinity}]'
    )


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_json_codec_reads_and_writes_what_python_json_does(value: object) -> None:
    # A dataserve 0.1 peer encodes and decodes with the json module, both ways.
    codec = JsonCodec()
    assert same(json.loads(codec.encode(value)), value)
    assert same(codec.decode(json.dumps(value).encode(), {}), value)
    assert same(codec.decode(json.dumps(value).encode(), {}, Any), value)
