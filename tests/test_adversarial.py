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
def test_slowloris_trickle_is_cut_at_the_request_deadline(guarded: HTTPDataServer,
                                                         payload: bytes) -> None:
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


def test_idle_connection_before_first_byte_is_not_a_408(make_server: Callable[..., HTTPDataServer]) -> None:
    # Between requests, a connection may sit idle (keep-alive) without a 408.
    server = make_server(request_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        time.sleep(0.8)
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1\r\n\r\n5")
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"5")
