"""`make_app`: the same handler and protocol as `HTTPDataServer`, as a WSGI application.

Run it under gunicorn (many processes behind one port) when one process is not enough::

    # app.py
    from dataserve.wsgi import make_app
    from myserver import MyDataHandler

    app = make_app(MyDataHandler, auth_token=os.environ["DATASERVE_TOKEN"])

    $ gunicorn --workers 4 --bind 127.0.0.1:5001 app:app

Status codes, problem+json bodies, codecs and typed routes are those of the socket server:
both backends hand requests to one protocol core, and a body's framing and limits
(Content-Length or chunked, 411, 413) are decided by the same wire functions (`_wire`).
Connection handling (keep-alive, timeouts, the number of workers and connections) is the WSGI
server's: configure it there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from ._handler import HTTPDataHandler, instantiate_handler
from ._protocol import (
    DEFAULT_MAX_BODY_SIZE,
    STATUS_PHRASES,
    HTTPError,
    Reply,
    Request,
    RequestHead,
    ServerCore,
    error_reply,
)
from ._stream import (
    CHUNK_SIZE,
    DRAIN_LIMIT,
    BodyCutShort,
    BodyTooLarge,
    FileBody,
    FileChunks,
    Read1Source,
    RequestBody,
    kernel_offset,
)
from ._wire import (
    body_cut_short,
    check_body_complete,
    check_body_total,
    frame_request,
    parse_version,
    reply_has_body,
    unterminated_chunked_error,
)
from .codecs._registry import CodecRegistry, default_registry

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["make_app"]

_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
_READ_SIZE: Final = 1 << 20  # a chunked body is read from wsgi.input in pieces of at most this


def make_app(
    handler: type[HTTPDataHandler] | HTTPDataHandler,
    *,
    registry: CodecRegistry | None = None,
    auth_token: str | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    expose_tracebacks: bool = False,
) -> WSGIApplication:
    """A WSGI application serving a handler with dataserve's protocol.

    The handler is instantiated (its data loaded) when the application is made, once per
    process: under gunicorn, once per worker (or once in the master with ``--preload``).

    Args:
        handler: An `HTTPDataHandler` subclass (instantiated once, with no arguments) or an
            instance.
        registry: Codecs to decode (an allow-list) and encode with; the process-wide default
            when ``None``.
        auth_token: Require ``Authorization: Bearer <token>`` on every call (constant-time
            comparison; ``HEAD`` needs none).
        max_body_size: Largest request body, in bytes (413 beyond: before reading a body
            with a ``Content-Length``, as soon as a chunked one passes it). A chunked body is
            read to the end of ``wsgi.input`` where the WSGI server de-chunks it and says so
            with ``wsgi.input_terminated`` (gunicorn does); elsewhere it is 411.
        expose_tracebacks: Put handler tracebacks in 500 replies (debugging only).
    Returns:
        The WSGI application, safe to call from several threads at once.
    """
    core = ServerCore(
        instantiate_handler(handler),
        registry if registry is not None else default_registry(),
        auth_token=auth_token,
        max_body_size=max_body_size,
        expose_tracebacks=expose_tracebacks,
    )

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        head = _head_of(environ)
        is_head = not reply_has_body(head.method)  # the wire's rule: a HEAD's reply has none
        try:
            request = core.check_head(frame_request(head))  # framed as the socket server does
            length = request.content_length
            if request.stream:  # a BinaryIO route reads wsgi.input itself, bounded
                reply = _handle_streamed(core, request, environ)
            else:
                if request.chunked:
                    body = _read_to_end(environ, core.max_body_size)
                else:
                    body = environ["wsgi.input"].read(length) if length else b""
                    check_body_complete(len(body), length)  # the WSGI server saw the client go
                reply = core.handle(request, body)
        except HTTPError as error:
            reply = error_reply(error)
        data = reply.body
        if data.__class__ is FileBody:  # a file the handler returned: streamed, then closed
            return _file_response(reply, data, start_response, environ, is_head)
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        headers = [*reply.headers, ("Content-Length", str(size))]
        start_response(f"{reply.status} {STATUS_PHRASES.get(reply.status, '')}", headers)
        if is_head or not size:
            return []
        if size > CHUNK_SIZE and not isinstance(data, bytes):
            return _buffer_chunks(memoryview(data).cast("B"))  # never one copy of it all
        return [data if isinstance(data, bytes) else bytes(data)]

    app.__doc__ = f"dataserve WSGI application for {type(core.handler).__qualname__}"
    return app


def _read_to_end(environ: WSGIEnvironment, max_body_size: int) -> bytes:
    """A chunked body, which the WSGI server has already de-chunked: read to its end.

    Raises:
        HTTPError: 413 as soon as more than ``max_body_size`` bytes arrived; 411 if the WSGI
            server does not say it ends ``wsgi.input`` at the body's end (``wsgi.input_terminated``,
            as gunicorn does), since reading on could then block or read past the body.
    """
    if not environ.get("wsgi.input_terminated"):
        raise unterminated_chunked_error()
    stream = environ["wsgi.input"]
    parts: list[bytes] = []
    total = 0
    while True:
        part = stream.read(min(_READ_SIZE, max_body_size + 1 - total))
        if not part:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        total += len(part)
        check_body_total(total, max_body_size)  # the wire's limit, as on the socket server
        parts.append(part)


def _buffer_chunks(view: memoryview) -> Iterator[bytes]:
    """A large buffer as bytes chunks (WSGI servers take bytes only), one copied at a time."""
    for start in range(0, view.nbytes, CHUNK_SIZE):
        yield bytes(view[start : start + CHUNK_SIZE])


def _handle_streamed(core: ServerCore, request: Request, environ: WSGIEnvironment) -> Reply:
    """Serve a request whose route reads its body as a stream over ``wsgi.input``.

    What the route leaves unread is read and discarded up to `DRAIN_LIMIT`; anything beyond
    is left to the WSGI server (which discards it or closes the connection).

    Raises:
        HTTPError: 411 for a chunked body when the WSGI server does not end ``wsgi.input``
            at the body's end (see `_read_to_end`).
    """
    if request.chunked and not environ.get("wsgi.input_terminated"):
        raise unterminated_chunked_error()
    length = None if request.chunked else request.content_length
    stream = RequestBody(_WSGIBody(environ["wsgi.input"], length, core.max_body_size))
    reply = core.handle(request, stream)
    if stream.error is None:
        stream.drain(DRAIN_LIMIT)
    return reply


class _WSGIBody(Read1Source):
    """A streamed request body from ``wsgi.input``: at most ``length`` bytes (PEP 3333: never
    read past ``CONTENT_LENGTH``, which `check_head` bounded by ``max_body_size``), or, for a
    chunked body the WSGI server de-chunks (``length`` ``None``), up to the end it marks,
    bounded by the wire's ``check_body_total``. Stalls are the WSGI server's to time out."""

    __slots__ = ("_ended", "_input", "length", "max_body_size", "received")

    def __init__(self, wsgi_input: Any, length: int | None, max_body_size: int) -> None:
        self._input = wsgi_input
        self.length = length
        self.max_body_size = max_body_size
        self.received = 0
        self._ended = length == 0

    def exhausted(self) -> bool:
        return self._ended

    def read1(self, size: int, /) -> bytes:
        wanted = min(size, CHUNK_SIZE)
        if self.length is not None:
            wanted = min(wanted, self.length - self.received)
        else:  # one byte past the limit at most: enough to see it passed
            wanted = min(wanted, self.max_body_size + 1 - self.received)
        if self._ended or wanted <= 0:
            return b""
        try:
            data = self._input.read(wanted)
        except Exception as exc:  # each WSGI server raises its own kind for a lost client
            raise BodyCutShort(
                f"reading the request body from the WSGI server failed after {self.received} "
                f"bytes ({exc.__class__.__name__}: {exc}); send the whole body"
            ) from exc
        self.received += len(data)
        if not data:
            if self.length is not None:
                raise BodyCutShort(body_cut_short(self.received, self.length).detail)
            self._ended = True  # the de-chunked body's end
        elif self.received == self.length:
            self._ended = True
        elif self.length is None:
            try:
                check_body_total(self.received, self.max_body_size)  # the wire's limit
            except HTTPError as error:
                raise BodyTooLarge(error.detail) from None
        return bytes(data)


def _file_response(
    reply: Reply,
    body: FileBody,
    start_response: StartResponse,
    environ: WSGIEnvironment,
    is_head: bool,
) -> Iterable[bytes]:
    """A file a handler returned: with its ``Content-Length`` when its size is known,
    through the server's ``wsgi.file_wrapper`` for a real file (gunicorn sends it with
    ``sendfile``), otherwise as chunks; it is closed when the server closes the response."""
    headers = list(reply.headers)
    if body.size is not None:
        headers.append(("Content-Length", str(body.size)))
    try:
        start_response(f"{reply.status} {STATUS_PHRASES.get(reply.status, '')}", headers)
    except BaseException:
        body.close()
        raise
    if is_head:
        body.close()
        return []
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None and kernel_offset(body.file) is not None:
        wrapped: Iterable[bytes] = wrapper(body.file, CHUNK_SIZE)
        return wrapped
    return _FileChunksIterable(body)


class _FileChunksIterable:
    """A returned file as an iterable of bytes chunks, closed by the WSGI server's
    ``close()`` (PEP 3333), also when the client went away mid-reply."""

    def __init__(self, body: FileBody) -> None:
        self._body = body
        self._chunks = FileChunks(body.file, body.size)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self._chunks.next()
        if not chunk:
            raise StopIteration
        return bytes(chunk)

    def close(self) -> None:
        self._body.close()


def _head_of(environ: WSGIEnvironment) -> RequestHead:
    """The request head the core expects, rebuilt from a WSGI environ (the WSGI server has
    parsed it; `frame_request` frames its body as the socket server's wire does)."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        value = environ.get(key)
        if value:
            headers[name] = value
    # A version the WSGI server accepted but the wire does not name (an HTTP/2 front): 1.1.
    version = parse_version(str(environ.get("SERVER_PROTOCOL", ""))) or (1, 1)
    # PATH_INFO is the percent-decoded path as latin-1 text (PEP 3333): encode it back so that
    # the core decodes the resource exactly as the socket server does (UTF-8, NUL refused).
    path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe=_PATH_SAFE) or "/"
    method: Any = environ.get("REQUEST_METHOD", "GET")
    return RequestHead(str(method), path, version, headers)
