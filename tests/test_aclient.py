"""AsyncHTTPDataClient against real servers on loopback and socket files, on a real loop.

Each test runs its coroutine with ``asyncio.run`` under a bound; servers are fixtures or
scripted raw sockets (tests/conftest.py), stopped by the test that started them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from dataserve import (
    AsyncHTTPDataClient,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DecodeError,
    EncodeError,
    HTTPDataClient,
    HTTPDataServer,
    PayloadTooLarge,
    ReadTimeout,
    RemoteError,
    ResourceNotFound,
    TransportError,
    Unauthorized,
    WriteTimeout,
)
from dataserve.codecs import CodecRegistry, MsgpackCodec

from .conftest import Echo, ScriptedServer, free_port
from .test_faults import SlowReader

T = TypeVar("T")
BOUND = 60.0  # no test's loop runs longer than this


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test's coroutine on a fresh loop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(BOUND):
            return await coro

    return asyncio.run(bounded())


def client_sockets(port: int) -> int:
    """This process's open TCP sockets connected to ``port`` (the client side only: the
    server's accepted sockets have ``port`` as their local port)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += 1
    return count


async def settle(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Let the loop run until ``check()`` holds (closed transports close their sockets on a
    later iteration); bounded."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class Blocking(Echo):
    """Echo, plus ``/block``: signals ``entered`` and waits (bounded) for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/block":
            self.entered.set()
            self.release.wait(10)
            return "released"
        return super().handle_request(resource, payload)


class Point(msgspec.Struct):
    x: int
    y: int


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [[1, 2.5, "x", None, {"a": [True]}], "text ünïcode", b"\x00\xffbytes", 7]
)
def test_each_builtin_codec_round_trips(echo_server: HTTPDataServer, payload: object) -> None:
    async def main() -> object:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            return await client.send("/echo", payload)

    assert run(main()) == payload


def test_msgpack_round_trips_when_registered_on_both_sides(make_server: Any) -> None:
    server_registry = CodecRegistry(plugins=False)
    server_registry.register(MsgpackCodec())
    server = make_server(Echo, registry=server_registry)
    registry = CodecRegistry(plugins=False)
    registry.register(MsgpackCodec())

    async def main() -> object:
        async with AsyncHTTPDataClient(url=server.url, registry=registry) as client:
            return await client.send("/echo", {"k": [1, b"\x01"]})

    assert run(main()) == {"k": [1, b"\x01"]}


def test_typed_results_and_decode_error_with_msgspec_path(echo_server: HTTPDataServer) -> None:
    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            assert await client.send("/echo", [1, 2], type=list[int]) == [1, 2]
            assert await client.send("/echo", {"x": 1, "y": 2}, type=Point) == Point(1, 2)
            assert await client.send("/echo", 5, type=int | None) == 5
            assert await client.send("/resource") == "/resource"  # None travels as null
            with pytest.raises(DecodeError, match=r"\$\[2\]"):
                await client.send("/echo", [1, 2, "three"], type=list[int])

    run(main())


def test_resource_without_slash_and_escaping(echo_server: HTTPDataServer) -> None:
    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            assert await client.send("resource") == "/resource"
            assert await client.send("/resource/a b?c#d") == "/resource/a b?c#d"

    run(main())


def test_client_sends_exact_wire_headers() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n1"
        )

    async def main(url: str) -> object:
        async with AsyncHTTPDataClient(url=url, auth_token="t0ken") as client:
            return await client.send("/x", [1])

    with ScriptedServer(script) as server:
        assert run(main(server.url)) == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head == [
        b"PUT /x HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}".encode(),
        b"User-Agent: dataserve/0.2",
        b"Content-Type: application/json",
        b"Accept: application/json, text/plain, application/octet-stream",
        b"Authorization: Bearer t0ken",
        b"Content-Length: 3",
    ]


# -- errors ---------------------------------------------------------------------------------


def test_error_replies_raise_their_server_error(make_server: Any) -> None:
    server = make_server(Echo, max_body_size=100)
    guarded = make_server(Echo, auth_token="right")

    async def main() -> None:
        async with AsyncHTTPDataClient(url=server.url) as client:
            with pytest.raises(
                ResourceNotFound, match="handler returned None for '/none'"
            ) as not_found:
                await client.send("/none")
            assert not_found.value.status == 404
            with pytest.raises(RemoteError) as remote:
                await client.send("/raise")
            assert remote.value.exception_type == "ValueError"
            assert "boom with 'quotes'" in remote.value.detail
            with pytest.raises(PayloadTooLarge):
                await client.send("/echo", b"x" * 1000)
            assert await client.send("/echo", 1) == 1  # the client goes on after each
        async with AsyncHTTPDataClient(url=guarded.url, auth_token="wrong") as client:
            with pytest.raises(Unauthorized):
                await client.send("/echo", 1)

    run(main())


def test_unencodable_payload_raises_encode_error_before_any_traffic(make_server: Any) -> None:
    server = make_server(Echo)

    async def main() -> None:
        async with AsyncHTTPDataClient(url=server.url) as client:
            with pytest.raises(EncodeError, match="'object'"):
                await client.send("/echo", object())
            assert client_sockets(server.port) == 0

    run(main())
    assert server.handler.calls == 0


def test_connection_refused_is_connect_error_naming_the_url() -> None:
    port = free_port()

    async def main() -> None:
        async with AsyncHTTPDataClient(port=port) as client:
            with pytest.raises(ConnectError, match="connection refused") as info:
                await client.send("/x")
            assert f"127.0.0.1:{port}/x" in str(info.value) or f"localhost:{port}/x" in str(
                info.value
            )

    run(main())


def test_missing_unix_socket_is_connect_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncHTTPDataClient(unix_socket=tmp_path / "none.sock") as client:
            with pytest.raises(ConnectError, match="no socket file"):
                await client.send("/x")

    run(main())


def test_read_timeout_raises_and_does_not_replay(make_server: Any) -> None:
    server = make_server(Echo)

    async def main() -> None:
        async with AsyncHTTPDataClient(url=server.url, timeout=0.3) as client:
            with pytest.raises(ReadTimeout, match="may still be running"):
                await client.send("/sleep", 1.5)

    run(main())
    assert server.handler.calls == 1


def test_request_that_reached_the_handler_is_not_replayed() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)  # then close without a reply

    async def main(url: str, retries: int) -> None:
        async with AsyncHTTPDataClient(url=url, retries=retries) as client:
            with pytest.raises(ConnectionLost, match="without replying"):
                await client.send("/x", 1)

    with ScriptedServer(script) as server:
        run(main(server.url, 0))
    assert len(server.requests) == 1
    with ScriptedServer(script) as server:
        run(main(server.url, 1))
    assert len(server.requests) == 2  # resent once, as asked


def test_reset_mid_reply_is_connection_lost() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    async def main(url: str) -> None:
        async with AsyncHTTPDataClient(url=url) as client:
            with pytest.raises(ConnectionLost):
                await client.send("/x", 1)

    with ScriptedServer(script) as server:
        run(main(server.url))


def test_malformed_reply_is_connection_lost_saying_why() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx")

    async def main(url: str) -> None:
        async with AsyncHTTPDataClient(url=url) as client:
            with pytest.raises(ConnectionLost, match="Transfer-Encoding"):
                await client.send("/x", 1)

    with ScriptedServer(script) as server:
        run(main(server.url))


def test_constructor_rejects_bad_arguments() -> None:
    for kwargs, message in [
        ({}, "AsyncHTTPDataClient\\(port=5001\\)"),
        ({"port": 1, "url": "http://x:1"}, None),
        ({"url": "ftp://x"}, "expected an http"),
        ({"port": 1, "timeout": 0}, "positive"),
        ({"port": 1, "connect_timeout": float("inf")}, "finite"),
        ({"port": 1, "retries": -1}, "retries"),
        ({"port": 1, "pool_size": 0}, "pool_size"),
        ({"port": 1, "auth_token": "has space"}, "visible ASCII"),
        ({"unix_socket": "/tmp/x.sock", "port": 1}, "not both"),
        (
            {"url": "http+unix://%2Ftmp%2Fx.sock", "ssl_context": ssl.create_default_context()},
            "ssl",
        ),
    ]:
        if message is None:
            AsyncHTTPDataClient(**kwargs)  # url wins over port, as in the sync client
            continue
        with pytest.raises(ValueError, match=message):
            AsyncHTTPDataClient(**kwargs)


def test_closed_client_raises_transport_error(echo_server: HTTPDataServer) -> None:
    async def main() -> None:
        client = AsyncHTTPDataClient(url=echo_server.url)
        assert await client.send("/echo", 1) == 1
        await client.aclose()
        with pytest.raises(TransportError, match="closed"):
            await client.send("/echo", 1)
        assert client_sockets(echo_server.port) == 0

    run(main())


def test_a_client_used_from_a_second_loop_says_so(echo_server: HTTPDataServer) -> None:
    client = AsyncHTTPDataClient(url=echo_server.url)

    async def call() -> object:
        try:
            return await client.send("/echo", 1)
        finally:
            await client.aclose()

    assert run(call()) == 1
    with pytest.raises(RuntimeError, match="one client per event loop"):
        run(call())


# -- concurrency and the pool ---------------------------------------------------------------


def test_200_concurrent_sends_each_get_their_own_reply(echo_server: HTTPDataServer) -> None:
    async def main() -> list[object]:
        async with AsyncHTTPDataClient(url=echo_server.url, pool_size=16) as client:
            return await asyncio.gather(*(client.send("/echo", [i, f"p{i}"]) for i in range(200)))

    assert run(main()) == [[i, f"p{i}"] for i in range(200)]


class CountingPeers(Echo):
    """Echo that records, at each call, how many client sockets are connected to it."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.seen: list[int] = []

    def handle_request(self, resource: str, payload: Any) -> object:
        self.seen.append(client_sockets(self.port))
        time.sleep(0.01)  # so that calls overlap
        return payload


def test_more_concurrent_sends_than_pool_size_never_open_more_sockets(make_server: Any) -> None:
    handler = CountingPeers()
    server = make_server(handler)
    handler.port = server.port

    async def main() -> list[object]:
        async with AsyncHTTPDataClient(url=server.url, pool_size=3) as client:
            replies = await asyncio.gather(*(client.send("/echo", i) for i in range(40)))
            assert len(client._idle) <= 3
            return replies

    assert run(main()) == list(range(40))
    assert len(handler.seen) == 40
    assert max(handler.seen) <= 3
    assert max(handler.seen) >= 2  # they did run concurrently


def test_pool_exhausted_for_the_connect_timeout_raises_connect_timeout(make_server: Any) -> None:
    handler = Blocking()
    server = make_server(handler)

    async def main() -> None:
        async with AsyncHTTPDataClient(url=server.url, pool_size=1, connect_timeout=0.3) as client:
            blocked = asyncio.create_task(client.send("/block"))
            await settle(handler.entered.is_set)
            with pytest.raises(ConnectTimeout, match="pool is exhausted"):
                await client.send("/echo", 1)
            handler.release.set()
            assert await blocked == "released"
            assert await client.send("/echo", 2) == 2

    try:
        run(main())
    finally:
        handler.release.set()


def test_idle_connections_are_reused_last_in_first_out(echo_server: HTTPDataServer) -> None:
    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url, pool_size=4) as client:
            await asyncio.gather(*(client.send("/echo", i) for i in range(4)))
            last = client._idle[-1]
            await client.send("/echo", 1)
            assert client._idle[-1] is last
            assert client_sockets(echo_server.port) == len(client._idle)

    run(main())


def test_localhost_connects_to_ipv4_loopback_with_nodelay(echo_server: HTTPDataServer) -> None:
    async def main() -> None:
        async with AsyncHTTPDataClient(port=echo_server.port) as client:
            assert await client.send("/echo", 1) == 1
            transport = client._idle[0].transport
            assert transport is not None
            assert transport.get_extra_info("peername")[0] == "127.0.0.1"
            sock = transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    run(main())


# -- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["cancel", "asyncio.timeout"])
def test_cancelled_send_closes_its_connection_and_leaks_nothing(make_server: Any, how: str) -> None:
    handler = Blocking()
    server = make_server(handler)

    async def main() -> None:
        async with AsyncHTTPDataClient(url=server.url, pool_size=2) as client:
            assert await client.send("/echo", 0) == 0
            assert client_sockets(server.port) == 1
            tasks_before = asyncio.all_tasks()
            if how == "cancel":
                task = asyncio.create_task(client.send("/block"))
                await settle(handler.entered.is_set)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await client.send("/block")
                assert handler.entered.is_set()
            assert await settle(lambda: client_sockets(server.port) == 0)
            assert client._busy == set()
            assert asyncio.all_tasks() <= tasks_before
            handler.release.set()
            assert await asyncio.gather(*(client.send("/echo", i) for i in range(4))) == [
                0,
                1,
                2,
                3,
            ]
        assert await settle(lambda: client_sockets(server.port) == 0)

    try:
        run(main())
    finally:
        handler.release.set()


def test_cancel_while_waiting_for_a_pooled_connection_frees_nothing_twice(
    make_server: Any,
) -> None:
    handler = Blocking()
    server = make_server(handler)

    async def main() -> None:
        async with AsyncHTTPDataClient(url=server.url, pool_size=1) as client:
            blocked = asyncio.create_task(client.send("/block"))
            await settle(handler.entered.is_set)
            waiting = asyncio.create_task(client.send("/echo", 1))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            handler.release.set()
            assert await blocked == "released"
            assert await asyncio.gather(*(client.send("/echo", i) for i in range(3))) == [0, 1, 2]
            assert client_sockets(server.port) == 1  # pool_size holds

    try:
        run(main())
    finally:
        handler.release.set()


# -- restarts and stale connections -----------------------------------------------------------


def test_server_restart_between_calls_is_not_an_error() -> None:
    port = free_port()

    async def main() -> None:
        async with AsyncHTTPDataClient(port=port) as client:
            with HTTPDataServer(Echo, port=port):
                assert await asyncio.gather(*(client.send("/echo", i) for i in range(3))) == [
                    0,
                    1,
                    2,
                ]
            with HTTPDataServer(Echo, port=port):
                assert await client.send("/echo", "again") == "again"

    run(main())


def test_idle_connection_closed_by_the_server_is_replaced_without_error() -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n1"
        )
        # then close it while the client holds it idle

    async def main(url: str) -> list[object]:
        async with AsyncHTTPDataClient(url=url) as client:
            first = await client.send("/x", 1)
            await asyncio.sleep(0.2)  # the server closes the idle connection meanwhile
            return [first, await client.send("/x", 2)]

    with ScriptedServer(script) as server:
        assert run(main(server.url)) == [1, 1]
    assert len(server.peers) == 2
    assert len(server.requests) == 2


# -- TLS and Unix sockets -------------------------------------------------------------------


def test_https_round_trip_with_custom_ca_and_untrusted_server_refused() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    untrusted = ssl.create_default_context()
    trustme.CA().configure_trust(untrusted)

    async def main(url: str) -> None:
        async with AsyncHTTPDataClient(url=url, ssl_context=trusted, auth_token="tk") as client:
            assert await client.send("/echo", {"s": [1]}) == {"s": [1]}
            assert await client.send("/echo", b"\x00" * 300_000) == b"\x00" * 300_000
            await client.wait_ready(5)
        async with AsyncHTTPDataClient(url=url, ssl_context=untrusted, auth_token="tk") as client:
            with pytest.raises(ConnectError, match="TLS") as info:
                await client.send("/echo", 1)
            assert "certificate" in str(info.value).lower()

    with HTTPDataServer(Echo, ssl_context=server_context, auth_token="tk") as server:
        run(main(server.url))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))  # short: AF_UNIX paths are
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_unix_socket_by_path_and_by_url(sock_dir: Path) -> None:
    async def main(server: HTTPDataServer) -> None:
        async with AsyncHTTPDataClient(unix_socket=sock_dir / "d.sock") as client:
            assert await asyncio.gather(*(client.send("/echo", [i]) for i in range(20))) == [
                [i] for i in range(20)
            ]
            await client.wait_ready(5)
        async with AsyncHTTPDataClient(url=server.url) as client:
            assert client.url == server.url
            assert await client.send("/echo", b"u" * 500_000) == b"u" * 500_000

    with HTTPDataServer(Echo, unix_socket=sock_dir / "d.sock") as server:
        run(main(server))


# -- streaming ------------------------------------------------------------------------------


def test_file_payload_with_a_size_streams_with_content_length(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(Echo)
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)

    async def main() -> object:
        async with AsyncHTTPDataClient(url=server.url) as client:
            with path.open("rb") as f:
                f.read(17)  # sent from the file's position
                return await client.send("/echo", f)

    assert run(main()) == data[17:]


def test_file_payload_sends_content_length_on_the_wire(tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(b"abc")

    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")

    async def main(url: str) -> object:
        async with AsyncHTTPDataClient(url=url) as client:
            with path.open("rb") as f:
                return await client.send("/f", f)

    with ScriptedServer(script) as server:
        assert run(main(server.url)) == "ok"
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert b"Content-Type: application/octet-stream" in head
    assert b"Content-Length: 3" in head
    assert body == b"abc"


def _read_chunked_request(conn: socket.socket) -> tuple[bytes, bytes]:
    """Read a chunked request from a raw socket, checking its framing: (head, body)."""
    data = b""
    while b"\r\n0\r\n\r\n" not in data and not data.endswith(b"\r\n\r\n0\r\n\r\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", rest
            return head, body
        body += rest[:size]
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


def test_pipe_payload_streams_chunked() -> None:
    received: list[tuple[bytes, bytes]] = []
    data = os.urandom(700_000)

    def script(conn: socket.socket, server: ScriptedServer) -> None:
        head, body = _read_chunked_request(conn)
        received.append((head, body))
        reply = b"%d" % len(body)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(reply), reply)
        )

    def feeder(fd: int) -> None:
        with os.fdopen(fd, "wb") as w:
            for start in range(0, len(data), 100_000):
                w.write(data[start : start + 100_000])
                w.flush()
                time.sleep(0.01)

    async def main(url: str) -> object:
        read_fd, write_fd = os.pipe()
        writer = threading.Thread(target=feeder, args=(write_fd,))
        writer.start()
        try:
            async with AsyncHTTPDataClient(url=url) as client:
                with os.fdopen(read_fd, "rb") as pipe:
                    return await client.send("/pipe", pipe)
        finally:
            writer.join(10)

    with ScriptedServer(script) as server:
        assert run(main(server.url)) == len(data)
    head, body = received[0]
    assert b"Transfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert body == data


def test_text_mode_file_is_an_encode_error(tmp_path: Path, echo_server: HTTPDataServer) -> None:
    path = tmp_path / "t.txt"
    path.write_text("text")

    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            with path.open("r") as f, pytest.raises(EncodeError, match="text mode"):
                await client.send("/echo", f)

    run(main())


def test_out_writes_a_200_body_and_returns_its_length(
    echo_server: HTTPDataServer, tmp_path: Path
) -> None:
    data = os.urandom(2_000_000)
    path = tmp_path / "out.bin"

    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            with path.open("wb") as f:
                assert await client.send("/echo", data, out=f) == len(data)
            sink = io.BytesIO()
            with pytest.raises(ResourceNotFound):
                await client.send("/none", b"x", out=sink)
            assert sink.getvalue() == b""
            with pytest.raises(TypeError, match="not both"):
                await client.send("/echo", b"x", out=sink, type=bytes)  # type: ignore[call-overload]

    run(main())
    assert path.read_bytes() == data


def test_progress_reports_upload_then_download_at_most_every_64_kib(
    echo_server: HTTPDataServer,
) -> None:
    data = os.urandom(1_000_000)
    calls: list[tuple[int, int | None]] = []

    async def main() -> object:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            return await client.send("/echo", data, progress=lambda d, t: calls.append((d, t)))

    assert run(main()) == data
    starts = [i for i, (done, _) in enumerate(calls) if done == 0]
    assert len(starts) == 2
    assert starts[0] == 0
    upload, download = calls[: starts[1]], calls[starts[1] :]
    for phase in (upload, download):
        assert phase[0] == (0, len(data))
        assert phase[-1] == (len(data), len(data))
        dones = [done for done, _ in phase]
        assert dones == sorted(dones)
        # at most one call per 64 KiB, but for the phase's last (every byte counted)
        assert all(b - a >= 64 * 1024 for a, b in itertools.pairwise(dones[:-1]))
        assert len(phase) <= len(data) // (64 * 1024) + 2


def test_progress_callback_error_aborts_the_call_and_propagates(
    echo_server: HTTPDataServer,
) -> None:
    def broken(done: int, total: int | None) -> None:
        if done:
            raise KeyError("stop")

    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            with pytest.raises(KeyError, match="stop"):
                await client.send("/echo", b"x" * 500_000, progress=broken)
            assert await client.send("/echo", 1) == 1

    run(main())


# -- wait_ready -----------------------------------------------------------------------------


def test_wait_ready_returns_once_a_late_server_listens() -> None:
    port = free_port()
    servers: list[HTTPDataServer] = []

    def start_later() -> None:
        time.sleep(0.4)
        servers.append(HTTPDataServer(Echo, port=port).start())

    async def main() -> object:
        async with AsyncHTTPDataClient(port=port) as client:
            await client.wait_ready(15)
            return await client.send("/echo", "up")

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        assert run(main()) == "up"
    finally:
        starter.join(10)
        for server in servers:
            server.shutdown()


def test_wait_ready_raises_transport_error_when_nothing_listens() -> None:
    async def main() -> None:
        async with AsyncHTTPDataClient(port=free_port()) as client:
            with pytest.raises(TransportError, match=r"not ready within 0\.3 s"):
                await client.wait_ready(0.3)

    run(main())


# -- the sync client's messages (issue 9), from the one place both clients take them -------


@pytest.mark.parametrize("port", [70000, 65536, -1, "99999"])
def test_port_out_of_range_is_value_error_saying_so(port: object) -> None:
    with pytest.raises(ValueError, match=r"is out of range: a TCP port is 1-65535") as info:
        AsyncHTTPDataClient(port=port)  # type: ignore[arg-type]
    assert "URL" not in str(info.value)


def test_port_0_is_value_error_pointing_at_the_servers_port() -> None:
    with pytest.raises(ValueError, match=r"^port 0 is not a port a server listens on") as info:
        AsyncHTTPDataClient(port=0)
    assert ".port" in str(info.value)


@pytest.mark.parametrize("port", [5001.0, True, b"5001", [5001]])
def test_port_of_another_type_is_type_error(port: object) -> None:
    with pytest.raises(TypeError, match=r"port must be an int such as 5001, got "):
        AsyncHTTPDataClient(port=port)  # type: ignore[arg-type]


def test_port_as_digit_string_reaches_the_server_as_in_01(echo_server: HTTPDataServer) -> None:
    async def main() -> None:
        port = str(echo_server.port)
        async with AsyncHTTPDataClient(port=port, address="http://127.0.0.1:") as client:  # type: ignore[arg-type]
            assert client.url == f"http://127.0.0.1:{echo_server.port}"
            assert await client.send("/echo", [1]) == [1]

    run(main())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://127.0.0.1:70000",
            "port 70000 in the URL 'http://127.0.0.1:70000' is out of range",
        ),
        ("http://127.0.0.1:0", "port 0 (in the URL 'http://127.0.0.1:0') is not a port"),
        ("http://127.0.0.1:http", "the port 'http' in the URL 'http://127.0.0.1:http' is not a"),
        ("ftp://127.0.0.1:21", "expected an http://, https:// or http+unix:// URL such as"),
    ],
)
def test_url_with_bad_port_or_form_says_what_is_wrong(url: str, expected: str) -> None:
    with pytest.raises(ValueError, match=r"^(port|the port|expected) ") as info:
        AsyncHTTPDataClient(url=url)
    assert str(info.value).startswith(expected)
    with pytest.raises(ValueError, match=r"^(port|the port|expected) ") as sync:
        HTTPDataClient(url=url)
    assert str(sync.value) == str(info.value)  # the same words as the sync client


def test_address_without_colon_is_value_error() -> None:
    with pytest.raises(ValueError, match=r"address must end in a colon"):
        AsyncHTTPDataClient(port=5001, address="http://localhost")


def test_typed_mismatch_is_told_from_an_undecodable_reply(echo_server: HTTPDataServer) -> None:
    def truncated(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n"
            b'Connection: close\r\n\r\n[1, "two"'
        )

    async def main(truncating: ScriptedServer) -> None:
        async with AsyncHTTPDataClient(url=echo_server.url) as client:
            with pytest.raises(DecodeError) as info:
                await client.send("/echo", [1, 2, "three"], type=list[int])
            assert str(info.value) == (
                f"the application/json reply of PUT {echo_server.url}/echo is valid but does "
                "not match list[int]: Expected `int`, got `str` - at `$[2]`"
            )
        async with AsyncHTTPDataClient(url=truncating.url) as client:
            with pytest.raises(DecodeError) as info:
                await client.send("/t", type=list[int])
            assert str(info.value) == (
                f"the application/json reply of PUT {truncating.url}/t could not be decoded: "
                "Input data was truncated"
            )

    with ScriptedServer(truncated) as truncating:
        run(main(truncating))


# -- a body the server stops reading (SPEC 7) ------------------------------------------------


def test_a_body_the_server_stops_reading_is_a_write_timeout_saying_it_never_ran() -> None:
    body = b"x" * (16 << 20)  # more than the socket buffers hold

    async def main(server: SlowReader) -> WriteTimeout:
        async with AsyncHTTPDataClient(url=server.url, timeout=0.5) as client:
            with pytest.raises(WriteTimeout) as info:
                await client.send("/upload", body)
        return info.value

    with SlowReader(rate=0) as server:
        error = run(main(server))
        assert len(server.heads) == 1  # the head arrived; the body stalled; not resent
    message = str(error)
    assert f"{server.url}/upload" in message
    assert "not sent completely" in message
    assert "never received it" in message
    assert "may still be running" not in message
    assert not isinstance(error, ReadTimeout)
    assert error.url == f"{server.url}/upload"
    with SlowReader(rate=0) as other, HTTPDataClient(url=other.url, timeout=0.5) as sync:
        with pytest.raises(WriteTimeout) as sync_info:
            sync.send("/upload", body)
    assert str(sync_info.value) == message.replace(server.url, other.url)  # the same words


def test_a_large_file_payload_the_server_stops_reading_is_a_write_timeout(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"y" * (16 << 20))

    async def main(server: SlowReader) -> None:
        async with AsyncHTTPDataClient(url=server.url, timeout=0.5) as client:
            with open(path, "rb") as f, pytest.raises(WriteTimeout, match="not sent completely"):
                await client.send("/upload", f)

    with SlowReader(rate=0) as server:
        run(main(server))
        assert len(server.heads) == 1


# -- bulk replies: received straight into one buffer of the announced length ---------------


def test_large_replies_arrive_whole_as_bytes_and_in_order(echo_server: HTTPDataServer) -> None:
    payloads = [bytes(range(256)) * (n * 1024) + bytes([n]) for n in (1, 7, 40)]  # to 10 MB

    async def main() -> None:
        async with AsyncHTTPDataClient(url=echo_server.url, pool_size=2) as client:
            replies = await asyncio.gather(*(client.send("/echo", p) for p in payloads * 2))
            for reply, payload in zip(replies, payloads * 2, strict=True):
                assert type(reply) is bytes
                assert reply == payload
            progress: list[tuple[int, int | None]] = []
            reply = await client.send("/echo", payloads[2], progress=lambda *a: progress.append(a))
            assert reply == payloads[2]
            assert progress[-1] == (len(payloads[2]), len(payloads[2]))
            assert await client.send("/echo", [1]) == [1]  # the connection still serves

    run(main())


@pytest.mark.parametrize("reset", [False, True])
def test_a_large_reply_cut_short_is_connection_lost_saying_how_much_came(reset: bool) -> None:
    def script(conn: socket.socket, server: ScriptedServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"z" * 300_000)
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)

    async def main(url: str) -> None:
        async with AsyncHTTPDataClient(url=url) as client:
            with pytest.raises(ConnectionLost) as info:
                await client.send("/x", 1)
            if not reset:
                assert "cut short (300000 of 1048576 bytes arrived)" in str(info.value)
            assert "the request was not resent" in str(info.value)

    with ScriptedServer(script) as server:
        run(main(server.url))
    assert len(server.requests) == 1


def test_the_readme_asyncio_example_runs_as_shown(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Asyncio client\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M)
    brief = readme.split("\n## In brief\n", 1)[1].split("\n## ", 1)[0]
    module_code = re.findall(r"^```python\n(.*?)^```$", brief, re.S | re.M)[0]
    namespace: dict[str, Any] = {}
    exec(compile(module_code, "points.py", "exec"), namespace)
    assert "port=5001" in code
    with HTTPDataServer(namespace["Points"], port=0) as server:
        printed: list[object] = []
        shown = code.replace("port=5001", f"port={server.port}")
        exec(compile(shown, "README Asyncio client", "exec"), {"print": printed.append})
    assert printed == [[[0, 1], [1, 2]]]  # what the comment says
