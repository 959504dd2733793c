"""AsyncHTTPDataClient: calls a data server from asyncio, on a bounded pool of its own.

A shell: each connection is an asyncio transport (``loop.create_connection`` or
``loop.create_unix_connection``, ``ssl=`` for TLS) whose protocol moves bytes between the
socket and the wire's sans-I/O `ClientConnection`; everything about HTTP is decided there
(`_wire`) and in what both clients share (`_clientcommon`): options, retry policy,
decoding. No thread per call, no blocking call on the loop: the loop resolves names, and
file payloads and ``out=`` files are read and written in the loop's default executor, one
chunk per call.
"""

from __future__ import annotations

import asyncio
import collections
import io
import os
import select
import socket
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, overload

from urllib3.exceptions import (
    ConnectTimeoutError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import (
    HTTPError as Urllib3Error,
)
from urllib3.util import Retry

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
from ._io import ONE_WRITE_LIMIT
from ._protocol import OCTET_STREAM, raise_for_reply
from ._stream import (
    FileChunks,
    FileEndedEarly,
    Progress,
    is_binary_file,
    is_text_file,
    position_of,
    read_whole,
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

if TYPE_CHECKING:
    from typing_extensions import TypeForm

__all__ = ["AsyncHTTPDataClient"]

T = TypeVar("T")

_CACHE_LIMIT: Final = 1024
_SEND_SLICE: Final = 256 * 1024  # a larger body is written in slices, each once the last went
_WHOLE_WRITE: Final = 2 << 20  # a body up to this is one write (the kernel's leftover copied)
_READ_BUFFER: Final = 64 * 1024  # what one read of the transport receives into
_DIRECT_BODY: Final = 64 * 1024  # a longer kept body is received straight into its buffer
_RECEIVE_HIGH: Final = 1 << 20  # received bytes not yet taken: reading pauses above this
_RECEIVE_LOW: Final = 256 * 1024  # ... and resumes below this
_CLOSE_WAIT: Final = 1.0  # aclose() waits at most this long for sockets to be closed


class AsyncHTTPDataClient:
    """Calls a data server from asyncio: ``await client.send('/xdata', [4, 5, 6])``.

    The asyncio twin of `HTTPDataClient`: the same options, codecs, ``Accept``, errors, retry
    policy, typed results and streaming, for many concurrent calls from one event loop::

        async with AsyncHTTPDataClient(port=5001) as client:
            replies = await asyncio.gather(*(client.send("/xdata", [i]) for i in range(100)))

    Connections: a pool of at most ``pool_size`` keep-alive connections, reused last-in
    first-out. A ``send`` takes one for the whole call; when all are busy it waits for one to
    come back, at most ``connect_timeout`` seconds (then `ConnectTimeout` saying the pool was
    exhausted), so no burst of calls ever opens more than ``pool_size`` sockets. Names are
    resolved by the loop (``loop.getaddrinfo``); TLS is asyncio's (``ssl=``); TCP_NODELAY is
    set. An idle connection the server closed (a restart, an idle timeout) is noticed before
    reuse and replaced, so it never surfaces as an error.

    Cancelling a ``send`` (``task.cancel()``, ``asyncio.timeout``) closes the connection it
    was using, whose state is then unknown, and leaves the pool usable. A client belongs to
    the event loop it is first used in; it is not thread-safe (use it from that loop only).

    Retry policy (the sync client's, the same urllib3 ``Retry``): a failure to connect is
    retried twice with a short backoff (the request never left). A request that may have
    reached the handler (the connection broke after it was sent, or the reply timed out) is
    never sent again unless ``retries`` says so.

    Args:
        port: The server's port, appended to ``address``.
        address: Scheme and host ending in a colon, as in dataserve 0.1. ``localhost`` means
            ``127.0.0.1``; reach an IPv6-only server at ``"http://[::1]:"``.
        url: The full base URL instead of ``port``/``address``, e.g. ``"http://host:5001"``,
            or ``"http+unix://%2Frun%2Fapp%2Fdata.sock"`` for a Unix socket.
        unix_socket: Connect to the server's Unix socket file at this path instead.
        timeout: Seconds the server may stay silent: until the reply begins, and then
            between any two reads of it; also the longest it may stop reading a request
            body being sent.
        connect_timeout: Seconds to wait for a connection (always finite), and for a free
            one when all ``pool_size`` are busy.
        retries: How many times to resend a request after a failure that may have happened
            after the handler received it (0: never).
        auth_token: Sent as ``Authorization: Bearer <token>``; never shown in ``repr``.
        registry: Codecs to encode payloads and decode replies; the process-wide default when
            ``None``. Its order of preference is sent as ``Accept``.
        pool_size: Most connections open at once, and so most calls in flight at once.
        ssl_context: An `ssl.SSLContext` for ``https`` URLs (e.g. with a custom CA).

    Raises:
        ValueError: No server given, two given, a malformed URL or an out-of-range option.
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
            port,
            address,
            url,
            unix_socket,
            ssl_context,
            timeout,
            connect_timeout,
            retries,
            "AsyncHTTPDataClient",
        )
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        self.url = target.url
        """The server's base URL, e.g. ``"http://localhost:5001"``, or
        ``"http+unix://%2Frun%2Fapp%2Fdata.sock"``."""
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.registry = registry if registry is not None else default_registry()
        self.pool_size = pool_size
        self._target = target
        self._auth = bearer_header(auth_token)
        self._heads = RequestHeads(self.registry, target.host_header, self._auth)
        self._retry = retry_policy(retries)
        self._ssl: ssl.SSLContext | None = None
        if target.scheme == "https":
            self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._paths: dict[str, str] = {}
        self._idle: list[_Conn] = []  # LIFO: the most recently used connection first
        self._busy: set[_Conn] = set()
        self._permits: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<AsyncHTTPDataClient {self.url}>"

    # -- calls -----------------------------------------------------------------------------

    @overload
    async def send(
        self,
        resource: str,
        payload: object = None,
        *,
        out: _BinaryWriter,
        progress: ProgressCallback | None = None,
    ) -> int: ...
    @overload
    async def send(
        self, resource: str, payload: object = None, *, progress: ProgressCallback | None = None
    ) -> Any: ...
    @overload
    async def send(
        self,
        resource: str,
        payload: object = None,
        *,
        type: TypeForm[T],
        progress: ProgressCallback | None = None,
    ) -> T: ...

    async def send(
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
        ``payload`` (``open(path, "rb")``, a pipe, anything with ``read``) travels as
        ``application/octet-stream`` in chunks of 256 KiB, each read by ``file.read`` in the
        loop's default executor (``loop.run_in_executor(None, ...)``, one call per chunk),
        so a slow disk or a pipe never stalls the loop. With a size (a regular file: its
        ``fstat`` size minus its position; otherwise by ``seek``/``tell``) it is sent with
        that ``Content-Length``, without one (a pipe) with ``Transfer-Encoding: chunked``.
        The file is read from its current position and left open. A request streamed from a
        file is resent (when ``retries`` allows) only if the file can seek back.

        Args:
            resource: The resource, e.g. ``"/xdata"`` (a leading ``/`` is added if missing).
            payload: Any value a codec encodes, or a binary file object to stream; ``None``
                travels as JSON ``null``.
            type: Decode the reply into this type with msgspec's typed decoding
                (``list[int]``, a Struct, a dataclass, ``str``, ...).
            out: Write a successful (200) reply's body, as it arrives (not decoded), into
                this binary file object, and return the number of bytes written. Each write
                runs in the loop's default executor. An error reply still raises its
                `ServerError` and writes nothing. Cannot be combined with ``type``.
            progress: Called on the loop as ``progress(done, total)``: first for the request
                body going out, then for a 200 reply's body coming in, ``done`` counting
                each phase's bytes from 0; each phase begins with ``(0, total)``, then at
                most one call per 64 KiB, and ends with every byte counted. ``total`` is
                ``None`` when unknown (a pipe, a chunked reply). What it raises aborts the
                call (its connection is closed) and propagates.
        Returns:
            The reply, decoded (into ``type`` when given); with ``out``, the bytes written.
        Raises:
            EncodeError: No codec encodes ``payload`` (raised before any traffic), the file
                payload is in text mode, or it ended before its size.
            DecodeError: The reply could not be decoded, or does not fit ``type``.
            TransportError: No connection (`ConnectError`, `ConnectTimeout`, also for a pool
                exhausted that long), a broken connection (`ConnectionLost`), or no reply in
                time (`ReadTimeout`).
            ServerError: The server answered with an error status (a subclass per status).
        """
        if resource[:1] != "/":
            resource = "/" + resource
        path = self._paths.get(resource)
        if path is None:
            path = self._path(resource)
        if out is not None and type is not None:
            raise TypeError(OUT_AND_TYPE)
        url = self.url + path
        if is_binary_file(payload):
            if is_text_file(payload):
                raise EncodeError(text_file_message(resource))
            call = _Call(None, payload, out, progress, url)
            media_type = OCTET_STREAM
        else:
            codec, body = self.registry.encode(payload, resource)
            media_type = self.registry.content_type(codec, payload)
            call = _Call(body, None, out, progress, url)
        what = f"PUT {url}"
        head, data = await self._exchange(self._heads.put(path, media_type), call, what)
        content_type = head.headers.get("content-type")
        if head.status != 200:
            raise_for_reply(head.status, content_type, data, "PUT", self.url + path)
        if out is not None:
            return call.written
        return decode_reply(self.registry, content_type, data, type, what)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers a ``HEAD`` liveness probe.

        Raises:
            TransportError: No answer within ``timeout`` seconds.
        """
        loop = self._bind()
        deadline = loop.time() + timeout
        last: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TransportError(
                    f"{self.url} was not ready within {timeout} s (last error: {last})", self.url
                ) from last
            try:
                status = await self._probe(remaining)
                if status < 500:
                    return
                last = TransportError(f"HEAD {self.url}/ answered {status}", self.url)
            except TransportError as exc:
                if self._closed:
                    raise
                last = exc
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def aclose(self) -> None:
        """Close every pooled connection. The client can't be used afterwards; calls still
        in flight finish, and their connections are closed when they do."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        pending = [conn.closed for conn in idle if not conn.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=_CLOSE_WAIT)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the pool --------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._permits = asyncio.Semaphore(self.pool_size)
        elif self._loop is not loop:
            raise RuntimeError(
                f"this AsyncHTTPDataClient for {self.url} belongs to the event loop it was "
                "first used in; create one client per event loop"
            )
        return loop

    def _path(self, resource: str) -> str:
        path = request_path(self._target.prefix, resource)
        if len(self._paths) >= _CACHE_LIMIT:
            self._paths.clear()
        self._paths[resource] = path
        return path

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"this client for {self.url} is closed", self.url)

    async def _acquire(self, wait: float, what: str) -> None:
        """Take a permit for one connection: at most ``pool_size`` are open or in use."""
        self._bind()
        permits = self._permits
        assert permits is not None
        if not permits.locked():
            await permits.acquire()  # returns at once
            return
        try:
            async with asyncio.timeout(wait):
                await permits.acquire()
        except TimeoutError:
            raise ConnectTimeout(
                f"{what}: all {self.pool_size} connections of this client stayed busy for "
                f"{wait:g} s (its pool is exhausted); raise pool_size, or send fewer calls "
                "at once",
                self.url,
            ) from None

    def _release(self) -> None:
        assert self._permits is not None
        self._permits.release()

    async def _checkout(self, connect_timeout: float) -> _Conn:
        """An idle connection that is still sound (most recently used first), or a new one."""
        self._check_open()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.sound():
                conn.idle = False
                self._busy.add(conn)
                return conn
            conn.close()
        conn = await self._connect(connect_timeout)
        self._busy.add(conn)
        return conn

    def _checkin(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        if self._closed or not conn.wire.reusable or conn.closed.done():
            conn.close()
            return
        conn.wire.start_next_cycle()
        conn.idle = True
        self._idle.append(conn)

    def _discard(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        conn.abort()

    async def _connect(self, connect_timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        target = self._target
        try:
            async with asyncio.timeout(connect_timeout):
                if target.unix_socket is not None:
                    sock = await _connect_unix(target.unix_socket)
                    _, conn = await loop.create_unix_connection(lambda: _Conn(loop), sock=sock)
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Conn(loop),
                        target.host,
                        target.port,
                        ssl=self._ssl,
                        server_hostname=target.host if self._ssl is not None else None,
                    )
        except TimeoutError as exc:
            raise _ConnectFailed(
                ConnectTimeout(connect_timed_out("{url}")),
                ConnectTimeoutError(str(exc) or "connect timed out"),
            ) from None
        except ssl.SSLError as exc:
            raise _ConnectFailed(ConnectError(tls_failed("{url}", exc))) from exc
        except OSError as exc:
            if target.unix_socket is not None:
                reason = _unix.connect_failure_reason(target.unix_socket, exc)
                error = ConnectError(f"Could not connect to {{url}}: {reason}")
            elif isinstance(exc, ConnectionRefusedError):
                error = ConnectError(connect_refused("{url}"))
            else:
                error = ConnectError(connect_failed("{url}", exc))
            raise _ConnectFailed(error) from exc
        conn.nodelay()
        return conn

    # -- exchanges -------------------------------------------------------------------------

    async def _exchange(self, head: bytes, call: _Call, what: str) -> tuple[ReplyHead, Any]:
        """One PUT on a pooled connection, retried as the policy says."""
        url = what.partition(" ")[2]
        retry = self._retry
        await self._acquire(self.connect_timeout, what)
        try:
            while True:
                try:
                    conn = await self._checkout(self.connect_timeout)
                except _ConnectFailed as failed:
                    retry = _next_retry(retry, url, failed.error, failed.policy_error)
                    await asyncio.sleep(retry.get_backoff_time())
                    continue
                try:
                    result = await conn.put(head, call, self.timeout)
                except _WriteStalled as stalled:
                    self._discard(conn)  # part of a request went out: the connection is unusable
                    raise WriteTimeout(write_timed_out(url, self.timeout), url) from (
                        stalled.__cause__
                    )
                except (OSError, ReplyError, _SendBroke) as exc:
                    self._discard(conn)
                    if isinstance(exc, _SendBroke):
                        cause = exc.__cause__
                        error: TransportError = ConnectionLost(send_broke("{url}", cause))
                        policy: Urllib3Error = ProtocolError(str(cause), cause)
                    elif isinstance(exc, TimeoutError):
                        error = ReadTimeout(read_timed_out("PUT", "{url}"))
                        policy = ReadTimeoutError(None, url, "read timed out")  # type: ignore[arg-type]
                    else:
                        reason = str(exc) or exc.__class__.__name__
                        error = ConnectionLost(connection_broke("PUT", "{url}", reason))
                        policy = ProtocolError(reason, exc)
                    retry = _next_retry(retry, url, error, policy, exc)
                    try:
                        call.rewind(url, exc)
                    except _LocalError as local:
                        raise local.error from None
                    await asyncio.sleep(retry.get_backoff_time())
                    continue
                except _LocalError as local:
                    self._discard(conn)
                    raise local.error from None
                except BaseException:  # cancelled mid-call: the connection's state is unknown
                    self._discard(conn)
                    raise
                self._checkin(conn)
                return result
        finally:
            self._release()

    async def _probe(self, remaining: float) -> int:
        """One ``HEAD`` on a pooled connection, no retry: the status."""
        what = f"HEAD {self.url}/"
        await self._acquire(remaining, what)
        try:
            try:
                conn = await self._checkout(min(remaining, 1.0))
            except _ConnectFailed as failed:
                raise failed.error_for(self.url) from failed.__cause__
            try:
                status = await conn.probe(self._heads.probe(self._target.prefix + "/"), remaining)
            except (OSError, ReplyError) as exc:
                self._discard(conn)
                reason = str(exc) or exc.__class__.__name__
                raise ConnectionLost(f"{what}: {reason}", self.url) from exc
            except BaseException:
                self._discard(conn)
                raise
            self._checkin(conn)
            return status
        finally:
            self._release()


# -- one connection ------------------------------------------------------------------------


class _Conn(asyncio.BufferedProtocol):
    """One connection: the transport's bytes into the wire, the wire's bytes out, with the
    read timeout and flow control in both directions. Between calls it is idle, and any byte
    or end that arrives then makes it unusable.

    Received bytes go into one reused buffer and on to the wire, except the body of a reply
    whose ``Content-Length`` the wire has framed and the caller keeps: the transport then
    receives it straight into one buffer of that size (`receive_body`), never gathered from
    pieces and joined.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.wire = ClientConnection()
        self.idle = False
        self.dropped = False  # bytes or an end arrived while idle, or the connection ended
        self.closed: asyncio.Future[None] = loop.create_future()  # done once the socket is
        self._read_buffer = memoryview(bytearray(_READ_BUFFER))
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0
        self._last = 0.0  # loop time of the last sign of life during a call
        self._body: memoryview | None = None  # where a body is received straight into
        self._filled = 0
        self._wake_each = False  # wake the reader at each read of a body (progress reports)

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if transport.get_extra_info("sslcontext") is None:
            # Writes wait until the kernel took everything: a large body is never copied
            # whole into the transport's buffer, only what one write of a slice left unsent.
            # (TLS encrypts each slice into buffers of its own anyway: default limits.)
            transport.set_write_buffer_limits(high=0)

    def get_buffer(self, sizehint: int) -> memoryview:
        body = self._body
        if body is not None:
            return body[self._filled :]
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None:
            self._filled += nbytes
            self._last = self._loop.time()
            if self._wake_each or self._filled == len(self._body):
                self._wake()
            return
        if self.idle:
            self.dropped = True  # the server spoke out of turn: never reuse this connection
            return
        self._chunks.append(bytes(self._read_buffer[:nbytes]))
        self._buffered += nbytes
        if self._buffered > _RECEIVE_HIGH and not self._reading_paused:
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self.dropped = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.dropped = True
        if exc is not None and self._error is None:
            self._error = exc
        self._eof = True
        self._writing_paused = False
        self._wake()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # -- for the client ------------------------------------------------------------------

    def nodelay(self) -> None:
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def sound(self) -> bool:
        """Whether an idle connection can carry a request: nothing arrived while it was
        idle, and nothing waits in the kernel (an end or bytes the loop has not read yet)."""
        if self.dropped or self.closed.done() or self.transport is None:
            return False
        if self.transport.is_closing():
            return False
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return False
        return not _readable_now(sock.fileno())

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.abort()

    async def put(self, head: bytes, call: _Call, timeout: float) -> tuple[ReplyHead, Any]:
        """Send one PUT and read its reply: the head and the body (``b""`` when written
        to ``out``).

        Raises:
            _WriteStalled: The server read nothing of the request for ``timeout`` seconds.
        """
        self._begin(timeout)
        try:
            wire = self.wire
            sent: OSError | None = None
            try:
                await call.send(self, wire, head)
            except TimeoutError as exc:
                raise _WriteStalled from exc
            except OSError as exc:  # the server may have answered, then closed, early
                sent = exc
            try:
                return await self._receive_reply(call)
            except (OSError, ReplyError):
                if sent is not None:
                    raise _SendBroke from sent
                raise
        finally:
            self._end()

    async def probe(self, head: bytes, timeout: float) -> int:
        self._begin(timeout)
        try:
            self.write(self.wire.start_probe(head))
            reply, _ = await self._receive_reply(None)
            return reply.status
        finally:
            self._end()

    async def _receive_reply(self, call: _Call | None) -> tuple[ReplyHead, Any]:
        wire = self.wire
        reply: ReplyHead | None = None
        pieces: list[bytes | memoryview] = []
        sink: _Sink | None = None
        keep = True
        wire.receive_data(await self.receive())  # a new exchange: the wire holds nothing yet
        while True:
            event = wire.next_event()
            if event is NEED_DATA:
                wire.receive_data(await self.receive())
            elif event is END_OF_MESSAGE:
                break
            elif event.__class__ is Data:
                data = event.data
                if sink is not None:
                    await sink.take(data)
                if keep:
                    pieces.append(data)
            else:
                assert isinstance(event, ReplyHead)
                reply = event
                if call is not None and reply.status == 200:
                    sink = call.sink(reply.length)
                    keep = call.out is None
                    if keep and reply.length is not None and reply.length > _DIRECT_BODY:
                        data = await self.receive_body(reply.length, sink)
                        end = wire.next_event()
                        assert end is END_OF_MESSAGE
                        if sink is not None:
                            sink.end()
                        return reply, data
        assert reply is not None
        if sink is not None:
            sink.end()
        if len(pieces) == 1 and pieces[0].__class__ is bytes:
            return reply, pieces[0]
        return reply, b"".join(pieces)

    async def receive_body(self, length: int, sink: _Sink | None) -> bytes:
        """A ``Content-Length`` body of ``length`` bytes, received into one buffer of that
        size: what the wire already holds is copied in, the rest the transport receives
        straight into it. The buffer is a `BytesIO`'s, so that the `bytes` it becomes is
        not a copy."""
        wire = self.wire
        whole = io.BytesIO()
        whole.seek(length - 1)
        whole.write(b"\0")
        view = whole.getbuffer()
        filled = 0
        try:
            while filled < length:  # the bytes that arrived with the head, or queued
                event = wire.next_event()
                if event is NEED_DATA:
                    if not self._chunks:
                        break
                    wire.receive_data(await self.receive())
                    continue
                assert isinstance(event, Data)
                count = len(event.data)
                view[filled : filled + count] = event.data
                filled += count
                if sink is not None:
                    await sink.take(event.data)
            if filled < length:
                await self._receive_into(view, filled, sink)
        finally:
            view.release()
        return whole.getvalue()

    async def _receive_into(self, view: memoryview, filled: int, sink: _Sink | None) -> None:
        wire = self.wire
        self._body = view
        self._filled = filled
        self._wake_each = sink is not None
        if self._reading_paused:
            self._reading_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        reported = filled
        try:
            while self._filled < len(view):
                if self._eof:
                    wire.body_received(self._filled - reported)
                    if isinstance(self._error, OSError):
                        raise self._error
                    wire.receive_data(b"")
                    wire.next_event()  # raises: the body was cut short
                    raise ReplyError("the reply body was cut short")
                await self._wait()
                if sink is not None and self._filled > reported:
                    await sink.take(view[reported : self._filled])
                    wire.body_received(self._filled - reported)
                    reported = self._filled
        finally:
            self._body = None
        if self._filled > reported:
            if sink is not None:
                await sink.take(view[reported : self._filled])
            wire.body_received(self._filled - reported)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the server closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport sent what it holds to the kernel."""
        while self._writing_paused:
            if self._eof:
                break
            await self._wait()
        if self._eof:
            raise (
                self._error
                if isinstance(self._error, OSError)
                else ConnectionResetError("the server closed the connection")
            )

    async def receive(self) -> bytes:
        """The next bytes received, ``b""`` at the end of the stream.

        Raises:
            TimeoutError: Nothing arrived for the call's timeout.
            OSError: The connection broke (e.g. reset).
        """
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                if self._reading_paused and self._buffered < _RECEIVE_LOW:
                    self._reading_paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                return data
            if self._eof:
                if isinstance(self._error, OSError):
                    raise self._error
                return b""
            await self._wait()

    def _begin(self, timeout: float) -> None:
        self._timeout = timeout
        self._last = self._loop.time()

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiter = None

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        if self._timer is None:
            self._timer = self._loop.call_at(self._last + self._timeout, self._on_timer)
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        self._last = self._loop.time()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        due = self._last + self._timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        waiter.set_exception(TimeoutError(f"nothing moved for {self._timeout:g} s"))


def _readable_now(fd: int) -> bool:
    """Whether a socket has something to read at once: for an idle keep-alive connection,
    an end or bytes never asked for (urllib3's check of a pooled connection)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


async def _connect_unix(path: str) -> socket.socket:
    """A socket connected to ``path``, without blocking the loop. Linux answers a connect to
    a listener whose queue is full with ``EAGAIN`` (where TCP would wait), so that is retried
    with a short backoff; the caller's timeout bounds it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        delay = 0.0005
        while True:
            try:
                sock.connect(path)  # a Unix connect completes or fails at once
            except BlockingIOError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            return sock
    except BaseException:
        sock.close()
        raise


# -- one call's body and reply -------------------------------------------------------------


class _WriteStalled(Exception):
    """The server stopped reading the request body for the whole timeout (the cause)."""


class _SendBroke(Exception):
    """The connection broke while the request was being sent (the cause), and no reply
    came: the handler never received the whole request."""


class _ConnectFailed(Exception):
    """Connecting failed: ``error`` (its message with ``{url}`` still to fill in) for the
    caller, ``policy_error`` for the retry policy."""

    def __init__(self, error: TransportError, policy_error: Urllib3Error | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.policy_error = policy_error or ConnectTimeoutError(error.message)

    def error_for(self, url: str) -> TransportError:
        return _with_url(self.error, url)


def _with_url(error: TransportError, url: str) -> TransportError:
    return error.__class__(error.message.replace("{url}", url), url)


def _next_retry(
    retry: Retry,
    url: str,
    error: TransportError,
    policy_error: Urllib3Error,
    cause: BaseException | None = None,
) -> Retry:
    """urllib3's retry policy decides (the sync client's); give up with ``error``."""
    try:
        return retry.increment("PUT", url, error=policy_error)
    except Urllib3Error:
        raise _with_url(error, url) from cause


class _Sink:
    """What a 200 reply's body goes through when it is streamed: ``out`` (written in the
    executor) and progress reports."""

    def __init__(self, call: _Call, total: int | None) -> None:
        self._call = call
        self._progress = call.progress
        if self._progress is not None:
            self._progress.begin(total)

    async def take(self, data: bytes | memoryview) -> None:
        out = self._call.out
        if out is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, write_all, out, memoryview(data))
            except Exception as exc:
                raise _LocalError(exc) from exc
            self._call.written += len(data)
        if self._progress is not None:
            self._progress.advance(len(data))

    def end(self) -> None:
        if self._progress is not None:
            self._progress.end()


class _Call:
    """One call's request body (encoded bytes, or a file read chunk by chunk), where its
    reply's body goes, and its progress reports."""

    def __init__(
        self,
        body: Any,
        file: Any,
        out: _BinaryWriter | None,
        progress: ProgressCallback | None,
        url: str,
    ) -> None:
        self.body = body
        self.file = file
        self.out = out
        self.url = url
        self.progress = None if progress is None else Progress(_guarded(progress))
        self.simple = file is None and out is None and progress is None
        self.start = None if file is None else position_of(file)
        self.size: int | None = None if file is None else stream_size(file)
        self.consumed = False  # bytes of the file payload were read
        self.written = 0  # bytes written into out

    def sink(self, length: int | None) -> _Sink | None:
        """Where a 200 reply's body goes, or ``None`` to keep it as the sync client does."""
        if self.simple:
            return None
        return _Sink(self, length)

    def rewind(self, url: str, error: BaseException) -> None:
        """Make the call ready to be sent again, or raise `ConnectionLost` if it cannot be."""
        if self.written:
            raise ConnectionLost(reply_written_then_broke(url, self.written, error), url)
        if self.file is None or not self.consumed:
            return
        if self.start is None:
            raise ConnectionLost(pipe_not_replayed(url, error), url)
        try:
            self.file.seek(self.start)
        except Exception as exc:
            raise _LocalError(exc) from exc
        self.consumed = False

    async def send(self, conn: _Conn, wire: ClientConnection, head: bytes) -> None:
        """Write the request: head and body, in one write when small; a large body in
        slices of the caller's buffer, each once the kernel took the last (never copied
        whole)."""
        if self.file is not None:
            await self._send_file(conn, wire, head)
            return
        body = self.body
        view = body if body.__class__ is memoryview else memoryview(body)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        length = view.nbytes
        progress = self.progress
        message = wire.start_put(head, length)
        if progress is not None:
            progress.begin(length)
        if length <= ONE_WRITE_LIMIT:
            wire.send_data(view)
            conn.write(message + view if length else message)  # one write: no Nagle stall
            if progress is not None:
                progress.advance(length)
        else:
            conn.write(message)
            step = length if length <= _WHOLE_WRITE else _SEND_SLICE
            for start in range(0, length, step):
                piece = view[start : start + step]
                for frame in wire.send_data(piece):
                    conn.write(frame)
                await conn.drain()
                if progress is not None:
                    progress.advance(len(piece))
        await self._finish(conn, wire)

    async def _send_file(self, conn: _Conn, wire: ClientConnection, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        size = self.size
        progress = self.progress
        message = wire.start_put(head, size)
        if progress is not None:
            progress.begin(size)
        self.consumed = True
        if size is not None and size <= ONE_WRITE_LIMIT:
            data = await self._read(loop, read_whole, self.file, size)
            wire.send_data(data)
            conn.write(message + data)
            if progress is not None:
                progress.advance(len(data))
        else:
            conn.write(message)
            chunks = FileChunks(self.file, size)
            while chunk := await self._read(loop, chunks.next):
                for frame in wire.send_data(chunk):
                    conn.write(frame)  # what the kernel does not take now is copied
                await conn.drain()
                if progress is not None:
                    progress.advance(len(chunk))
        await self._finish(conn, wire)

    async def _finish(self, conn: _Conn, wire: ClientConnection) -> None:
        """End the request body and wait until the kernel took all of it."""
        end = wire.end_request()
        if end:
            conn.write(end)
        await conn.drain()
        if self.progress is not None:
            self.progress.end()

    async def _read(
        self, loop: asyncio.AbstractEventLoop, function: Callable[..., T], *args: Any
    ) -> T:
        """Read from the payload file in the loop's default executor."""
        try:
            return await loop.run_in_executor(None, function, *args)
        except FileEndedEarly as exc:
            raise _LocalError(EncodeError(file_ended_early(self.url, exc.done, exc.size))) from None
        except TypeError as exc:  # read() gave str: a text-mode file object
            raise _LocalError(EncodeError(f"the file payload cannot be sent: {exc}")) from exc
        except Exception as exc:
            raise _LocalError(exc) from exc
