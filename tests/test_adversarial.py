"""Hostile input on raw sockets: after each, the server still serves and holds no extra threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dataserve import HTTPDataClient, HTTPDataServer

from .conftest import Echo, dataserve_threads, is_closed_by_peer, read_reply


@pytest.fixture
def guarded() -> Iterator[HTTPDataServer]:
    """A server with a short request timeout; the test fails if it ends with extra threads."""
    with HTTPDataServer(Echo, request_timeout=0.5) as server:
        with HTTPDataClient(url=server.url) as c:
            assert c.send("/echo", 0) == 0
        before = dataserve_threads()
        yield server
        deadline = time.monotonic() + 5
        while dataserve_threads() > before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert dataserve_threads() <= before
        with HTTPDataClient(url=server.url) as c:
            assert c.send("/echo", [1, 2]) == [1, 2]


def trickle(sock: socket.socket, data: bytes, gap: float, stop: threading.Event) -> None:
    for i in range(len(data)):
        if stop.wait(gap):
            return
        try:
            sock.send(data[i : i + 1])
        except OSError:
            return


@pytest.mark.parametrize(
    "payload",
    [
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 200,  # slow header line
        b"PUT /ec" + b"h" * 200,  # slow request line
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 300\r\n\r\n" + b"1" * 300,  # slow body
    ],
    ids=["header", "request-line", "body"],
)
def test_slowloris_trickle_is_cut_at_the_request_deadline(
    guarded: HTTPDataServer, payload: bytes
) -> None:
    # One byte every 50 ms never trips a per-recv timeout; the whole-request deadline must.
    stop = threading.Event()
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as sock:
        sender = threading.Thread(target=trickle, args=(sock, payload, 0.05, stop))
        sender.start()
        try:
            reply = read_reply(sock)
            assert reply.status == 408
            assert is_closed_by_peer(sock)
        finally:
            stop.set()
            sender.join(10)


def test_idle_connection_before_first_byte_is_not_a_408(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    # Between requests, a connection may sit idle (keep-alive) without a 408.
    server = make_server(request_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        time.sleep(0.8)
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1\r\n\r\n5"
        )
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"5")


H = b"Host: t\r\n"
JSON = b"Content-Type: application/json\r\n"

# (name, raw bytes, expected status or None when the only right answer is closing quietly)
BATTERY: list[tuple[str, bytes, int | None]] = [
    ("empty-then-close", b"", None),
    ("crlf-only", b"\r\n\r\n\r\n\r\n\r\n\r\n", 400),
    ("binary-garbage", bytes(range(256)) * 4 + b"\r\n\r\n", 400),
    (
        "tls-hello-to-plain",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
        400,
    ),
    ("lowercase-method", b"put /echo HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("long-method", b"P" * 5000 + b" /echo HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("request-line-too-long", b"PUT /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n", 414),
    ("no-version", b"PUT /echo\r\n" + H + b"\r\n", 400),
    ("http-0.9", b"GET /\r\n\r\n", 400),
    ("http-2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("tab-in-request-line", b"PUT\t/echo HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("nul-in-target", b"PUT /e\x00cho HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("percent-nul", b"PUT /a%00 HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\n1", 400),
    ("non-utf8-path", b"PUT /%c3%28 HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n\r\n1", 400),
    (
        "raw-non-ascii-path",
        "PUT /é HTTP/1.1\r\n".encode("latin-1") + H + JSON + b"Content-Length: 1\r\n\r\n1",
        200,
    ),
    (
        "traversal-is-just-a-name",
        b"PUT /../../etc/passwd HTTP/1.1\r\n" + H + JSON + b"Content-Length: 1\r\n\r\n1",
        200,
    ),
    ("header-name-with-space", b"PUT /echo HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n", 400),
    ("header-without-colon", b"PUT /echo HTTP/1.1\r\n" + H + b"Nope\r\n\r\n", 400),
    ("header-bare-cr", b"PUT /echo HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("obs-fold", b"PUT /echo HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    ("huge-header-value", b"PUT /echo HTTP/1.1\r\n" + H + b"X: " + b"v" * 70000 + b"\r\n\r\n", 431),
    (
        "thousand-repeated-headers",
        b"PUT /echo HTTP/1.1\r\n" + H + b"X: v\r\n" * 1000 + b"\r\n",
        431,
    ),
    ("two-hosts", b"PUT /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("no-host", b"PUT /echo HTTP/1.1\r\n" + JSON + b"Content-Length: 1\r\n\r\n1", 400),
    (
        "conflicting-lengths",
        b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n12",
        400,
    ),
    ("length-list", b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 1, 2\r\n\r\n12", 400),
    ("length-hex", b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400),
    ("length-plus", b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\n1", 400),
    ("length-negative", b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    (
        "length-20-digits",
        b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999\r\n\r\n",
        400,
    ),
    (
        "length-over-limit",
        b"PUT /echo HTTP/1.1\r\n" + H + b"Content-Length: 2000000000\r\n\r\n",
        413,
    ),
    (
        "te-and-cl",
        b"PUT /echo HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "te-chunked",
        b"PUT /echo HTTP/1.1\r\n"
        + H
        + JSON
        + b"Transfer-Encoding: chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n",
        200,
    ),
    ("te-obfuscated", b"PUT /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    (
        "te-gzip-chunked",
        b"PUT /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "te-chunk-size-overflow",
        b"PUT /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n",
        413,
    ),
    (
        "body-shorter-than-announced",
        b"PUT /echo HTTP/1.1\r\n" + H + JSON + b"Content-Length: 100\r\n\r\n[1]",
        400,  # the peer closes its side mid-body (see below): told so, as under WSGI
    ),
    (
        "deep-json-nesting",
        b"PUT /echo HTTP/1.1\r\n"
        + H
        + JSON
        + b"Content-Length: 400000\r\n\r\n"
        + b"[" * 200000
        + b"]" * 200000,
        400,
    ),
    ("bad-json", b"PUT /echo HTTP/1.1\r\n" + H + JSON + b"Content-Length: 3\r\n\r\n{1}", 400),
    (
        "bad-utf8-text",
        b"PUT /echo HTTP/1.1\r\n"
        + H
        + b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n\xc3\x28",
        400,
    ),
    (
        "pickle-content-type",
        b"PUT /echo HTTP/1.1\r\n"
        + H
        + b"Content-Type: application/python-pickle\r\nContent-Length: 1\r\n\r\n.",
        415,
    ),
    ("connect-method", b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("trace-method", b"TRACE / HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("absolute-form-other-scheme", b"PUT ftp://x/echo HTTP/1.1\r\n" + H + b"\r\n", 400),
]


@pytest.mark.parametrize(("name", "data", "status"), BATTERY, ids=[b[0] for b in BATTERY])
def test_malformed_input_gets_its_status_and_server_keeps_serving(
    guarded: HTTPDataServer, name: str, data: bytes, status: int | None
) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the peer sends nothing more (but reads the reply)
        if status is None:  # nothing to answer
            assert is_closed_by_peer(sock)
            return
        reply = read_reply(sock)
        assert reply.status == status, reply.body
        if status != 200:
            assert reply.headers["content-type"] == "application/problem+json"
            assert b"Traceback" not in reply.body


def test_many_half_open_connections_are_released(guarded: HTTPDataServer) -> None:
    for _ in range(50):
        socket.create_connection(("127.0.0.1", guarded.port), timeout=5).close()
    sockets = [socket.create_connection(("127.0.0.1", guarded.port), timeout=5) for _ in range(20)]
    for s in sockets:
        s.sendall(b"PUT /echo HTTP/1.1\r\n")  # half a request, then vanish
        s.close()
