"""Typed results on the client (send(..., type=T)) and typed routes on the server."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any, Literal, Optional

import msgspec
import pytest

from dataserve import (
    BadRequest,
    DecodeError,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    RemoteError,
    ResourceNotFound,
    route,
)
from dataserve.codecs import CodecRegistry, MsgpackCodec

from .conftest import ScriptedServer, put, raw_exchange


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Pair:
    a: str
    b: float


class Typed(HTTPDataHandler):
    @route("/add")
    def add(self, payload: list[int]) -> int:
        return sum(payload)

    @route("/point")
    def point(self, payload: Point) -> Point:
        return Point(payload.x * 2, payload.y * 2)

    @route("/liar")
    def liar(self, payload: int) -> int:
        return "not an int"  # type: ignore[return-value]

    @route("raw")
    def raw(self, payload):  # type: ignore[no-untyped-def]  # untyped route: anything goes
        return {"got": payload}

    def handle_request(self, resource: str, payload: Any) -> object:
        return {
            "/pair": {"a": "x", "b": 1.5},
            "/nums": [1, 2, "three"],
            "/text": "hi",
            "/bytes": b"\x00\x01",
            "/echo": payload,
        }.get(resource)


class RoutesOnly(HTTPDataHandler):
    @route("/one")
    def one(self, payload: None) -> int:
        return 1


@pytest.fixture(scope="module")
def typed_client() -> Iterator[HTTPDataClient]:
    with HTTPDataServer(Typed) as server, HTTPDataClient(url=server.url) as client:
        yield client


def test_typed_list_result(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("/echo", [1, 2], type=list[int]) == [1, 2]


def test_typed_struct_and_dataclass_results(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("/point", {"x": 1, "y": 2}, type=Point) == Point(2, 4)
    assert typed_client.send("/pair", type=Pair) == Pair("x", 1.5)
    assert typed_client.send("/pair", type=dict[str, Any]) == {"a": "x", "b": 1.5}


def test_typed_str_and_bytes_results(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("/text", type=str) == "hi"
    assert typed_client.send("/bytes", type=bytes) == b"\x00\x01"
    assert typed_client.send("/bytes", type=bytearray) == bytearray(b"\x00\x01")


def test_typed_mismatch_raises_decode_error_with_path(typed_client: HTTPDataClient) -> None:
    with pytest.raises(DecodeError, match=r"\$\[2\]") as info:
        typed_client.send("/nums", type=list[int])
    assert isinstance(info.value, ValueError)
    assert "/nums" in str(info.value)
    with pytest.raises(DecodeError, match="Expected `int`"):
        typed_client.send("/text", type=int)
    with pytest.raises(DecodeError):
        typed_client.send("/bytes", type=str)


def test_struct_payload_encodes_as_json(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("/echo", Point(3, 4)) == {"x": 3, "y": 4}
    assert typed_client.send("/point", Point(3, 4), type=Point) == Point(6, 8)


def test_typed_route_validates_payload(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("/add", [1, 2, 3]) == 6
    with pytest.raises(BadRequest, match=r"\$\[1\]") as info:
        typed_client.send("/add", [1, "two"])
    assert info.value.status == 400
    with pytest.raises(BadRequest, match="Object missing required field `y`"):
        typed_client.send("/point", {"x": 1})


def test_route_return_value_not_fitting_annotation_is_500(typed_client: HTTPDataClient) -> None:
    with pytest.raises(RemoteError, match="return annotation") as info:
        typed_client.send("/liar", 1)
    assert info.value.status == 500


def test_untyped_route_and_catch_all_live_together(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("raw", [1, "a"]) == {"got": [1, "a"]}
    assert typed_client.send("/echo", "x") == "x"


def test_handler_with_routes_only_answers_404_elsewhere() -> None:
    with HTTPDataServer(RoutesOnly) as server, HTTPDataClient(url=server.url) as client:
        assert client.send("/one") == 1
        with pytest.raises(ResourceNotFound) as info:
            client.send("/two", 1)
    # It names the routes there are, not a None the handler never returned.
    assert info.value.detail == (
        "no route for '/two': the handler's routes are '/one', and it does not override "
        "handle_request, which would receive the other resources"
    )


def test_routes_only_handler_answers_404_before_decoding_a_body_for_no_route() -> None:
    with HTTPDataServer(RoutesOnly) as server:
        reply = raw_exchange(server.port, put("/two", b"{not json"))
        assert reply.status == 404
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/one") == 1


def test_handler_with_a_catch_all_still_says_it_returned_none(
    typed_client: HTTPDataClient,
) -> None:
    with pytest.raises(ResourceNotFound, match=r"the handler returned None for '/nothing'"):
        typed_client.send("/nothing", 1)


def test_handler_with_neither_routes_nor_catch_all_is_a_type_error() -> None:
    class Nothing(HTTPDataHandler):
        pass

    with pytest.raises(TypeError, match=r"Nothing handles no resource.*handle_request.*@route"):
        Nothing()


def test_route_with_wrong_arity_fails_at_server_creation(make_server: Callable[..., Any]) -> None:
    class Bad(HTTPDataHandler):
        @route("/bad")
        def bad(self, a: int, b: int) -> int:
            return a + b

    with pytest.raises(TypeError, match="exactly one argument"):
        make_server(Bad)


# -- a body that does not match its type, told from one that could not be decoded ---------------


MISMATCH = "the application/json body is valid but does not match list[int]: "


@pytest.fixture(scope="module")
def typed_server() -> Iterator[HTTPDataServer]:
    with HTTPDataServer(Typed) as server:
        yield server


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'[1, "two"]', MISMATCH + "Expected `int`, got `str` - at `$[1]`"),
        (b"[1, NaN]", MISMATCH + "Expected `int`, got `float` - at `$[1]`"),
        (b"{}", MISMATCH + "Expected `array`, got `object`"),
        (b"[1, 2", "the application/json body could not be decoded: Input data was truncated"),
        (b'[1, "two"', "the application/json body could not be decoded: Input data was truncated"),
        (
            b'[1, "two"] x',
            "the application/json body could not be decoded: "
            "JSON is malformed: trailing characters (byte 12)",
        ),
    ],
    ids=["mismatch", "nan-for-int", "object-for-list", "truncated", "then-truncated", "then-junk"],
)
def test_route_body_mismatch_is_told_from_undecodable_body_and_server_keeps_serving(
    typed_server: HTTPDataServer, body: bytes, detail: str
) -> None:
    reply = raw_exchange(typed_server.port, put("/add", body))
    assert reply.status == 400
    assert reply.json()["detail"] == detail
    with HTTPDataClient(url=typed_server.url) as client:
        assert client.send("/add", [1, 2]) == 3


def test_client_sees_which_failure_a_route_reported(typed_client: HTTPDataClient) -> None:
    with pytest.raises(BadRequest, match=r"is valid but does not match Point: .*`y`"):
        typed_client.send("/point", {"x": 1})
    with pytest.raises(BadRequest, match=r"is valid but does not match list\[int\]: .*`\$\[0\]`"):
        typed_client.send("/add", ["one"])


def test_typed_reply_mismatch_is_told_from_undecodable_reply(typed_client: HTTPDataClient) -> None:
    url = typed_client.url
    with pytest.raises(DecodeError) as info:
        typed_client.send("/nums", type=list[int])
    assert str(info.value) == (
        f"the application/json reply of PUT {url}/nums is valid but does not match list[int]: "
        "Expected `int`, got `str` - at `$[2]`"
    )
    with pytest.raises(DecodeError) as info:
        typed_client.send("/text", type=int | None)
    assert str(info.value) == (
        f"the text/plain reply of PUT {url}/text is valid but does not match int | None: "
        "Expected `int | null`, got `str`"
    )

    def truncated(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n"
            b'Connection: close\r\n\r\n[1, "two"'
        )

    with ScriptedServer(truncated) as server, HTTPDataClient(url=server.url) as client:
        with pytest.raises(DecodeError) as info:
            client.send("/t", type=list[int])
    assert str(info.value) == (
        f"the application/json reply of PUT {server.url}/t could not be decoded: "
        "Input data was truncated"
    )


def test_msgpack_mismatch_is_told_from_undecodable_body() -> None:
    registry = CodecRegistry()
    registry.register(MsgpackCodec())
    good = msgspec.msgpack.encode([1, "two"])
    with HTTPDataServer(Typed, registry=registry) as server:
        kind = "application/msgpack"
        reply = raw_exchange(server.port, put("/add", good, kind))
        assert (reply.status, reply.json()["detail"]) == (
            400,
            f"the {kind} body is valid but does not match list[int]: "
            "Expected `int`, got `str` - at `$[1]`",
        )
        reply = raw_exchange(server.port, put("/add", good[:-1], kind))
        assert (reply.status, reply.json()["detail"]) == (
            400,
            f"the {kind} body could not be decoded: Input data was truncated",
        )
        with HTTPDataClient(url=server.url, registry=registry) as client:
            assert client.send("/add", [1, 2]) == 3


# -- type forms that are not classes (typed for mypy through PEP 747 TypeForm) -----------------


def test_type_forms_that_are_not_classes_decode_at_run_time(typed_client: HTTPDataClient) -> None:
    assert typed_client.send("/echo", 5, type=int | None) == 5
    assert typed_client.send("/echo", 5, type=Optional[int]) == 5  # noqa: UP045
    assert typed_client.send("/text", type=Literal["hi", "bye"]) == "hi"
    assert typed_client.send("/pair", type=Pair | None) == Pair("x", 1.5)
    assert typed_client.send("/echo", [1, 2], type=list[Literal[1, 2]]) == [1, 2]
    with pytest.raises(DecodeError) as info:
        typed_client.send("/echo", "c", type=Literal["a", "b"])
    assert str(info.value) == (
        f"the text/plain reply of PUT {typed_client.url}/echo is valid but does not match "
        "Literal['a', 'b']: Invalid enum value 'c'"
    )


def test_typed_send_needs_no_typing_extensions_at_run_time(typed_server: HTTPDataServer) -> None:
    # TypeForm is imported for type checkers only: dataserve runs where typing_extensions is
    # not installed (msgspec imports it only if it is there).
    script = textwrap.dedent("""
        import sys
        sys.modules["typing_extensions"] = None  # any import of it now fails
        from typing import Literal
        from dataserve import HTTPDataClient
        with HTTPDataClient(url=sys.argv[1]) as client:
            print(client.send("/add", [1, 2], type=int | None))
            print(client.send("/text", type=Literal["hi"]))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, typed_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["3", "hi"]
