"""At ``max_connections``, a new connection takes the place of the longest-idle one (SPEC 6).

Idle means waiting for a request: a kept-alive connection between requests, or one that never
sent a byte. Only when every connection is inside a request is the new one answered 503.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import pytest

from dataserve import HTTPDataClient, HTTPDataServer, ServiceUnavailable

from .conftest import (
    Gate,
    dataserve_threads,
    is_closed_by_peer,
    put,
    raw_exchange,
    read_reply,
    wait_until_pooled_connections_closed,
)

LIMIT = 4


def keep_alive(resource: str, body: bytes) -> bytes:
    return put(resource, body).replace(b"Connection: close\r\n", b"")


@contextlib.contextmanager
def connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def wait_until_accepted(server: HTTPDataServer, count: int) -> None:
    """Wait (bounded) until the server holds ``count`` connections, none inside a request.

    Reads the server's private state, for synchronisation only: a reply reaches the client
    an instant before its connection's thread marks it idle again.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with server._lock:
            conns = list(server._connections)
        if len(conns) == count and not any(conn.busy for conn in conns):
            return
        time.sleep(0.01)
    pytest.fail(f"the server did not hold {count} idle connections in time")


def assert_serves(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(keep_alive("/echo", payload))
    reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, payload)


def test_silent_connections_at_the_limit_do_not_keep_a_client_out(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(max_connections=LIMIT)
    with connections(server.port, LIMIT) as silent:
        wait_until_accepted(server, LIMIT)
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", [5]) == [5]  # 503 before the fix
        assert is_closed_by_peer(silent[0])  # the longest idle made room
        for number, sock in enumerate(silent[1:]):
            assert_serves(sock, b"%d" % number)  # the others are still served


def test_idle_kept_alive_connections_at_the_limit_do_not_keep_a_client_out(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(max_connections=LIMIT)
    with connections(server.port, LIMIT) as idle:
        for number, sock in enumerate(idle):
            assert_serves(sock, b"%d" % number)  # one request each, then kept alive
            wait_until_accepted(server, LIMIT)  # idle in this order
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", [6]) == [6]
        assert is_closed_by_peer(idle[0])
        for number, sock in enumerate(idle[1:]):
            assert_serves(sock, b"%d" % (number + 10))


def test_the_longest_idle_connection_is_the_one_closed(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(max_connections=LIMIT)
    with connections(server.port, LIMIT) as old:
        wait_until_accepted(server, LIMIT)
        assert_serves(old[0], b"1")  # old[0] was opened first but served last: now the newest
        wait_until_accepted(server, LIMIT)
        with connections(server.port, 1) as (first,):
            assert_serves(first, b"2")
            assert is_closed_by_peer(old[1])
            wait_until_accepted(server, LIMIT)
            with connections(server.port, 1) as (second,):
                assert_serves(second, b"3")
                assert is_closed_by_peer(old[2])
                for number, sock in enumerate([old[3], old[0], first, second]):
                    assert_serves(sock, b"%d" % (number + 10))  # the other four: still open


def test_503_only_when_every_connection_is_inside_a_request(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    gate = Gate()
    server = make_server(gate, max_connections=LIMIT)
    with connections(server.port, LIMIT) as busy:
        try:
            for sock in busy:
                sock.sendall(keep_alive("/wait", b"null"))
            gate.wait_entered(LIMIT)
            reply = raw_exchange(server.port, put("/echo", b"1"))
            assert reply.status == 503
            assert f"limit of {LIMIT} connections" in reply.json()["detail"]
            with HTTPDataClient(url=server.url) as client, pytest.raises(ServiceUnavailable):
                client.send("/echo", [1])
        finally:
            gate.release.set()
        for sock in busy:
            assert read_reply(sock).body == b"released"  # none was cut to make room
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", [7]) == [7]


def test_client_whose_pooled_connection_was_closed_to_make_room_calls_again(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    handler = Gate()
    server = make_server(handler, max_connections=LIMIT)
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/echo", [1]) == [1]  # its connection is now pooled, kept alive
        wait_until_accepted(server, 1)
        with connections(server.port, LIMIT - 1):  # opened later: idle for less time
            wait_until_accepted(server, LIMIT)
            with connections(server.port, 1) as (newcomer,):
                assert_serves(newcomer, b"2")  # served once the pooled connection was closed
            assert wait_until_pooled_connections_closed(client)  # it was the one closed
            calls = handler.calls
            assert client.send("/echo", [3]) == [3]  # reconnects: no error
            assert handler.calls == calls + 1  # sent once, not replayed


def test_connections_in_a_tls_handshake_make_room_too(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = make_server(ssl_context=server_context, max_connections=LIMIT)
    with connections(server.port, LIMIT) as silent:  # TCP only: each waits in its handshake
        wait_until_accepted(server, LIMIT)
        with HTTPDataClient(url=server.url, ssl_context=client_context) as client:
            assert client.send("/echo", [8]) == [8]
        assert is_closed_by_peer(silent[0])


def test_making_room_never_runs_more_threads_than_the_limit(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    before = dataserve_threads()
    server = make_server(max_connections=LIMIT)
    started = dataserve_threads() - before  # accept loop, reaper, lingerer
    with connections(server.port, LIMIT), contextlib.ExitStack() as newcomers:
        wait_until_accepted(server, LIMIT)
        for number in range(3 * LIMIT):  # each new connection closes an idle one, kept open
            sock = newcomers.enter_context(socket.create_connection(("127.0.0.1", server.port)))
            sock.settimeout(5)
            assert_serves(sock, b"%d" % number)
            assert dataserve_threads() - before <= started + LIMIT
