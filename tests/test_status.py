"""Every status of SPEC section 3, provoked on a real socket, then a normal call that works."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Optional, Union

import pytest

from dataserve import (
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    RemoteError,
    ResourceNotFound,
    route,
)
from dataserve.codecs import CodecRegistry, MsgpackCodec

from .conftest import Gate, ScriptedServer, is_closed_by_peer, put, raw_exchange, read_reply


def assert_still_serves(server: HTTPDataServer) -> None:
    with HTTPDataClient(url=server.url) as c:
        assert c.send("/echo", [1, "two"]) == [1, "two"]


def assert_problem(reply, status: int) -> dict:
    assert reply.status == status
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    assert isinstance(problem["title"], str)
    assert problem["title"]
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    assert "Traceback" not in reply.body.decode()
    return problem


def test_handled_put_is_200_with_codec_content_type(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(echo_server.port, put("/echo", b"[1,2]"))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["content-length"] == "5"
    assert reply.body == b"[1,2]"
    assert "date" in reply.headers


def test_small_reply_arrives_in_one_write(echo_server: HTTPDataServer) -> None:
    # Head and body in one segment: no Nagle / delayed-ACK stall between them.
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(put("/echo", b"[7]"))
        time.sleep(0.2)
        first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"\r\n\r\n[7]")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[1, 2", "application/json"),
        (b"\xff\xfe", "text/plain"),
        (b"\xff", "text/plain; charset=utf-8"),
        (b"x", "text/plain; charset=no-such-charset"),
        (b"[" * 200_000 + b"]" * 200_000, "application/json"),  # nesting past any limit
    ],
)
def test_undecodable_body_is_400_and_keeps_connection(
    echo_server: HTTPDataServer, body: bytes, content_type: str
) -> None:
    request = (
        f"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(request)
        assert_problem(read_reply(sock), 400)
        sock.sendall(put("/echo", b"7"))  # same connection still serves
        reply = read_reply(sock)
    assert reply.status == 200
    assert reply.body == b"7"


def test_missing_token_is_401_with_www_authenticate(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(auth_token="s3cret-token")
    reply = raw_exchange(server.port, put("/echo", b"1"))
    problem = assert_problem(reply, 401)
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert "s3cret" not in reply.body.decode()
    wrong = raw_exchange(server.port, put("/echo", b"1", extra="Authorization: Bearer nope\r\n"))
    assert wrong.status == 401
    assert "nope" not in wrong.body.decode()
    assert "token" in problem["detail"]
    ok = raw_exchange(
        server.port, put("/echo", b"1", extra="Authorization: Bearer s3cret-token\r\n")
    )
    assert ok.status == 200
    with HTTPDataClient(url=server.url, auth_token="s3cret-token") as c:
        assert c.send("/echo", [1]) == [1]
    assert "s3cret" not in repr(HTTPDataClient(url=server.url, auth_token="s3cret-token"))


def test_head_needs_no_token_and_has_no_body(make_server: Callable[..., HTTPDataServer]) -> None:
    server = make_server(auth_token="tok")
    reply = raw_exchange(
        server.port, b"HEAD /anything HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["content-length"] == "0"


def test_handler_returning_none_is_404(echo_server: HTTPDataServer) -> None:
    problem = assert_problem(raw_exchange(echo_server.port, put("/none", b"1")), 404)
    assert "'/none'" in problem["detail"]
    assert_still_serves(echo_server)


# -- None: "not handled" (404), or "nothing" (null) from a route that says it may answer None ---


class Lookup(HTTPDataHandler):
    """A cache: routes that may find nothing, one that may not, and the seed's catch-all."""

    table: ClassVar[dict[str, int]] = {"a": 1}

    @route("/find")
    def find(self, payload: str) -> int | None:
        return self.table.get(payload)

    @route("/find-optional")
    def find_optional(self, payload: str) -> Optional[int]:  # noqa: UP045 - the spelling tested
        return self.table.get(payload)

    @route("/find-annotated")
    def find_annotated(self, payload: str) -> Annotated[Union[int, None], "a count"]:  # noqa: UP007
        return self.table.get(payload)

    @route("/reset")
    def reset(self, payload: Any) -> None:
        self.table.get(payload)  # a call made for its effect: it answers nothing

    @route("/strict")
    def strict(self, payload: str) -> int:
        return self.table.get(payload)  # type: ignore[return-value]  # None: not handled

    @route("/untyped")
    def untyped(self, payload):  # type: ignore[no-untyped-def]
        return None

    def handle_request(self, resource: str, payload: Any) -> int | None:
        return payload if resource == "/echo" else None  # an annotation here changes nothing


@pytest.fixture(scope="module")
def lookup_server() -> Iterator[HTTPDataServer]:
    with HTTPDataServer(Lookup, port=0) as server:
        yield server


def test_optional_route_returning_none_is_200_json_null(lookup_server: HTTPDataServer) -> None:
    reply = raw_exchange(lookup_server.port, put("/find", b'"zzz"'))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == b"null"
    assert raw_exchange(lookup_server.port, put("/find", b'"a"')).body == b"1"


@pytest.mark.parametrize("resource", ["/find", "/find-optional", "/find-annotated"])
def test_client_gets_none_from_route_whose_annotation_admits_none(
    lookup_server: HTTPDataServer, resource: str
) -> None:
    with HTTPDataClient(url=lookup_server.url) as client:
        assert client.send(resource, "zzz") is None
        assert client.send(resource, "zzz", type=int | None) is None
        assert client.send(resource, "zzz", type=Optional[int]) is None  # noqa: UP045
        assert client.send(resource, "a", type=int | None) == 1


def test_route_annotated_none_answers_null(lookup_server: HTTPDataServer) -> None:
    with HTTPDataClient(url=lookup_server.url) as client:
        assert client.send("/reset", "a") is None


def test_optional_route_answers_null_in_the_clients_preferred_codec(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    registry = CodecRegistry(plugins=False)
    registry.register(MsgpackCodec())
    server = make_server(Lookup, registry=registry)
    reply = raw_exchange(
        server.port, put("/find", b'"zzz"', extra="Accept: application/msgpack\r\n")
    )
    assert (reply.status, reply.headers["content-type"], reply.body) == (
        200,
        "application/msgpack",
        b"\xc0",  # msgpack nil
    )
    with HTTPDataClient(url=server.url, registry=registry) as client:
        assert client.send("/find", "zzz") is None
        assert client.send("/find", "a") == 1


def test_catch_all_returning_none_404_says_the_handler_returned_none(
    lookup_server: HTTPDataServer,
) -> None:
    problem = assert_problem(raw_exchange(lookup_server.port, put("/nothing", b"1")), 404)
    detail = problem["detail"]
    assert "the handler returned None for '/nothing'" in detail
    assert "does not handle that resource" in detail  # one meaning ...
    assert "None was its answer" in detail  # ... and the other
    assert "-> int | None" in detail  # and how to answer null instead
    with HTTPDataClient(url=lookup_server.url) as client:
        assert client.send("/echo", 3) == 3  # still serving
        with pytest.raises(ResourceNotFound) as info:
            client.send("/echo", None)  # handled, but None: handle_request cannot send it
    message = str(info.value)
    assert message.startswith(f"PUT {lookup_server.url}/echo answered 404 Not Found: ")
    assert "the handler returned None for '/echo'" in message
    assert "None was its answer" in message
    assert "check the resource name" not in message  # the old, misleading hint
    assert info.value.detail.startswith("the handler returned None for '/echo'")


def test_route_that_cannot_answer_none_404_names_its_annotation(
    lookup_server: HTTPDataServer,
) -> None:
    with HTTPDataClient(url=lookup_server.url) as client:
        with pytest.raises(ResourceNotFound) as strict:
            client.send("/strict", "zzz")
        with pytest.raises(ResourceNotFound) as untyped:
            client.send("/untyped", "zzz")
        assert client.send("/strict", "a") == 1
    assert "the route for '/strict' returned None" in str(strict.value)
    assert "its return annotation int does not admit None" in str(strict.value)
    assert "annotate it '-> int | None' to answer null" in str(strict.value)
    assert "it has no return annotation" in str(untyped.value)


def test_404_from_something_else_than_dataserve_keeps_the_generic_hint() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n"
            b"Content-Length: 9\r\nConnection: close\r\n\r\nnot here."
        )

    with ScriptedServer(script) as server, HTTPDataClient(url=server.url) as client:
        with pytest.raises(ResourceNotFound) as info:
            client.send("/x", 1)
    assert str(info.value).endswith(": not here.; check the resource name and the server's URL")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_with_allow(echo_server: HTTPDataServer, method: str) -> None:
    reply = raw_exchange(
        echo_server.port,
        f"{method} /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode(),
    )
    assert_problem(reply, 405)
    assert reply.headers["allow"] == "PUT, HEAD"
    assert_still_serves(echo_server)


def test_stalled_body_is_408_then_closed(make_server: Callable[..., HTTPDataServer]) -> None:
    server = make_server(request_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10\r\n\r\n[1,"
        )
        reply = read_reply(sock)
        assert_problem(reply, 408)
        assert reply.headers["connection"] == "close"
        assert is_closed_by_peer(sock)
    assert_still_serves(server)


def test_stalled_head_is_408_then_closed(make_server: Callable[..., HTTPDataServer]) -> None:
    server = make_server(request_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: t\r\n")
        assert_problem(read_reply(sock), 408)
        assert is_closed_by_peer(sock)
    assert_still_serves(server)


def test_put_without_content_length_is_411(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(
        echo_server.port, b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\r\n"
    )
    assert_problem(reply, 411)
    assert reply.headers["connection"] == "close"
    assert_still_serves(echo_server)


def test_body_over_max_body_size_is_413_before_reading(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(max_body_size=100)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # Announce 10 MB but send none of it: the reply must come anyway.
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        reply = read_reply(sock)
        assert "100" in assert_problem(reply, 413)["detail"]
        assert is_closed_by_peer(sock)
    with HTTPDataClient(url=server.url) as c:
        assert c.send("/echo", b"x" * 100) == b"x" * 100


def test_request_line_too_long_is_414(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(echo_server.port, b"PUT /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert_problem(reply, 414)
    assert_still_serves(echo_server)


@pytest.mark.parametrize("content_type", ["application/x-python-pickle", "image/png", "nonsense"])
def test_unknown_content_type_is_415_listing_accepted(
    echo_server: HTTPDataServer, content_type: str
) -> None:
    problem = assert_problem(raw_exchange(echo_server.port, put("/echo", b"x", content_type)), 415)
    assert "application/json" in problem["detail"]
    assert "text/plain" in problem["detail"]
    assert "application/octet-stream" in problem["detail"]
    assert_still_serves(echo_server)


def test_too_many_headers_is_431(echo_server: HTTPDataServer) -> None:
    headers = "".join(f"X-H{i}: v\r\n" for i in range(150))
    reply = raw_exchange(echo_server.port, put("/echo", b"1", extra=headers))
    assert_problem(reply, 431)
    assert_still_serves(echo_server)


def test_huge_header_is_431(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(echo_server.port, put("/echo", b"1", extra=f"X-Big: {'a' * 70000}\r\n"))
    assert_problem(reply, 431)
    assert_still_serves(echo_server)


def test_handler_exception_is_500_with_type_and_message_only(
    echo_server: HTTPDataServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", logger="dataserve"):
        reply = raw_exchange(echo_server.port, put("/raise", b"1"))
    problem = assert_problem(reply, 500)
    assert problem["exception"] == "ValueError"
    assert problem["detail"] == "ValueError: boom with 'quotes'"
    assert "traceback" not in problem
    assert "conftest.py" not in reply.body.decode()
    # The full traceback goes to the server's log instead.
    assert any(r.exc_info and r.name == "dataserve" for r in caplog.records)
    assert_still_serves(echo_server)


def test_expose_tracebacks_puts_the_traceback_in_the_500(
    make_server: Callable[..., HTTPDataServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(expose_tracebacks=True)
    with caplog.at_level("CRITICAL", logger="dataserve"):
        problem = raw_exchange(server.port, put("/raise", b"1")).json()
    assert problem["status"] == 500
    assert "Traceback" in problem["traceback"]
    assert "handle_request" in problem["traceback"]


def test_unencodable_return_value_is_500_naming_the_type(echo_server: HTTPDataServer) -> None:
    problem = assert_problem(raw_exchange(echo_server.port, put("/unencodable", b"1")), 500)
    assert "'object'" in problem["detail"]
    assert_still_serves(echo_server)


def test_connection_limit_is_503_when_every_connection_is_inside_a_request(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    gate = Gate()
    server = make_server(gate, max_connections=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as held:
        held.sendall(put("/wait", b"1"))
        gate.wait_entered(1)  # the only connection is now inside a request
        reply = raw_exchange(server.port, put("/echo", b"2"))
        problem = assert_problem(reply, 503)
        assert "1 connections" in problem["detail"]
        gate.release.set()
        assert read_reply(held).status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the held connection's thread ends after its close
        if raw_exchange(server.port, put("/echo", b"3")).status == 200:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the server did not serve again after the held connection closed")


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"HTTP/3.0"])
def test_unsupported_http_version_is_505(echo_server: HTTPDataServer, version: bytes) -> None:
    reply = raw_exchange(echo_server.port, b"PUT /echo " + version + b"\r\nHost: t\r\n\r\n")
    assert_problem(reply, 505)
    assert_still_serves(echo_server)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"PUT /echo\r\nHost: t\r\n\r\n",  # no version
        b"PUT  /echo HTTP/1.1\r\nHost: t\r\n\r\n",  # two spaces
        b"PUT /echo HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        b"P(T /echo HTTP/1.1\r\nHost: t\r\n\r\n",  # method not a token
        b"PUT /echo HTTP/1.x\r\nHost: t\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost : t\r\n\r\n",  # space before colon
        b"PUT /echo HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",  # obs-fold
        b"PUT /echo HTTP/1.1\r\nNoColon\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n",  # NUL in a value
        b"PUT /echo HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"PUT /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        b"PUT echo HTTP/1.1\r\nHost: t\r\n\r\n",  # not a path
        b"PUT /%ff%fe HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n1",  # not UTF-8
        b"PUT /a%00b HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n1",  # NUL in the path
        b"PUT /echo HTTP/1.1\nHost: t\n\n",  # bare LF line endings
    ],
)
def test_malformed_request_is_400_and_closed(
    echo_server: HTTPDataServer, request_bytes: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        reply = read_reply(sock)
        assert_problem(reply, 400)
        assert reply.headers["connection"] == "close"
        assert is_closed_by_peer(sock)
    assert_still_serves(echo_server)


def test_identical_repeated_content_length_is_accepted(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(echo_server.port, put("/echo", b"12", extra="Content-Length: 2\r\n"))
    assert reply.status == 200
    assert reply.body == b"12"


def test_http10_request_is_served_and_closed(echo_server: HTTPDataServer) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[1]"
        )
        reply = read_reply(sock)
        assert reply.status == 200
        assert reply.body == b"[1]"
        assert is_closed_by_peer(sock)


def test_keep_alive_serves_many_requests_on_one_connection(echo_server: HTTPDataServer) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        for i in range(20):
            body = str(i).encode()
            sock.sendall(
                b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            reply = read_reply(sock)
            assert (reply.status, reply.body) == (200, body)


def test_pipelined_requests_are_answered_in_order(echo_server: HTTPDataServer) -> None:
    one = b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(one + b"1" + one + b"2" + one + b"3")
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200 OK") < 3 or not data.endswith(b"3"):
            assert time.monotonic() < deadline, data
            data += sock.recv(65536)
    bodies = [reply.rpartition(b"\r\n\r\n")[2] for reply in data.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"1", b"2", b"3"]


def test_absolute_form_target_and_query_are_not_part_of_resource(
    echo_server: HTTPDataServer,
) -> None:
    a = raw_exchange(echo_server.port, put("http://t/resource?x=1", b'"p"'))
    assert a.json() == ["/resource", "p"]
    b = raw_exchange(echo_server.port, put("/resource?q=%2F", b'"p"'))
    assert b.json() == ["/resource", "p"]


def test_missing_content_type_is_read_as_bytes(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(
        echo_server.port,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.body == b"abc"


def test_token_is_never_logged_echoed_or_shown(
    make_server: Callable[..., HTTPDataServer], caplog: pytest.LogCaptureFixture
) -> None:
    token = "tok-9f8e7d6c5b4a"
    with caplog.at_level("DEBUG"):
        server = make_server(auth_token=token, expose_tracebacks=True)
        for auth in ("", f"Authorization: Bearer {token}x\r\n", f"Authorization: {token}\r\n"):
            reply = raw_exchange(server.port, put("/echo", b"1", extra=auth))
            assert reply.status == 401
            assert token not in reply.raw.decode() + reply.body.decode()
        with HTTPDataClient(url=server.url, auth_token=token) as c:
            assert c.send("/echo", 1) == 1
            with pytest.raises(RemoteError) as info:
                c.send("/raise", 1)  # a traceback in the reply, and in the log
            assert token not in str(info.value)
            assert token not in repr(c)
        assert token not in repr(server)
    assert caplog.records  # the 500 was logged
    assert all(
        token not in r.getMessage() and token not in (r.exc_text or "") for r in caplog.records
    )


def test_expect_100_continue_gets_an_interim_reply_before_the_body(
    echo_server: HTTPDataServer,
) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = read_reply(sock, head_only=True)  # before any byte of the body was sent
        assert interim.status == 100
        sock.sendall(b"[9]")
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"[9]")


def test_oversized_body_with_expect_is_413_without_100_continue(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(max_body_size=10)
    reply = raw_exchange(
        server.port,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    )
    assert reply.status == 413


def test_unknown_expectation_is_417(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(echo_server.port, put("/echo", b"1", extra="Expect: something\r\n"))
    assert_problem(reply, 417)
    assert_still_serves(echo_server)


def test_curl_large_upload_with_expect_is_served(echo_server: HTTPDataServer, tmp_path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    payload = tmp_path / "in.bin"
    payload.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: curl sends Expect: 100-continue
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-X",
            "PUT",
            "--data-binary",
            f"@{payload}",
            "-H",
            "Content-Type: application/octet-stream",
            "-o",
            str(tmp_path / "out.bin"),
            "-w",
            "%{http_code} %{time_total}",
            f"{echo_server.url}/echo",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split()[0] == "200"
    assert (tmp_path / "out.bin").read_bytes() == payload.read_bytes()
