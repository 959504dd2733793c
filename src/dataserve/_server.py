"""HTTPDataServer and run_http_server: the threaded stdlib-socket backend.

Same model as ``http.server.ThreadingHTTPServer`` (one thread per connection, blocking
sockets with a timeout) with a leaner request path. This module is a shell: it moves bytes
between a socket and the wire's `ServerConnection` (which splits lines, applies the limits,
frames bodies and replies, and keeps what follows a message), hands heads and bodies to the
`ServerCore`, and owns only what needs a socket, a thread or a clock: accepting, TLS,
deadlines (408, idle and request timeouts, by the reaper thread), evictions at
``max_connections``, lingering closes, and sending (a small reply in one write, a file with
``sendfile``). A whole small request that arrives in one read is one receive, one parse, one
handler call and one send.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import logging
import os
import select
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, ClassVar, Final, Self, TypedDict, Unpack, cast

from . import _unix
from ._handler import HTTPDataHandler, instantiate_handler
from ._io import ONE_WRITE_LIMIT, send_message
from ._protocol import (
    DEFAULT_MAX_BODY_SIZE,
    Reply,
    Request,
    ServerCore,
    _resource_of,
    error_reply,
)
from ._stream import (
    DRAIN_LIMIT,
    BodyCutShort,
    BodyRejected,
    BodyTimeout,
    BodyTooLarge,
    FileBody,
    FileChunks,
    FileEndedEarly,
    Read1Source,
    RequestBody,
    kernel_offset,
    read_whole,
    send_file_region,
)
from ._wire import (
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    HTTPError,
    RequestHead,
    ServerConnection,
    date_line,
)
from .codecs._registry import CodecRegistry, default_registry

__all__ = [
    "HTTPDataServer",
    "ImportGuard",
    "ServerStartedOnImport",
    "check_listen_port",
    "listen_error",
    "run_http_server",
]

_log: Final = logging.getLogger("dataserve")
ACCESS_LOGGER: Final = "dataserve.access"
"""The logger an ``access_log=True`` server writes one INFO line per request to."""

LISTEN_BACKLOG: Final = 1024
"""Listen queue length: a burst of new connections waits instead of costing a 1 s SYN retry."""
_READ_BUFFER: Final = 65536


def _send(sock: socket.socket, wire: ServerConnection, reply: Reply) -> int:
    """Send a reply: its head from the wire (framing, ``Connection``, no body for HEAD),
    then its body; return the body bytes sent (for the access log)."""
    body = reply.body
    if body.__class__ is FileBody:
        return _send_file(sock, wire, reply, body)
    length = _body_length(body)
    head = wire.reply_head(
        reply.status, reply.headers, length, close=reply.close, date=date_line(time.time())
    )
    sent = length if wire.reply_has_body else 0
    send_message(sock, head, body, sent)
    return sent


def _send_file(sock: socket.socket, wire: ServerConnection, reply: Reply, body: FileBody) -> int:
    """Stream a file a handler returned, then close it (also when the client went away).

    With a known size, it goes out with its ``Content-Length``: from the kernel
    (``sendfile``, zero-copy) for a regular file on a plain TCP socket, otherwise in chunks
    read into one reused buffer (TLS, ``BytesIO``, ...). A small one goes out in one write with
    the head. A file of unknown size (a pipe) goes out framed as the wire says: chunked, or
    delimited by closing the connection when the reply closes it anyway (so an HTTP/1.0 peer
    can read it).
    """
    try:
        size = body.size
        head = wire.reply_head(
            reply.status, reply.headers, size, close=reply.close, date=date_line(time.time())
        )
        if not wire.reply_has_body:
            sock.sendall(head)
            return 0
        if size is None:
            sock.sendall(head)
            chunks = FileChunks(body.file, None)
            while chunk := chunks.next():
                before, after = wire.piece_framing(len(chunk))
                if before:
                    sock.sendall(before)
                sock.sendall(chunk)
                if after:
                    sock.sendall(after)
            if end := wire.end_of_body():
                sock.sendall(end)
            return chunks.done
        if size <= ONE_WRITE_LIMIT:
            data = read_whole(body.file, size)
            send_message(sock, head, data, size)
        else:
            offset = kernel_offset(body.file) if sock.__class__ is socket.socket else None
            sock.sendall(head)
            if offset is not None:
                send_file_region(sock, body.file, offset, size)
            else:
                chunks = FileChunks(body.file, size)
                while chunk := chunks.next():
                    sock.sendall(chunk)
        return size
    except (FileEndedEarly, TypeError) as exc:
        reason = (
            f"it ended after {exc.done} of its {exc.size} bytes (it shrank while being sent)"
            if isinstance(exc, FileEndedEarly)
            else str(exc)
        )
        _log.error(
            "dataserve: the file returned for %r could not be sent whole: %s; "
            "the connection was closed",
            body.resource,
            reason,
        )
        raise ConnectionAbortedError("the reply's file could not be sent") from None
    finally:
        body.close()


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
    unix_socket: str | os.PathLike[str] | None
    unix_socket_mode: int
    access_log: bool


class _Connection:
    __slots__ = (
        "busy",
        "deadline",
        "evicted",
        "idle_cut",
        "idle_deadline",
        "idle_since",
        "linger",
        "peer",
        "sock",
        "successor",
        "thread",
        "timed_out",
    )

    def __init__(self, sock: socket.socket, idle_since: int, peer: object = None) -> None:
        self.sock = sock
        self.peer = peer  # the client's address, as accept() gave it
        self.busy = False  # between the first byte of a request and the end of its reply
        self.idle_since = idle_since  # a tick: the smallest has waited longest for a request
        self.evicted = False  # closed to make room (under the server's lock): serve no more
        self.successor: _Connection | None = None  # served next by this one's thread
        self.deadline: float | None = None  # while a request is arriving
        self.timed_out = False  # set by the reaper, which then cuts the read side
        self.linger = False  # answered before its body was read: drain before closing
        self.idle_deadline = float("inf")  # when it has waited too long for a request
        self.idle_cut = False  # set by the reaper past idle_deadline, which cuts the read side
        self.thread: threading.Thread | None = None


LINGER_SECONDS: Final = 2.0
"""How long a connection answered before its body was read is drained before it is closed."""
LINGER_MAX_SOCKETS: Final = 256


class _Lingerer:
    """Drains, then closes, connections answered with an error before their body was read.

    Closing a socket with unread input makes TCP send a reset, which can destroy the reply
    before the peer reads it (a client still sending a large body would see a broken
    connection instead of its 413). So the socket's write side is shut (the peer sees the
    reply and then EOF) and its input is read and discarded until the peer closes, for at
    most `LINGER_SECONDS`, by one thread for all such sockets (as Apache's lingering close).
    """

    def __init__(self, port: int) -> None:
        self._name = f"dataserve-linger-{port}"
        self._lock = threading.Lock()
        self._incoming: list[socket.socket] = []
        self._count = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop_at: float | None = None  # set by stop(): drain until then at the latest
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name=self._name)
        self._thread.start()

    def add(self, sock: socket.socket) -> None:
        """Take over a socket: drain it for a while, then close it."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)  # the base method: keeps TLS state
        with self._lock:
            take = not self._closed and self._count < LINGER_MAX_SOCKETS
            if take:
                self._incoming.append(sock)
                self._count += 1
        if not take:
            _close(sock)
            return
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def stop(self, timeout: float) -> None:
        """Drain the sockets still lingering for at most ``timeout`` seconds, close them,
        and join the thread."""
        with self._lock:
            self._stop_at = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            self._closed = True
            leftovers, self._incoming = self._incoming, []
        for sock in leftovers:
            _close(sock)
        _close(self._wake_r)
        _close(self._wake_w)

    def _run(self) -> None:
        scratch = bytearray(65536)
        deadlines: dict[socket.socket, float] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                with self._lock:
                    stop_at = self._stop_at
                    incoming, self._incoming = self._incoming, []
                now = time.monotonic()
                for sock in incoming:
                    sock.setblocking(False)
                    deadlines[sock] = now + LINGER_SECONDS
                    selector.register(sock, selectors.EVENT_READ)
                if stop_at is not None and (now >= stop_at or not deadlines):
                    break
                wait = min(deadlines.values(), default=stop_at)
                if stop_at is not None and wait is not None:
                    wait = min(wait, stop_at)
                timeout = None if wait is None else max(0.0, wait - now)
                done: set[socket.socket] = set()
                for key, _ in selector.select(timeout):
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                        continue
                    sock = cast(socket.socket, key.fileobj)
                    try:
                        if not sock.recv_into(scratch):
                            done.add(sock)  # the peer closed: its input is all read
                    except (BlockingIOError, ssl.SSLWantReadError):
                        pass
                    except OSError:
                        done.add(sock)
                now = time.monotonic()
                done.update(sock for sock, deadline in deadlines.items() if deadline <= now)
                for sock in done:
                    selector.unregister(sock)
                    del deadlines[sock]
                    _close(sock)
                with self._lock:
                    self._count -= len(done)
            for sock in deadlines:
                _close(sock)


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
        max_body_size: Largest request body, in bytes (413 beyond: before reading a body
            with a ``Content-Length``, on the chunk that passes it for a chunked one).
        request_timeout: Seconds a request may take to arrive, from its first byte to the
            last, however slowly it trickles (408 after). For a body a ``BinaryIO`` route
            reads as a stream, it bounds each stall instead (no byte for that long), not the
            whole transfer.
        max_connections: Most connections open at once, each served by one thread. A new
            connection beyond it closes the connection that has waited longest for a request
            (idle between requests, or never sent a byte; its client reconnects on its next
            call without an error) and takes its place; only when every connection is inside
            a request is the new one answered 503.
        shutdown_timeout: Seconds `shutdown` waits for in-flight requests.
        expose_tracebacks: Put handler tracebacks in 500 replies. For debugging only: a
            traceback reveals code and data to every client.
        idle_timeout: Seconds a keep-alive connection may sit idle between calls before the
            server closes it (the client notices and reconnects; no error).
        unix_socket: Listen on a Unix socket file at this path instead of TCP (then leave
            ``port`` and ``host`` out). A stale file there (nothing listening) is replaced;
            a live one, or a path that is not a socket, raises `OSError` before the handler
            is built. The file is removed at `shutdown`. ``.url`` is then its
            ``http+unix://`` URL, and ``.port`` is ``0``.
        unix_socket_mode: Permission bits of the socket file. ``0o600`` (the default) lets
            only this user connect; ``0o660`` adds the file's group.
        access_log: Log one line per reply to the ``dataserve.access`` logger, at INFO:
            client address, method, resource, status, body bytes in and out, and duration
            in ms (also as the record's attributes ``client``, ``method``, ``resource``,
            ``status``, ``bytes_in``, ``bytes_out``, ``duration_ms``). Never a header, a
            token, a query string or a payload. Off by default, and then free. The lines
            show once logging is configured (e.g. ``logging.basicConfig(level=logging.INFO)``;
            ``dataserve serve --access-log`` writes them to stderr). `make_app` has no such
            option: under gunicorn, use gunicorn's own ``--access-logfile``.

    Raises:
        OSError: The port or the socket path is in use (or not usable).
        ValueError: Conflicting or out-of-range options, or a socket path too long.
        ServerStartedOnImport: Created while ``dataserve serve`` imports the module that
            creates it (see `ImportGuard`); nothing was bound.
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
        unix_socket: str | os.PathLike[str] | None = None,
        unix_socket_mode: int = _unix.DEFAULT_MODE,
        access_log: bool = False,
    ) -> None:
        if ImportGuard.active:  # dataserve serve is importing the module that creates us
            where = f"unix_socket={unix_socket!r}" if unix_socket is not None else f"port={port!r}"
            raise ServerStartedOnImport(
                ImportGuard.active[-1], port, f"HTTPDataServer(..., {where})"
            )
        if request_timeout <= 0 or idle_timeout <= 0 or shutdown_timeout < 0 or max_connections < 1:
            raise ValueError(
                "request_timeout and idle_timeout must be > 0, shutdown_timeout >= 0 and "
                "max_connections >= 1"
            )
        self.unix_socket: str | None = None
        """The socket file's absolute path when serving on a Unix socket, else ``None``."""
        if unix_socket is not None:
            if port or host != "127.0.0.1" or ssl_context is not None:
                raise ValueError(
                    "unix_socket= replaces port, host and ssl_context (the socket file's mode "
                    "guards it); give either unix_socket or a port and host"
                )
            if not 0 <= unix_socket_mode <= 0o777:
                raise ValueError(
                    f"unix_socket_mode must be in 0o000..0o777, got {unix_socket_mode:#o}"
                )
            path = _unix.socket_path(os.path.abspath(_unix.socket_path(unix_socket)))
            _unix.claim_socket_path(path)  # a live server there is an error before the handler
            self.unix_socket = path
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
        self._access_log = logging.getLogger(ACCESS_LOGGER) if access_log else None
        self._ssl_context = ssl_context
        self._socket_identity: tuple[int, int] | None = None  # the socket file we created
        if self.unix_socket is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            check_listen_port(port)
            try:
                self._listener = socket.create_server(
                    (host, port), family=family, backlog=LISTEN_BACKLOG
                )
            except OSError as exc:
                raise listen_error(exc, host, port) from exc
            port = self._listener.getsockname()[1]
        else:
            self._listener, self._socket_identity = _unix.listen_unix(
                self.unix_socket, unix_socket_mode, LISTEN_BACKLOG
            )
        self.host = host
        self.port: int = port
        """The port the server listens on (the one picked when created with ``port=0``);
        ``0`` on a Unix socket."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._ticks = itertools.count()  # orders connections by when they began to wait
        self._closing = threading.Event()
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None  # the one in serve_forever
        self._stoppers: set[threading.Thread] = set()  # threads that called shutdown()
        self._finished = False
        self._lingerer = _Lingerer(self.port)

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``"http://127.0.0.1:5001"``, or on a Unix socket
        ``"http+unix://%2Frun%2Fapp%2Fdata.sock"`` (the path percent-encoded)."""
        if self.unix_socket is not None:
            return _unix.unix_url(self.unix_socket)
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
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("this server was shut down; create a new one")
            if self._loop_thread is not None:
                raise RuntimeError("this server is already serving")
            self._loop_thread = threading.current_thread()
        reaper = threading.Thread(
            target=self._reap, daemon=True, name=f"dataserve-reaper-{self.port}"
        )
        try:
            reaper.start()
            self._lingerer.start()
            self._serving.set()
            with selectors.DefaultSelector() as selector:
                selector.register(self._listener, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._closing.is_set():
                    for key, _ in selector.select():
                        if key.fileobj is self._listener:
                            self._accept()
        finally:
            self._closing.set()
            self._serving.set()  # a start() waiting for the loop must not wait forever
            if reaper.ident is not None:
                reaper.join()
            self._finish()
            self._stopped.set()

    def _reap(self) -> None:
        """Cut the read side of connections whose request is past its deadline (slowloris),
        and of those idle past ``idle_timeout`` (their threads wake and close them)."""
        interval = min(1.0, self.request_timeout / 4, self.idle_timeout / 4)
        while not self._closing.wait(interval):
            now = time.monotonic()
            with self._lock:  # _serve_one clears a deadline under it: no cut after that
                late = [c for c in self._connections if c.deadline is not None and now > c.deadline]
                for conn in late:
                    conn.timed_out = True
                idle = [c for c in self._connections if not c.busy and now > c.idle_deadline]
                for conn in idle:
                    conn.idle_cut = True
                cut = [conn.sock for conn in late + idle]
            for sock in cut:
                # The blocked reader wakes with what it has; the write side stays open for 408.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RD)

    def start(self) -> Self:
        """Serve in a background thread; returns once the server accepts connections."""
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("this server was shut down; create a new one")
            if self._thread is not None or self._loop_thread is not None:
                raise RuntimeError("this server was already started")
            self._thread = threading.Thread(
                target=self._serve_in_background,
                daemon=True,
                name=f"dataserve-accept-{self.port}",
            )
        self._thread.start()
        while not self._serving.wait(0.05):
            if not self._thread.is_alive():  # shut down before it could serve
                raise RuntimeError("this server was shut down; create a new one")
        return self

    def _serve_in_background(self) -> None:
        try:
            self.serve_forever()
        except RuntimeError:
            if not self._closing.is_set():
                raise
            # shut down before the loop could begin: start() reports it to its caller

    def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish, close every socket and thread.

        Idle keep-alive connections are closed at once. Requests in progress get up to
        ``shutdown_timeout`` seconds in all; then their connections are cut. New requests on
        open connections are answered 503. Returns within about ``shutdown_timeout`` plus one
        second even if a client or a handler stalls. Safe to call more than once, from any
        thread: from a handler (its own request is then left to finish on its own), or from a
        signal handler that interrupts `serve_forever` (which then finishes the shutdown
        before it returns).
        """
        current = threading.current_thread()
        if current is self._loop_thread:
            # A signal handler interrupting serve_forever, perhaps while this very thread holds
            # the server's lock: only ask the loop to stop; it finishes on its way out.
            self._closing.set()
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            return
        with self._lock:
            self._closing.set()
            loop = self._loop_thread
            self._stoppers.add(current)  # their own requests are left to finish
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if loop is None:
            self._finish()  # never served, and serve_forever can no longer begin
        else:
            self._stopped.wait()
            if self._thread is not None and self._thread is not current:
                self._thread.join()

    def _finish(self) -> None:
        """Close the listener, then the connections (in-flight ones by the deadline), then
        the lingering sockets: the second half of a shutdown, run once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            # No connection turns busy from now on (see _serve_one): the idle ones are cut.
            connections = list(self._connections)
            idle = [conn for conn in connections if not conn.busy]
            exempt = frozenset(self._stoppers)
        self._close_listener()
        for conn in idle:
            # The read side only: a thread that has just seen a request begin can still
            # answer it 503; one waiting for a request wakes and closes.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn.sock, socket.SHUT_RD)
        deadline = time.monotonic() + self.shutdown_timeout
        _join_all(connections, deadline, exempt)
        with self._lock:
            stragglers = [conn for conn in self._connections if conn.thread not in exempt]
        for conn in stragglers:
            _cut(conn.sock)
        final = max(deadline, time.monotonic()) + 1.0
        _join_all(stragglers, final, exempt)
        self._lingerer.stop(min(LINGER_SECONDS, max(0.0, final - time.monotonic())))

    def _close_listener(self) -> None:
        for sock in (self._listener, self._wake_r, self._wake_w):
            _close(sock)
        if self.unix_socket is not None and self._socket_identity is not None:
            _unix.remove_socket_file(self.unix_socket, self._socket_identity)

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
            sock, peer = self._listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                _log.error("dataserve: cannot accept a connection: %s", exc)
                time.sleep(0.1)  # out of descriptors: do not spin while the backlog waits
            return
        victim = None
        with self._lock:
            conn = _Connection(sock, next(self._ticks), peer)
            conn.idle_deadline = time.monotonic() + self.idle_timeout
            full = len(self._connections) >= self.max_connections
            if full:
                victim = self._longest_idle()
            if victim is not None:
                # Make room: the victim's thread closes it, then serves the new connection,
                # so the server never runs more than max_connections connection threads.
                victim.evicted = True
                victim.successor = conn
                conn.thread = victim.thread
                self._connections.discard(victim)
                victim_sock = victim.sock  # read under the lock: TLS swaps it (_serve_socket)
            if not full or victim is not None:
                self._connections.add(conn)
        if victim is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Both sides at once: the client sees the close (FIN) before its next call and
            # reconnects; the victim's thread, waiting for a request, wakes and closes it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(victim_sock, socket.SHUT_RDWR)
            return
        if full:
            self._refuse(conn, _AT_LIMIT_FMT.format(self.max_connections))
            return
        thread = threading.Thread(
            target=self._serve_connection, args=(conn,), daemon=True, name="dataserve-conn"
        )
        conn.thread = thread
        try:
            if self.unix_socket is None:  # AF_UNIX has no Nagle (and refuses the option)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread.start()
        except (OSError, RuntimeError) as exc:  # a reset peer, or no thread to be had
            with self._lock:
                self._connections.discard(conn)
            conn.thread = None
            _log.error("dataserve: cannot serve a new connection: %s", exc)
            self._refuse(conn, "the server cannot serve another connection now; try again later")

    def _longest_idle(self) -> _Connection | None:
        """The connection that has waited longest for a request (between requests, or never
        sent a byte), or ``None`` when every connection is inside a request. Under the lock."""
        waiting = {conn.sock.fileno(): conn for conn in self._connections if not conn.busy}
        waiting.pop(-1, None)  # a TLS socket being swapped (_serve_socket): not this one
        for fd in _readable(list(waiting)):
            del waiting[fd]  # input waits: a request (or a close) begins, its thread wakes
        return min(waiting.values(), key=_idle_since, default=None)

    def _refuse(self, conn: _Connection, detail: str) -> None:
        """Answer 503 to a connection we will not serve, without blocking the accept loop."""
        started = time.perf_counter()
        sock = conn.sock
        reply = error_reply(HTTPError(503, detail, close=True))
        try:
            sock.settimeout(0.5)
            _send(sock, ServerConnection(0), reply)
        except OSError:
            _close(sock)
            return
        self._lingerer.add(sock)
        if self._access_log is not None:
            self._log_access(conn, None, None, 503, 0, len(reply.body), started)

    def _log_access(
        self,
        conn: _Connection,
        wire: ServerConnection | None,
        request: Request | None,
        status: int,
        bytes_in: int,
        bytes_out: int,
        started: float,
    ) -> None:
        """One line for one reply: the method and resource from what the wire parsed
        (`ServerConnection.request_start`), ``-`` when no request line was made out."""
        duration_ms = (time.perf_counter() - started) * 1000.0
        method, resource = "-", None
        start = None if wire is None else wire.request_start
        if start is not None:
            method = start[0]
            if request is not None and request.codec is not None:
                resource = request.resource  # a PUT the core accepted: already decoded
            else:
                resource = _path(start[1])
        peer = conn.peer
        if isinstance(peer, tuple):
            client = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        else:
            client = str(peer or "-")  # e.g. a Unix socket's (unnamed) peer
        cast(logging.Logger, self._access_log).info(
            "%s %s %s %d in=%d out=%d %.2fms",
            client,
            method,
            "-" if resource is None else repr(resource),  # repr: a CR or LF stays escaped
            status,
            bytes_in,
            bytes_out,
            duration_ms,
            extra={
                "client": client,
                "method": method,
                "resource": resource,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": duration_ms,
            },
        )

    def _serve_connection(self, conn: _Connection) -> None:
        current: _Connection | None = conn
        while current is not None:
            self._serve_socket(current)
            with self._lock:  # after this, _accept can no longer hand this thread a successor
                self._connections.discard(current)
                successor = current.successor
            if current.linger:
                self._lingerer.add(current.sock)
            else:
                _close(current.sock)
            current = successor

    def _serve_socket(self, conn: _Connection) -> None:
        sock = conn.sock
        try:
            # One timeout for the connection's life: it bounds each wait for bytes or for
            # the peer to take them. The idle limit between requests is the reaper's.
            sock.settimeout(self.request_timeout)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                with self._lock:  # an eviction cuts conn.sock: the old one is detached now
                    conn.sock = sock
                    evicted = conn.evicted
                if evicted:
                    return
                sock.do_handshake()
            wire = ServerConnection(self._core.max_body_size)
            while self._serve_one(conn, sock, wire):
                wire.start_next_cycle()
        except (OSError, ValueError):
            pass  # the peer went away or the socket was cut by shutdown()
        except Exception:  # pragma: no cover - a bug in dataserve itself
            _log.exception("dataserve: unexpected error serving a connection")

    def _serve_one(self, conn: _Connection, sock: socket.socket, wire: ServerConnection) -> bool:
        """Serve one request; return whether the connection stays open."""
        if not wire.has_trailing_data:  # else a pipelined request is already here
            while True:  # wait for the first byte of the next request
                try:
                    data = sock.recv(_READ_BUFFER)
                    break
                except TimeoutError:
                    continue  # idle: the reaper cuts the connection at its idle_timeout
            if not data:
                return False  # closed by the peer, or cut (idle, evicted, shutting down)
            wire.receive_data(data)
        # From the first byte on, the whole request must arrive by the deadline, however
        # slowly it trickles: the reaper thread cuts the read side once it has passed.
        with self._lock:  # shutdown() and evictions take connections that are not busy
            if conn.evicted or conn.idle_cut:
                return False  # closed to make room (or idle) an instant ago: the peer reconnects
            closing = self._closing.is_set()
            conn.busy = True
        access = self._access_log  # None unless access_log=True
        started = 0.0 if access is None else time.perf_counter()
        conn.deadline = time.monotonic() + self.request_timeout
        request: Request | None = None
        try:
            try:
                if not closing:
                    request = self._read_head(conn, sock, wire)
                if request is None or self._closing.is_set():
                    raise HTTPError(503, "the server is shutting down; try again later", close=True)
                if head := wire.continue_response():
                    sock.sendall(head)
                if request.stream:  # a BinaryIO route reads the body itself, as it arrives
                    return self._serve_streamed(conn, sock, wire, request, started)
                body = _read_body(sock, wire)
                if body is None:
                    if conn.timed_out:
                        raise TimeoutError
                    # The peer closed mid-body; it may still read (a half-close): answer.
                    raise wire.cut_short_error()
                with self._lock:  # the reaper marks timed_out under it: final from here on
                    conn.deadline = None
            except (HTTPError, TimeoutError) as exc:
                error = exc if isinstance(exc, HTTPError) else _TIMEOUT_ERROR
                reply = error_reply(error)
                out = _send(sock, wire, reply)
                if access is not None:
                    self._log_access(conn, wire, request, error.status, 0, out, started)
                # The body (if any) was not read: drain it before closing, or the peer's TCP
                # gets a reset that can destroy this reply before the peer reads it.
                conn.linger = wire.must_close and error is not _TIMEOUT_ERROR
                return not wire.must_close
            reply = self._core.handle(request, body)
            if self._closing.is_set() or conn.timed_out:
                reply.close = True  # timed_out: the reaper cut the read side just too late
            out = _send(sock, wire, reply)
            if access is not None:
                self._log_access(conn, wire, request, reply.status, wire.received, out, started)
            # A HEAD that closes may have sent a body nobody read: drain it, as for errors.
            conn.linger = wire.must_close and request.codec is None
            return not wire.must_close
        finally:
            conn.idle_since = next(self._ticks)  # before busy is cleared: never a stale tick
            conn.idle_deadline = time.monotonic() + self.idle_timeout
            conn.busy = False
            conn.deadline = None

    def _serve_streamed(
        self,
        conn: _Connection,
        sock: socket.socket,
        wire: ServerConnection,
        request: Request,
        started: float,
    ) -> bool:
        """Serve a request whose route reads its body as a stream; return whether the
        connection stays open.

        From here on ``request_timeout`` bounds each wait for body bytes (a stall), not the
        whole body: a large upload that keeps moving is never cut. What the route leaves
        unread is drained (up to `DRAIN_LIMIT`) to keep the connection; beyond that, or after
        a failed read, the reply closes it (and lingers, so the client sees the reply).
        """
        with self._lock:  # the reaper marks timed_out under it
            conn.deadline = None
            timed_out = conn.timed_out
        if timed_out:
            _send(sock, wire, error_reply(_TIMEOUT_ERROR))
            return False
        source = _WireBody(conn, sock, wire, self.request_timeout)
        stream = RequestBody(source)  # bounded by the wire (max_body_size), not by itself
        reply = self._core.handle(request, stream)  # a body cut short: 400 (a half-close reads it)
        if reply.close or stream.error is not None or not stream.drain(DRAIN_LIMIT):
            reply.close = True
        if self._closing.is_set() or conn.timed_out:
            reply.close = True
        try:
            out = _send(sock, wire, reply)
        except TimeoutError:
            return False  # the client stopped reading the reply
        if self._access_log is not None:
            self._log_access(conn, wire, request, reply.status, wire.received, out, started)
        # Closing with body bytes still coming: drain them, or the client's TCP gets a reset
        # that can destroy this reply before it is read. (A timed-out read side is cut.)
        conn.linger = wire.must_close and not stream.at_end and not conn.timed_out
        return not wire.must_close

    def _read_head(self, conn: _Connection, sock: socket.socket, wire: ServerConnection) -> Request:
        """Move bytes into the wire until it has a request head; check it in the core."""
        while True:
            event = wire.next_event()
            if isinstance(event, RequestHead):
                return self._core.check_head(event)
            if event is NEED_DATA:
                wire.receive_data(sock.recv(_READ_BUFFER))
                continue
            if conn.timed_out:  # the reaper cut the read side at the deadline
                raise TimeoutError
            raise OSError("connection closed in the request head")


def _read_body(sock: socket.socket, wire: ServerConnection) -> bytes | None:
    """Move a request body's bytes from the socket through the wire; the body, or ``None``
    if the stream ended before it (the peer closed, or the reaper cut the read side).

    A large ``Content-Length`` body is read into one buffer: what the wire already holds is
    copied in, the rest goes straight from the socket into place (no second copy).

    Raises:
        HTTPError: From the wire: the body breaks a rule or a limit.
        TimeoutError: No byte arrived for the socket's timeout.
    """
    pieces: list[bytes] = []
    while True:
        event = wire.next_event()
        if isinstance(event, Data):
            pieces.append(event.data)
        elif event is END_OF_MESSAGE:
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        elif event is NEED_DATA:
            direct = wire.direct_read_pending
            if direct >= _DIRECT_READ:
                body = _read_into_one(sock, pieces, direct)
                if body is None:
                    return None
                wire.data_read_directly(direct)
                pieces = [body]
            else:
                pending = wire.data_pending
                wire.receive_data(sock.recv(max(_READ_BUFFER, min(pending, _BODY_READ))))
        else:
            return None  # ConnectionClosed: cut short


_DIRECT_READ: Final = 256 * 1024  # bodies still missing this much are read into one buffer
_BODY_READ: Final = 1 << 20  # the most asked of one receive inside a body


class _PrefixedSocket(io.RawIOBase):
    """What a body buffer is filled from: the pieces already received, then exactly
    ``count`` more bytes of the socket (never past the body's end)."""

    def __init__(self, sock: socket.socket, pieces: list[bytes], count: int) -> None:
        self._sock = sock
        self._pieces = pieces
        self._offset = 0
        self._count = count

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pieces:
            piece = self._pieces[0]
            take = min(len(view), len(piece) - self._offset)
            view[:take] = piece[self._offset : self._offset + take]
            self._offset += take
            if self._offset == len(piece):
                self._pieces.pop(0)
                self._offset = 0
            return take
        wanted = min(len(view), self._count)
        if wanted <= 0:
            return 0
        count = self._sock.recv_into(view, wanted)
        self._count -= count
        return count


def _read_into_one(sock: socket.socket, pieces: list[bytes], count: int) -> bytes | None:
    """The pieces and the next ``count`` bytes of the socket as one ``bytes`` object, filled
    in place (by the C reader); ``None`` if the socket ended first."""
    total = sum(map(len, pieces)) + count
    with io.BufferedReader(_PrefixedSocket(sock, list(pieces), count), _READ_BUFFER) as reader:
        data = reader.read(total)
    return data if len(data) == total else None


class _WireBody(Read1Source):
    """A streamed request body on the threaded server: the connection's bytes moved through
    the wire (which owns the framing and ``max_body_size``); bytes after the body stay in
    the wire for the next request.

    Each wait for bytes may last ``request_timeout`` (the socket's timeout, per receive; the
    reaper's whole-request deadline is not set), so the whole body may take as long as it
    needs as long as it keeps moving. A read returns at least one body byte unless the body
    has ended; it may wait more than once to get through the framing lines before them.
    """

    __slots__ = ("_conn", "_ended", "_ready", "_sock", "_start", "_timeout", "_wire")

    def __init__(
        self, conn: _Connection, sock: socket.socket, wire: ServerConnection, timeout: float
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._wire = wire
        self._timeout = timeout
        self._ready = b""  # body bytes not yet delivered, from _start on
        self._start = 0
        self._ended = False

    def exhausted(self) -> bool:
        return self._start >= len(self._ready) and (self._ended or self._wire.body_complete)

    def read1(self, size: int, /) -> bytes:
        if self._start >= len(self._ready):
            if self._ended:
                return b""
            self._fill(size)
        start = self._start
        piece = self._ready if not start and len(self._ready) <= size else None
        if piece is None:
            piece = self._ready[start : start + size]
        self._start = start + len(piece)
        return piece

    def _fill(self, size: int) -> None:
        wire = self._wire
        self._ready, self._start = b"", 0
        try:
            while True:
                event = wire.next_event()
                if isinstance(event, Data):
                    self._ready = event.data
                    return
                if event is END_OF_MESSAGE:
                    self._ended = True
                    return
                if event is NEED_DATA:
                    wanted = max(_READ_BUFFER, min(size, wire.data_pending, _BODY_READ))
                    wire.receive_data(self._sock.recv(wanted))
                    continue
                raise self._cut_short()
        except TimeoutError:
            raise BodyTimeout(
                f"no byte of the request body arrived for {self._timeout} s "
                f"({wire.received} body bytes had)"
            ) from None
        except HTTPError as error:  # the wire's: a broken rule or the size limit
            if error.status == 413:
                raise BodyTooLarge(error.detail) from None
            raise BodyRejected(error.status, error.detail) from None

    def _cut_short(self) -> OSError:
        if self._conn.timed_out:  # the reaper cut the read side
            return BodyTimeout(f"no byte of the request body arrived for {self._timeout} s")
        return BodyCutShort(self._wire.cut_short_error().detail)


_TIMEOUT_ERROR: Final = HTTPError(
    408, "the request took longer than the server's request_timeout to arrive", close=True
)


_AT_LIMIT_FMT: Final = "the server is at its limit of {} connections; try again later"


def _join_all(
    connections: list[_Connection], deadline: float, exempt: frozenset[threading.Thread]
) -> None:
    """Join the threads of these connections by one deadline (not those of ``exempt``)."""
    for conn in connections:
        thread = conn.thread
        if thread is not None and thread not in exempt and thread.ident is not None:
            thread.join(max(0.0, deadline - time.monotonic()))


def _body_length(body: Any) -> int:
    return body.nbytes if isinstance(body, memoryview) else len(body)


def _path(target: str) -> str:
    """A request target's path, percent-decoded where it can be, without the query string
    (which may carry a secret)."""
    try:
        return _resource_of(target)
    except (HTTPError, IndexError):
        return target.partition("?")[0]


def _idle_since(conn: _Connection) -> int:
    return conn.idle_since


def _readable(fds: list[int]) -> list[int]:
    """Those of ``fds`` with input waiting (or a close), without waiting; ``[]`` where the
    platform has no ``poll``."""
    if not fds or not hasattr(select, "poll"):
        return []
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(0)]


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


MAX_PORT: Final = 65535


def check_listen_port(port: object) -> None:
    """Refuse a port no socket can bind, before one is created (``socket.create_server``
    leaks its socket on the `OverflowError` that a port above 65535 raises).

    Raises:
        TypeError: ``port`` is not an int.
        ValueError: ``port`` is outside 0-65535.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int such as 5001 (0 picks a free one), got {port!r}")
    if not 0 <= port <= MAX_PORT:
        raise ValueError(
            f"cannot listen on port {port}: a TCP port is 0-{MAX_PORT} (0 picks a free one)"
        )


def listen_error(exc: OSError, host: str, port: int) -> OSError:
    """The error to raise when a server cannot listen on ``host:port``: where, why, what to do.

    Of the same class as ``exc`` and with its ``errno`` (so ``except OSError`` and
    ``exc.errno == errno.EADDRINUSE`` still work).
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    code = exc.errno
    if code == errno.EADDRINUSE:
        why = (
            "the address is already in use: another program (or another server in this "
            "process) is listening there; stop it, or choose another port (0 picks a free one)"
        )
    elif code == errno.EACCES:
        why = (
            "permission denied (ports below 1024 need privileges); choose a port from 1024 to "
            f"{MAX_PORT} (0 picks a free one)"
        )
    elif code == errno.EADDRNOTAVAIL:
        why = (
            f"{host!r} is not an address of this machine; bind 127.0.0.1 (this machine only), "
            "0.0.0.0 or :: (every interface), or one of this machine's own addresses"
        )
    else:
        # socket.create_server appends " (while attempting to bind on address ...)": said above.
        why = (exc.strerror or str(exc)).partition(" (while attempting to bind")[0]
        if isinstance(exc, socket.gaierror) or (code is not None and code < 0):  # EAI_* codes
            why = f"the host {host!r} cannot be resolved ({why}); give an IP address"
    error = type(exc)(f"cannot listen on {where}: {why}")
    error.errno = code
    return error


class ServerStartedOnImport(BaseException):
    """`run_http_server` was called, or an `HTTPDataServer` created (to ``serve_forever`` or
    ``start`` it), while `ImportGuard` was active (``dataserve serve`` importing a handler's
    module); the server was not created, its handler not built, no port or socket bound.

    A `BaseException`, so that a module's own ``except Exception`` does not swallow it.

    Attributes:
        module: The module being imported.
        port: The port the module asked for.
    """

    def __init__(self, module: str, port: object, call: str = "") -> None:
        super().__init__(module, port)
        self.module = module
        self.port = port
        self.call = call or f"run_http_server({port!r}, ...)"
        """The call that was refused, as the message shows it: ``run_http_server(5001, ...)``
        or ``HTTPDataServer(..., port=5001)``."""


class ImportGuard:
    """While active (a ``with`` block), `run_http_server` and `HTTPDataServer` raise
    `ServerStartedOnImport` instead of serving (before any socket is bound): ``dataserve
    serve`` imports a module to find its handler, and a module that starts a server when
    imported (``run_http_server(...)``, ``HTTPDataServer(...).serve_forever()`` or
    ``.start()``) would otherwise serve (on its own port, ignoring ``--port``) before the
    command could.

    Args:
        module: The module about to be imported, for the message.
    """

    active: ClassVar[list[str]] = []

    def __init__(self, module: str) -> None:
        self.module = module

    def __enter__(self) -> None:
        ImportGuard.active.append(self.module)

    def __exit__(self, *exc_info: object) -> None:
        ImportGuard.active.remove(self.module)


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
        port: TCP port (``0`` picks a free one, printed). ``0`` with ``unix_socket=``.
        data_handler: An `HTTPDataHandler` subclass (instantiated once) or an instance.
        host: Address to bind.
        **options: The keyword arguments of `HTTPDataServer` (``auth_token``,
            ``max_body_size``, ``unix_socket``, ...), type-checked. For a Unix socket:
            ``run_http_server(0, MyDataHandler, unix_socket="/run/app/data.sock")``.

    Raises:
        OSError: The server cannot listen on ``host:port`` (the message says why: the port
            in use, a privileged port, an address not of this machine).
        ValueError: ``port`` is outside 0-65535.
        TypeError: ``port`` is not an int, or ``data_handler`` is not a handler.
    """
    if ImportGuard.active:  # dataserve serve is importing the module that called us
        raise ServerStartedOnImport(ImportGuard.active[-1], port)
    server = HTTPDataServer(data_handler, port, host, **options)
    stop = threading.Event()
    previous: Callable[[int, FrameType | None], Any] | int | None = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        server.start()
        where = "" if server.unix_socket is None else f"socket file {server.unix_socket}; "
        print(
            f"dataserve: serving {type(server.handler).__qualname__} at {server.url} "
            f"({where}Ctrl-C to stop)",
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
