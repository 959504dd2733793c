"""HTTPDataServer and run_http_server: the threaded stdlib-socket backend.

Same model as ``http.server.ThreadingHTTPServer`` (one thread per connection, blocking
sockets) with a leaner request path: the head is read with a buffered reader and parsed by the
protocol core, and a small reply goes out in one write. No networking decision lives here
that the core could make.
"""

from __future__ import annotations

import contextlib
import io
import logging
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Final, Self, TypedDict, Unpack, cast

from ._handler import HTTPDataHandler, instantiate_handler
from ._io import send_message
from ._protocol import (
    DEFAULT_MAX_BODY_SIZE,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    STATUS_PHRASES,
    HTTPError,
    Reply,
    Request,
    ServerCore,
    error_reply,
    parse_request_head,
)
from .codecs._registry import CodecRegistry, default_registry

__all__ = ["HTTPDataServer", "run_http_server"]

_log: Final = logging.getLogger("dataserve")

LISTEN_BACKLOG: Final = 1024
"""Listen queue length: a burst of new connections waits instead of costing a 1 s SYN retry."""
_READ_BUFFER: Final = 65536


def _http_date(now: float, _cache: list[Any] = [0, b""]) -> bytes:  # noqa: B006
    second = int(now)
    if _cache[0] != second:
        t = time.gmtime(second)
        day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[t.tm_wday]
        month = (
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        )[t.tm_mon - 1]
        _cache[1] = (
            f"Date: {day}, {t.tm_mday:02d} {month} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT\r\n"
        ).encode()
        _cache[0] = second
    value: bytes = _cache[1]
    return value


_prefixes: dict[tuple[int, tuple[tuple[str, str], ...]], bytes] = {}


def _head(reply: Reply, length: int) -> bytes:
    """The reply head: status line and headers, with framing, ending in the blank line."""
    key = (reply.status, reply.headers)
    prefix = _prefixes.get(key)
    if prefix is None:
        lines = [f"HTTP/1.1 {reply.status} {STATUS_PHRASES.get(reply.status, '')}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in reply.headers]
        prefix = "".join(lines).encode("latin-1")
        if len(_prefixes) < 256:
            _prefixes[key] = prefix
    end = b"Connection: close\r\n\r\n" if reply.close else b"\r\n"
    return b"%sContent-Length: %d\r\n%s%s" % (prefix, length, _http_date(time.time()), end)


def _send(sock: socket.socket, reply: Reply, *, head_only: bool = False) -> None:
    body = reply.body
    length = body.nbytes if isinstance(body, memoryview) else len(body)
    send_message(sock, _head(reply, length), body, 0 if head_only else length)


class ServerOptions(TypedDict, total=False):
    """The keyword arguments of `HTTPDataServer`, for functions that pass them on."""

    registry: CodecRegistry | None
    auth_token: str | None
    ssl_context: ssl.SSLContext | None
    max_body_size: int
    request_timeout: float
    max_connections: int
    shutdown_timeout: float
    expose_tracebacks: bool
    idle_timeout: float


class _Connection:
    __slots__ = ("busy", "deadline", "sock", "thread", "timed_out")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.busy = False  # between the first byte of a request and the end of its reply
        self.deadline: float | None = None  # while a request is arriving
        self.timed_out = False  # set by the reaper, which then cuts the read side
        self.thread: threading.Thread | None = None


class HTTPDataServer:
    """A data server: one handler, served over HTTP/1.1 by a thread per connection.

    The handler is instantiated (its data loaded) and the socket bound and listening when the
    constructor returns, so ``.port`` and ``.url`` are known and connections queue until
    `serve_forever` or `start` accepts them.

    Example::

        with HTTPDataServer(MyDataHandler, port=0) as server:
            client = HTTPDataClient(url=server.url)

    Args:
        handler: An `HTTPDataHandler` subclass (instantiated once, with no arguments) or an
            instance.
        port: TCP port; ``0`` picks a free one.
        host: Address to bind. ``"127.0.0.1"`` serves this machine only; serving others needs
            an explicit ``"0.0.0.0"`` (or ``"::"`` for IPv6), an ``auth_token`` and, across an
            untrusted network, an ``ssl_context``.
        registry: Codecs to decode (an allow-list: anything else is 415) and encode with;
            the process-wide default when ``None``.
        auth_token: Require ``Authorization: Bearer <token>`` on every call (compared in
            constant time; ``HEAD`` liveness probes need none).
        ssl_context: Serve HTTPS with this server-side `ssl.SSLContext`.
        max_body_size: Largest request body, in bytes (413 beyond, before reading it).
        request_timeout: Seconds a request may take to arrive, from its first byte to the
            last, however slowly it trickles (408 after).
        max_connections: Most connections served at once, each by one thread (503 beyond).
        shutdown_timeout: Seconds `shutdown` waits for in-flight requests.
        expose_tracebacks: Put handler tracebacks in 500 replies. For debugging only: a
            traceback reveals code and data to every client.
        idle_timeout: Seconds a keep-alive connection may sit idle between calls before the
            server closes it (the client notices and reconnects; no error).
    """

    def __init__(
        self,
        handler: type[HTTPDataHandler] | HTTPDataHandler,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        registry: CodecRegistry | None = None,
        auth_token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        request_timeout: float = 30.0,
        max_connections: int = 256,
        shutdown_timeout: float = 5.0,
        expose_tracebacks: bool = False,
        idle_timeout: float = 60.0,
    ) -> None:
        if request_timeout <= 0 or idle_timeout <= 0 or shutdown_timeout < 0 or max_connections < 1:
            raise ValueError(
                "request_timeout and idle_timeout must be > 0, shutdown_timeout >= 0 and "
                "max_connections >= 1"
            )
        self.handler = instantiate_handler(handler)
        self._core = ServerCore(
            self.handler,
            registry if registry is not None else default_registry(),
            auth_token=auth_token,
            max_body_size=max_body_size,
            expose_tracebacks=expose_tracebacks,
        )
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.shutdown_timeout = shutdown_timeout
        self._ssl_context = ssl_context
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        """The port the server listens on (the one picked when created with ``port=0``)."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._closing = threading.Event()
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``"http://127.0.0.1:5001"``."""
        scheme = "https" if self._ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"{scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<HTTPDataServer {type(self.handler).__qualname__} at {self.url}>"

    # -- lifecycle -------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept and serve connections until `shutdown` is called (from another thread)."""
        if self._closing.is_set():
            raise RuntimeError("this server was shut down; create a new one")
        self._serving.set()
        reaper = threading.Thread(
            target=self._reap, daemon=True, name=f"dataserve-reaper-{self.port}"
        )
        reaper.start()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._listener, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._closing.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is self._listener:
                            self._accept()
        finally:
            self._closing.set()
            reaper.join()
            self._stopped.set()

    def _reap(self) -> None:
        """Cut the read side of connections whose request is past its deadline (slowloris)."""
        interval = min(1.0, self.request_timeout / 4)
        while not self._closing.wait(interval):
            now = time.monotonic()
            with self._lock:
                late = [c for c in self._connections if c.deadline is not None and now > c.deadline]
            for conn in late:
                conn.timed_out = True
                # The blocked reader wakes with what it has; the write side stays open for 408.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn.sock, socket.SHUT_RD)

    def start(self) -> Self:
        """Serve in a background thread; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("this server was already started")
        self._thread = threading.Thread(
            target=self.serve_forever, daemon=True, name=f"dataserve-accept-{self.port}"
        )
        self._thread.start()
        self._serving.wait()
        return self

    def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish, close every socket and thread.

        Idle keep-alive connections are closed at once. Requests in progress get up to
        ``shutdown_timeout`` seconds; then their connections are cut. New requests on open
        connections are answered 503. Safe to call more than once, from any thread.
        """
        with self._lock:
            already = self._closing.is_set()
            self._closing.set()
        if not already:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._serving.is_set() and (
            self._thread is None or self._thread is not threading.current_thread()
        ):
            self._stopped.wait()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._listener.close()
        deadline = time.monotonic() + self.shutdown_timeout
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            if not conn.busy:
                _cut(conn.sock)
        for conn in connections:
            if conn.thread is not None:
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            stragglers = list(self._connections)
        for conn in stragglers:
            _cut(conn.sock)
        for conn in stragglers:
            if conn.thread is not None:
                conn.thread.join(1.0)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- connections -----------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            full = len(self._connections) >= self.max_connections
            if not full:
                conn = _Connection(sock)
                self._connections.add(conn)
        if full:
            _refuse(
                sock,
                HTTPError(
                    503,
                    f"the server is at its limit of "
                    f"{self.max_connections} connections; try again later",
                    close=True,
                ),
            )
            return
        thread = threading.Thread(
            target=self._serve_connection, args=(conn,), daemon=True, name="dataserve-conn"
        )
        conn.thread = thread
        thread.start()

    def _serve_connection(self, conn: _Connection) -> None:
        sock = conn.sock
        try:
            if self._ssl_context is not None:
                sock.settimeout(self.request_timeout)
                sock = conn.sock = self._ssl_context.wrap_socket(sock, server_side=True)
            with cast(io.BufferedReader, sock.makefile("rb", _READ_BUFFER)) as rfile:
                while self._serve_one(conn, sock, rfile):
                    pass
        except (OSError, ValueError):
            pass  # the peer went away or the socket was cut by shutdown()
        except Exception:  # pragma: no cover - a bug in dataserve itself
            _log.exception("dataserve: unexpected error serving a connection")
        finally:
            with self._lock:
                self._connections.discard(conn)
            _close(sock)

    def _serve_one(self, conn: _Connection, sock: socket.socket, rfile: io.BufferedReader) -> bool:
        """Serve one request; return whether the connection stays open."""
        sock.settimeout(self.idle_timeout)
        try:
            if not rfile.peek(1):  # wait for the first byte of the next request
                return False
        except TimeoutError:
            return False  # idle keep-alive connection: close quietly
        # From the first byte on, the whole request must arrive by the deadline, however
        # slowly it trickles: the reaper thread cuts the read side once it has passed.
        conn.deadline = time.monotonic() + self.request_timeout
        conn.busy = True
        try:
            sock.settimeout(self.request_timeout)
            try:
                request = self._read_head(conn, rfile)
                if self._closing.is_set():
                    raise HTTPError(503, "the server is shutting down; try again later", close=True)
                length = request.content_length
                if request.expect_continue and length:
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = rfile.read(length) if length else b""
                if len(body) < length:
                    if conn.timed_out:
                        raise TimeoutError
                    return False  # the peer closed mid-body: nobody to answer
                conn.deadline = None
            except HTTPError as error:
                _send(sock, error_reply(error))
                return not error.close
            except TimeoutError:
                _send(sock, error_reply(_TIMEOUT_ERROR))
                return False
            reply = self._core.handle(request, body)
            if self._closing.is_set():
                reply.close = True
            _send(sock, reply, head_only=request.codec is None)
            return not reply.close
        finally:
            conn.busy = False
            conn.deadline = None

    def _readline(self, conn: _Connection, rfile: io.BufferedReader, limit: int) -> bytes:
        line = rfile.readline(limit)
        if not line.endswith(b"\r\n") and conn.timed_out:
            raise TimeoutError
        return line

    def _read_head(self, conn: _Connection, rfile: io.BufferedReader) -> Request:
        line = self._readline(conn, rfile, MAX_REQUEST_LINE + 1)
        for _ in range(4):  # RFC 9112 2.2: ignore empty lines before a request line
            if line != b"\r\n":
                break
            line = self._readline(conn, rfile, MAX_REQUEST_LINE + 1)
        if not line.endswith(b"\r\n"):
            if len(line) > MAX_REQUEST_LINE:
                raise HTTPError(
                    414, f"request line longer than {MAX_REQUEST_LINE} bytes", close=True
                )
            if not line:
                raise OSError("connection closed before a request line")
            raise HTTPError(400, "request line not terminated by CRLF", close=True)
        header_lines: list[bytes] = []
        total = 0
        while True:
            header = self._readline(conn, rfile, MAX_HEADER_BYTES + 1)
            if header == b"\r\n":
                break
            total += len(header)
            if total > MAX_HEADER_BYTES or len(header_lines) >= MAX_HEADERS:
                raise HTTPError(
                    431,
                    f"request headers over {MAX_HEADERS} fields or {MAX_HEADER_BYTES} bytes",
                    close=True,
                )
            if not header.endswith(b"\r\n"):
                if not header:
                    raise OSError("connection closed in the request head")
                raise HTTPError(400, "header line not terminated by CRLF", close=True)
            header_lines.append(header[:-2])
        head = parse_request_head(line[:-2], header_lines)
        return self._core.check_head(head)


_TIMEOUT_ERROR: Final = HTTPError(
    408, "the request took longer than the server's request_timeout to arrive", close=True
)


def _refuse(sock: socket.socket, error: HTTPError) -> None:
    """Answer a connection we will not serve, without blocking the accept loop."""
    try:
        sock.settimeout(0.5)
        _send(sock, error_reply(error))
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    _close(sock)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def run_http_server(
    port: int,
    data_handler: type[HTTPDataHandler] | HTTPDataHandler,
    host: str = "127.0.0.1",
    **options: Unpack[ServerOptions],
) -> None:
    """Serve a handler until Ctrl-C or SIGTERM, then shut down cleanly and return.

    Prints where it serves. Binds ``127.0.0.1`` unless ``host`` says otherwise (dataserve 0.1
    bound every interface).

    Args:
        port: TCP port (``0`` picks a free one, printed).
        data_handler: An `HTTPDataHandler` subclass (instantiated once) or an instance.
        host: Address to bind.
        **options: The keyword arguments of `HTTPDataServer` (``auth_token``,
            ``max_body_size``, ...), type-checked.
    """
    server = HTTPDataServer(data_handler, port, host, **options)
    stop = threading.Event()
    previous: Callable[[int, FrameType | None], Any] | int | None = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        server.start()
        print(
            f"dataserve: serving {type(server.handler).__qualname__} at {server.url} "
            "(Ctrl-C to stop)",
            flush=True,
        )
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        server.shutdown()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        print("dataserve: stopped", file=sys.stdout, flush=True)
