"""Protocol core: turns a request head and body into a reply, with no I/O.

Owns the semantics above the wire: which methods and targets are served, auth, the statuses of
the handler's answer, media-type parsing, problem+json and codec choice, for the server
backends (and, in `raise_for_reply`, the client). It never sees a socket: the wire (`_wire`:
line splitting, limits, the head grammar, body framing) hands it a parsed, framed head, and
backends write what comes back. The wire's names used by other modules are re-exported here.
"""

from __future__ import annotations

import hmac
import io
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote

import msgspec

from ._errors import DecodeError, EncodeError, RemoteError, error_class_for_status
from ._handler import HTTPDataHandler, ResolvedRoute, resolve_routes
from ._stream import (
    BodyCutShort,
    BodyRejected,
    BodyTimeout,
    BodyTooLarge,
    FileBody,
    RequestBody,
    is_binary_file,
    is_text_file,
    stream_size,
)
from ._wire import (
    CHUNK_TAIL,
    LAST_CHUNK,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    STATUS_PHRASES,
    HTTPError,
    RequestHead,
    asks_to_close,
    check_content_length,
    chunk_head,
    parse_content_length,
    parse_request_head,
    parse_response_head,
)
from .codecs._base import BytesCodec, Codec
from .codecs._registry import CodecRegistry

__all__ = [
    "CHUNK_TAIL",
    "DEFAULT_MAX_BODY_SIZE",
    "LAST_CHUNK",
    "MAX_ACCEPT_ITEMS",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_LINE",
    "PROBLEM_MEDIA_TYPE",
    "STATUS_PHRASES",
    "HTTPError",
    "Reply",
    "Request",
    "RequestHead",
    "ServerCore",
    "asks_to_close",
    "check_token",
    "chunk_head",
    "codec_for_content_type",
    "parse_accept",
    "parse_content_length",
    "parse_media_type",
    "parse_request_head",
    "parse_response_head",
    "problem_body",
    "raise_for_reply",
]

_log: Final = logging.getLogger("dataserve")

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
OCTET_STREAM: Final = "application/octet-stream"
_NO_PARAMS: Final[Mapping[str, str]] = MappingProxyType({})
_HEAD_HEADERS: Final = (("Content-Type", "text/plain"),)
LEGACY_ACCEPT: Final = ("application/json", "text/plain", "application/octet-stream")
"""What a peer that sends no ``Accept`` (dataserve 0.1) is taken to accept: the 0.1 types."""

DEFAULT_MAX_BODY_SIZE: Final = 1 << 30
"""1 GiB: the largest request body a server accepts unless told otherwise."""
_CACHE_LIMIT: Final = 1024
_CACHEABLE_HEADER: Final = 256  # longer header values are parsed every time, never kept
MAX_ACCEPT_ITEMS: Final = 32
"""Media types of an ``Accept`` header considered, most preferred first; the rest are ignored."""
_PROBLEM_ENCODER: Final = msgspec.json.Encoder()


class Reply:
    """What a backend must send: a status, headers (framing excluded) and a body.

    ``Content-Length``, ``Date`` and ``Connection`` are the backend's to add.
    """

    __slots__ = ("body", "close", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: Any,
        close: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.close = close


class Request:
    """A request that passed every check on its head and whose body may now be read."""

    __slots__ = (
        "accept",
        "chunked",
        "codec",
        "content_length",
        "expect_continue",
        "keep_alive",
        "params",
        "resource",
        "stream",
    )

    def __init__(
        self,
        resource: str,
        content_length: int,
        codec: Codec[Any] | None,
        params: Mapping[str, str],
        accept: tuple[str, ...],
        keep_alive: bool,
        expect_continue: bool = False,
        chunked: bool = False,
        stream: bool = False,
    ) -> None:
        self.stream = stream  # a route reads the body as a stream: the shell must not read it
        self.expect_continue = expect_continue  # send "100 Continue" before reading the body
        self.chunked = chunked  # the body is chunked (content_length is then 0): decode it
        self.resource = resource
        self.content_length = content_length
        self.codec = codec  # None for HEAD
        self.params = params
        self.accept = accept
        self.keep_alive = keep_alive


_TOKEN_TEXT: Final = re.compile(r"[\x21-\x7e]+")


def check_token(token: str | None) -> str | None:
    """Validate a bearer token: visible ASCII without spaces (what a header can carry).

    Raises:
        ValueError: The token is empty or holds other characters (the token is not shown).
    """
    if token is not None and not _TOKEN_TEXT.fullmatch(token):
        raise ValueError(
            "auth_token must be non-empty visible ASCII without spaces "
            "(e.g. secrets.token_urlsafe()); the token given is not"
        )
    return token


_media_type_cache: dict[str, tuple[str, Mapping[str, str]]] = {}


# RFC 9110 5.6.6: parameters = *( OWS ";" OWS [ parameter ] ), parameter = name "=" value,
# value = token / quoted-string (5.6.4: DQUOTE *( qdtext / quoted-pair ) DQUOTE).
_PARAMETER: Final = re.compile(
    r'[ \t]*;[ \t]*(?:([^=;\s]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^;]*))?'
)
_QUOTED_PAIR: Final = re.compile(r"\\(.)")


def parse_media_type(header: str) -> tuple[str, Mapping[str, str]]:
    """Split a Content-Type header into its type and its parameters (RFC 9110 8.3.1).

    Args:
        header: As received, e.g. ``'Text/Plain; charset="latin-1"'``.
    Returns:
        ``("text/plain", {"charset": "latin-1"})``, names lower-cased; a quoted value is
        unquoted (``charset="a;b"`` is ``a;b``, ``\\"`` is ``"``). The parameters are
        read-only: they are shared by every request with the same header, so a codec cannot
        change what the next request sees. A parameter without ``=`` is ignored.
    """
    cached = _media_type_cache.get(header)
    if cached is not None:
        return cached
    media_type, semicolon, _ = header.partition(";")
    params: dict[str, str] = {}
    pos = len(media_type) if semicolon else len(header)
    end = len(header)
    while pos < end:
        match = _PARAMETER.match(header, pos)
        if match is None or match.end() == pos:  # an item without "=": skip to the next ";"
            pos = header.find(";", pos + 1)
            if pos < 0:
                break
            continue
        name, value = match[1], match[2]
        if name is not None:
            value = value.strip(" \t")
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
            params[name.lower()] = value
        pos = match.end()
    result = (media_type.strip().lower(), MappingProxyType(params) if params else _NO_PARAMS)
    if len(header) <= _CACHEABLE_HEADER:
        if len(_media_type_cache) >= _CACHE_LIMIT:
            _media_type_cache.clear()
        _media_type_cache[header] = result
    return result


def codec_for_content_type(
    registry: CodecRegistry, content_type: str | None
) -> tuple[Codec[Any] | None, str, Mapping[str, str]]:
    """The codec that decodes a body with this ``Content-Type`` (``None`` if none does).

    A missing or empty header means ``application/octet-stream`` (RFC 9110 section 8.3).

    Returns:
        The codec, the bare media type and its parameters.
    """
    if not content_type:  # absent (or empty, as WSGI servers report an absent one)
        return registry.codec_for_media_type(OCTET_STREAM), OCTET_STREAM, _NO_PARAMS
    media_type, params = parse_media_type(content_type)
    return registry.codec_for_media_type(media_type), media_type, params


_accept_cache: dict[str, tuple[str, ...]] = {}


def parse_accept(header: str) -> tuple[str, ...]:
    """The media types of an ``Accept`` header, most preferred first (``q=0`` left out).

    Ties keep the order in which the peer listed them.
    """
    cached = _accept_cache.get(header)
    if cached is not None:
        return cached
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")):
        media_type, params = parse_media_type(item)
        if not media_type:
            continue
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if q > 0:
            ranked.append((-q, index, media_type))
    result = tuple(media_type for _, _, media_type in sorted(ranked)[:MAX_ACCEPT_ITEMS])
    if len(header) <= _CACHEABLE_HEADER:
        if len(_accept_cache) >= _CACHE_LIMIT:
            _accept_cache.clear()
        _accept_cache[header] = result
    return result


def problem_body(status: int, detail: str, extra: Mapping[str, object] | None = None) -> bytes:
    """An RFC 9457 problem object: ``type``, ``title``, ``status``, ``detail`` and extensions."""
    problem: dict[str, object] = {
        "type": "about:blank",
        "title": STATUS_PHRASES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if extra:
        problem.update(extra)
    try:
        return _PROBLEM_ENCODER.encode(problem)
    except (UnicodeEncodeError, msgspec.EncodeError, TypeError, ValueError, RecursionError):
        # e.g. a lone surrogate in an exception message: escape what UTF-8 cannot hold.
        return _PROBLEM_ENCODER.encode({key: _printable(value) for key, value in problem.items()})


def _printable(value: object) -> object:
    if isinstance(value, int):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_reply(error: HTTPError) -> Reply:
    """The problem+json reply for a rejected request."""
    headers = (("Content-Type", PROBLEM_MEDIA_TYPE), *error.headers)
    return Reply(
        error.status,
        headers,
        problem_body(error.status, error.detail, error.extra),
        close=error.close,
    )


def _no_route_detail(resource: str, routes: Mapping[str, object]) -> str:
    """The 404 detail for a handler of routes only, asked for a resource none of them names."""
    names = sorted(routes)
    shown = ", ".join(repr(name) for name in names[:10]) + (", ..." if len(names) > 10 else "")
    return (
        f"no route for {resource!r}: the handler's routes are {shown}, and it does not "
        "override handle_request, which would receive the other resources"
    )


def _none_detail(resource: str, route: ResolvedRoute | None) -> str:
    """The 404 detail for a handler that returned ``None``: true in both of its meanings."""
    if route is None:
        return (
            f"the handler returned None for {resource!r}: either it does not handle that "
            "resource, or None was its answer, which handle_request cannot send (to answer "
            "null, declare a @route whose return annotation admits None, e.g. '-> int | None')"
        )
    annotation = route.return_type
    if annotation is None:
        shown = "it has no return annotation"
        suggestion = "'-> X | None'"
    else:
        name = annotation.__qualname__ if isinstance(annotation, type) else repr(annotation)
        name = name.replace("typing.", "")
        shown = f"its return annotation {name} does not admit None"
        suggestion = f"'-> {name} | None'"
    return (
        f"the route for {resource!r} returned None, which means not handled ({shown}); "
        f"annotate it {suggestion} to answer null instead"
    )


def _resource_of(target: str) -> str:
    if target[0] != "/":
        # absolute-form (RFC 9112 3.2.2): keep only the path.
        scheme, sep, rest = target.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise HTTPError(400, "request target must be a path such as /xdata", close=True)
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path = target.partition("?")[0]
    if "%" in path:
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise HTTPError(
                400, "request path is not valid UTF-8 once percent-decoded", close=True
            ) from None
    if "\x00" in path:
        raise HTTPError(400, "NUL character in request path", close=True)
    return path


class ServerCore:
    """The server side of the protocol: checks a request head, then turns a body into a reply.

    Shared by the socket backend and the WSGI adapter. Safe to use from many threads at once.

    Args:
        handler: The handler instance.
        registry: The codecs the server decodes (an allow-list) and encodes with.
        auth_token: If set, every PUT must carry ``Authorization: Bearer <token>``.
        max_body_size: Largest request body, in bytes: the ``Content-Length`` checked here
            (with the wire's `check_content_length`), a chunked body's total by the wire.
        expose_tracebacks: Put the handler's traceback in 500 replies (debugging only).
    """

    def __init__(
        self,
        handler: HTTPDataHandler,
        registry: CodecRegistry,
        *,
        auth_token: str | None = None,
        max_body_size: int,
        expose_tracebacks: bool = False,
    ) -> None:
        self.handler = handler
        self.registry = registry
        check_token(auth_token)
        self._expected_auth = None if auth_token is None else f"Bearer {auth_token}".encode()
        self.max_body_size = max_body_size
        self.expose_tracebacks = expose_tracebacks
        self._routes = resolve_routes(handler)
        self._streamed = frozenset(r for r, route in self._routes.items() if route.stream)
        self._catch_all: Callable[[str, Any], object] = handler.handle_request
        # A handler of routes only: a resource no route names is answered without asking it.
        self._routes_only = type(handler).handle_request is HTTPDataHandler.handle_request
        self._ok_headers: dict[str, tuple[tuple[str, str], ...]] = {}

    # -- head ------------------------------------------------------------------------------

    def check_head(self, head: RequestHead) -> Request:
        """Check everything that can be checked before the body is read, on a head the wire
        has framed (`frame_request`: its framing errors come first).

        Returns:
            The request, with the codec that will decode its body (``None`` for HEAD).
        Raises:
            HTTPError: 401, 405, 411, 413, 415, 501 for a transfer coding other than
                chunked, or 400 for ambiguous framing.
        """
        headers = head.headers
        keep_alive = head.keep_alive  # framed by the wire (frame_request), as is the body
        length = head.length
        chunked = head.chunked
        method = head.method
        if method == "HEAD":
            # A HEAD's body is never read: the connection closes after the reply (drained).
            return Request(head.target, 0, None, {}, (), keep_alive and length <= 0 and not chunked)
        if method != "PUT":
            raise HTTPError(
                405,
                f"method {method} is not allowed; dataserve calls use PUT (and HEAD for liveness)",
                close=length > 0 or chunked or not keep_alive,
                headers=(("Allow", "PUT, HEAD"),),
            )
        resource = _resource_of(head.target)
        if self._expected_auth is not None:
            given = headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, self._expected_auth):
                raise HTTPError(
                    401,
                    "missing or wrong bearer token",
                    close=True,
                    headers=(("WWW-Authenticate", 'Bearer realm="dataserve"'),),
                )
        if length < 0 and not chunked:
            raise HTTPError(
                411,
                "a PUT needs a Content-Length or a chunked body (Transfer-Encoding: chunked)",
                close=True,
            )
        check_content_length(length, self.max_body_size)
        codec, media_type, params = codec_for_content_type(
            self.registry, headers.get("content-type")
        )
        stream = resource in self._streamed  # a BinaryIO route takes any Content-Type
        if codec is None and stream:
            codec = _STREAM_CODEC
        if codec is None:
            accepted = ", ".join(self.registry.media_types)
            raise HTTPError(
                415,
                f"no codec for Content-Type {media_type!r}; this server accepts {accepted}",
                close=True,
            )
        expect = headers.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            raise HTTPError(417, f"unsupported expectation {expect!r}", close=True)
        accept = headers.get("accept")
        return Request(
            resource,
            length if length >= 0 else 0,  # 0 for a chunked body
            codec,
            params,
            parse_accept(accept) if accept else LEGACY_ACCEPT,
            keep_alive,
            head.expect_continue,
            chunked,
            stream,
        )

    # -- body ------------------------------------------------------------------------------

    def handle(self, request: Request, body: Any) -> Reply:
        """Decode the body, call the handler, encode its return value.

        Never raises for anything the peer or the handler did: every failure is a reply.
        """
        try:
            reply = self._handle(request, body)
        except HTTPError as error:
            reply = error_reply(error)
        except Exception as exc:  # a codec or hook failed in a way no rule above expected
            name = exc.__class__.__name__
            _log.error("dataserve: failed to answer %r: %s", request.resource, name, exc_info=exc)
            reply = error_reply(
                HTTPError(500, f"the server failed to answer: {name}", extra={"exception": name})
            )
        if body.__class__ is RequestBody and body.error is not None:
            reply = _stream_failed(request, body, reply)
        if not request.keep_alive:
            reply.close = True  # HTTP/1.0 or "Connection: close": whatever the reply
        return reply

    def _handle(self, request: Request, body: Any) -> Reply:
        resource = request.resource
        codec = request.codec
        if codec is None:  # HEAD
            return Reply(200, _HEAD_HEADERS, b"")
        route = self._routes.get(resource)
        if route is None and self._routes_only:
            raise HTTPError(404, _no_route_detail(resource, self._routes))
        if route is None:
            payload = self._decode(codec, body, request.params, None)
            call: Callable[[str, Any], object] = self._catch_all
            try:
                result = call(resource, payload)
            except Exception as exc:
                return self._handler_failed(resource, exc)
        else:
            payload = (
                _as_stream(body)
                if route.stream
                else self._decode(codec, body, request.params, route.payload_type)
            )
            try:
                result = route.method(payload)
            except Exception as exc:
                if route.stream and exc is getattr(payload, "error", None):
                    return Reply(500, (), b"")  # the body failed: handle() answers that
                return self._handler_failed(resource, exc)
            if route.return_type is not None and result is not None:
                try:
                    result = msgspec.convert(result, route.return_type)
                except (msgspec.ValidationError, TypeError) as exc:
                    _close_if_file(result)
                    raise HTTPError(
                        500,
                        f"the route for {resource!r} returned a value that "
                        f"does not fit its return annotation: {exc}",
                        extra={"exception": "ValidationError"},
                    ) from None
        if result is None and (route is None or not route.none_is_value):
            raise HTTPError(404, _none_detail(resource, route))
        if is_binary_file(result):
            return _file_reply(result, resource)
        try:
            out_codec, data = self.registry.encode_for(result, request.accept)
            content_type = self.registry.content_type(out_codec, result)
        except EncodeError as exc:
            name = result.__class__.__name__
            raise HTTPError(
                500,
                f"the handler returned a value of type {name!r} for {resource!r} "
                f"that the server could not encode: {exc}",
                extra={"exception": "EncodeError"},
            ) from exc
        headers = self._ok_headers.get(content_type)
        if headers is None:
            headers = (("Content-Type", content_type),)
            if len(self._ok_headers) >= _CACHE_LIMIT:
                self._ok_headers.clear()
            self._ok_headers[content_type] = headers
        return Reply(200, headers, data)

    def _decode(
        self, codec: Codec[Any], body: Any, params: Mapping[str, str], target: object
    ) -> Any:
        try:
            return self.registry.decode(codec, body, params, target)
        except DecodeError as exc:
            raise HTTPError(400, str(exc)) from None

    def _handler_failed(self, resource: str, exc: Exception) -> Reply:
        name = exc.__class__.__name__
        _log.error("dataserve: the handler raised %s for %r", name, resource, exc_info=exc)
        extra: dict[str, object] = {"exception": name}
        if self.expose_tracebacks:
            extra["traceback"] = "".join(traceback.format_exception(exc))
        try:
            message = str(exc)
        except Exception:
            message = "(its message could not be turned into text)"
        return error_reply(HTTPError(500, f"{name}: {message}", extra=extra))


_STREAM_CODEC: Final = BytesCodec()
_FILE_HEADERS: Final = (("Content-Type", OCTET_STREAM),)


def _as_stream(body: Any) -> Any:
    """The body for a route annotated ``BinaryIO``: the shell's stream, or (from a shell that
    read the body whole) a stream over the bytes."""
    return body if body.__class__ is RequestBody else io.BytesIO(body)


def _file_reply(result: Any, resource: str) -> Reply:
    """The reply for a binary file object a handler returned: streamed by the shell, which
    closes the file once the reply is sent or has failed."""
    if result.__class__ is RequestBody:
        raise HTTPError(
            500,
            f"the handler for {resource!r} returned its request body stream; read it and "
            "return the data, a file or a memoryview",
            extra={"exception": "TypeError"},
        )
    if is_text_file(result):
        _close_if_file(result)
        raise HTTPError(
            500,
            f"the handler for {resource!r} returned a file opened in text mode; "
            "open it with 'rb' to stream it",
            extra={"exception": "TypeError"},
        )
    try:
        size = stream_size(result)
    except Exception:
        _close_if_file(result)
        raise
    return Reply(200, _FILE_HEADERS, FileBody(result, size, resource))


def _close_if_file(value: object) -> None:
    if is_binary_file(value):
        FileBody(value, None, "").close()


def _stream_failed(request: Request, body: RequestBody, reply: Reply) -> Reply:
    """The reply when a streamed request body could not be read, whatever the route did."""
    if reply.body.__class__ is FileBody:
        reply.body.close()
    error = body.error
    resource = request.resource
    if isinstance(error, BodyTimeout):
        failure = HTTPError(
            408,
            f"no byte of the request body for {resource!r} arrived within the server's "
            "request_timeout",
            close=True,
        )
    elif isinstance(error, BodyTooLarge):
        failure = HTTPError(413, str(error), close=True)  # the wire's detail (check_body_total)
    elif isinstance(error, BodyRejected):
        failure = HTTPError(error.status, error.detail, close=True)
    elif isinstance(error, BodyCutShort):
        failure = HTTPError(400, str(error), close=True)  # the wire's detail (body_cut_short)
    else:
        failure = HTTPError(
            400, f"the request body for {resource!r} could not be read: {error}", close=True
        )
    return error_reply(failure)


# -- client side -----------------------------------------------------------------------------


def raise_for_reply(
    status: int, content_type: str | None, body: bytes, method: str, url: str
) -> None:
    """Raise the `ServerError` subclass for an error reply (problem+json or plain text)."""
    detail = ""
    exception_type = ""
    remote_traceback = ""
    is_problem = False
    if content_type is not None and parse_media_type(content_type)[0] == PROBLEM_MEDIA_TYPE:
        try:
            problem = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            problem = None
        if isinstance(problem, dict):
            is_problem = True
            detail = str(problem.get("detail", ""))
            exception_type = str(problem.get("exception", ""))
            remote_traceback = str(problem.get("traceback", ""))
    if not detail:
        detail = body[:500].decode("utf-8", "replace").strip()
    phrase = STATUS_PHRASES.get(status, "")
    message = f"{method} {url} answered {status} {phrase}".rstrip()
    if detail:
        message += f": {detail}"
    if status == 404 and not (is_problem and detail):
        # A dataserve server's detail says why (the handler returned None); anything else
        # (a proxy, another program on that port) gets the generic hint.
        message += "; check the resource name and the server's URL"
    cls = error_class_for_status(status)
    if cls is RemoteError:
        raise RemoteError(message, status, detail, url, exception_type, remote_traceback)
    raise cls(message, status, detail, url)
