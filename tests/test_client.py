"""The client: pooling, threads, restarts, timeouts, the retry policy, fork, URLs."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

import pytest

from dataserve import (
    ConnectError,
    ConnectionLost,
    EncodeError,
    HTTPDataClient,
    HTTPDataServer,
    ReadTimeout,
    ResourceNotFound,
    TransportError,
)

from .conftest import Echo, ScriptedServer, free_port


def test_eight_threads_sharing_one_client_get_their_own_replies(
    client: HTTPDataClient,
) -> None:
    errors: list[str] = []
    calls_per_thread = 150

    def work(tid: int) -> None:
        for i in range(calls_per_thread):
            payload = {"thread": tid, "i": i, "pad": "x" * (i % 7)}
            try:
                reply = client.send("/echo", payload)
            except Exception as exc:  # recorded, asserted below
                errors.append(f"{tid}/{i}: {exc!r}")
                return
            if reply != payload:
                errors.append(f"{tid}/{i}: got {reply!r}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_server_restart_between_calls_is_not_an_error() -> None:
    port = free_port()
    with HTTPDataClient(port=port, address="http://127.0.0.1:") as client:
        with HTTPDataServer(Echo, port=port):
            assert client.send("/echo", [1]) == [1]  # leaves a kept-alive connection
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
            client.send("/echo", [2])  # nothing listens: refused, a clear error
        with HTTPDataServer(Echo, port=port):
            assert client.send("/echo", [3]) == [3]
            assert client.send("/echo", [4]) == [4]


def test_restart_with_idle_pooled_connections_from_many_threads() -> None:
    port = free_port()
    results: list[object] = []
    with HTTPDataClient(url=f"http://127.0.0.1:{port}") as client:
        for _round in range(2):
            with HTTPDataServer(Echo, port=port):
                results.clear()
                threads = [
                    threading.Thread(target=lambda i=i: results.append(client.send("/echo", i)))
                    for i in range(6)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                assert sorted(results) == list(range(6))  # type: ignore[type-var]


def test_connection_refused_names_the_url() -> None:
    port = free_port()
    with HTTPDataClient(port=port) as client, pytest.raises(ConnectError) as info:
        client.send("/xdata", [1])
    assert f"http://localhost:{port}/xdata" in str(info.value)
    assert "connection refused" in str(info.value)
    assert info.value.url == f"http://localhost:{port}/xdata"


def test_unencodable_payload_raises_encode_error_before_any_traffic() -> None:
    with ScriptedServer(lambda conn, srv: srv.read_request(conn)) as server:
        with HTTPDataClient(url=server.url) as client, pytest.raises(EncodeError) as info:
            client.send("/xdata", object())
        assert isinstance(info.value, TypeError)
        assert "'object'" in str(info.value)
        assert "'/xdata'" in str(info.value)
    assert server.requests == []


def test_read_timeout_raises_and_does_not_replay(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    handler = Echo()
    server = make_server(handler)
    with HTTPDataClient(url=server.url, timeout=0.3) as client:
        with pytest.raises(ReadTimeout, match="/sleep"):
            client.send("/sleep", 1.0)
    assert handler.calls == 1


def _close_after_request(conn: socket.socket, server: ScriptedServer) -> None:
    server.read_request(conn)  # the request reached the "handler", then the connection dies


def test_connection_closed_after_request_is_connection_lost_and_not_replayed() -> None:
    with ScriptedServer(_close_after_request) as server:
        with HTTPDataClient(url=server.url) as client, pytest.raises(ConnectionLost) as info:
            client.send("/xdata", [1])
        assert "not resent" in str(info.value)
        assert len(server.requests) == 1


def test_retries_resend_a_failed_request_when_asked() -> None:
    with ScriptedServer(_close_after_request) as server:
        with HTTPDataClient(url=server.url, retries=2) as client, pytest.raises(TransportError):
            client.send("/xdata", [1])
        assert len(server.requests) == 3


def test_reset_mid_reply_is_connection_lost() -> None:
    def reset(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,"
        )
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with ScriptedServer(reset) as server:
        with HTTPDataClient(url=server.url) as client, pytest.raises(ConnectionLost):
            client.send("/xdata", [1])
        assert len(server.requests) == 1


def test_truncated_body_is_connection_lost() -> None:
    def truncate(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n[1,2"
        )

    with ScriptedServer(truncate) as server:
        with HTTPDataClient(url=server.url) as client, pytest.raises(ConnectionLost, match="xdata"):
            client.send("/xdata", [1])
        assert len(server.requests) == 1


def test_client_sends_exact_wire_headers() -> None:
    def reply(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n2"
        )

    with ScriptedServer(reply) as server, HTTPDataClient(url=server.url) as client:
        assert client.send("/x y/ü", [4, 5, 6]) == 2
        request = server.requests[0]
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"PUT /x%20y/%C3%BC HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"accept"] == b"application/json, text/plain, application/octet-stream"
    assert b"authorization" not in headers
    assert body == b"[4,5,6]"


def test_none_payload_travels_as_json_null_and_arrives_as_none(client: HTTPDataClient) -> None:
    assert client.send("/resource") == "/resource"
    assert client.send("/resource", None) == "/resource"


def test_resource_is_percent_encoded_and_decoded_exactly(client: HTTPDataClient) -> None:
    for resource in ["/a b", "/ü/ñ", "/x?y=1#z", "/%41", "/a/../../etc/passwd", "/+&="]:
        assert client.send("/resource" + resource.replace("/", "_", 1), 1) == [
            "/resource" + resource.replace("/", "_", 1),
            1,
        ]


def test_resource_without_leading_slash_gets_one(client: HTTPDataClient) -> None:
    assert client.send("resource", 5) == ["/resource", 5]


def test_handler_none_raises_resource_not_found(client: HTTPDataClient) -> None:
    with pytest.raises(ResourceNotFound) as info:
        client.send("/none", 1)
    assert info.value.status == 404
    assert "'/none'" in info.value.detail


def test_localhost_connects_to_ipv4_loopback() -> None:
    def reply(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")

    with ScriptedServer(reply) as server, HTTPDataClient(port=server.port) as client:
        assert client.url == f"http://localhost:{server.port}"
        assert client.send("/r", 1) == "ok"
        assert server.peers[0][0] == "127.0.0.1"


def test_ipv6_only_server_is_reachable_at_bracketed_address(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = make_server(host="::1")
    except OSError:
        pytest.skip("::1 not configured")
    assert server.url == f"http://[::1]:{server.port}"
    with HTTPDataClient(port=server.port, address="http://[::1]:") as client:
        assert client.send("/echo", [6]) == [6]


def test_wait_ready_returns_once_server_listens() -> None:
    port = free_port()
    started = threading.Event()
    servers: list[HTTPDataServer] = []

    def later() -> None:
        started.wait(5)
        servers.append(HTTPDataServer(Echo, port=port).start())

    t = threading.Thread(target=later)
    t.start()
    try:
        with HTTPDataClient(port=port) as client:
            started.set()
            client.wait_ready(10)
            assert client.send("/echo", 1) == 1
    finally:
        t.join(10)
        for s in servers:
            s.shutdown()


def test_wait_ready_raises_transport_error_when_nothing_listens() -> None:
    with (
        HTTPDataClient(port=free_port()) as client,
        pytest.raises(TransportError, match="not ready"),
    ):
        client.wait_ready(0.3)


def test_closed_client_raises_transport_error(echo_server: HTTPDataServer) -> None:
    client = HTTPDataClient(url=echo_server.url)
    client.close()
    with pytest.raises(TransportError, match="closed"):
        client.send("/echo", 1)


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="port"):
        HTTPDataClient()
    with pytest.raises(ValueError, match="URL"):
        HTTPDataClient(url="ftp://x:1")
    with pytest.raises(ValueError, match="connect_timeout"):
        HTTPDataClient(port=1, connect_timeout=float("inf"))


def test_client_used_in_forked_child_opens_its_own_connections(echo_server: HTTPDataServer) -> None:
    # A subprocess that forks, so that pytest's own threads are not forked.
    script = textwrap.dedent(f"""
        import os, sys
        from dataserve import HTTPDataClient
        client = HTTPDataClient(url={echo_server.url!r})
        assert client.send("/echo", "warm") == "warm"   # a pooled connection exists now
        pid = os.fork()
        who = "child" if pid == 0 else "parent"
        bad = 0
        for i in range(300):
            payload = [who, i]
            if client.send("/echo", payload) != payload:
                bad += 1
        if pid == 0:
            os._exit(0 if bad == 0 else 1)
        _, status = os.waitpid(pid, 0)
        print(bad, os.waitstatus_to_exitcode(status))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["0", "0"], out.stderr


# -- replies read through the wire's ClientConnection (issue 8) -----------------------------


def test_large_replies_arrive_whole_as_bytes_through_one_buffer(
    echo_server: HTTPDataServer,
) -> None:
    payloads = [bytes(range(256)) * (n * 1024) + bytes([n]) for n in (1, 7, 40)]  # to 10 MB
    with HTTPDataClient(url=echo_server.url) as client:
        for payload in payloads:
            reply = client.send("/echo", payload)
            assert type(reply) is bytes
            assert reply == payload
        seen: list[tuple[int, int | None]] = []
        assert client.send("/echo", payloads[2], progress=lambda *a: seen.append(a)) == payloads[2]
        assert seen[-1] == (len(payloads[2]), len(payloads[2]))
        assert client.send("/echo", [1]) == [1]


@pytest.mark.parametrize("length", [1000, 1048576])
def test_a_reply_cut_short_says_how_much_of_it_came(length: int) -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length + b"z" * 300)

    with ScriptedServer(script) as server, HTTPDataClient(url=server.url) as client:
        with pytest.raises(ConnectionLost, match=rf"cut short \(300 of {length} bytes arrived\)"):
            client.send("/x", 1)
        assert len(server.requests) == 1  # not resent


def test_a_chunked_reply_is_decoded_by_the_wire_and_a_bad_one_refused() -> None:
    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        b"3\r\nabcXY0\r\n\r\n",  # the chunk is longer than its size says
    ]

    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(replies[len(server.requests) - 1])
        conn.close()

    with ScriptedServer(script) as server, HTTPDataClient(url=server.url) as client:
        assert client.send("/x", 1) == "abcde"
        with pytest.raises(ConnectionLost, match="chunk data not followed by CRLF"):
            client.send("/x", 1)
