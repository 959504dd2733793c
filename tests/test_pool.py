"""The sync client's connection pool (`dataserve._pool`): reuse, the check of an idle
connection before reuse, its bound, threads, close and fork, over TCP, Unix sockets and TLS."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3.connection
from urllib3.exceptions import ClosedPoolError

from dataserve import HTTPDataClient, HTTPDataServer, TransportError
from dataserve._pool import Pool, is_dropped

from .conftest import Echo, Gate, ScriptedServer, wait_until_pooled_connections_closed

trustme = pytest.importorskip("trustme")

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ds-pool-", dir="/tmp"))  # short: sun_path is small
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


Transport = Callable[..., tuple[HTTPDataServer, HTTPDataClient]]


@pytest.fixture(params=["tcp", "unix", "tls"])
def transport(request: pytest.FixtureRequest, sock_dir: Path, ca: Any) -> Iterator[Transport]:
    """``make(handler, server_options, client_options)``: a started server on the transport and
    a client of it; both closed when the test ends."""
    made: list[tuple[HTTPDataServer, HTTPDataClient]] = []

    def make(
        handler: Any = Echo, server_options: Any = None, client_options: Any = None
    ) -> tuple[HTTPDataServer, HTTPDataClient]:
        server_options = dict(server_options or {})
        client_options = dict(client_options or {})
        if request.param == "unix":
            server_options["unix_socket"] = sock_dir / f"{len(made)}.sock"
        elif request.param == "tls":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(context)
            server_options["ssl_context"] = context
            trusting = ssl.create_default_context()
            ca.configure_trust(trusting)
            client_options["ssl_context"] = trusting
        server = HTTPDataServer(handler, **server_options).start()
        client = HTTPDataClient(url=server.url, **client_options)
        made.append((server, client))
        return server, client

    yield make
    for server, client in made:
        client.close()
        server.shutdown()


def _pool(client: HTTPDataClient) -> Any:
    return client._pool


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- reuse and the check before reuse ---------------------------------------------------------


def test_sequential_calls_reuse_one_kept_alive_socket(transport: Transport) -> None:
    # The check before reuse must not take a healthy idle connection (a TLS one included)
    # for a dropped one: every call goes out on the very same socket.
    _, client = transport()
    assert client.send("/echo", 0) == 0
    (conn,) = _pool(client).idle_connections()
    sock = conn.sock
    for i in range(1, 30):
        assert client.send("/echo", i) == i
    assert _pool(client).idle_connections() == [conn]
    assert conn.sock is sock


def test_idle_connection_the_server_closed_is_replaced_and_the_request_sent_once(
    transport: Transport,
) -> None:
    server, client = transport(server_options={"idle_timeout": 0.3})
    handler: Any = server.handler
    assert client.send("/echo", 1) == 1
    (conn,) = _pool(client).idle_connections()
    first = conn.sock
    assert wait_until_pooled_connections_closed(client)  # the server's close has arrived
    assert client.send("/echo", 2) == 2  # no error: a new connection
    assert handler.calls == 2  # each request reached the handler once
    assert conn.sock is not None
    assert conn.sock is not first


_JSON_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"


def test_bytes_arriving_on_an_idle_connection_make_it_unusable() -> None:
    # A server that writes after its reply (here a second, unasked-for reply, after the client
    # has read the first): the bytes wait in the kernel, not in the client's buffer. Reusing
    # the connection would read them as the next call's reply.
    answered = threading.Event()

    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        if srv.read_request(conn):
            number = len(srv.requests)
            conn.sendall(_JSON_REPLY % (1, b"%d" % number))
            if number == 1 and answered.wait(10):
                conn.sendall(_JSON_REPLY % (2, b"99"))
                srv.read_request(conn)  # returns when the client closes this connection

    with ScriptedServer(script) as srv, HTTPDataClient(url=srv.url) as client:
        assert client.send("/x", 1) == 1
        answered.set()
        assert wait_until_pooled_connections_closed(client)  # the extra bytes have arrived
        assert client.send("/x", 2) == 2  # not 99: a new connection
        assert len(srv.peers) == 2
        assert len(srv.requests) == 2  # nothing was sent on the polluted connection


def test_is_dropped_checks_the_socket_a_connection_holds_now() -> None:
    # A real urllib3 connection object holding real sockets: the check is of its current
    # socket, also after the socket was replaced (it remembers a poll object per socket).
    conn = urllib3.connection.HTTPConnection("localhost")
    assert not is_dropped(conn)  # no socket yet: nothing to drop, it will connect
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    try:
        conn.sock = first
        assert not is_dropped(conn)
        assert not is_dropped(conn)  # asked again: still alive
        first_peer.close()
        assert is_dropped(conn)  # the peer closed it
        conn.sock = second
        assert not is_dropped(conn)  # the new socket is alive, whatever the old one was
        second_peer.sendall(b"x")
        assert is_dropped(conn)  # unread bytes wait on it
        second.close()
        assert is_dropped(conn)  # closed under the connection's feet
    finally:
        conn.sock = None
        for sock in (first, second, second_peer):
            sock.close()


def test_a_blocking_pool_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="block=False"):
        Pool("localhost", 1, block=True)
    pool = Pool("localhost", 1, block=False, maxsize=2)
    assert pool.idle_connections() == []
    pool.close()
    with pytest.raises(ClosedPoolError):
        pool._get_conn()


# -- the bound, threads ----------------------------------------------------------------------


def test_more_concurrent_calls_than_pool_size_are_all_served_and_pool_size_kept(
    transport: Transport,
) -> None:
    # As urllib3's non-blocking pool: a call finding no idle connection opens one; at
    # check-in at most pool_size stay open, the others are closed.
    server, client = transport(Gate, client_options={"pool_size": 2})
    gate: Any = server.handler
    replies: list[object] = []
    threads = [
        threading.Thread(target=lambda: replies.append(client.send("/wait", None)))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    try:
        gate.wait_entered(5)  # all five are in the handler at once: none waited for another
    finally:
        gate.release.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert replies == ["released"] * 5
    assert len(_pool(client).idle_connections()) == 2
    assert _wait_for(lambda: len(server._connections) == 2)  # the other three were closed
    assert client.send("/echo", 7) == 7


def test_eight_threads_on_a_smaller_pool_get_their_own_replies(transport: Transport) -> None:
    _, client = transport(client_options={"pool_size": 3})
    errors: list[str] = []

    def work(tid: int) -> None:
        for i in range(60):
            payload = [tid, i, "x" * (i % 5)]
            try:
                reply = client.send("/echo", payload)
            except Exception as exc:  # recorded, asserted below
                errors.append(f"{tid}/{i}: {exc!r}")
                return
            if reply != payload:
                errors.append(f"{tid}/{i}: got {reply!r}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert 1 <= len(_pool(client).idle_connections()) <= 3


# -- close -----------------------------------------------------------------------------------


def test_close_closes_idle_connections_and_one_in_use_when_it_returns(
    transport: Transport,
) -> None:
    server, client = transport(Gate, client_options={"pool_size": 4})
    gate: Any = server.handler
    replies: list[object] = []
    threads = [
        threading.Thread(target=lambda: replies.append(client.send("/wait", None)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    try:
        gate.wait_entered(3)  # three connections at once
    finally:
        gate.release.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert len(_pool(client).idle_connections()) == 3
    gate.release.clear()
    busy = threading.Thread(target=lambda: replies.append(client.send("/wait", None)))
    busy.start()
    try:
        gate.wait_entered(1)  # one connection in use, two idle
        idle = _pool(client).idle_connections()
        assert len(idle) == 2
        client.close()
        assert all(conn.sock is None for conn in idle)  # the idle ones: closed at once
    finally:
        gate.release.set()
        busy.join(TIMEOUT)
    assert replies[-1] == "released"  # the call in flight finished
    assert _wait_for(lambda: len(server._connections) == 0)  # and its connection was closed
    with pytest.raises(TransportError, match="closed"):
        client.send("/echo", 1)


# -- fork ------------------------------------------------------------------------------------


def test_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(
    sock_dir: Path,
) -> None:
    # In a subprocess that forks (pytest's own threads are not forked): the child starts with
    # no idle connection of the parent's, calls on its own, and its exit (which collects the
    # inherited pool) does not disturb the parent's connection.
    script = textwrap.dedent("""
        import os, sys
        from dataserve import HTTPDataClient
        client = HTTPDataClient(unix_socket=sys.argv[1])
        assert client.send("/echo", "warm") == "warm"
        (conn,) = client._pool.idle_connections()
        sock = conn.sock
        pid = os.fork()
        if pid == 0:
            inherited = len(client._pool.idle_connections())
            ok = all(client.send("/echo", ["child", i]) == ["child", i] for i in range(50))
            mine = client._pool.idle_connections()[0].sock
            os._exit(0 if inherited == 0 and ok and mine is not sock else 1)
        _, status = os.waitpid(pid, 0)
        ok = all(client.send("/echo", ["parent", i]) == ["parent", i] for i in range(50))
        print(os.waitstatus_to_exitcode(status), ok, conn.sock is sock)
    """)
    with HTTPDataServer(Echo, unix_socket=sock_dir / "fork.sock") as server:
        out = subprocess.run(
            [sys.executable, "-c", script, str(server.unix_socket)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert out.stdout.split() == ["0", "True", "True"], out.stderr
