"""Interoperability with dataserve 0.1 peers, both ways (SPEC section 3).

The peers below behave as dataserve 0.1 did on the wire:

- the 0.1 server is a (non-threaded) ``http.server.HTTPServer`` speaking HTTP/1.0, that picks
  the decoder by string equality of ``Content-Type``, answers a JSON ``null`` body with 400, and
  replies 200 with the exact media type and no ``Content-Length`` (the body ends when the
  connection closes);
- the 0.1 client is ``requests.put`` with a new connection per call, that sends an empty
  ``text/plain`` body for ``None`` and picks the decoder by string equality of the reply's
  ``Content-Type``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

from dataserve import (
    BadRequest,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    ResourceNotFound,
    ServerError,
)

from .conftest import put, raw_exchange

REQUEST_TIMEOUT = 10.0

XDATA = [1, 2, 3]


class SeedHandler:
    """The seed's handler, as a 0.1 server would call it."""

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/xdata":
            return XDATA + payload
        if resource == "/ydata":
            return 2
        if resource == "/echo":
            return payload
        return None


# -- a dataserve 0.1 server ------------------------------------------------------------------


class Server01(HTTPServer):
    """The 0.1 server: one thread, HTTP/1.0. Records each request's headers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Request01)
        self.data_handler = SeedHandler()
        self.seen: list[dict[str, str]] = []

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port


class Request01(BaseHTTPRequestHandler):
    """``protocol_version`` stays ``"HTTP/1.0"``: one request per connection."""

    server: Server01

    def do_PUT(self) -> None:
        self.server.seen.append(dict(self.headers.items()))
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        content_type = self.headers["Content-Type"]
        if content_type == "application/json":
            payload = json.loads(body)
            if payload is None:
                self.send_error(400, "no payload")
                return
        elif content_type == "text/plain":
            payload = body.decode("utf-8")
        elif content_type == "application/octet-stream":
            payload = body
        else:
            self.send_error(400, "unknown content type")
            return
        result = self.server.data_handler.handle_request(self.path, payload)
        if result is None:
            self.send_error(404, "not handled")
            return
        if isinstance(result, str):
            media_type, data = "text/plain", result.encode("utf-8")
        elif isinstance(result, bytes):
            media_type, data = "application/octet-stream", result
        else:
            media_type, data = "application/json", json.dumps(result).encode()
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.end_headers()  # no Content-Length: the body ends when the connection closes
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


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


def test_01_server_replies_http10_without_content_length(server01: Server01) -> None:
    # The peer is faithful: HTTP/1.0, exact media type, body framed by the connection closing.
    reply = raw_exchange(server01.port, put("/xdata", b"[4]"))
    assert reply.raw.startswith(b"HTTP/1.0 200 ")
    assert reply.headers["content-type"] == "application/json"
    assert "content-length" not in reply.headers
    assert json.loads(reply.body) == [1, 2, 3, 4]


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


def test_client_without_payload_gets_400_from_01_server(client01: HTTPDataClient) -> None:
    # A None payload travels as JSON null, which a 0.1 server refuses: the migration notes say
    # to send an explicit '' instead.
    with pytest.raises(BadRequest) as info:
        client01.send("/ydata")
    assert isinstance(info.value, ServerError)
    assert info.value.status == 400


def test_client_gets_resource_not_found_from_01_server_404(client01: HTTPDataClient) -> None:
    with pytest.raises(ResourceNotFound) as info:
        client01.send("/nothing", "")
    assert info.value.status == 404


# -- a dataserve 0.1 client ------------------------------------------------------------------


class Reply01:
    def __init__(self, status: int, content_type: str | None, value: object) -> None:
        self.status = status
        self.content_type = content_type
        self.value = value


def send01(url: str, resource: str, payload: object = None, *, accept: bool = True) -> Reply01:
    """One call as the 0.1 client made it: a new connection, exact media-type comparison."""
    if payload is None:
        data, content_type = b"", "text/plain"
    elif isinstance(payload, str):
        data, content_type = payload.encode("utf-8"), "text/plain"
    elif isinstance(payload, bytes):
        data, content_type = payload, "application/octet-stream"
    else:
        data, content_type = json.dumps(payload).encode(), "application/json"
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

    def handle_request(self, resource: str, payload: Any) -> object:
        with self.lock:
            self.received.append(payload)
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
