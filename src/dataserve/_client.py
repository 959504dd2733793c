"""HTTPDataClient: calls a data server over one urllib3 connection pool.

A shell: urllib3 gives the pool, connecting, TLS, timeouts and the retry policy; each
connection's bytes go through the wire's sans-I/O `_wire.ClientConnection`, which
decides everything about HTTP (framing, chunked coding, limits, keep-alive, leftovers).
This module only moves bytes: one write for a small call, ``recv`` into the wire, and a
large body received straight into one buffer of its length.
"""

from __future__ import annotations

import io
import os
import socket
import ssl
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, cast, overload

import urllib3
import urllib3.connection
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import (
    HTTPError as Urllib3Error,
)
from urllib3.util import Retry, Timeout

from . import _unix
from ._clientcommon import (
    OUT_AND_TYPE,
    ProgressCallback,
    bearer_header,
    connect_failed,
    connect_refused,
    connect_timed_out,
    connection_broke,
    decode_reply,
    file_ended_early,
    pipe_not_replayed,
    read_timed_out,
    reply_written_then_broke,
    request_path,
    resolve_target,
    retry_policy,
    send_broke,
    text_file_message,
    tls_failed,
    write_timed_out,
)
from ._clientcommon import (
    BinaryWriter as _BinaryWriter,
)
from ._clientcommon import (
    LocalError as _LocalError,
)
from ._clientcommon import (
    guarded as _guarded,
)
from ._errors import (
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    EncodeError,
    ReadTimeout,
    TransportError,
    WriteTimeout,
)
from ._io import ONE_WRITE_LIMIT, send_message
from ._pool import Pool, TLSPool
from ._protocol import (
    OCTET_STREAM,
    raise_for_reply,
)
from ._stream import (
    CHUNK_SIZE,
    FileChunks,
    FileEndedEarly,
    Progress,
    is_binary_file,
    is_text_file,
    kernel_offset,
    position_of,
    read_whole,
    send_file_region,
    stream_size,
    write_all,
)
from ._wire import (
    END_OF_MESSAGE,
    NEED_DATA,
    ClientConnection,
    Data,
    ReplyError,
    ReplyHead,
    RequestHeads,
)
from .codecs._registry import CodecRegistry, default_registry

__all__ = ["HTTPDataClient"]

if TYPE_CHECKING:
    import typing_extensions
    from typing_extensions import TypeForm  # type-only: no runtime dependency

    # A checker that knows no TypeForm (mypy < 1.19) cannot solve T from a non-class type
    # form; the default makes that Any rather than Never.
    T = typing_extensions.TypeVar("T", default=Any)
else:
    T = TypeVar("T")


_READ_BUFFER: Final = 65536
_DIRECT_BODY: Final = 65536  # a longer kept body is received straight into its buffer
_CACHE_LIMIT: Final = 1024
_SEND_CHUNK: Final = 1 << 20

_clients: weakref.WeakSet[HTTPDataClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forget_pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class HTTPDataClient:
    """Calls a data server: ``HTTPDataClient(port=5001).send('/xdata', [4, 5, 6])``.

    One urllib3 connection pool, kept alive between calls; safe to share between threads
    (size ``pool_size`` to the number of threads). A context manager; `close` releases the
    pool. After ``os.fork()`` the child opens connections of its own.

    Retry policy: a failure to connect is retried twice with a short backoff (the request never
    left). A request that may have reached the handler (the connection broke after it was sent,
    or the reply timed out) is never sent again unless ``retries`` says so; use ``retries``
    only for handlers that are safe to run twice. A body streamed from a file is resent only if
    the file is seekable (see `send`). Idle connections the server closed are noticed before
    reuse, so a server restart between calls is not an error.

    Args:
        port: The server's port (1-65535), appended to ``address``. An int; a string of
            digits is taken too, as 0.1 did (``port=os.environ["PORT"]``).
        address: Scheme and host ending in a colon, as in dataserve 0.1. ``localhost`` means
            ``127.0.0.1``, so no IPv6 attempt fails on every new connection; reach an
            IPv6-only server at ``"http://[::1]:"``.
        url: The full base URL instead of ``port``/``address``, e.g. ``"http://host:5001"``,
            or ``"http+unix://%2Frun%2Fapp%2Fdata.sock"`` for a Unix socket (the path
            percent-encoded, as ``HTTPDataServer.url`` gives it).
        unix_socket: Connect to the server's Unix socket file at this path instead of
            ``port``/``url``. Pooling, timeouts, retries and errors are as over TCP (a missing
            socket file is `ConnectError`); the ``Host`` header says ``localhost``.
        timeout: Seconds the server may stay silent: until the reply begins, and then
            between any two reads of it (as urllib3's read timeout; a reply that keeps
            trickling in is not cut). Also the longest the server may stop reading a
            request body being sent (`WriteTimeout`; a slow upload that keeps moving is
            not cut).
        connect_timeout: Seconds to wait for a connection (always finite).
        retries: How many times to resend a request after a failure that may have happened
            after the handler received it (0: never).
        auth_token: Sent as ``Authorization: Bearer <token>``; never shown in ``repr``.
        registry: Codecs to encode payloads and decode replies; the process-wide default when
            ``None``. Its order of preference is sent as ``Accept``.
        pool_size: Connections kept open for reuse (one per thread sharing the client).
        ssl_context: An `ssl.SSLContext` for ``https`` URLs (e.g. with a custom CA).

    Raises:
        TypeError: ``port`` is neither an int nor a string of digits (a bool, a float, ...).
        ValueError: No server given, or two given; ``port`` (or the port in ``url``) is 0 or
            outside 1-65535; ``url`` is not an ``http://``, ``https://`` or ``http+unix://``
            URL; or a timeout is not positive.
    """

    def __init__(
        self,
        port: int | None = None,
        address: str = "http://localhost:",
        *,
        url: str | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retries: int = 0,
        auth_token: str | None = None,
        registry: CodecRegistry | None = None,
        pool_size: int = 16,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        target = resolve_target(
            port, address, url, unix_socket, ssl_context, timeout, connect_timeout, retries
        )
        self._unix_socket = target.unix_socket
        self._prefix = target.prefix
        self.url = target.url
        """The server's base URL, e.g. ``"http://localhost:5001"``, or
        ``"http+unix://%2Frun%2Fapp%2Fdata.sock"``."""
        self._scheme = target.scheme
        self._host = target.host
        self._port = target.port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self._auth = bearer_header(auth_token)
        self.registry = registry if registry is not None else default_registry()
        self._pool_size = pool_size
        self._ssl_context = ssl_context
        self._timeout = Timeout(connect=connect_timeout, read=timeout)
        self._retry = retry_policy(retries)
        self._heads = RequestHeads(self.registry, target.host_header, self._auth)
        self._paths: dict[str, str] = {}
        self._pool: urllib3.HTTPConnectionPool | None = self._new_pool()
        _clients.add(self)

    def __repr__(self) -> str:
        return f"<HTTPDataClient {self.url}>"

    # -- calls -----------------------------------------------------------------------------

    # The overloads of every client's send (an async client copies them, with ``async def``).
    # None is a catch-all: a type= that fits no overload, or whose result is assigned to an
    # incompatible type, is an error (SPEC section 5). ``progress=`` is taken by every one.
    # 1. out=: the reply's body streamed into a file; the number of bytes written (SPEC 10).
    # 2. No type= (or None): the untyped reply.
    # 3. A class (list[int], a Struct, a dataclass): T, on every checker.
    # 4. Any other type form (int | None, Optional[int], Literal["a"]): T, through PEP 747's
    #    TypeForm (mypy >= 2.2 and pyright >= 1.1.412 by default; see docs/api.md, Client).
    @overload
    def send(
        self,
        resource: str,
        payload: object = None,
        *,
        out: _BinaryWriter,
        progress: ProgressCallback | None = None,
    ) -> int: ...
    @overload
    def send(
        self,
        resource: str,
        payload: object = None,
        *,
        type: None = None,
        progress: ProgressCallback | None = None,
    ) -> Any: ...
    @overload
    def send(
        self,
        resource: str,
        payload: object = None,
        *,
        type: type[T],
        progress: ProgressCallback | None = None,
    ) -> T: ...
    @overload
    def send(
        self,
        resource: str,
        payload: object = None,
        *,
        type: TypeForm[T],
        progress: ProgressCallback | None = None,
    ) -> T: ...

    def send(
        self,
        resource: str,
        payload: object = None,
        *,
        type: object = None,
        out: _BinaryWriter | None = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Call a resource with a payload and return the decoded reply.

        Large data streams (neither side holds it whole): a binary file object as
        ``payload`` (``open(path, "rb")``, a pipe, anything with ``readinto`` or ``read``)
        travels as ``application/octet-stream`` in chunks read into one reused buffer. With
        a size (a regular file: its ``fstat`` size minus its current position; otherwise by
        ``seek``/``tell`` when it is seekable) it is sent with that ``Content-Length``, from
        the kernel (``sendfile``) for a regular file over plain HTTP; without one (a pipe) it
        is sent with ``Transfer-Encoding: chunked``. The file is read from its current
        position and left open.

        Retries: a request whose body was streamed from a file is resent (after a failure
        that ``retries`` allows resending) only if the file is seekable: it is first sought
        back to where it stood. A pipe's body, once partly read, is never replayed: the call
        raises `ConnectionLost` instead. A reply partly written to ``out`` is never fetched
        again either.

        Args:
            resource: The resource, e.g. ``"/xdata"`` (a leading ``/`` is added if missing).
            payload: Any value a codec encodes, or a binary file object to stream; ``None``
                travels as JSON ``null``.
            type: Decode the reply into this type with msgspec's typed decoding
                (``list[int]``, a Struct, a dataclass, ``str``, ``int | None``,
                ``Literal["a", "b"]``, ...); type checkers see the result as this type.
            out: Write a successful (200) reply's body, as it arrives and as it travels (not
                decoded, whatever its ``Content-Type``), into this binary file object, and
                return the number of bytes written. ``out.write`` gets a ``memoryview`` of a
                reused buffer. An error reply still raises its `ServerError` and writes
                nothing. If the connection breaks mid-reply, ``out`` holds what arrived and
                `ConnectionLost` is raised. Cannot be combined with ``type``.
            progress: Called as ``progress(done, total)`` from the calling thread: first for
                the request body going out, then for the reply body coming in (a 200 reply's
                only), with ``done`` counting each phase's bytes from 0. Each phase begins
                with a call ``(0, total)``; then at most one call per 64 KiB; the last call
                of a phase has ``done`` equal to every byte moved. ``total`` is the body's
                length, or ``None`` when it is unknown (a pipe, a chunked reply). An
                exception it raises aborts the call (the connection is closed) and
                propagates.
        Returns:
            The reply, decoded (into ``type`` when given); with ``out``, the number of bytes
            written into it.
        Raises:
            EncodeError: No codec encodes ``payload`` (raised before any traffic), or the
                file payload is in text mode, or it ended before its size (it shrank while
                being sent; the request was cut short and its connection closed).
            DecodeError: The reply could not be decoded, or is valid but does not match
                ``type`` (the message says which, with msgspec's path such as ``$[2]``).
            TransportError: No connection, a broken connection, or a timeout.
            ServerError: The server answered with an error status (a subclass per status).
        """
        if resource[:1] != "/":
            resource = "/" + resource
        path = self._paths.get(resource)
        if path is None:
            path = self._path(resource)
        if out is not None or progress is not None or is_binary_file(payload):
            return self._send_streaming(path, resource, payload, type, out, progress)
        codec, body = self.registry.encode(payload, resource)
        sent_type = self.registry.content_type(codec, payload)
        status, headers, data = self._exchange(path, sent_type, body)
        content_type = headers.get("content-type")
        if status != 200:
            raise_for_reply(status, content_type, data, "PUT", self.url + path)
        return self._decode(content_type, data, type, path)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers a ``HEAD`` liveness probe.

        Raises:
            TransportError: No answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = (
                    _transport_error(last, self.url, "HEAD", connecting=True)
                    if isinstance(last, Urllib3Error)
                    else last
                )
                raise TransportError(
                    f"{self.url} was not ready within {timeout} s (last error: {reason})", self.url
                ) from last
            try:
                pool = self._get_pool()
                response = pool.urlopen(
                    "HEAD",
                    self._prefix + "/",
                    retries=False,
                    redirect=False,
                    timeout=Timeout(connect=min(remaining, 1.0), read=remaining),
                    headers={"Authorization": self._auth} if self._auth else None,
                )
                if response.status < 500:
                    return
                last = TransportError(f"HEAD {self.url}/ answered {response.status}")
            except (Urllib3Error, OSError) as exc:
                last = exc
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Close every pooled connection. The client can't be used afterwards."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        _clients.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        options: dict[str, Any] = {
            "maxsize": self._pool_size,
            "block": False,
            "timeout": self._timeout,
            "retries": self._retry,
        }
        if self._scheme == "https":
            return _TLSPool(self._host, self._port, ssl_context=self._ssl_context, **options)
        if self._unix_socket is not None:
            return _UnixPool(self._host, None, unix_socket=self._unix_socket, **options)
        return _Pool(self._host, self._port, **options)

    def _forget_pool(self) -> None:
        # In a child after fork: drop the parent's sockets without touching them.
        if self._pool is not None:
            self._pool = self._new_pool()

    def _get_pool(self) -> urllib3.HTTPConnectionPool:
        pool = self._pool
        if pool is None:
            raise TransportError(f"this client for {self.url} is closed", self.url)
        return pool

    def _path(self, resource: str) -> str:
        path = request_path(self._prefix, resource)
        if len(self._paths) >= _CACHE_LIMIT:
            self._paths.clear()
        self._paths[resource] = path
        return path

    def _send_streaming(
        self,
        path: str,
        resource: str,
        payload: object,
        target: object,
        out: _BinaryWriter | None,
        progress: ProgressCallback | None,
    ) -> Any:
        """`send` for a file payload, ``out=`` or ``progress=`` (see `_Transfer`)."""
        if out is not None and target is not None:
            raise TypeError(OUT_AND_TYPE)
        if is_binary_file(payload):
            if is_text_file(payload):
                raise EncodeError(text_file_message(resource))
            media_type = OCTET_STREAM
            transfer = _Transfer(payload, None, out, progress, self.url + path)
        else:
            codec, body = self.registry.encode(payload, resource)
            media_type = self.registry.content_type(codec, payload)
            view = memoryview(body)
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            transfer = _Transfer(None, view, out, progress, self.url + path)
        try:
            status, headers, data = self._exchange(path, media_type, None, transfer)
        except _LocalError as exc:  # the payload file, out or the callback failed
            raise exc.error from None
        content_type = headers.get("content-type")
        if status != 200:
            raise_for_reply(status, content_type, data, "PUT", self.url + path)
        if out is not None:
            return transfer.written
        return self._decode(content_type, data, target, path)

    def _exchange(
        self, path: str, media_type: str, body: Any, transfer: _Transfer | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One PUT on a pooled connection: urllib3 checks connections out and in, connects
        (timeouts, TLS, socket options) and decides retries; the request goes out in one write
        and the reply is read through the connection's `ClientConnection`. A ``transfer``
        streams the body or the reply instead (and is rewound before a retry)."""
        url = self.url + path
        head = self._heads.put(path, media_type)
        length = 0
        if transfer is None:
            length = body.nbytes if isinstance(body, memoryview) else len(body)
        retry = self._retry
        while True:
            pool = self._get_pool()
            try:
                conn: Any = pool._get_conn()  # one of our _Connection classes
            except ClosedPoolError:
                raise TransportError(f"this client for {self.url} is closed", self.url) from None
            try:
                if conn.sock is None:
                    conn.connect()
            except (Urllib3Error, OSError) as exc:
                conn.close()
                pool._put_conn(conn)
                if not isinstance(exc, Urllib3Error):  # e.g. a failed TLS handshake
                    exc = SSLError(exc) if isinstance(exc, ssl.SSLError) else ProtocolError(exc)
                retry = _next_retry(retry, url, exc, connecting=True)
                retry.sleep()
                continue
            wire = conn.wire()
            try:
                status, headers, data = (
                    _send_and_receive(conn.sock, wire, head, body, length, self.timeout)
                    if transfer is None
                    else transfer.run(conn.sock, wire, head, self.timeout)
                )
            except _SendFailed as failure:
                _close_conn(conn)  # part of a request went out: the connection is unusable
                pool._put_conn(conn)
                cause = failure.__cause__
                if isinstance(cause, TimeoutError):
                    raise WriteTimeout(write_timed_out(url, self.timeout), url) from cause
                try:  # not all sent: the handler never received it (resent only if asked)
                    retry = _next_retry(retry, url, ProtocolError(str(cause), cause))
                except ConnectionLost:
                    raise ConnectionLost(send_broke(url, cause), url) from cause
                if transfer is not None:
                    transfer.rewind(url, cause or failure)  # a pipe's body is never replayed
                retry.sleep()
                continue
            except (OSError, ReplyError) as exc:
                _close_conn(conn)
                pool._put_conn(conn)
                if isinstance(exc, TimeoutError):
                    error: Urllib3Error = ReadTimeoutError(pool, url, "read timed out")
                else:
                    error = ProtocolError(str(exc) or exc.__class__.__name__, exc)
                retry = _next_retry(retry, url, error)
                if transfer is not None:
                    transfer.rewind(url, error)  # raises if the body or reply can't be replayed
                retry.sleep()
                continue
            except BaseException:  # e.g. KeyboardInterrupt mid-reply: never reuse the rest
                _close_conn(conn)
                pool._put_conn(conn)
                raise
            if not wire.next_cycle():  # not sent whole, read to its end, keep-alive, alone
                _close_conn(conn)
            pool._put_conn(conn)
            return status, headers, data

    def _decode(self, content_type: str | None, data: Any, target: object, path: str) -> Any:
        return decode_reply(self.registry, content_type, data, target, f"PUT {self.url}{path}")


class _SendFailed(Exception):
    """The request could not be sent completely; its ``__cause__`` says why."""


class _WireMixin:
    """Gives a urllib3 connection the wire's `ClientConnection` for its socket: a new one for
    every new socket (urllib3 may reconnect behind our back), dropped when it closes."""

    sock: Any
    _dataserve_wire: ClientConnection | None = None
    _dataserve_sock: Any = None

    def wire(self) -> ClientConnection:
        wire = self._dataserve_wire
        if wire is None or self._dataserve_sock is not self.sock:
            wire = self._dataserve_wire = ClientConnection()
            self._dataserve_sock = self.sock
        return wire

    def close(self) -> None:
        self._dataserve_wire = self._dataserve_sock = None
        super().close()  # type: ignore[misc]


class _Connection(_WireMixin, urllib3.connection.HTTPConnection):
    pass


class _TLSConnection(_WireMixin, urllib3.connection.HTTPSConnection):
    pass


class _UnixConnectError(NewConnectionError):
    """Connecting to a socket file failed; ``reason`` says why and what to do."""

    def __init__(self, conn: Any, reason: str) -> None:
        super().__init__(conn, reason)
        self.reason = reason


class _UnixConnection(_Connection):
    """A urllib3 connection to a Unix socket file. Only connecting differs from TCP: the
    pool, its checks of idle connections, the timeouts, the retry policy and the reading
    code are those of `_Connection`."""

    def __init__(self, *args: Any, unix_socket: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unix_socket = unix_socket

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        try:
            sock = _unix.connect_unix(self.unix_socket, timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"no connection to {self.unix_socket!r} within {timeout} s"
            ) from exc
        except OSError as exc:
            raise _UnixConnectError(
                self, _unix.connect_failure_reason(self.unix_socket, exc)
            ) from exc
        for level, name, value in self.socket_options or ():
            if level != socket.IPPROTO_TCP:  # TCP_NODELAY and the like mean nothing here
                sock.setsockopt(level, name, value)
        return sock


class _Pool(Pool):
    ConnectionCls = _Connection


class _UnixPool(Pool):
    ConnectionCls = _UnixConnection


class _TLSPool(TLSPool):
    ConnectionCls = _TLSConnection


def _close_conn(conn: Any) -> None:
    conn.close()


def _send_and_receive(
    sock: Any, wire: ClientConnection, head: bytes, body: Any, length: int, timeout: float
) -> tuple[int, dict[str, str], Any]:
    if sock.gettimeout() != timeout:  # set once per connection: each settimeout is an ioctl
        sock.settimeout(timeout)
    try:
        _send_request(sock, wire.put_whole(head, length), body, length)
    except OSError as exc:
        raise _SendFailed from exc  # the connection is closed: never reused half-sent
    reply = _reply_head(sock, wire)
    return reply.status, reply.headers, _read_body(sock, wire, reply.length, None, None)


def _send_request(sock: Any, head: bytes, body: Any, length: int) -> None:
    """Send the request. The socket's timeout bounds each wait for the server to read more
    (``sendall``'s would bound the whole transfer, failing a large body on a slow link)."""
    if length <= ONE_WRITE_LIMIT:
        send_message(sock, head, body, length)  # one write: no Nagle stall before the body
        return
    sock.sendall(head)
    view = body if isinstance(body, memoryview) else memoryview(body)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    sent = 0
    while sent < length:
        sent += sock.send(view[sent : sent + _SEND_CHUNK])


def _reply_head(sock: Any, wire: ClientConnection) -> ReplyHead:
    """Receive until the wire has the reply's head (1xx interim replies are the wire's)."""
    wire.receive_data(sock.recv(_READ_BUFFER))  # a new exchange: the wire holds nothing yet
    while True:
        event = wire.next_event()
        if event is NEED_DATA:
            wire.receive_data(sock.recv(_READ_BUFFER))
        elif event.__class__ is ReplyHead:
            assert isinstance(event, ReplyHead)
            return event
        else:  # pragma: no cover - the wire gives the head before any body
            raise RuntimeError(f"{event!r} before the reply head")


def _read_body(
    sock: Any,
    wire: ClientConnection,
    length: int | None,
    write: Callable[[memoryview], None] | None,
    progress: Progress | None,
) -> Any:
    """Receive the reply's body: kept (``write`` is ``None``) and returned, or passed to
    ``write`` piece by piece as it arrives. A kept body with a ``Content-Length`` is
    received into one buffer of that length; anything else in what the wire gives out."""
    if write is None and progress is None and length is not None and length <= _DIRECT_BODY:
        event = wire.next_event()  # the fast path: a small body, in what came with the head
        parts: list[bytes | memoryview] = []
        if isinstance(event, Data):
            first = event.data
            if (
                len(first) == length
                and first.__class__ is bytes
                and wire.next_event() is END_OF_MESSAGE
            ):
                return first
            parts.append(first)
        elif event is END_OF_MESSAGE:
            return b""
        while (event := wire.next_event()) is not END_OF_MESSAGE:
            if isinstance(event, Data):
                parts.append(event.data)
            else:
                wire.receive_data(sock.recv(CHUNK_SIZE))
        return b"".join(parts)
    if progress is not None:
        progress.begin(length)
    if write is None and length is not None and length > _DIRECT_BODY:
        data: Any = _receive_whole(sock, wire, length, progress)
    else:
        pieces: list[bytes | memoryview] = []
        while True:
            event = wire.next_event()
            if event is NEED_DATA:
                left = wire.body_bytes_left
                wire.receive_data(sock.recv(CHUNK_SIZE if left is None else min(left, CHUNK_SIZE)))
                continue
            if event is END_OF_MESSAGE:
                break
            piece = cast(Data[bytes | memoryview], event).data
            if write is not None:
                write(memoryview(piece))
            else:
                pieces.append(piece)
            if progress is not None:
                progress.advance(len(piece))
        only = len(pieces) == 1 and pieces[0].__class__ is bytes
        data = pieces[0] if only else b"".join(pieces)
    if progress is not None:
        progress.end()
    return data


def _receive_whole(
    sock: Any, wire: ClientConnection, length: int, progress: Progress | None
) -> bytes:
    """A ``Content-Length`` body received into one buffer of its length: what the wire
    already holds first, then straight from the socket (``recv_into``), never past the body.

    Without progress reports, `io.BufferedReader.read` fills one ``bytes`` of that length
    from `_BodyReader` (as the stdlib reads a large ``read(n)``: into the result, not through
    its buffer); with them, a `BytesIO`'s buffer is filled read by read, each reported.
    """
    raw = _BodyReader(sock, wire, progress)
    try:
        if progress is None:
            data = io.BufferedReader(raw, _READ_BUFFER).read(length)
        else:
            whole = io.BytesIO()
            whole.seek(length - 1)
            whole.write(b"\0")
            with whole.getbuffer() as view:
                filled = 0
                while filled < length and (count := raw.readinto(view[filled:])):
                    filled += count
            data = whole.getvalue()[:filled]
    except (MemoryError, OverflowError):
        raise ReplyError(f"the reply announces {length} bytes, more than fit in memory") from None
    if len(data) < length:
        wire.receive_data(b"")
        wire.next_event()  # raises: the body was cut short (the wire counted what came)
    if wire.next_event() is not END_OF_MESSAGE:  # pragma: no cover - the wire counted every byte
        raise RuntimeError("the reply did not end with its body")
    return data


class _BodyReader(io.RawIOBase):
    """A ``Content-Length`` body as a raw stream: the pieces the wire holds, then the
    socket, at most the body's bytes (so that nothing after it is read), each counted by the
    wire (`ClientConnection.body_received`) and reported to ``progress``."""

    def __init__(self, sock: Any, wire: ClientConnection, progress: Progress | None) -> None:
        super().__init__()
        self._sock = sock
        self._wire = wire
        self._progress = progress
        self._piece: memoryview | None = None
        self._buffered = True  # the wire may still hold bytes that came with the head

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        piece = self._piece
        if piece is None and self._buffered:
            event = self._wire.next_event()
            if isinstance(event, Data):
                piece = memoryview(event.data)
            else:
                self._buffered = False  # NEED_DATA: the rest comes from the socket
        if piece is not None:
            count = min(len(view), len(piece))
            view[:count] = piece[:count]
            self._piece = piece[count:] if count < len(piece) else None
        else:
            left = self._wire.body_bytes_left or 0
            count = self._sock.recv_into(view, min(len(view), left)) if left else 0
            self._wire.body_received(count)
        if self._progress is not None:
            self._progress.advance(count)
        return count


# -- streaming (SPEC 10) ---------------------------------------------------------------------


class _Transfer:
    """One streamed call: the request body read from a file (or sliced from an encoded
    value), the reply body written into ``out`` (or kept), progress reported for both.

    Before a retry, `rewind` seeks a file payload back to where it stood; a body partly read
    from a stream that cannot seek (a pipe), or a reply partly written into ``out``, is not
    replayed.
    """

    def __init__(
        self,
        file: Any,
        view: memoryview | None,
        out: _BinaryWriter | None,
        progress: ProgressCallback | None,
        url: str,
    ) -> None:
        self._url = url
        self._file = file
        self._view = view
        self._out = out
        self._progress = None if progress is None else Progress(_guarded(progress))
        self._start = None if file is None else position_of(file)
        self.size: int | None = stream_size(file) if view is None else view.nbytes
        self.consumed = False  # bytes of the file payload have been read
        self.written = 0  # bytes written into out

    def rewind(self, url: str, error: BaseException) -> None:
        """Make the call ready to be sent again, or raise `ConnectionLost` if it cannot be."""
        if self.written:
            raise ConnectionLost(reply_written_then_broke(url, self.written, error), url)
        if self._file is None or not self.consumed:
            return
        if self._start is None:
            raise ConnectionLost(pipe_not_replayed(url, error), url)
        try:
            self._file.seek(self._start)
        except Exception as exc:
            raise _LocalError(exc) from exc
        self.consumed = False

    def run(
        self, sock: Any, wire: ClientConnection, head: bytes, timeout: float
    ) -> tuple[int, dict[str, str], Any]:
        """Send the request and read the reply on a connected socket, through its wire."""
        if sock.gettimeout() != timeout:
            sock.settimeout(timeout)
        early: OSError | None = None
        try:
            self._send_body(sock, wire, wire.start_put(head, self.size))
        except FileEndedEarly as exc:
            raise EncodeError(file_ended_early(self._url, exc.done, exc.size)) from None
        except TimeoutError as exc:
            raise _SendFailed from exc  # the server stopped reading the body: WriteTimeout
        except OSError as exc:
            early = exc  # the server may have answered, then closed, before reading it all
        try:
            reply = _reply_head(sock, wire)
        except (OSError, ReplyError):
            if early is not None:  # no early answer: the body just could not be sent whole
                raise _SendFailed from early
            raise
        status = reply.status
        if status == 200 and self._out is not None:
            data = _read_body(sock, wire, reply.length, self._write, self._progress)
        elif status == 200:
            data = _read_body(sock, wire, reply.length, None, self._progress)
        else:
            data = _read_body(sock, wire, reply.length, None, None)
        return status, reply.headers, data

    # -- request body --------------------------------------------------------------------

    def _send_body(self, sock: socket.socket, wire: ClientConnection, head: bytes) -> None:
        progress = self._progress
        size = self.size
        view = self._view
        if progress is not None:
            progress.begin(size)
        if view is not None:  # an encoded value: sliced, never copied
            wire.send_data(view)
            if progress is None or view.nbytes <= ONE_WRITE_LIMIT:
                send_message(sock, head, view, view.nbytes)
                if progress is not None:
                    progress.advance(view.nbytes)
            else:
                sock.sendall(head)
                for start in range(0, view.nbytes, CHUNK_SIZE):
                    piece = view[start : start + CHUNK_SIZE]
                    sock.sendall(piece)
                    progress.advance(len(piece))
        elif size is not None and size <= ONE_WRITE_LIMIT:
            self.consumed = True
            data = _local(read_whole, self._file, size)
            wire.send_data(data)
            send_message(sock, head, data, size)
            if progress is not None:
                progress.advance(size)
        else:
            self._send_file(sock, wire, head, size)
        end = wire.end_request()
        if end:
            sock.sendall(end)
        if progress is not None:
            progress.end()

    def _send_file(
        self, sock: socket.socket, wire: ClientConnection, head: bytes, size: int | None
    ) -> None:
        progress = self._progress
        advance = None if progress is None else progress.advance
        file = self._file
        offset = None
        if size is not None and sock.__class__ is socket.socket:  # plain TCP: zero-copy
            offset = _local(kernel_offset, file)
        sock.sendall(head)
        self.consumed = True
        if offset is not None and size is not None:
            send_file_region(sock, file, offset, size, advance)
            wire.body_sent(size)
            return
        chunks = FileChunks(file, size)
        while chunk := _local(chunks.next):
            for frame in wire.send_data(chunk):  # the chunk framing is the wire's
                sock.sendall(frame)
            if advance is not None:
                advance(len(chunk))

    # -- reply body ----------------------------------------------------------------------

    def _write(self, view: memoryview) -> None:
        out = self._out
        assert out is not None
        try:
            write_all(out, view)
        except Exception as exc:
            raise _LocalError(exc) from exc
        self.written += len(view)


def _local(function: Callable[..., T], *args: Any) -> T:
    """Call something that reads the caller's payload file: its errors are the caller's."""
    try:
        return function(*args)
    except (FileEndedEarly, _LocalError):
        raise
    except TypeError as exc:  # read() gave str: a text-mode file object
        raise EncodeError(f"the file payload cannot be sent: {exc}") from exc
    except Exception as exc:
        raise _LocalError(exc) from exc


def _next_retry(retry: Retry, url: str, error: BaseException, *, connecting: bool = False) -> Retry:
    """urllib3's retry policy decides; give up with the matching `TransportError`."""
    try:
        return retry.increment("PUT", url, error=error)  # type: ignore[arg-type]
    except MaxRetryError as exc:
        raise _transport_error(exc.reason or error, url, "PUT", connecting) from error
    except Urllib3Error as exc:  # not retryable: increment re-raised the error itself
        raise _transport_error(exc, url, "PUT", connecting) from error


def _transport_error(
    exc: BaseException, url: str, method: str, connecting: bool = False
) -> TransportError:
    if isinstance(exc, _UnixConnectError):
        return ConnectError(f"Could not connect to {url}: {exc.reason}", url)
    if isinstance(exc, NewConnectionError):
        if "refused" in str(exc).lower():
            return ConnectError(connect_refused(url), url)
        return ConnectError(f"{connect_failed(url, exc)}; is the server running on that port?", url)
    if isinstance(exc, ConnectTimeoutError):
        return ConnectTimeout(connect_timed_out(url), url)
    if isinstance(exc, ReadTimeoutError):
        return ReadTimeout(read_timed_out(method, url), url)
    if isinstance(exc, SSLError):
        return ConnectError(tls_failed(url, exc), url)
    if connecting:
        return ConnectError(connect_failed(url, exc), url)
    return ConnectionLost(connection_broke(method, url, exc), url)
