"""Interoperability with dataserve 0.1 peers, both ways (SPEC section 3).

The peers below imitate dataserve 0.1 (its ``HTTPDataHandler``, ``run_http_server``,
``HTTPDataClient`` and ``http_utils``) point by point; each point is pinned by a test here:

- the 0.1 server is a (non-threaded) ``http.server.HTTPServer`` speaking HTTP/1.0: one request
  per connection, a 200 reply with the exact media type and no ``Content-Length`` (the body
  ends when the connection closes);
- it picks the decoder by string equality of ``Content-Type`` (``text/plain`` decoded as
  UTF-8, ``application/json`` with stdlib ``json``, ``application/octet-stream`` as is);
- it answers every error with an empty-bodied 400 and no ``Content-Type``: a missing
  ``Content-Length``, a ``Content-Type`` it does not know, a JSON ``null`` body (decoded to
  ``None``, which 0.1 took for "no payload"), and a handler that returned ``None``, an
  unhandled resource included;
- when the handler raises (or a body does not decode), the exception escapes the request
  handler and ``socketserver`` closes the connection without a reply (0.1 printed the
  traceback on the server's stderr; here it is recorded in ``errors``);
- the resource is ``urlparse(self.path).path``: a query string is stripped and nothing is
  percent-decoded;
- its HEAD handler called ``form_ok_header()`` without the media type it needs, so a HEAD
  raises ``TypeError`` and gets no reply either.

It binds 127.0.0.1 (0.1 bound every interface; these tests stay on loopback).

The 0.1 client is ``requests.put(url + resource)`` with a new connection per call: it sends an
empty ``text/plain`` body for ``None``, leaves a ``?`` in a resource unescaped (so it starts a
query string), and picks the decoder by string equality of the reply's ``Content-Type``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from dataserve import (
    BadRequest,
    ConnectionLost,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    RemoteError,
    ResourceNotFound,
    TransportError,
)

from .conftest import is_closed_by_peer, put, raw_exchange

REQUEST_TIMEOUT = 10.0

XDATA = [1, 2, 3]


class SeedHandler:
    """The seed's handler, as a 0.1 server would call it; records the resources it is given."""

    def __init__(self) -> None:
        self.resources: list[str] = []

    def handle_request(self, resource: str, payload: Any) -> object:
        self.resources.append(resource)
        if resource == "/xdata":
            return XDATA + payload
        if resource == "/ydata":
            return 2
        if resource == "/echo":
            return payload
        if resource == "/raise":
            raise ValueError("boom")
        return None


# -- a dataserve 0.1 server ------------------------------------------------------------------


_TEXT, _JSON, _BYTES = "text/plain", "application/json", "application/octet-stream"


def _decode01(data: bytes, content_type: str) -> object:
    """0.1's ``from_binary``: exact media types; ``None`` for any other (refused with 400)."""
    if content_type == _TEXT:
        return data.decode()  # bad UTF-8 raises: the connection is closed without a reply
    if content_type == _JSON:
        return json.loads(data)  # bad JSON raises too; ``null`` gives None, refused with 400
    if content_type == _BYTES:
        return data
    return None


def _encode01(value: object) -> tuple[bytes | None, str]:
    """0.1's ``to_binary``: str, bytes, else stdlib JSON (``(None, '')`` if json refuses)."""
    if isinstance(value, str):
        return value.encode(), _TEXT
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), _BYTES
    try:
        return json.dumps(value).encode(), _JSON
    except TypeError:
        return None, ""


class Server01(HTTPServer):
    """The 0.1 server: one thread, HTTP/1.0. Records each request's headers and the errors
    that closed a connection without a reply."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Request01)
        self.data_handler = SeedHandler()
        self.seen: list[dict[str, str]] = []
        self.errors: list[BaseException] = []

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints the traceback; the connection is closed after it.
        error = sys.exc_info()[1]
        assert error is not None
        self.errors.append(error)


class Request01(BaseHTTPRequestHandler):
    """``protocol_version`` stays ``"HTTP/1.0"``: one request per connection."""

    server: Server01

    def _ok(self, media_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.end_headers()  # no Content-Length: the body ends when the connection closes

    def _bad(self) -> None:
        self.send_response(400)  # every error: no body, no Content-Type
        self.end_headers()

    def do_HEAD(self) -> None:
        self._ok()  # type: ignore[call-arg]  # 0.1's bug, kept: TypeError, no reply

    def do_PUT(self) -> None:
        self.server.seen.append(dict(self.headers.items()))
        length = int(self.headers.get("Content-Length", -1))
        if length < 0:
            self._bad()
            return
        body = self.rfile.read(length)
        payload = _decode01(body, self.headers.get("Content-Type", ""))
        if payload is None:
            self._bad()
            return
        resource = urlparse(self.path).path  # the query string goes; nothing is decoded
        result = self.server.data_handler.handle_request(resource, payload)
        if result is None:
            self._bad()
            return
        data, media_type = _encode01(result)
        self._ok(media_type)
        self.wfile.write(data)  # type: ignore[arg-type]  # None raises, as in 0.1

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # 0.1 silenced the log of successful requests; errors went to stderr


@pytest.fixture(scope="module")
def server01() -> Iterator[Server01]:
    server = Server01()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="server-01"
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(REQUEST_TIMEOUT)
        server.server_close()


@pytest.fixture
def client01(server01: Server01) -> Iterator[HTTPDataClient]:
    with HTTPDataClient(port=server01.port, timeout=REQUEST_TIMEOUT) as client:
        yield client


def assert_01_server_still_serves(server01: Server01) -> None:
    with HTTPDataClient(port=server01.port, timeout=REQUEST_TIMEOUT) as client:
        assert client.send("/xdata", [9]) == [1, 2, 3, 9]


# The stand-in itself, on raw sockets: it answers as 0.1 did.


def test_01_server_replies_http10_without_content_length(server01: Server01) -> None:
    reply = raw_exchange(server01.port, put("/xdata", b"[4]"))
    assert reply.raw.startswith(b"HTTP/1.0 200 ")
    assert reply.headers["content-type"] == "application/json"
    assert "content-length" not in reply.headers
    assert json.loads(reply.body) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "request_bytes",
    [
        put("/nothing", b"[1]"),  # the handler returned None: an unhandled resource
        put("/ydata", b"null"),  # JSON null: no payload, to 0.1
        put("/echo", b"x", content_type="application/json; charset=utf-8"),  # not equal
        put("/echo", b"x", content_type="Text/Plain"),  # string equality: case matters
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\r\n",  # no length
    ],
    ids=["unhandled", "json-null", "media-type-parameter", "media-type-case", "no-length"],
)
def test_01_server_answers_every_error_with_empty_400(
    server01: Server01, request_bytes: bytes
) -> None:
    reply = raw_exchange(server01.port, request_bytes)
    assert reply.raw.startswith(b"HTTP/1.0 400 ")
    assert "content-type" not in reply.headers
    assert reply.body == b""
    assert_01_server_still_serves(server01)


@pytest.mark.parametrize(
    "request_bytes",
    [
        put("/raise", b"[1]"),  # the handler raised
        put("/echo", b"[1, 2", content_type="application/json"),  # bad JSON
        put("/echo", b"\xff\xfe", content_type="text/plain"),  # bad UTF-8
        b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",  # 0.1's do_HEAD itself fails
    ],
    ids=["handler-raises", "bad-json", "bad-utf8", "head"],
)
def test_01_server_closes_without_reply_when_an_exception_escapes(
    server01: Server01, request_bytes: bytes
) -> None:
    del server01.errors[:]
    with socket.create_connection(("127.0.0.1", server01.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        assert is_closed_by_peer(sock)  # EOF, not a status line
    assert len(server01.errors) == 1
    assert_01_server_still_serves(server01)


def test_01_server_strips_query_and_does_not_percent_decode(server01: Server01) -> None:
    del server01.data_handler.resources[:]
    raw_exchange(server01.port, put("/echo?x=1", b'""', content_type="text/plain"))
    raw_exchange(server01.port, put("/a%20b", b"1"))
    assert server01.data_handler.resources == ["/echo", "/a%20b"]


# A dataserve client calling the 0.1 server.


def test_client_calls_01_server_seed_resource_gets_list(client01: HTTPDataClient) -> None:
    assert client01.send("/xdata", [4, 5, 6]) == [1, 2, 3, 4, 5, 6]


def test_client_calls_01_server_with_empty_string_gets_int(client01: HTTPDataClient) -> None:
    assert client01.send("/ydata", "") == 2


@pytest.mark.parametrize(
    "payload",
    ["héllo wörld", "", b"\x00\x01\xffraw", b"", {"a": 1.5, "b": [True, None]}, [1, "two"]],
    ids=["str", "empty-str", "bytes", "empty-bytes", "dict", "list"],
)
def test_client_round_trips_value_through_01_server(
    client01: HTTPDataClient, payload: object
) -> None:
    result = client01.send("/echo", payload)
    assert result == payload
    assert type(result) is type(payload)


def test_client_sends_exact_01_media_types_with_content_length(
    client01: HTTPDataClient, server01: Server01
) -> None:
    del server01.seen[:]
    client01.send("/echo", "text")
    client01.send("/echo", b"bytes")
    client01.send("/echo", [1])
    assert [h["Content-Type"] for h in server01.seen] == [
        "text/plain",
        "application/octet-stream",
        "application/json",
    ]
    assert [h["Content-Length"] for h in server01.seen] == ["4", "5", "3"]


def test_client_typed_call_to_01_server_decodes_into_type(client01: HTTPDataClient) -> None:
    assert client01.send("/xdata", [4], type=list[int]) == [1, 2, 3, 4]
    assert client01.send("/echo", "x", type=str) == "x"
    assert client01.send("/echo", b"x", type=bytes) == b"x"


def test_client_reads_large_unframed_reply_from_01_server(client01: HTTPDataClient) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB, ended by the connection closing
    assert client01.send("/echo", blob) == blob


def test_client_reuses_after_01_server_closes_each_connection(client01: HTTPDataClient) -> None:
    results = [client01.send("/xdata", [n]) for n in range(20)]
    assert results == [[1, 2, 3, n] for n in range(20)]


def test_client_without_payload_gets_bad_request_from_01_server(
    client01: HTTPDataClient,
) -> None:
    # A None payload travels as JSON null, which a 0.1 server refuses: the migration notes say
    # to send an explicit '' instead.
    with pytest.raises(BadRequest) as info:
        client01.send("/ydata")
    assert (info.value.status, info.value.detail) == (400, "")
    assert client01.send("/ydata", "") == 2


def test_client_gets_bad_request_from_01_server_where_dataserve_says_not_found(
    client01: HTTPDataClient, echo_server: HTTPDataServer
) -> None:
    with pytest.raises(BadRequest) as info:
        client01.send("/nothing", "")
    assert not isinstance(info.value, ResourceNotFound)
    assert (info.value.status, info.value.detail) == (400, "")
    assert str(info.value) == f"PUT {client01.url}/nothing answered 400 Bad Request"
    with HTTPDataClient(url=echo_server.url) as client, pytest.raises(ResourceNotFound):
        client.send("/none", "")  # a dataserve server, for the same unhandled resource


def test_client_gets_connection_lost_from_01_server_where_dataserve_says_remote_error(
    client01: HTTPDataClient, server01: Server01, echo_server: HTTPDataServer
) -> None:
    del server01.errors[:]
    with pytest.raises(ConnectionLost) as info:
        client01.send("/raise", "")
    assert "the handler may have run, so the request was not resent" in str(info.value)
    assert [type(e) for e in server01.errors] == [ValueError]  # it ran once: not resent
    assert client01.send("/ydata", "") == 2  # the next call works
    with HTTPDataClient(url=echo_server.url) as client, pytest.raises(RemoteError):
        client.send("/raise", "")  # a dataserve server, for the same failing handler


def test_client_wait_ready_cannot_see_01_server(
    client01: HTTPDataClient, server01: Server01
) -> None:
    # 0.1's HEAD handler fails, so a liveness probe never gets a reply; call a resource instead.
    with pytest.raises(TransportError, match="not ready"):
        client01.wait_ready(0.5)
    assert client01.send("/ydata", "") == 2


def test_client_question_mark_reaches_01_server_escaped_not_as_query(
    client01: HTTPDataClient, server01: Server01
) -> None:
    # dataserve escapes "?" (%3F), so a 0.1 server passes it on, undecoded, where the 0.1
    # client's unescaped "?" started a query string that the server stripped.
    del server01.data_handler.resources[:]
    with pytest.raises(BadRequest):
        client01.send("/echo?x=1", "")
    assert send01(client01.url, "/echo?x=1", "").value == ""  # the 0.1 client: reaches /echo
    assert server01.data_handler.resources == ["/echo%3Fx=1", "/echo"]


def test_client_reaches_same_01_resource_as_01_client_for_escaped_characters(
    client01: HTTPDataClient, server01: Server01
) -> None:
    # Both clients percent-encode a space or a non-ASCII letter alike, and a 0.1 server
    # decodes neither: its handler sees the same (escaped) resource from either.
    del server01.data_handler.resources[:]
    for resource in ("/a b", "/é"):
        with pytest.raises(BadRequest):
            client01.send(resource, "")
        assert send01(client01.url, resource, "").status == 400
    assert server01.data_handler.resources == ["/a%20b", "/a%20b", "/%C3%A9", "/%C3%A9"]


# -- a dataserve 0.1 client ------------------------------------------------------------------


class Reply01:
    def __init__(self, status: int, content_type: str | None, value: object) -> None:
        self.status = status
        self.content_type = content_type
        self.value = value


def send01(url: str, resource: str, payload: object = None, *, accept: bool = True) -> Reply01:
    """One call as the 0.1 client made it: a new connection, the resource appended to the URL
    unescaped (``requests`` then quotes what must be, but a ``?`` starts a query string),
    ``None`` sent as an empty ``text/plain`` body, exact media-type comparison."""
    if not resource.startswith("/"):
        resource = "/" + resource
    data_or_none, content_type = _encode01("" if payload is None else payload)
    assert data_or_none is not None, "the 0.1 client cannot encode this payload"
    data = data_or_none
    headers: dict[str, str | None] = {"Content-Type": content_type}
    if not accept:
        headers["Accept"] = None  # requests drops a header set to None
    response = requests.put(url + resource, data=data, headers=headers, timeout=REQUEST_TIMEOUT)
    reply_type = response.headers.get("Content-Type")
    value: object
    if response.status_code != 200:
        value = None
    elif reply_type == "application/json":
        value = json.loads(response.content)
    elif reply_type == "text/plain":
        value = response.content.decode("utf-8")
    elif reply_type == "application/octet-stream":
        value = response.content
    else:
        raise AssertionError(f"a 0.1 client cannot decode Content-Type {reply_type!r}")
    return Reply01(response.status_code, reply_type, value)


class Recorder(HTTPDataHandler):
    """The seed handler, recording the payloads it receives."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[object] = []
        self.resources: list[str] = []

    def handle_request(self, resource: str, payload: Any) -> object:
        with self.lock:
            self.received.append(payload)
            self.resources.append(resource)
        if resource == "/xdata":
            return XDATA + payload
        if resource == "/ydata":
            return 2
        if resource == "/repr":
            return repr(payload)
        return None


@pytest.fixture
def recorder(make_server: Callable[..., HTTPDataServer]) -> tuple[HTTPDataServer, Recorder]:
    handler = Recorder()
    return make_server(handler, port=0), handler


@pytest.mark.parametrize("accept", [True, False], ids=["accept-any", "no-accept"])
def test_01_client_seed_call_gets_json_list(
    recorder: tuple[HTTPDataServer, Recorder], accept: bool
) -> None:
    server, _ = recorder
    reply = send01(server.url, "/xdata", [4, 5, 6], accept=accept)
    assert (reply.status, reply.content_type, reply.value) == (
        200,
        "application/json",
        [1, 2, 3, 4, 5, 6],
    )


@pytest.mark.parametrize("accept", [True, False], ids=["accept-any", "no-accept"])
def test_01_client_dict_round_trips_as_exact_json(
    echo_server: HTTPDataServer, accept: bool
) -> None:
    payload = {"a": [1, 2.5, None], "b": {"c": "d"}}
    reply = send01(echo_server.url, "/echo", payload, accept=accept)
    assert (reply.status, reply.content_type, reply.value) == (200, "application/json", payload)


@pytest.mark.parametrize("accept", [True, False], ids=["accept-any", "no-accept"])
def test_01_client_str_round_trips_as_exact_text_plain(
    echo_server: HTTPDataServer, accept: bool
) -> None:
    reply = send01(echo_server.url, "/echo", "héllo, wörld ✓", accept=accept)
    assert (reply.status, reply.content_type, reply.value) == (200, "text/plain", "héllo, wörld ✓")


@pytest.mark.parametrize("accept", [True, False], ids=["accept-any", "no-accept"])
def test_01_client_bytes_round_trip_as_exact_octet_stream(
    echo_server: HTTPDataServer, accept: bool
) -> None:
    blob = bytes(range(256))
    reply = send01(echo_server.url, "/echo", blob, accept=accept)
    assert (reply.status, reply.content_type, reply.value) == (
        200,
        "application/octet-stream",
        blob,
    )


def test_01_client_none_payload_arrives_as_empty_string(
    recorder: tuple[HTTPDataServer, Recorder],
) -> None:
    server, handler = recorder
    reply = send01(server.url, "/repr", None)
    assert (reply.status, reply.content_type, reply.value) == (200, "text/plain", "''")
    assert handler.received == [""]


def test_01_client_none_payload_to_seed_ydata_gets_2(
    recorder: tuple[HTTPDataServer, Recorder],
) -> None:
    server, _ = recorder
    reply = send01(server.url, "/ydata", None)
    assert (reply.status, reply.content_type, reply.value) == (200, "application/json", 2)


def test_01_client_unhandled_resource_gets_404(echo_server: HTTPDataServer) -> None:
    reply = send01(echo_server.url, "/none", "x")
    assert reply.status == 404


def test_01_client_unhandled_resource_on_seed_gets_404(
    recorder: tuple[HTTPDataServer, Recorder],
) -> None:
    server, handler = recorder
    assert send01(server.url, "/nothing", [1]).status == 404
    assert handler.received == [[1]]


def test_01_client_many_calls_each_on_new_connection_all_served(
    echo_server: HTTPDataServer,
) -> None:
    replies = [send01(echo_server.url, "/echo", [n]).value for n in range(20)]
    assert replies == [[n] for n in range(20)]


def test_01_client_query_string_is_stripped_by_dataserve_as_by_01(
    recorder: tuple[HTTPDataServer, Recorder],
) -> None:
    server, handler = recorder
    reply = send01(server.url, "/xdata?page=2", [4])
    assert (reply.status, reply.value) == (200, [1, 2, 3, 4])
    assert handler.resources == ["/xdata"]


def test_01_client_escaped_resource_arrives_decoded_at_dataserve(
    recorder: tuple[HTTPDataServer, Recorder],
) -> None:
    # The 0.1 client's "/a b" goes out as "/a%20b"; a 0.1 server handed the handler that
    # string, a dataserve server decodes it (SPEC section 3): the migration notes say so.
    server, handler = recorder
    assert send01(server.url, "/a b", "x").status == 404
    assert handler.resources == ["/a b"]


def test_non_finite_floats_travel_both_ways_with_01_peers(
    client01: HTTPDataClient, recorder: tuple[HTTPDataServer, Recorder]
) -> None:
    # 0.1 wrote NaN and the infinities as the json module does (NaN, Infinity, -Infinity): a
    # 0.1 server reads what this client sends and answers the same tokens, which it reads back.
    nan, inf = float("nan"), float("inf")
    assert repr(client01.send("/echo", [1.0, nan, inf, -inf])) == "[1.0, nan, inf, -inf]"
    assert repr(client01.send("/echo", [nan], type=list[float])) == "[nan]"
    # A 0.1 client sending them reaches the handler with the floats, not a 400 or None.
    server, handler = recorder
    sent = send01(server.url, "/repr", [1.0, nan, inf, -inf])
    assert (sent.status, sent.value) == (200, "[1.0, nan, inf, -inf]")
    assert repr(handler.received) == "[[1.0, nan, inf, -inf]]"
    back = send01(server.url, "/xdata", [nan])
    assert (back.status, repr(back.value)) == (200, "[1, 2, 3, nan]")
