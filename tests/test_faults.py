"""Faults found in review: each pinned by a test that failed before its fix."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

import dataserve._protocol as protocol
from dataserve import (
    ConnectionLost,
    EncodeError,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    PayloadTooLarge,
    ReadTimeout,
    RemoteError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    WriteTimeout,
)
from dataserve.codecs import CodecRegistry
from dataserve.wsgi import make_app

from .conftest import (
    Echo,
    Gate,
    ScriptedServer,
    dataserve_threads,
    put,
    raw_exchange,
    read_reply,
    wait_until_pooled_connections_closed,
)

# -- error replies that must reach the client -----------------------------------------------


@pytest.mark.parametrize("size", [2_000, 300_000, 5_000_000])
def test_413_reaches_a_client_still_sending_a_large_body(
    make_server: Callable[..., HTTPDataServer], size: int
) -> None:
    server = make_server(max_body_size=1000)
    with HTTPDataClient(url=server.url) as client:
        for _ in range(3):
            with pytest.raises(PayloadTooLarge):
                client.send("/echo", b"x" * size)
        assert client.send("/echo", b"ok") == b"ok"


def test_401_reaches_a_client_sending_a_large_body(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(auth_token="right")
    with HTTPDataClient(url=server.url, auth_token="wrong") as client:
        with pytest.raises(Unauthorized):
            client.send("/echo", b"x" * 5_000_000)
    with HTTPDataClient(url=server.url, auth_token="right") as client:
        assert client.send("/echo", [1]) == [1]


def test_503_at_the_limit_reaches_a_client_sending_a_large_body(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    gate = Gate()
    server = make_server(gate, max_connections=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as hold:
        hold.sendall(put("/wait", b"[1]"))
        gate.wait_entered(1)  # the one connection is inside a request
        with HTTPDataClient(url=server.url) as client:
            with pytest.raises(ServiceUnavailable):
                client.send("/echo", b"x" * 5_000_000)
        gate.release.set()
        assert read_reply(hold).status == 200


# -- 500 replies that must be built whatever the handler did --------------------------------


class Faulty(HTTPDataHandler):
    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/surrogate":
            raise ValueError("bad name \udcff")
        if resource == "/unprintable":
            raise Unprintable
        if resource == "/deep":
            deep: list[Any] = []
            for _ in range(100_000):
                deep = [deep]
            return deep
        return payload


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    ("resource", "exception"),
    [("/surrogate", "ValueError"), ("/unprintable", "Unprintable"), ("/deep", "EncodeError")],
)
def test_handler_failure_that_breaks_message_or_encoding_is_still_a_500(
    make_server: Callable[..., HTTPDataServer], resource: str, exception: str
) -> None:
    server = make_server(Faulty)
    reply = raw_exchange(server.port, put(resource, b"null"))
    assert reply.status == 500
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["exception"] == exception
    with HTTPDataClient(url=server.url) as client:
        with pytest.raises(RemoteError) as info:
            client.send(resource)
        assert info.value.exception_type == exception
        assert client.send("/echo", [1]) == [1]


def test_charset_yielding_lone_surrogates_is_400(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(
        echo_server.port, put("/echo", b"\\udcff", "text/plain; charset=unicode_escape")
    )
    assert reply.status == 400
    assert "surrogate" in reply.json()["detail"]
    latin = raw_exchange(echo_server.port, put("/echo", b"caf\xe9", "text/plain; charset=latin-1"))
    assert latin.status == 200
    assert latin.body == "café".encode()


def test_wsgi_handler_failure_with_surrogate_is_a_500() -> None:
    from wsgiref.util import setup_testing_defaults

    app = make_app(Faulty)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="PUT", PATH_INFO="/surrogate", CONTENT_LENGTH="4")
    environ.update(CONTENT_TYPE="application/json")
    import io

    environ["wsgi.input"] = io.BytesIO(b"null")
    statuses: list[str] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["500 Internal Server Error"]
    assert b"ValueError" in body


# -- the connection's fate after an error reply ---------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"PUT /none HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n1",
        b"PUT /raise HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n1",
        b"PUT /none HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json"
        b"\r\nContent-Length: 1\r\n\r\n1",
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json"
        b"\r\nContent-Length: 1\r\n\r\n{",
    ],
    ids=["404-http10", "500-http10", "404-close", "400-close"],
)
def test_error_reply_honours_http10_and_connection_close(
    echo_server: HTTPDataServer, request_bytes: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        reply = read_reply(sock)  # reads to EOF when the server closes; would time out if not
        assert reply.status in (400, 404, 500)
        assert reply.headers.get("connection") == "close"
        assert sock.recv(1) == b""


def test_error_reply_to_head_has_no_body(echo_server: HTTPDataServer) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=5) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert body == b""


def test_head_with_a_large_body_gets_its_200_before_the_close(
    echo_server: HTTPDataServer,
) -> None:
    size = 8 << 20
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"x" * (1 << 20)
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)  # the server does not read it, but drains it before closing
        reply = read_reply(sock, head_only=True)
    assert reply.status == 200
    assert reply.headers.get("connection") == "close"


def test_remote_error_carries_the_exposed_traceback(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_server(expose_tracebacks=True)
    with HTTPDataClient(url=server.url) as client:
        with pytest.raises(RemoteError) as info:
            client.send("/raise")
    assert "Traceback (most recent call last)" in info.value.traceback
    assert "boom with 'quotes'" in info.value.traceback
    plain = make_server()
    with HTTPDataClient(url=plain.url) as client:
        with pytest.raises(RemoteError) as info:
            client.send("/raise")
    assert info.value.traceback == ""


# -- hostile headers do not pin memory ------------------------------------------------------


def test_long_content_type_and_accept_headers_are_not_cached(echo_server: HTTPDataServer) -> None:
    protocol._media_type_cache.clear()
    protocol._accept_cache.clear()
    for i in range(20):
        params = f"; p{i}=" + "v" * 30_000
        reply = raw_exchange(
            echo_server.port,
            put("/echo", b"[1]", "application/json" + params, f"Accept: {'a/b, ' * 5000}*/*\r\n"),
        )
        assert reply.status == 200
    assert all(len(key) <= 256 for key in protocol._media_type_cache)
    assert all(len(key) <= 256 for key in protocol._accept_cache)
    assert len(protocol.parse_accept(", ".join(f"t/{i}" for i in range(100)))) == 32


# -- server lifecycle -----------------------------------------------------------------------


def test_start_after_shutdown_raises_at_once() -> None:
    server = HTTPDataServer(Echo)
    server.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        server.start()
    with pytest.raises(RuntimeError, match="shut down"):
        server.serve_forever()


def test_start_while_served_elsewhere_raises_in_the_caller() -> None:
    server = HTTPDataServer(Echo)
    loop = threading.Thread(target=server.serve_forever, name="user-loop")
    loop.start()
    try:
        with HTTPDataClient(url=server.url) as client:
            client.wait_ready(5)  # the user's thread is serving
        with pytest.raises(RuntimeError, match="already"):
            server.start()
        with pytest.raises(RuntimeError, match="already"):
            server.serve_forever()
    finally:
        server.shutdown()
        loop.join(10)
    assert not loop.is_alive()


class Stopper(HTTPDataHandler):
    server: HTTPDataServer

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/stop":
            self.server.shutdown()
            return "stopped"
        return payload


def test_shutdown_from_a_handler_answers_its_own_call_and_stops() -> None:
    before = dataserve_threads()
    handler = Stopper()
    server = HTTPDataServer(handler, shutdown_timeout=1)
    handler.server = server
    server.start()
    with HTTPDataClient(url=server.url, timeout=10) as client:
        assert client.send("/stop") == "stopped"
        with pytest.raises(TransportError):
            client.send("/echo", 1)  # stopped: nothing listens any more
    deadline = time.monotonic() + 5
    while dataserve_threads() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dataserve_threads() == before


def assert_script_returns(script: str) -> None:
    """Run a server script in its own interpreter: it must print "returned" and exit 0."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "returned"


def test_shutdown_from_a_signal_handler_in_the_serving_thread_returns(tmp_path: Any) -> None:
    script = textwrap.dedent("""
        import signal
        from dataserve import HTTPDataHandler, HTTPDataServer

        class H(HTTPDataHandler):
            def handle_request(self, resource, payload):
                return payload

        server = HTTPDataServer(H)
        signal.signal(signal.SIGALRM, lambda *args: server.shutdown())
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        server.serve_forever()
        print("returned")
    """)
    assert_script_returns(script)


def test_503_during_shutdown_reaches_a_client_still_sending_its_body() -> None:
    server = HTTPDataServer(Echo, shutdown_timeout=5).start()
    stopper = threading.Thread(target=server.shutdown)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\n")  # the request has begun when shutdown comes
        time.sleep(0.2)
        stopper.start()
        time.sleep(0.2)
        size = 16 << 20
        sock.sendall(b"Host: t\r\nContent-Length: %d\r\n\r\n" % size)
        chunk = b"x" * (1 << 20)
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)  # drained by the server: a reset would break this send
        reply = read_reply(sock)
    stopper.join(10)
    assert reply.status == 503
    assert not stopper.is_alive()


def test_shutdown_from_a_signal_landing_while_the_loop_holds_its_lock(tmp_path: Any) -> None:
    script = textwrap.dedent("""
        import signal, socket, threading
        import dataserve._server as backend
        from dataserve import HTTPDataHandler, HTTPDataServer

        class H(HTTPDataHandler):
            def handle_request(self, resource, payload):
                return payload

        server = HTTPDataServer(H, shutdown_timeout=1)
        signal.signal(signal.SIGUSR1, lambda *args: server.shutdown())
        original = backend._Connection.__init__

        def signalled(self, *args):  # runs in the accept loop, under the server's lock
            original(self, *args)
            signal.raise_signal(signal.SIGUSR1)

        backend._Connection.__init__ = signalled
        threading.Timer(0.3, socket.create_connection, (("127.0.0.1", server.port),)).start()
        server.serve_forever()
        print("returned")
    """)
    assert_script_returns(script)


def test_start_racing_shutdown_never_leaves_a_thread_traceback() -> None:
    hooked: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: hooked.append(repr(args.exc_value))
    try:
        for _ in range(20):
            server = HTTPDataServer(Echo)
            stopper = threading.Thread(target=server.shutdown)
            stopper.start()
            with contextlib.suppress(RuntimeError):
                server.start()
            stopper.join(10)
            server.shutdown()
    finally:
        threading.excepthook = previous
    assert hooked == []


class Stuck(HTTPDataHandler):
    release = threading.Event()

    def handle_request(self, resource: str, payload: Any) -> object:
        self.release.wait(20)
        return payload


def test_shutdown_with_several_stuck_handlers_keeps_one_deadline() -> None:
    server = HTTPDataServer(Stuck, shutdown_timeout=0.5).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with HTTPDataClient(url=server.url, timeout=30) as client:
                client.send("/stuck", 1)
        except TransportError as exc:
            errors.append(exc)

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.3)  # all four are in the handler
    try:
        started = time.monotonic()
        server.shutdown()
        took = time.monotonic() - started
    finally:
        Stuck.release.set()
        for caller in callers:
            caller.join(30)
    assert took < 0.5 + 1.0 + 0.5  # shutdown_timeout, one second for stragglers, slack
    assert len(errors) == 4  # each stuck call was cut: ConnectionLost, never a wrong value


def test_accept_loop_survives_a_failed_thread_start(
    make_server: Callable[..., HTTPDataServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    original = threading.Thread.start
    failures = [1]

    def start_or_fail(self: threading.Thread) -> None:
        if self.name == "dataserve-conn" and failures:
            failures.pop()
            raise RuntimeError("can't start new thread")
        original(self)

    monkeypatch.setattr(threading.Thread, "start", start_or_fail)
    with HTTPDataClient(url=server.url) as client:
        with pytest.raises(ServiceUnavailable):
            client.send("/echo", 1)
        assert client.send("/echo", 2) == 2  # the next connection is served


# -- the client against servers that misbehave ----------------------------------------------


def _reply(body: bytes, extra: bytes = b"", head: bytes | None = None) -> bytes:
    if head is None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            len(body)
        )
    return head + b"\r\n" + body + extra


def test_bytes_beyond_the_content_length_are_never_read_as_the_next_reply() -> None:
    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        while srv.read_request(conn):
            number = len(srv.requests)
            conn.sendall(_reply(b"%d" % number, extra=b"HTTP/1.1 200 OK\r\n\r\n" + b"99"))

    with ScriptedServer(script) as srv, HTTPDataClient(url=srv.url) as client:
        assert client.send("/x", 1) == 1
        assert client.send("/x", 2) == 2  # a stale reply would give 99 or garbage
        assert len(srv.peers) == 2  # the polluted connection was not reused


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n1",  # latin-1 superscript two
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 25 + b"\r\n\r\n1",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n1",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n1",
    ],
    ids=["superscript-length", "huge-length", "huge-chunk", "bad-chunk"],
)
def test_malformed_reply_framing_is_connection_lost(reply: bytes) -> None:
    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        if srv.read_request(conn):
            conn.sendall(reply)

    with ScriptedServer(script) as srv, HTTPDataClient(url=srv.url, timeout=5) as client:
        with pytest.raises(ConnectionLost, match="reply"):
            client.send("/x", 1)


def test_204_without_content_length_is_answered_at_once() -> None:
    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        if srv.read_request(conn):
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            time.sleep(3)  # keeps the connection open: reading to EOF would wait for this

    with ScriptedServer(script) as srv, HTTPDataClient(url=srv.url, timeout=2) as client:
        with pytest.raises(ServerError) as info:
            client.send("/x", 1)
        assert info.value.status == 204


def test_nested_problem_json_is_still_a_server_error() -> None:
    body = b"[" * 100_000

    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        if srv.read_request(conn):
            conn.sendall(
                b"HTTP/1.1 500 Oops\r\nContent-Type: application/problem+json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    with ScriptedServer(script) as srv, HTTPDataClient(url=srv.url, timeout=5) as client:
        with pytest.raises(RemoteError):
            client.send("/x", 1)


def _answer_once_then(
    after: str, closed: threading.Event | None = None
) -> Callable[[socket.socket, ScriptedServer], None]:
    """A script: answer the first request kept alive; then ``"close"`` the connection while
    idle (and set ``closed``), or read the next request and ``"drop"`` it without a reply."""

    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        if srv.read_request(conn):
            conn.sendall(_reply(b"%d" % len(srv.requests)))
            if after == "drop":
                srv.read_request(conn)  # it reached the "handler"; then the connection dies
            else:
                conn.close()
                assert closed is not None
                closed.set()

    return script


def test_a_reused_connection_the_server_closed_while_idle_is_reconnected() -> None:
    closed = threading.Event()
    with ScriptedServer(_answer_once_then("close", closed)) as srv:
        with HTTPDataClient(url=srv.url) as client:
            assert client.send("/x", 1) == 1
            assert closed.wait(10)  # the pooled connection is closed by the server
            assert wait_until_pooled_connections_closed(client)  # the close has arrived
            assert client.send("/x", 1) == 2  # no error: a new connection, the request once
        assert len(srv.requests) == 2
        assert len(srv.peers) == 2


def test_a_reused_connection_closed_after_the_request_left_is_not_replayed() -> None:
    # The race SPEC 7 names: the request was sent on a kept-alive connection, which then
    # closed before any byte of the reply. The handler may have run: raise, never resend.
    with ScriptedServer(_answer_once_then("drop")) as srv, HTTPDataClient(url=srv.url) as client:
        assert client.send("/x", 1) == 1
        with pytest.raises(ConnectionLost, match="not resent"):
            client.send("/x", 2)
        assert len(srv.requests) == 2
        assert len(srv.peers) == 1


class SlowReader:
    """A raw-socket server with a small receive buffer: reads a request head, then reads the
    body at most ``rate`` bytes per 20 ms (``0``: never; negative: resets the connection) and
    answers 200. Bounded waits only."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.heads: list[bytes] = []
        self.received = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)  # inherited
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="slow-reader")

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.settimeout(10)
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(1)  # byte by byte: nothing of the body is read with the head
            if not chunk:
                return
            data += chunk
        self.heads.append(data)
        length = int(data.lower().partition(b"content-length:")[2].split(b"\r\n")[0])
        if self.rate < 0:  # reset the connection mid-body
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if not self.rate:
            self.stop.wait(10)  # never reads the body
            return
        buffer = bytearray(self.rate)
        deadline = time.monotonic() + 30
        while self.received < length and time.monotonic() < deadline:
            count = conn.recv_into(buffer, min(self.rate, length - self.received))
            if not count:
                return
            self.received += count
            time.sleep(0.02)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\ntrue"
        )

    def __enter__(self) -> SlowReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)
        self.listener.close()


def test_a_body_the_server_stops_reading_is_a_write_timeout_saying_it_never_ran() -> None:
    body = b"x" * (16 << 20)  # more than the socket buffers hold
    with SlowReader(rate=0) as server, HTTPDataClient(url=server.url, timeout=0.5) as client:
        with pytest.raises(WriteTimeout) as info:
            client.send("/upload", body)
        assert len(server.heads) == 1  # the head arrived; the body stalled; not resent
    message = str(info.value)
    assert f"{server.url}/upload" in message
    assert "not sent completely" in message
    assert "never received it" in message
    assert "may still be running" not in message
    assert not isinstance(info.value, ReadTimeout)
    assert isinstance(info.value, TransportError)
    assert info.value.url == f"{server.url}/upload"


def test_a_connection_reset_while_sending_says_the_handler_never_received_it() -> None:
    with SlowReader(rate=-1) as server, HTTPDataClient(url=server.url) as client:
        with pytest.raises(ConnectionLost) as info:
            client.send("/upload", b"z" * (16 << 20))
        assert len(server.heads) == 1  # not resent
    assert "while the request was being sent" in str(info.value)
    assert "never received the whole request" in str(info.value)
    assert "may have run" not in str(info.value)


def test_a_body_the_server_reads_slowly_but_steadily_is_not_a_timeout() -> None:
    # Reading it takes well over the timeout in all, but no wait for the server to read
    # more comes near it: the timeout bounds each stall, not the whole transfer.
    # At most 6.4 MB/s: the 16 MB take 1.8 s or more once the socket buffers (under 5 MB)
    # are full, against a timeout of 1.5 s and waits of 20 ms.
    body = b"y" * (16 << 20)
    with SlowReader(rate=128 * 1024) as server:
        with HTTPDataClient(url=server.url, timeout=1.5) as client:
            assert client.send("/upload", body) is True
        assert server.received == len(body)


def test_unsendable_payloads_are_encode_errors_before_any_traffic() -> None:
    with ScriptedServer(lambda conn, srv: None) as srv, HTTPDataClient(url=srv.url) as client:
        recursive: list[Any] = []
        recursive.append(recursive)
        with pytest.raises(EncodeError):
            client.send("/x", recursive)
        with pytest.raises(EncodeError, match="contiguous"):
            client.send("/x", memoryview(b"abcdef")[::2])
        assert srv.peers == []


def test_multidimensional_memoryview_is_sent_as_its_bytes(echo_server: HTTPDataServer) -> None:
    view = memoryview(bytearray(range(12))).cast("B", (3, 4))
    empty = memoryview(bytearray(range(12))).cast("B", (3, 4))[:0]  # shape (0, 4)
    with HTTPDataClient(url=echo_server.url) as client:
        assert client.send("/echo", view) == bytes(range(12))
        assert client.send("/echo", empty) == b""


def test_non_ascii_auth_token_is_refused_where_it_is_given() -> None:
    for token in ("é", "two words", ""):
        with pytest.raises(ValueError, match="auth_token"):
            HTTPDataClient(port=5001, auth_token=token)
        with pytest.raises(ValueError, match="auth_token"):
            HTTPDataServer(Echo, auth_token=token)
        with pytest.raises(ValueError, match="auth_token"):
            make_app(Echo, auth_token=token)


def test_empty_content_type_is_read_as_bytes(echo_server: HTTPDataServer) -> None:
    reply = raw_exchange(echo_server.port, put("/echo", b"\x00raw", ""))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.body == b"\x00raw"


def test_wait_ready_failure_names_the_reason_not_urllib3_internals() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with HTTPDataClient(port=port, address="http://127.0.0.1:") as client:
            with pytest.raises(TransportError) as info:
                client.wait_ready(0.3)
    assert "connection refused" in str(info.value)
    assert "_Connection" not in str(info.value)


# -- codecs ---------------------------------------------------------------------------------


class Thing:
    pass


class ThingCodec:
    media_type = "application/x-thing"
    types = (Thing,)

    def encode(self, value: Thing, /) -> bytes:
        return b"thing"

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Thing:
        return Thing()


class CRLFCodec(ThingCodec):
    def content_type(self, value: Thing, /) -> str:
        return "application/x-thing\r\nX-Injected: 1"


def test_content_type_with_a_line_break_is_an_encode_error() -> None:
    registry = CodecRegistry(plugins=False)
    registry.register(CRLFCodec())
    with ScriptedServer(lambda conn, srv: None) as srv:
        with HTTPDataClient(url=srv.url, registry=registry) as client:
            with pytest.raises(EncodeError, match="Content-Type"):
                client.send("/x", Thing())
        assert srv.peers == []


def test_register_racing_a_type_lookup_is_not_forgotten() -> None:
    class RacyRegistry(CodecRegistry):
        raced = False

        def _claim(self, cls: type, codecs: Any) -> Any:
            if not self.raced:  # a register() in another thread, mid-lookup
                self.raced = True
                self.register(ThingCodec())
            return super()._claim(cls, codecs)

    registry = RacyRegistry(plugins=False)
    registry.codec_for_type(Thing)  # raced: may answer from the old order
    assert registry.codec_for_type(Thing).media_type == "application/x-thing"
