"""HTTPDataServer: binding, lifecycle, shutdown, limits."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from dataserve import HTTPDataClient, HTTPDataHandler, HTTPDataServer

from .conftest import (
    Echo,
    dataserve_threads,
    free_port,
    is_closed_by_peer,
    put,
    raw_exchange,
    read_reply,
)


def test_port_zero_picks_a_free_port_and_binds_loopback() -> None:
    with HTTPDataServer(Echo) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.host == "127.0.0.1"
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", 1) == 1


def test_handler_class_is_instantiated_once_and_instances_are_used_as_given() -> None:
    created: list[object] = []

    class Counting(HTTPDataHandler):
        def __init__(self) -> None:
            created.append(self)

        def handle_request(self, resource: str, payload: Any) -> object:
            return len(created)

    with HTTPDataServer(Counting) as server, HTTPDataClient(url=server.url) as client:
        assert [client.send("/a"), client.send("/b")] == [1, 1]
        assert server.handler is created[0]
    instance = Echo()
    with HTTPDataServer(instance) as server:
        assert server.handler is instance


def test_handler_is_built_before_the_socket_listens() -> None:
    port = free_port()

    class Failing(HTTPDataHandler):
        def __init__(self) -> None:
            # The data is loaded before the socket exists: nothing listens yet.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise RuntimeError("dataset missing")

        def handle_request(self, resource: str, payload: Any) -> object:
            return None

    with pytest.raises(RuntimeError, match="dataset missing"):
        HTTPDataServer(Failing, port=port)
    with socket.create_server(("127.0.0.1", port)):  # the port was never taken
        pass


def test_constructed_server_already_queues_connections() -> None:
    server = HTTPDataServer(Echo)
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
        sock.sendall(put("/echo", b"[5]"))
        server.start()
        with sock:
            assert read_reply(sock).body == b"[5]"
    finally:
        server.shutdown()


def test_listen_backlog_holds_a_burst_of_connections() -> None:
    # Not accepting yet: every connection waits in the backlog. With the stdlib default of 5,
    # connections past the queue get their SYN dropped and time out here.
    server = HTTPDataServer(Echo)
    sockets: list[socket.socket] = []
    try:
        for _ in range(128):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=0.5))
    finally:
        for s in sockets:
            s.close()
        server.start()
        server.shutdown()
    assert len(sockets) == 128


def test_rejects_a_non_handler() -> None:
    with pytest.raises(TypeError, match="HTTPDataHandler"):
        HTTPDataServer(dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="HTTPDataHandler"):
        HTTPDataServer(object())  # type: ignore[arg-type]


def test_serve_forever_blocks_until_shutdown_from_another_thread() -> None:
    server = HTTPDataServer(Echo)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    with HTTPDataClient(url=server.url) as client:
        client.wait_ready(5)
        assert client.send("/echo", "x") == "x"
    server.shutdown()
    thread.join(10)
    assert not thread.is_alive()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_shutdown_joins_every_thread_closes_every_socket_and_the_port() -> None:
    before = dataserve_threads()
    fds_before = open_fds()
    server = HTTPDataServer(Echo).start()
    clients = [HTTPDataClient(url=server.url) for _ in range(4)]
    for i, c in enumerate(clients):
        assert c.send("/echo", i) == i  # each leaves an idle keep-alive connection
    assert dataserve_threads() >= before + 5
    server.shutdown()
    assert dataserve_threads() == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    server.shutdown()  # idempotent
    for c in clients:
        c.close()
    assert open_fds() == fds_before  # listener, wake-up pair, connections, client sockets


def test_shutdown_lets_in_flight_requests_finish() -> None:
    server = HTTPDataServer(Echo).start()
    results: list[object] = []
    with HTTPDataClient(url=server.url) as client:
        caller = threading.Thread(target=lambda: results.append(client.send("/sleep", 0.5)))
        caller.start()
        time.sleep(0.2)  # the call is in the handler now
        server.shutdown()
        caller.join(10)
    assert results == ["slept"]


def test_shutdown_is_bounded_when_a_client_stalls() -> None:
    before = dataserve_threads()
    server = HTTPDataServer(Echo, shutdown_timeout=0.3).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
        stalled.sendall(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n[1,"
        )  # and never the rest
        time.sleep(0.1)
        done = threading.Event()
        threading.Thread(target=lambda: (server.shutdown(), done.set())).start()
        assert done.wait(10), "shutdown() hung on a stalled client"
    assert dataserve_threads() == before


def test_new_request_on_open_connection_during_shutdown_is_refused() -> None:
    server = HTTPDataServer(Echo, shutdown_timeout=2).start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(put("/sleep", b"0.4").replace(b"Connection: close\r\n", b""))
        time.sleep(0.1)
        stopper = threading.Thread(target=server.shutdown)
        stopper.start()
        first = read_reply(sock)
        assert first.status == 200
        assert first.headers.get("connection") == "close"  # the server says it will close
        stopper.join(10)


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="request_timeout"):
        HTTPDataServer(Echo, request_timeout=0)
    with pytest.raises(ValueError, match="max_connections"):
        HTTPDataServer(Echo, max_connections=0)


def test_head_is_a_liveness_probe(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(
        echo_server.port, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", head_only=True
    )
    assert reply.status == 200


def test_repr_names_handler_and_url(make_server: Callable[..., HTTPDataServer]) -> None:
    server = make_server(auth_token="hunter2")
    assert repr(server) == f"<HTTPDataServer Echo at {server.url}>"


def test_idle_keep_alive_connection_is_closed_without_a_client_error() -> None:
    before = dataserve_threads()
    with HTTPDataServer(Echo, idle_timeout=0.3) as server, HTTPDataClient(url=server.url) as c:
        assert c.send("/echo", 1) == 1
        deadline = time.monotonic() + 5
        while dataserve_threads() > before + 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the connection's thread ends when the server closes it
        assert dataserve_threads() == before + 3  # accept loop, reaper and lingerer only
        for i in range(3):
            assert c.send("/echo", i) == i  # reconnects quietly


@pytest.mark.parametrize(
    ("connection", "closes"),
    [
        ("x-close-later", False),  # a token that merely contains the word
        ("keep-alive", False),
        ("Keep-Alive, Close", True),  # close among other tokens, any case
        ("upgrade ,close", True),
    ],
)
def test_connection_header_is_a_token_list_only_close_closes(connection: str, closes: bool) -> None:
    with HTTPDataServer(Echo, port=0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Content-Length: 3\r\nConnection: " + connection.encode() + b"\r\n\r\n[1]"
            )
            reply = read_reply(sock)
            assert (reply.status, reply.body) == (200, b"[1]")
            assert (reply.headers.get("connection") == "close") is closes
            if closes:
                assert is_closed_by_peer(sock)
            else:  # still open: a second request on the same socket is answered
                sock.sendall(put("/x", b"[3]"))
                assert read_reply(sock).body == b"[3]"
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/x", [2]) == [2]


# -- the wire's rules, on a raw socket ----------------------------------------------------------

KEEP = b"Host: t\r\nContent-Type: application/json\r\n"


def keep_alive_put(body: bytes) -> bytes:
    return b"PUT /echo HTTP/1.1\r\n" + KEEP + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_headx_method_is_405_with_its_body_not_a_head_reply(echo_server: HTTPDataServer) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(b"HEADX / HTTP/1.1\r\nHost: t\r\n\r\n")
        refused = read_reply(sock)
        assert refused.status == 405
        assert refused.headers["allow"] == "PUT, HEAD"
        assert refused.headers["content-type"] == "application/problem+json"
        assert b'"status":405' in refused.body  # a body: not taken for a HEAD
        sock.sendall(keep_alive_put(b"[1]"))
        served = read_reply(sock)  # the same connection goes on
    assert (served.status, served.body) == (200, b"[1]")


def test_head_after_an_empty_line_gets_its_error_reply_without_a_body(
    echo_server: HTTPDataServer,
) -> None:
    # HEAD is known from the parsed method: an empty line before the request line (RFC 9112
    # 2.2, ignored) does not hide it, so the 400 for its framing carries no body.
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(b"\r\nHEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Length: " in head
    assert body == b""


def test_pipelined_requests_in_one_packet_are_all_served_in_order(
    echo_server: HTTPDataServer,
) -> None:
    chunked = (
        b"PUT /echo HTTP/1.1\r\n" + KEEP + b"Transfer-Encoding: chunked\r\n\r\n"
        b"1\r\n[\r\n2\r\n2]\r\n0\r\n\r\n"
    )
    head = b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(keep_alive_put(b"[1]") + chunked + head + put("/echo", b"[3]"))
        data = b"".join(iter(lambda: sock.recv(65536), b""))  # to the close the last asks
    replies = []
    while data:  # each reply framed by its Content-Length (none for the HEAD's)
        reply_head, _, data = data.partition(b"\r\n\r\n")
        length = int(reply_head.partition(b"Content-Length: ")[2].partition(b"\r\n")[0])
        if reply_head.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain"):
            length = 0  # the HEAD's reply: the length of a body it does not carry
        replies.append((reply_head.split(b" ")[1], data[:length]))
        data = data[length:]
    assert replies == [(b"200", b"[1]"), (b"200", b"[2]"), (b"200", b""), (b"200", b"[3]")]


def test_expect_100_continue_is_not_sent_to_a_request_refused_for_its_token(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(auth_token="right")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"PUT /echo HTTP/1.1\r\n" + KEEP + b"Authorization: Bearer wrong\r\n"
            b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        reply = read_reply(sock)  # before any byte of the body was sent
        assert reply.status == 401
        assert reply.headers["connection"] == "close"
        assert is_closed_by_peer(sock)
    with HTTPDataClient(url=server.url, auth_token="right") as client:
        assert client.send("/echo", [1]) == [1]


def test_connection_idle_longer_than_request_timeout_is_kept_until_idle_timeout(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    # The wait between requests is bounded by idle_timeout, not request_timeout.
    server = make_server(request_timeout=0.2, idle_timeout=30)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(keep_alive_put(b"[1]"))
        assert read_reply(sock).body == b"[1]"
        time.sleep(0.7)  # several request timeouts, idle
        sock.sendall(keep_alive_put(b"[2]"))
        assert read_reply(sock).body == b"[2]"


def test_connection_idle_past_idle_timeout_is_closed_by_the_server(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(request_timeout=30, idle_timeout=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(keep_alive_put(b"[1]"))
        assert read_reply(sock).body == b"[1]"
        assert is_closed_by_peer(sock, timeout=5)  # long before request_timeout
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/echo", [2]) == [2]
