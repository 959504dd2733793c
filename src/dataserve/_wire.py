"""The wire, with no I/O: HTTP/1.1 messages as bytes, for both sides of a connection.

Owns what HTTP/1.1 says about bytes (RFC 9112): the status table, line splitting and the CR/LF
rules, the request-line and header-section limits (414, 431), the head grammar, the framing
of a request body (``Content-Length``, ``Transfer-Encoding: chunked`` and its chunk grammar,
request smuggling refused), ``max_body_size`` (413), keep-alive and the ``Connection``
tokens, ``100 Continue``, HEAD (known from the parsed method), the reply head and the framing
of a reply body, and what is left over after a message (pipelining).

In h11's shape: a `ServerConnection` takes the bytes a shell received and hands out events (a
request head, body data, the end of the message), and turns a reply into the bytes to send. It
never sees a socket, a thread or a clock: the shell moves the bytes, keeps the deadlines and
passes in its clock's time for the ``Date`` line (`date_line`); the semantics (methods, auth,
codecs, statuses of the handler's answer) are `ServerCore`'s (`_protocol`).

The client side is the same shape: `ClientConnection` frames a request (`RequestHeads` builds
its head once per path and media type; ``Content-Length``, or chunked for a body of unknown
size) and turns the bytes received into a `ReplyHead`, `Data` and `END_OF_MESSAGE`. It owns
the reply-head grammar (`parse_response_head`) and limits, 1xx replies (skipped), replies
without a body (HEAD, 204, 304), ``Content-Length`` and chunked framing (decoded by the same
`ChunkedDecoder`), HTTP/1.0 replies ended by the close, keep-alive, and bytes left over after
a reply (the connection is then not reused); a reply it cannot frame is a `ReplyError`, never
a guess. The sync client (on urllib3's sockets) and the asyncio client (on asyncio
transports) are its shells.
"""

from __future__ import annotations

import collections
import re
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Generic, TypeVar, cast

if TYPE_CHECKING:
    from .codecs._registry import CodecRegistry

__all__ = [
    "CHUNK_TAIL",
    "CONTINUE",
    "END_OF_MESSAGE",
    "LAST_CHUNK",
    "MAX_CHUNK_EXTENSIONS",
    "MAX_CHUNK_LINE",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_LINE",
    "NEED_DATA",
    "STATUS_PHRASES",
    "USER_AGENT",
    "ChunkedDecoder",
    "ClientConnection",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "HTTPError",
    "NeedData",
    "ReplyError",
    "ReplyHead",
    "RequestHead",
    "RequestHeads",
    "ServerConnection",
    "asks_to_close",
    "body_cut_short",
    "check_body_complete",
    "check_body_total",
    "check_content_length",
    "chunk_head",
    "date_line",
    "frame_request",
    "parse_content_length",
    "parse_fields",
    "parse_request_head",
    "parse_request_line",
    "parse_response_head",
    "parse_version",
    "reply_has_body",
    "unterminated_chunked_error",
]

STATUS_PHRASES: Final[dict[int, str]] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",  # from a proxy in front (nginx), never from dataserve itself
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

MAX_REQUEST_LINE: Final = 8192
"""Longest request line accepted (414 beyond)."""
MAX_HEADERS: Final = 100
"""Most header fields accepted (431 beyond)."""
MAX_HEADER_BYTES: Final = 65536
"""Largest header section accepted, in bytes (431 beyond)."""

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE_BYTE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_VERSIONS: Final = {b"HTTP/1.1": (1, 1), b"HTTP/1.0": (1, 0)}
_VERSION_SHAPE: Final = re.compile(rb"HTTP/[0-9]\.[0-9]")
_DIGITS: Final = re.compile(r"[0-9]{1,19}")


# -- chunked framing (RFC 9112 section 7.1), encoding side ----------------------------------

LAST_CHUNK: Final = b"0\r\n\r\n"
"""The last chunk of a chunked body, with an empty trailer section."""
CHUNK_TAIL: Final = b"\r\n"
"""What follows each chunk's data."""
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim reply that tells a client waiting with ``Expect: 100-continue`` to send."""


_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
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
)
_date_cache: list[object] = [-1, b""]


def date_line(now: float) -> bytes:
    """The ``Date`` field line (RFC 9110 5.6.7, IMF-fixdate) with its CRLF, for a reply head
    (`ServerConnection.reply_head`'s ``date``); ``now`` is the shell's clock (seconds since
    the epoch). Formatted once per second."""
    second = int(now)
    if _date_cache[0] != second:
        t = time.gmtime(second)
        _date_cache[1] = (
            f"Date: {_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT\r\n"
        ).encode()
        _date_cache[0] = second
    return cast(bytes, _date_cache[1])


def reply_has_body(method: str) -> bool:
    """Whether the reply to a request with this method carries its body: not for ``HEAD``
    (RFC 9110 9.3.2), whose reply keeps the framing fields of the body it leaves out."""
    return method != "HEAD"


def chunk_head(size: int) -> bytes:
    """The chunk-size line that opens a chunk of ``size`` bytes (> 0) in a chunked body.

    A chunk on the wire is ``chunk_head(len(data))``, the data, `CHUNK_TAIL`; the body ends
    with `LAST_CHUNK`. The data itself is sent from the caller's buffer, never concatenated.
    """
    return b"%x\r\n" % size


class HTTPError(Exception):
    """A request rejected with a status; each backend renders it as problem+json in one place.

    Args:
        status: The HTTP status.
        detail: A sentence for the ``detail`` member; never the payload or the token.
        close: Close the connection after the reply (the body was not read, or framing is
            in doubt).
        headers: Extra reply headers, e.g. ``Allow``.
        extra: Extension members of the problem object.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        close: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.close = close
        self.headers = headers
        self.extra = extra


class RequestHead:
    """A parsed request head, with the framing of its body (see `frame_request`).

    Attributes:
        method: e.g. ``"PUT"``.
        target: The request target as sent (``/xdata?q=1``).
        version: ``(1, 1)`` or ``(1, 0)``.
        headers: Field names lower-cased; repeated fields joined with ``", "``.
        length: The ``Content-Length`` announced, or ``-1`` when there is none.
        chunked: The body is chunked (``Transfer-Encoding: chunked``).
        keep_alive: HTTP/1.1 without the ``close`` token in ``Connection``.
        expect_continue: An HTTP/1.1 request that asked for ``100 Continue``.

    A head the `ServerConnection` hands out may be shared by later requests with the same
    bytes (it is cached): treat it as read-only.
    """

    __slots__ = (
        "chunked",
        "expect_continue",
        "headers",
        "keep_alive",
        "length",
        "method",
        "target",
        "version",
    )

    def __init__(
        self, method: str, target: str, version: tuple[int, int], headers: dict[str, str]
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.length = -1
        self.chunked = False
        self.keep_alive = version == (1, 1)
        self.expect_continue = False


_TRANSFER_CODING: Final = re.compile(
    r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    r"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=[ \t]*[^\x00-\x1f\x7f,;]+)*"
)


def _check_transfer_coding(value: str, version: tuple[int, int]) -> None:
    """Accept a request's ``Transfer-Encoding`` only if it is exactly ``chunked``.

    Raises:
        HTTPError: 400 when the final coding is not ``chunked`` (the body's end cannot be
            known, RFC 9112 6.3), when ``chunked`` is applied twice, for a malformed list, or
            in an HTTP/1.0 request (RFC 9112 6.1: faulty framing); 501 when ``chunked``
            follows a coding the server does not apply, such as ``gzip, chunked``. All close
            the connection.
    """
    if version < (1, 1):
        raise HTTPError(
            400, "Transfer-Encoding in an HTTP/1.0 request; send a Content-Length", close=True
        )
    codings = [item.strip(" \t") for item in value.split(",")]
    codings = [coding for coding in codings if coding]  # RFC 9110 5.6.1: empty items ignored
    if not codings or codings[-1].lower() != "chunked":
        raise HTTPError(
            400,
            f"Transfer-Encoding {value[:80]!r} does not end in chunked, so the body's end "
            "cannot be known; send it chunked or with a Content-Length",
            close=True,
        )
    applied = codings[:-1]
    if not applied:
        return
    if any(c.lower() == "chunked" or not _TRANSFER_CODING.fullmatch(c) for c in applied):
        raise HTTPError(400, f"malformed Transfer-Encoding {value[:80]!r}", close=True)
    raise HTTPError(
        501,
        f"Transfer-Encoding {value[:80]!r}: this server applies no coding but chunked; "
        "send the body unencoded (chunked or with a Content-Length)",
        close=True,
    )


def asks_to_close(connection: str | None) -> bool:
    """Whether a ``Connection`` header holds the token ``close`` (RFC 9110 7.6.1).

    Args:
        connection: The header's value as received, or ``None`` when absent.
    Returns:
        ``True`` for ``"close"`` or ``"Keep-Alive, Close"``; ``False`` for ``None``, ``""``
        or a token that merely contains the word (``"x-close-later"``).
    """
    if not connection:
        return False
    value = connection.lower()
    if value == "close":  # the usual case, settled without splitting
        return True
    return "close" in value and any(token.strip() == "close" for token in value.split(","))


def parse_version(protocol: str) -> tuple[int, int] | None:
    """The HTTP version this server speaks that ``protocol`` names (``"HTTP/1.1"`` is
    ``(1, 1)``, ``"HTTP/1.0"`` is ``(1, 0)``), or ``None`` for any other text."""
    return _VERSIONS.get(protocol.encode("latin-1", "replace"))


def parse_content_length(value: str) -> int | None:
    """The length a ``Content-Length`` value announces, or ``None`` if it is not 1 to 19
    ASCII digits (RFC 9110 8.6: no sign, no spaces, no other digits such as ``'²'``)."""
    return int(value) if _DIGITS.fullmatch(value) else None


def parse_request_head(request_line: bytes, header_lines: list[bytes]) -> RequestHead:
    """Parse a request line and header lines (each without its CRLF) strictly, per RFC 9112.

    Raises:
        HTTPError: 400 for anything malformed or ambiguous, 505 for an HTTP version other
            than 1.0 and 1.1. Every such error closes the connection.
    """
    method, target, version = parse_request_line(request_line)
    headers = parse_fields(header_lines)
    if version == (1, 1) and "host" not in headers:
        raise HTTPError(400, "HTTP/1.1 request without a Host header", close=True)
    return RequestHead(method, target, version, headers)


def parse_request_line(request_line: bytes) -> tuple[str, str, tuple[int, int]]:
    """Parse a request line (without its CRLF) strictly, per RFC 9112 section 3.

    Returns:
        The method, the request target as sent (latin-1 text) and the HTTP version.
    Raises:
        HTTPError: 400 for a malformed line, 505 for an HTTP version other than 1.0 and
            1.1. Both close the connection.
    """
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HTTPError(400, "malformed request line", close=True)
    method, target, raw_version = parts
    version = _VERSIONS.get(raw_version)
    if version is None:
        if _VERSION_SHAPE.fullmatch(raw_version):
            raise HTTPError(
                505,
                f"HTTP version {raw_version.decode()} is not supported; use HTTP/1.1",
                close=True,
            )
        raise HTTPError(400, "malformed HTTP version in request line", close=True)
    if _BAD_VALUE_BYTE.search(target) or b"\t" in target:
        raise HTTPError(400, "control character in request target", close=True)
    return method.decode("ascii"), target.decode("latin-1"), version


def parse_fields(header_lines: list[bytes]) -> dict[str, str]:
    """Parse header field lines (without CRLF); names lower-cased, repeats joined by ", ".

    Raises:
        HTTPError: 400 for a malformed line, a control byte in a value, conflicting
            ``Content-Length`` values or a repeated ``Host``.
    """
    headers: dict[str, str] = {}
    for line in header_lines:
        field = _field_cache.get(line)
        if field is None:
            field = _parse_field(line)
        key, text = field
        if key in headers:
            if key == "content-length":
                if headers[key] != text:
                    raise HTTPError(400, "conflicting Content-Length headers", close=True)
                continue
            if key == "host":
                raise HTTPError(400, "more than one Host header", close=True)
            text = f"{headers[key]}, {text}"
        headers[key] = text
    return headers


_field_cache: dict[bytes, tuple[str, str]] = {}
_FIELD_CACHE_LIMIT: Final = 1024
_CACHEABLE_FIELD: Final = 256


def _parse_field(line: bytes) -> tuple[str, str]:
    """One field line: its name lower-cased and its value; remembered, since the same lines
    recur on every request of a client (only the ``Content-Length`` tends to change)."""
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        # Covers obs-fold (a line starting with whitespace) and "Name : value".
        raise HTTPError(400, "malformed header line", close=True)
    value = value.strip(b" \t")
    if _BAD_VALUE_BYTE.search(value):
        raise HTTPError(400, "control character in a header value", close=True)
    field = (name.decode("ascii").lower(), value.decode("latin-1"))
    if len(line) <= _CACHEABLE_FIELD:
        if len(_field_cache) >= _FIELD_CACHE_LIMIT:
            _field_cache.clear()
        _field_cache[line] = field
    return field


def frame_request(head: RequestHead) -> RequestHead:
    """Settle how a request's body is framed and whether its connection may stay open.

    Sets ``length``, ``chunked``, ``keep_alive`` and ``expect_continue`` on the head (and
    returns it). Used by the `ServerConnection` and, on a head rebuilt from a WSGI environ,
    by the WSGI adapter, so that both frame a body alike.

    Raises:
        HTTPError: 400 for both ``Transfer-Encoding`` and ``Content-Length`` (no request
            smuggling), an invalid ``Content-Length``, or a ``Transfer-Encoding`` that is not
            exactly ``chunked`` (501 for ``gzip, chunked``). All close the connection.
    """
    headers = head.headers
    framing = headers.get("content-length")
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if framing is not None:
            raise HTTPError(
                400,
                "both Transfer-Encoding and Content-Length; refused to prevent request smuggling",
                close=True,
            )
        _check_transfer_coding(coding, head.version)
        head.chunked = True
    elif framing is not None:
        length = parse_content_length(framing)
        if length is None:
            raise HTTPError(400, f"invalid Content-Length {framing!r}", close=True)
        head.length = length
    if head.version == (1, 1):
        connection = headers.get("connection")
        head.keep_alive = connection is None or not asks_to_close(connection)
        expect = headers.get("expect")
        head.expect_continue = expect is not None and expect.lower() == "100-continue"
    else:  # HTTP/1.0 clients are served and their connection closed.
        head.keep_alive = False
    return head


def check_content_length(length: int, max_body_size: int) -> None:
    """Refuse a ``Content-Length`` over the limit before any of the body is read.

    Raises:
        HTTPError: 413, closing the connection (the body is left unread).
    """
    if length > max_body_size:
        raise HTTPError(
            413,
            f"body of {length} bytes is over this server's limit of {max_body_size} bytes",
            close=True,
        )


def check_body_total(total: int, max_body_size: int) -> None:
    """Refuse a body without a ``Content-Length`` as soon as its bytes pass the limit.

    Raises:
        HTTPError: 413, closing the connection.
    """
    if total > max_body_size:
        raise HTTPError(
            413, f"chunked body over this server's limit of {max_body_size} bytes", close=True
        )


def body_cut_short(received: int, length: int | None) -> HTTPError:
    """The error for a request body that ended before its framing said it would: the
    connection ended (or, under WSGI, the server's ``wsgi.input`` ran out) after
    ``received`` body bytes, of a ``Content-Length`` of ``length`` (``None``: a chunked body
    before its last chunk). 400, closing the connection; the reply still reaches a client
    that closed only its sending side.
    """
    if length is None:
        detail = (
            f"the request body ended after {received} bytes, before the last chunk of its "
            "chunked framing; send the whole body, ending with the last chunk"
        )
    else:
        detail = (
            f"the request body ended after {received} of the {length} bytes its "
            "Content-Length announced; send the whole body, or a Content-Length that matches it"
        )
    return HTTPError(400, detail, close=True)


def check_body_complete(received: int, length: int) -> None:
    """Refuse a body that ended with fewer bytes than its ``Content-Length`` (see
    `body_cut_short`).

    Raises:
        HTTPError: 400, closing the connection.
    """
    if received < length:
        raise body_cut_short(received, length)


def unterminated_chunked_error() -> HTTPError:
    """The error for a chunked body whose end the server cannot see: a WSGI server that
    hands the body over without de-chunking it (no ``wsgi.input_terminated``)."""
    return HTTPError(
        411,
        "this WSGI server does not de-chunk request bodies (no wsgi.input_terminated); "
        "send the body with a Content-Length, or serve with gunicorn",
        close=True,
    )


MAX_CHUNK_LINE: Final = 8192
"""Longest chunk-size line, extensions and CRLF included (400 beyond)."""
MAX_CHUNK_EXTENSIONS: Final = 65536
"""Most bytes of chunk-size lines after the size digits in one body (400 beyond)."""

_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-size [ chunk-ext ] CRLF, where chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*)\r\n"
    % (_TOKEN.pattern, _TOKEN.pattern, _QUOTED)
)
# field-line CRLF, as in the head: a token, a colon, a value without control bytes but HTAB.
_TRAILER_LINE: Final = re.compile(rb"%s:[^\x00-\x08\x0a-\x1f\x7f]*\r\n" % _TOKEN.pattern)

_SIZE: Final = 0  # reading a chunk-size line
_DATA: Final = 1  # reading a chunk's data
_DATA_END: Final = 2  # reading the CRLF after a chunk's data
_TRAILER: Final = 3  # reading the trailer section, up to its empty line
_DONE: Final = 4


class ChunkedDecoder:
    """Decodes one chunked body from bytes fed in pieces of any size, splits included.

    `feed` returns the body bytes each piece completes; once the message has ended, `done`
    is true and `leftover` holds the bytes of the last piece that follow it (the next
    request on the connection). The outcome (body, end, leftover and any error) is the same
    however the bytes are split. Errors are `HTTPError` with the status to answer, all of
    which close the connection (the framing can no longer be trusted):

    - 413: the chunk sizes add up to more than ``max_body_size``, raised on the chunk-size
      line that exceeds it, before any of that chunk's data is read;
    - 400: a malformed chunk-size line (not hex, a bad extension, a bare LF), a chunk's
      data not followed by CRLF, a chunk-size line longer than `MAX_CHUNK_LINE`, chunk
      extensions over `MAX_CHUNK_EXTENSIONS` in all, or a malformed trailer field;
    - 431: a trailer section over `MAX_HEADERS` fields or `MAX_HEADER_BYTES` bytes.

    Trailer fields are checked and discarded. One decoder per message; not thread-safe.

    Args:
        max_body_size: Most body bytes accepted (413 beyond).
    """

    __slots__ = (
        "_crlf_seen",
        "_extensions",
        "_line",
        "_remaining",
        "_state",
        "_trailer_bytes",
        "_trailers",
        "done",
        "leftover",
        "max_body_size",
        "received",
    )

    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        self.received = 0
        """Body bytes decoded so far."""
        self.done = False
        """True once the last chunk and the trailer section have arrived."""
        self.leftover = b""
        """The bytes after the end of the message, from the piece that ended it."""
        self._state = _SIZE
        self._line = bytearray()  # the start of a line not yet ended
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._crlf_seen = 0  # bytes of the CRLF after a chunk's data seen
        self._extensions = 0
        self._trailer_bytes = 0
        self._trailers = 0

    @property
    def data_pending(self) -> int:
        """Bytes of chunk data expected next (0 while a framing line is expected).

        A shell that cannot push bytes back into its stream may read exactly this many and
        feed them: they cannot reach past the end of the message.
        """
        return self._remaining if self._state == _DATA else 0

    def feed(self, data: bytes) -> list[bytes]:
        """Decode the next received bytes.

        Args:
            data: What arrived, in any split; ``b""`` is allowed and does nothing.
        Returns:
            The body bytes these bytes complete, in order (possibly none). A piece that is
            all chunk data (see `data_pending`) comes back as the same object, uncopied.
        Raises:
            HTTPError: The body breaks a rule or a limit (see the class docstring).
            RuntimeError: The message has already ended.
        """
        if self._state == _DONE:
            raise RuntimeError("this chunked message has already ended")
        out: list[bytes] = []
        end = len(data)
        i = 0
        while i < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - i)
                out.append(data if take == end else data[i : i + take])
                i += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if data[i] != b"\r\n"[self._crlf_seen]:
                    raise HTTPError(400, "chunk data not followed by CRLF", close=True)
                i += 1
                self._crlf_seen += 1
                if self._crlf_seen == 2:
                    self._crlf_seen = 0
                    self._state = _SIZE
            else:
                newline = data.find(b"\n", i)
                if newline < 0:
                    self._line += data[i:]
                    self._check_length(len(self._line))
                    break
                line = data[i : newline + 1]
                if self._line:
                    line = bytes(self._line) + line
                    self._line.clear()
                i = newline + 1
                self._check_length(len(line))
                if state == _SIZE:
                    self._size_line(line)
                elif self._trailer_line(line):
                    self._state = _DONE
                    self.done = True
                    self.leftover = data[i:]
                    break
        return out

    def _check_length(self, length: int) -> None:
        """Refuse a line (or the start of one) that is already over its limit."""
        if self._state == _SIZE:
            if length > MAX_CHUNK_LINE:
                raise HTTPError(
                    400, f"chunk-size line longer than {MAX_CHUNK_LINE} bytes", close=True
                )
        elif self._trailer_bytes + length > MAX_HEADER_BYTES:
            raise HTTPError(431, f"trailer section over {MAX_HEADER_BYTES} bytes", close=True)

    def _size_line(self, line: bytes) -> None:
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise HTTPError(400, "malformed chunk-size line", close=True)
        self._extensions += len(line) - len(match[1]) - 2
        if self._extensions > MAX_CHUNK_EXTENSIONS:
            raise HTTPError(
                400, f"chunk extensions over {MAX_CHUNK_EXTENSIONS} bytes in one body", close=True
            )
        size = int(match[1], 16)
        check_body_total(self.received + size, self.max_body_size)
        self.received += size
        if size:
            self._remaining = size
            self._state = _DATA
        else:
            self._state = _TRAILER

    def _trailer_line(self, line: bytes) -> bool:
        """Check one line of the trailer section; return whether it was the last (empty)."""
        if line == b"\r\n":
            return True
        self._trailer_bytes += len(line)
        self._trailers += 1
        if self._trailers > MAX_HEADERS:
            raise HTTPError(431, f"trailer section over {MAX_HEADERS} fields", close=True)
        if not _TRAILER_LINE.fullmatch(line):
            raise HTTPError(400, "malformed trailer field", close=True)
        return False


# -- the server side of a connection ---------------------------------------------------------


class NeedData:
    """Event: nothing more can be said until more bytes arrive (`NEED_DATA`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


class EndOfMessage:
    """Event: the request body is complete (`END_OF_MESSAGE`); the reply may follow."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_MESSAGE"


_Piece = TypeVar("_Piece", bytes, bytes | memoryview)


class Data(Generic[_Piece]):
    """Event of either side: the next bytes of a body (h11's ``Data``).

    ``Data[bytes]`` on the server side (a request body); ``Data[bytes | memoryview]`` on the
    client side, whose pieces may be views of what `ClientConnection.receive_data` was given
    (valid as long as the caller keeps that).

    Attributes:
        data: The bytes, in order; a received piece that is all body comes back uncopied.
    """

    __slots__ = ("data",)

    def __init__(self, data: _Piece) -> None:
        self.data: _Piece = data

    def __repr__(self) -> str:
        return f"Data(<{len(self.data)} bytes>)"


class ConnectionClosed:
    """Event: the peer closed its side; no more requests come on this connection.

    Attributes:
        mid_message: Bytes of a request had arrived (a head or body cut short), so a shell
            that knows the request ran out of time answers 408; otherwise nobody waits for
            an answer.
    """

    __slots__ = ("mid_message",)

    def __init__(self, mid_message: bool) -> None:
        self.mid_message = mid_message

    def __repr__(self) -> str:
        return f"ConnectionClosed(mid_message={self.mid_message})"


NEED_DATA: Final = NeedData()
END_OF_MESSAGE: Final = EndOfMessage()
_CLOSED_IDLE: Final = ConnectionClosed(False)
_CLOSED_MID: Final = ConnectionClosed(True)

Event = RequestHead | Data[bytes] | EndOfMessage | NeedData | ConnectionClosed
"""What `ServerConnection.next_event` hands out."""

_S_HEAD: Final = 0  # waiting for a request head
_S_BODY: Final = 1  # inside a body framed by Content-Length
_S_CHUNKED: Final = 2  # inside a chunked body
_S_END: Final = 3  # the body is complete; END_OF_MESSAGE not yet handed out
_S_DONE: Final = 4  # the message is received; the reply is awaited
_S_REPLIED: Final = 5  # the reply head is out: start_next_cycle(), or close
_S_CLOSED: Final = 6  # a broken rule or the peer's close: no more events

_MAX_SKIPPED_LINES: Final = 4  # RFC 9112 2.2: empty lines before a request line are ignored
_head_cache: dict[bytes, RequestHead] = {}
_HEAD_CACHE_LIMIT: Final = 256
_CACHEABLE_HEAD: Final = 1024
_prefixes: dict[tuple[int, tuple[tuple[str, str], ...]], bytes] = {}
_CLOSE_END: Final = b"Connection: close\r\n\r\n"


class ServerConnection:
    """The server side of one HTTP/1.1 connection, with no I/O (h11's ``Connection`` shape).

    Bytes in, events out: `receive_data` takes what the shell received (``b""`` for the
    peer's close) and `next_event` hands out, in order, a `RequestHead` (parsed by
    `parse_request_head`, framed by `frame_request`), `Data` pieces of its body, then
    `END_OF_MESSAGE`; `NEED_DATA` while more bytes are needed, `ConnectionClosed` once the
    peer has closed. A request that breaks a rule or a limit raises `HTTPError` with the
    status to answer and ``close=True``: 400 (malformed, a bare LF, framing), 414 (request
    line over `MAX_REQUEST_LINE`), 431 (header section over `MAX_HEADERS` fields or
    `MAX_HEADER_BYTES` bytes), 413 (a body over ``max_body_size``: a ``Content-Length`` when
    the body is first asked for, a chunked one as soon as its chunk sizes pass it), 501, 505.

    Events in, bytes out: `continue_response` gives ``100 Continue`` to send before reading
    the body the client holds back; `reply_head` gives the reply head with its framing
    (``Content-Length``, chunked, or delimited by the close) and settles `must_close`
    (HTTP/1.0, the ``close`` token, a body not read to its end, or the reply's own wish) and
    `reply_has_body` (not for HEAD, known from the parsed method); `piece_framing` and
    `end_of_body` frame a reply body of unknown size. After the reply, `start_next_cycle`
    serves the next request from the bytes left over (pipelining).

    One per connection; not thread-safe.

    Args:
        max_body_size: Most request body bytes accepted (413 beyond).
    """

    __slots__ = (
        "_buf",
        "_decoder",
        "_eof",
        "_header_bytes",
        "_lines",
        "_method",
        "_pos",
        "_raw",
        "_remaining",
        "_scan",
        "_searched",
        "_sent_continue",
        "_skipped",
        "_state",
        "chunked_reply",
        "head",
        "max_body_size",
        "must_close",
        "received",
        "reply_has_body",
    )

    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        self.head: RequestHead | None = None
        """The head of the request being served, once it has arrived."""
        self.received = 0
        """Body bytes of the current request handed out so far."""
        self.must_close = False
        """Set by `reply_head`, or by a broken rule: close once the reply is sent."""
        self.reply_has_body = True
        """Set by `reply_head`: false for a reply to HEAD (its body is not sent)."""
        self.chunked_reply = False
        """Set by `reply_head`: the reply body goes out chunked (see `piece_framing`)."""
        self._buf = b""  # received bytes, from _pos on not yet used
        self._pos = 0
        self._eof = False
        self._state = _S_HEAD
        self._remaining = 0  # Content-Length body bytes still to come
        self._decoder: ChunkedDecoder | None = None
        self._raw = b""  # the head's bytes as received (its request line: request_line)
        self._skipped = 0  # empty lines skipped before this request line
        self._searched = 0  # bytes of the head (from _pos) searched for its end
        self._scan = 0  # bytes of the head (from _pos) whose lines were checked
        self._lines = 0  # lines checked so far (the request line included)
        self._header_bytes = 0  # bytes of the header lines checked so far
        self._sent_continue = False
        self._method = ""  # of a head refused by the grammar, from its request line alone

    @property
    def request_line(self) -> bytes:
        """The request line of the current request once it has arrived whole, else ``b""``
        (for a log line about a request refused in its head)."""
        return self._raw.partition(b"\r\n")[0]

    @property
    def request_start(self) -> tuple[str, str] | None:
        """The method and target of the current request (for a log line): from its parsed
        head, or, for a head refused or cut short before it was whole (a malformed field, a
        stall), from its request line alone (parsed by `parse_request_line`); ``None`` when
        no valid request line has arrived."""
        head = self.head
        if head is not None:
            return head.method, head.target
        line = self.request_line
        if not line:
            return None
        try:
            method, target, _ = parse_request_line(line)
        except HTTPError:
            return None
        return method, target

    def cut_short_error(self) -> HTTPError:
        """The error to answer when the connection ended inside the current request's body
        (a `ConnectionClosed` with ``mid_message``): `body_cut_short`, from what arrived."""
        head = self.head
        if head is None or not head.chunked:
            return body_cut_short(self.received, None if head is None else head.length)
        decoder = cast(ChunkedDecoder, self._decoder)  # its sizes count the chunk begun whole
        return body_cut_short(decoder.received - decoder.data_pending, None)

    @property
    def trailing_data(self) -> bytes:
        """The bytes received and not yet used (the start of the next request, pipelined)."""
        return bytes(self._buf[self._pos :])

    @property
    def has_trailing_data(self) -> bool:
        """Whether bytes received are waiting to be used (a pipelined request)."""
        return self._pos < len(self._buf)

    @property
    def body_complete(self) -> bool:
        """Whether the current request's body has arrived whole (or it has none)."""
        return self._state in (_S_END, _S_DONE)

    @property
    def data_pending(self) -> int:
        """Body bytes that must still arrive, beyond those received: a shell may read this
        many straight from its transport (see `data_read_directly`); they cannot reach past
        the end of the message. 0 outside a body, and while a chunk-size line is expected."""
        if self._state == _S_BODY:
            return max(0, self._remaining - (len(self._buf) - self._pos))
        if self._state == _S_CHUNKED and self._pos >= len(self._buf):
            return cast(ChunkedDecoder, self._decoder).data_pending
        return 0

    # -- bytes in, events out ------------------------------------------------------------

    @property
    def direct_read_pending(self) -> int:
        """Body bytes the shell may read straight from its transport into its own buffer and
        count with `data_read_directly`: the `data_pending` of a body framed by
        ``Content-Length``; 0 otherwise (a chunked body's bytes go through `receive_data`,
        since its framing lines come between them)."""
        return self.data_pending if self._state == _S_BODY else 0

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes received, in pieces of any size; ``b""`` means the peer closed."""
        if not data:
            self._eof = True
        elif self._pos >= len(self._buf):
            self._buf = data
            self._pos = 0
        else:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0

    def data_read_directly(self, count: int) -> None:
        """Count ``count`` body bytes (at most `direct_read_pending`) that the shell read straight
        from its transport into its own buffer, instead of passing them through
        `receive_data` (to assemble a large body in one buffer without a copy)."""
        if self._state != _S_BODY or count > self.data_pending:
            raise RuntimeError("data_read_directly: more bytes than the body has left")
        self._remaining -= count
        self.received += count
        if not self._remaining:
            self._state = _S_END

    def next_event(self) -> Event:
        """The next event the bytes received so far make out.

        Returns:
            A `RequestHead`, `Data`, `END_OF_MESSAGE`, `NEED_DATA` or a `ConnectionClosed`.
        Raises:
            HTTPError: The request breaks a rule or a limit (see the class docstring); the
                connection can no longer be trusted and must close after the reply.
            RuntimeError: Called after the end of the message, before `start_next_cycle`.
        """
        try:
            state = self._state
            if state == _S_HEAD:
                return self._next_head()
            if state == _S_BODY:
                return self._next_data()
            if state == _S_CHUNKED:
                return self._next_chunked()
            if state == _S_END:
                self._state = _S_DONE
                return END_OF_MESSAGE
        except HTTPError:
            if self.head is None and self._raw:  # refused in its head: a HEAD still gets no body
                start = self.request_start
                self._method = "" if start is None else start[0]
            self._state = _S_CLOSED
            self.must_close = True
            raise
        raise RuntimeError("next_event: the request has ended; reply, then start_next_cycle()")

    def _closed(self, mid_message: bool) -> ConnectionClosed:
        self._state = _S_CLOSED
        self.must_close = True
        return _CLOSED_MID if mid_message else _CLOSED_IDLE

    def _next_head(self) -> RequestHead | NeedData | ConnectionClosed:
        buf = self._buf
        pos = self._pos
        while self._skipped < _MAX_SKIPPED_LINES and buf.startswith(b"\r\n", pos):
            pos += 2
            self._skipped += 1
            self._pos = pos
        end = buf.find(b"\r\n\r\n", max(pos, pos + self._searched - 3))
        if end < 0:
            self._searched = len(buf) - pos
            self._check_lines(buf, pos, len(buf))
            if self._eof:
                return self._closed(len(buf) > pos or self._skipped > 0)
            return NEED_DATA
        raw = buf[pos:end]
        self._raw = raw
        self._pos = end + 4
        head = _head_cache.get(raw)  # the same bytes as a head served before: checked then
        if head is None:
            if buf.count(b"\n", pos, end + 2) != buf.count(b"\r\n", pos, end + 2):
                self._check_lines(buf, pos, end + 2)  # raises 400 (or 414, 431) at a bare LF
            try:
                head = _parse_head(raw)
            except HTTPError as error:
                if error.status == 414:
                    self._raw = b""  # no request line to tell of
                raise
            self.head = head  # parsed: a reply to a HEAD whose framing is refused has no body
            frame_request(head)
            if len(raw) <= _CACHEABLE_HEAD:
                if len(_head_cache) >= _HEAD_CACHE_LIMIT:
                    _head_cache.clear()
                _head_cache[raw] = head
        self.head = head
        if head.chunked:
            self._decoder = ChunkedDecoder(self.max_body_size)
            self._state = _S_CHUNKED
        elif head.length > 0:
            self._remaining = head.length
            self._state = _S_BODY
        else:
            self._state = _S_END
        return head

    def _check_lines(self, buf: bytes, pos: int, end: int) -> None:
        """Check the lines of a head not yet whole (from where the last check stopped): a
        bare LF, or a limit already passed, is refused without waiting for the rest."""
        scan = pos + self._scan
        while (newline := buf.find(b"\n", scan, end)) >= 0:
            ended_by_crlf = newline > scan and buf[newline - 1] == 13
            if self._lines == 0:
                if newline - scan > MAX_REQUEST_LINE + 1:
                    raise HTTPError(
                        414, f"request line longer than {MAX_REQUEST_LINE} bytes", close=True
                    )
                if not ended_by_crlf:
                    raise HTTPError(400, "request line not terminated by CRLF", close=True)
                self._raw = buf[scan : newline + 1]
            else:
                self._header_bytes += newline + 1 - scan
                if self._header_bytes > MAX_HEADER_BYTES or self._lines > MAX_HEADERS:
                    raise _headers_too_large()
                if not ended_by_crlf:
                    raise HTTPError(400, "header line not terminated by CRLF", close=True)
            self._lines += 1
            scan = newline + 1
        self._scan = scan - pos
        partial = end - scan
        if self._lines == 0:
            if partial > MAX_REQUEST_LINE + 1:
                raise HTTPError(
                    414, f"request line longer than {MAX_REQUEST_LINE} bytes", close=True
                )
        elif self._header_bytes + partial > MAX_HEADER_BYTES + 1:
            raise _headers_too_large()

    def _next_data(self) -> Data[bytes] | NeedData | ConnectionClosed:
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if not self.received:
            check_content_length(self._remaining, self.max_body_size)
        if not available:
            return self._closed(True) if self._eof else NEED_DATA
        take = min(available, self._remaining)
        piece = buf if take == len(buf) else buf[pos : pos + take]
        self._pos = pos + take
        self._remaining -= take
        self.received += take
        if not self._remaining:
            self._state = _S_END
        return Data(piece)

    def _next_chunked(self) -> Data[bytes] | EndOfMessage | NeedData | ConnectionClosed:
        decoder = cast(ChunkedDecoder, self._decoder)
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            return self._closed(True) if self._eof else NEED_DATA
        parts = decoder.feed(buf if not pos else buf[pos:])
        if decoder.done:
            self._buf, self._pos = decoder.leftover, 0
            self._state = _S_END
        else:
            self._buf, self._pos = b"", 0
        self.received = decoder.received
        if parts:
            return Data(parts[0] if len(parts) == 1 else b"".join(parts))
        if decoder.done:
            self._state = _S_DONE
            return END_OF_MESSAGE
        return NEED_DATA

    # -- events in, bytes out ------------------------------------------------------------

    def continue_response(self) -> bytes:
        """`CONTINUE` if the client waits for it before sending the body (``Expect:
        100-continue`` in HTTP/1.1, a body to come, not yet sent), else ``b""``. Call it
        once the request is accepted and its body will be read; a request refused before
        its body gets its reply instead (and the connection closes)."""
        head = self.head
        if (
            head is not None
            and head.expect_continue
            and not self._sent_continue
            and self._state in (_S_BODY, _S_CHUNKED)
        ):
            self._sent_continue = True
            return CONTINUE
        return b""

    def reply_head(
        self,
        status: int,
        headers: tuple[tuple[str, str], ...],
        length: int | None,
        *,
        close: bool = False,
        date: bytes = b"",
    ) -> bytes:
        """The head of the reply to the current request (or to bytes refused before one).

        Args:
            status: The status code.
            headers: The reply's own fields (framing and ``Connection`` excluded).
            length: The body's size, or ``None`` for a body of unknown size (then sent
                chunked, or delimited by closing the connection when it closes anyway).
            close: The reply itself asks to close the connection.
            date: The ``Date`` field line with its CRLF, from the shell's clock.
        Returns:
            The status line and fields, ending in the blank line. Sets `must_close`,
            `reply_has_body` and `chunked_reply`.
        """
        head = self.head
        must_close = (
            close
            or self.must_close
            or head is None
            or not head.keep_alive
            or self._state not in (_S_END, _S_DONE)
        )
        self.must_close = must_close
        method = self._method if head is None else head.method
        self.reply_has_body = reply_has_body(method)
        self._state = _S_REPLIED
        prefix = _prefixes.get((status, headers))
        if prefix is None:
            prefix = _head_prefix(status, headers)
        end = _CLOSE_END if must_close else b"\r\n"
        if length is not None:
            self.chunked_reply = False
            return b"%sContent-Length: %d\r\n%s%s" % (prefix, length, date, end)
        self.chunked_reply = not must_close
        framing = b"Transfer-Encoding: chunked\r\n" if self.chunked_reply else b""
        return b"%s%s%s%s" % (prefix, framing, date, end)

    def piece_framing(self, size: int) -> tuple[bytes, bytes]:
        """What goes before and after the next ``size`` bytes (> 0) of a reply body of
        unknown size: a chunk's size line and its CRLF, or nothing when the close delimits
        the body."""
        return (chunk_head(size), CHUNK_TAIL) if self.chunked_reply else (b"", b"")

    def end_of_body(self) -> bytes:
        """What ends a reply body of unknown size: the last chunk, or nothing."""
        return LAST_CHUNK if self.chunked_reply else b""

    def start_next_cycle(self) -> None:
        """Get ready for the next request on this connection, from the bytes left over.

        Raises:
            RuntimeError: No reply was made yet, or the connection must close.
        """
        if self._state != _S_REPLIED or self.must_close:
            raise RuntimeError("start_next_cycle: reply first, on a connection that stays open")
        self._state = _S_HEAD
        self.head = None
        self.received = 0
        self._decoder = None
        self._raw = b""
        self._skipped = self._searched = self._scan = self._lines = self._header_bytes = 0
        self._sent_continue = False
        self._method = ""


def _headers_too_large() -> HTTPError:
    return HTTPError(
        431, f"request headers over {MAX_HEADERS} fields or {MAX_HEADER_BYTES} bytes", close=True
    )


def _parse_head(raw: bytes) -> RequestHead:
    """A whole head (without its final CRLF CRLF, every line ended by CRLF): the limits,
    then the grammar."""
    newline = raw.find(b"\r\n")
    if (newline if newline >= 0 else len(raw)) > MAX_REQUEST_LINE:
        raise HTTPError(414, f"request line longer than {MAX_REQUEST_LINE} bytes", close=True)
    if newline < 0:
        line, fields = raw, []
    else:
        line = raw[:newline]
        if len(raw) - newline > MAX_HEADER_BYTES:
            raise _headers_too_large()
        fields = raw[newline + 2 :].split(b"\r\n")
        if len(fields) > MAX_HEADERS:
            raise _headers_too_large()
    return parse_request_head(line, fields)


def _head_prefix(status: int, headers: tuple[tuple[str, str], ...]) -> bytes:
    """The status line and a reply's own fields, cached for the statuses and fields that
    recur."""
    lines = [f"HTTP/1.1 {status} {STATUS_PHRASES.get(status, '')}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    prefix = "".join(lines).encode("latin-1")
    if len(_prefixes) >= 256:
        _prefixes.clear()  # e.g. many NumPy shapes: keep the cache for what recurs
    _prefixes[(status, headers)] = prefix
    return prefix


# -- the client side of a connection ---------------------------------------------------------

USER_AGENT: Final = "dataserve/0.2"
"""What the clients send as ``User-Agent``."""
_CHUNKED: Final = b"Transfer-Encoding: chunked\r\n\r\n"
_HEADS_LIMIT: Final = 1024
_HEAD_TOO_LARGE: Final = f"the reply head is larger than {MAX_HEADER_BYTES} bytes"


# RFC 9112 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ): a control byte is malformed.
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")


# Reply heads parsed before, by their exact bytes (the status line, then each field line): a
# server sends the same few heads again and again (its Date line changes once a second, the
# Content-Length with the size). Only heads that parsed are kept, so every rule still applies
# to bytes never seen; bounded in count and in the size of what is kept.
_reply_heads: dict[tuple[bytes, ...], tuple[int, int, dict[str, str]]] = {}
_REPLY_HEAD_LIMIT: Final = 256
_CACHEABLE_REPLY_HEAD: Final = 1024  # bytes of lines: larger heads are parsed every time


def parse_response_head(
    status_line: bytes, header_lines: list[bytes]
) -> tuple[int, int, dict[str, str]]:
    """Parse a reply's status line and header lines (each without CRLF), for the client.

    Returns:
        ``(minor_version, status, headers)``, header names lower-cased; ``headers`` is the
        caller's own dict.
    Raises:
        HTTPError: The reply is not HTTP/1.0 or 1.1, or is malformed (the status says what
            the client would have answered; the client reports it as a lost connection).
    """
    key = (status_line, *header_lines)
    parsed = _reply_heads.get(key)
    if parsed is None:
        parsed = _parse_response_head(status_line, header_lines)
        if len(status_line) + sum(map(len, header_lines)) <= _CACHEABLE_REPLY_HEAD:
            if len(_reply_heads) >= _REPLY_HEAD_LIMIT:
                _reply_heads.clear()
            _reply_heads[key] = parsed
    minor, status, headers = parsed
    return minor, status, headers.copy()


def _parse_response_head(
    status_line: bytes, header_lines: list[bytes]
) -> tuple[int, int, dict[str, str]]:
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise HTTPError(400, f"malformed status line {status_line[:80]!r}", close=True)
    return int(match[1]), int(match[2]), parse_fields(header_lines)


class ReplyError(Exception):
    """The reply cannot be read: malformed, cut short, over a limit, or framed in a way this
    client cannot follow. The message says which; the connection must be closed."""


class ReplyHead:
    """A final (non-1xx) reply head.

    Attributes:
        status: e.g. ``200``.
        headers: Field names lower-cased; repeated fields joined with ``", "``.
        keep_alive: HTTP/1.1 without the ``close`` token in ``Connection``, and framed so
            that its end is known. Whether the connection can carry another request is
            `ClientConnection.reusable`, known at `END_OF_MESSAGE`.
        length: The body's length: its ``Content-Length``, ``0`` for a reply without a body,
            ``None`` when unknown (chunked, or ended by closing the connection).
    """

    __slots__ = ("headers", "keep_alive", "length", "status")

    def __init__(
        self, status: int, headers: dict[str, str], keep_alive: bool, length: int | None
    ) -> None:
        self.status = status
        self.headers = headers
        self.keep_alive = keep_alive
        self.length = length

    def __repr__(self) -> str:
        return f"<ReplyHead {self.status} length={self.length} keep_alive={self.keep_alive}>"


class RequestHeads:
    """Request heads, each built once per (path, media type) and kept.

    The head of a PUT is its request line and fields up to the framing, which
    `ClientConnection.start_put` adds: ``Host``, ``User-Agent``, ``Content-Type``, ``Accept``
    (the registry's media types in its order of preference) and ``Authorization`` when there
    is a token. A ``register()`` on the registry rebuilds them (its ``Accept`` changed).

    Args:
        registry: The client's codecs.
        host_header: What ``Host`` says, e.g. ``"localhost:5001"``.
        authorization: The ``Authorization`` value, or ``None``.
    """

    def __init__(
        self, registry: CodecRegistry, host_header: str, authorization: str | None
    ) -> None:
        self._registry = registry
        self._host = host_header
        self._auth = authorization
        self._version = -1
        self._puts: dict[tuple[str, str], bytes] = {}

    def put(self, path: str, media_type: str) -> bytes:
        """The head of a PUT of a body of ``media_type`` to ``path``, without its framing."""
        version = self._registry.version  # before reading media_types: a register() may race
        if self._version != version:
            self._puts = {}
            self._version = version
        key = (path, media_type)
        head = self._puts.get(key)
        if head is None:
            lines = [
                f"PUT {path} HTTP/1.1",
                f"Host: {self._host}",
                f"User-Agent: {USER_AGENT}",
                f"Content-Type: {media_type}",
                f"Accept: {', '.join(self._registry.media_types)}",
            ]
            if self._auth is not None:
                lines.append(f"Authorization: {self._auth}")
            head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
            if len(self._puts) >= _HEADS_LIMIT:
                self._puts.clear()
            self._puts[key] = head
        return head

    def probe(self, path: str) -> bytes:
        """The whole head of a ``HEAD`` liveness probe of ``path`` (no body)."""
        lines = [f"HEAD {path} HTTP/1.1", f"Host: {self._host}", f"User-Agent: {USER_AGENT}"]
        if self._auth is not None:
            lines.append(f"Authorization: {self._auth}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# What the connection is reading (plain ints: compared on every event).
_IDLE: Final = 0  # no request started
_C_HEAD: Final = 1  # reading a reply head (1xx ones included)
_LENGTH: Final = 2  # a Content-Length body
_CHUNKED_BODY: Final = 3  # a chunked body, decoded by _wire.ChunkedDecoder (the server's decoder)
_UNTIL_CLOSE: Final = 4  # a body that ends when the connection does
_C_DONE: Final = 5


class ClientConnection:
    """One client connection's HTTP/1.1 state, one request and reply at a time.

    Not thread-safe: one shell drives it. Use: `start_put` (or `start_probe`), write what it
    returns, then `send_data`/`end_request` for the body; meanwhile or afterwards, feed every
    received byte to `receive_data` and take events from `next_event` until `END_OF_MESSAGE`. If
    `reusable`, `start_next_cycle` readies it for the next request; otherwise close the
    connection.

    A reply may begin before the request is complete (a server refusing a body early); it is
    read the same way, and the connection is then not reused.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # bytes of _buf already consumed
        self._direct: bytes | None = None  # a received piece not copied into _buf (yet)
        self._eof = False
        self._in: int = _IDLE
        self._head_request = False
        self._sending: int | None = None  # body bytes still to send; None: chunked
        self._request_done = False
        self._request_started = False
        self._keep_alive = False
        self._left = 0  # of the Content-Length body or the current chunk
        self._length: int | None = None
        self._received = 0  # body bytes given out (for messages)
        self._got_bytes = False  # any byte of this reply arrived
        self._lines: list[bytes] = []
        self._chunked: ChunkedDecoder | None = None
        self._pieces: collections.deque[bytes] | None = None  # decoded, not given out yet
        self._scan = 0  # where the search for the next LF resumes (>= _pos)
        self._head_bytes = 0
        self.leftover = False
        """Bytes arrived after the reply ended (the server sent more than it framed)."""

    # -- events in, bytes out ------------------------------------------------------------

    def start_put(self, head: bytes, length: int | None) -> bytes:
        """Begin a PUT: the bytes of its head, framed for a body of ``length`` bytes
        (``Content-Length``) or, if ``None``, of unknown size (chunked).

        Args:
            head: From `RequestHeads.put`.
        """
        self._start()
        if length is None:
            self._sending = None
            return head + _CHUNKED
        if length < 0:
            raise ValueError(f"a body length is >= 0, got {length}")
        self._sending = length
        return b"%sContent-Length: %d\r\n\r\n" % (head, length)

    def put_whole(self, head: bytes, length: int) -> bytes:
        """Begin and end a PUT whose body of ``length`` bytes the shell sends at once with
        its head (or closes the connection if it cannot): the head's bytes, framed with
        ``Content-Length``. The same as `start_put`, `send_data` of the whole body and
        `end_request`, for the fast path of a small call."""
        self._start()
        self._sending = 0
        self._request_done = True
        return b"%sContent-Length: %d\r\n\r\n" % (head, length)

    def start_probe(self, head: bytes) -> bytes:
        """Begin a ``HEAD`` request (no body; its reply has none): returns ``head``.

        Args:
            head: From `RequestHeads.probe`.
        """
        self._start()
        self._head_request = True
        self._sending = 0
        self._request_done = True
        return head

    def _start(self) -> None:
        if self._request_started:
            raise RuntimeError("a request was already started on this connection")
        self._request_started = True
        self._in = _C_HEAD

    def send_data(self, data: bytes | bytearray | memoryview) -> tuple[bytes | memoryview, ...]:
        """Frame one piece of the request body: the pieces to write, in order (the data
        itself is never copied)."""
        view = data if isinstance(data, memoryview) else memoryview(data)
        size = view.nbytes
        if self._request_done or not self._request_started:
            raise RuntimeError("no request body is being sent")
        if self._sending is None:
            return (b"%x\r\n" % size, view, CHUNK_TAIL) if size else ()
        if size > self._sending:
            raise RuntimeError(f"{size} bytes of body sent where {self._sending} were left to send")
        self._sending -= size
        return (view,)

    def body_sent(self, count: int) -> None:
        """Count ``count`` bytes of a ``Content-Length`` body that the shell sent without
        `send_data` (from the kernel: ``sendfile``).

        Raises:
            RuntimeError: No such body is being sent, or ``count`` is more than it has left.
        """
        if self._request_done or self._sending is None or not 0 <= count <= self._sending:
            raise RuntimeError("no Content-Length body is being sent for these bytes")
        self._sending -= count

    def end_request(self) -> bytes:
        """End the request body: the bytes to write (the last chunk, or nothing).

        Raises:
            RuntimeError: A ``Content-Length`` body was not sent whole.
        """
        if not self._request_started or self._request_done:
            raise RuntimeError("no request body is being sent")
        self._request_done = True
        if self._sending is None:
            return LAST_CHUNK
        if self._sending:
            raise RuntimeError(f"the request body is {self._sending} bytes short")
        return b""

    @property
    def request_done(self) -> bool:
        """Whether the whole request has been framed (`end_request`, or a probe)."""
        return self._request_done

    # -- bytes in, events out ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take bytes received from the server; ``b""`` means the connection ended.

        The bytes object is kept (not copied) when it can be given out as body `Data`.
        """
        if self._eof:
            if data:
                raise RuntimeError("bytes received after the end of the connection")
            return
        if not data:
            self._eof = True
            return
        if self._in == _C_DONE:
            self.leftover = True
            return
        self._got_bytes = True
        if self._direct is not None:
            self._buf += self._direct
            self._direct = None
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = self._scan = 0
            self._direct = data
        else:
            self._buf += data

    def next_event(self) -> ReplyHead | Data[bytes | memoryview] | EndOfMessage | NeedData:
        """The next event of the reply: a `ReplyHead`, `Data`, `END_OF_MESSAGE` or `NEED_DATA`.

        Raises:
            ReplyError: The reply is malformed, cut short or cannot be framed.
        """
        state = self._in
        while True:
            if state == _LENGTH:
                data = self._take(self._left)
                if data is not None:
                    self._left -= len(data)
                    self._received += len(data)
                    if not self._left:
                        self._done()
                    return Data(data)
            elif state == _C_DONE:
                return END_OF_MESSAGE
            elif state == _C_HEAD:
                if self._direct is not None:
                    if not self._lines and self._pos == len(self._buf):
                        head = self._head_in_piece()  # the usual case: a head in one piece
                        if head is not None:
                            return head
                        state = self._in
                        continue
                    self._buf += self._direct  # lines are split in _buf
                    self._direct = None
                head = self._read_head()
                if head is not None:
                    return head
            elif state == _CHUNKED_BODY:
                piece = self._next_piece()
                if piece is not None:
                    return Data(piece)
            elif state == _UNTIL_CLOSE:
                data = self._take(-1)
                if data is not None:
                    self._received += len(data)
                    return Data(data)
                if self._eof:
                    self._done()
            else:
                raise RuntimeError("no request was started on this connection")
            if self._in == state:  # no progress: more bytes needed
                if self._eof:
                    raise ReplyError(self._cut_short())
                return NEED_DATA
            state = self._in

    @property
    def body_bytes_left(self) -> int | None:
        """Bytes of a ``Content-Length`` body not yet received (a shell may size its next
        read by it), or ``None`` when the body's end is not known in advance."""
        if self._in == _LENGTH:
            buffered = len(self._buf) - self._pos + len(self._direct or b"")
            return max(0, self._left - buffered)
        return None

    def body_received(self, count: int) -> None:
        """Count ``count`` bytes of a ``Content-Length`` body that the shell received
        straight into a buffer of its own (sized by `body_bytes_left`, after every buffered
        byte was taken as `Data`) instead of passing them to `receive_data`.

        Raises:
            RuntimeError: No such body is being received, bytes wait in the connection's
                buffer, or ``count`` is more than the body has left.
        """
        buffered = self._direct is not None or self._pos < len(self._buf)
        if self._in != _LENGTH or buffered or not 0 <= count <= self._left:
            raise RuntimeError("no Content-Length body is waiting for these bytes")
        if count:
            self._got_bytes = True
            self._left -= count
            self._received += count
            if not self._left:
                self._done()

    @property
    def reusable(self) -> bool:
        """Whether the connection can carry another request: the request was sent whole, the
        reply was read to its end, was keep-alive, and nothing came after it."""
        return (
            self._in == _C_DONE
            and self._request_done
            and self._keep_alive
            and not self.leftover
            and not self._eof
        )

    def next_cycle(self) -> bool:
        """Make the connection ready for another request if it is `reusable`, and say
        whether it was (if not, the shell closes it)."""
        if not self.reusable:
            return False
        self._reset()
        return True

    def start_next_cycle(self) -> None:
        """Make the connection ready for another request after a reusable exchange.

        Raises:
            RuntimeError: It is not `reusable`.
        """
        if not self.reusable:
            raise RuntimeError("this connection cannot carry another request; close it")
        self._reset()

    # -- internals -----------------------------------------------------------------------

    def _take(self, wanted: int) -> bytes | memoryview | None:
        """Up to ``wanted`` bytes (all there are if ``wanted`` < 0) of what was received,
        without copying a piece kept whole; ``None`` if nothing is there."""
        direct = self._direct
        if direct is not None:
            if wanted < 0 or len(direct) <= wanted:
                self._direct = None
                return direct
            self._direct = None
            self._buf += memoryview(direct)[wanted:]  # the rest: a reply's leftover, or more
            self._pos = 0
            return memoryview(direct)[:wanted]
        available = len(self._buf) - self._pos
        if not available:
            return None
        count = available if wanted < 0 else min(available, wanted)
        start = self._pos
        data = bytes(self._buf[start : start + count])
        self._pos = start + count
        self._compact()
        return data

    def _compact(self) -> None:
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = self._scan = 0
        elif self._pos > 65536:
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0

    def _next_line(self, limit: int, too_long: str) -> bytes | None:
        """The next CR LF-ended line of ``_buf`` (without it), or ``None`` if it has not
        arrived whole. The line may take at most ``limit`` bytes, CR LF included; past that,
        `ReplyError` with the message ``too_long``."""
        buf = self._buf
        stop = self._pos + limit
        end = buf.find(b"\n", max(self._scan, self._pos), stop)
        if end < 0:
            if len(buf) >= stop:
                raise ReplyError(too_long)
            self._scan = len(buf)
            return None
        if end == self._pos or buf[end - 1] != 0x0D:
            raise ReplyError("a line of the reply ends in a bare LF, not CR LF")
        line = bytes(buf[self._pos : end - 1])
        self._pos = self._scan = end + 1
        return line

    def _read_head(self) -> ReplyHead | None:
        while True:
            lines = self._whole_head() if not self._lines else None
            if lines is None:  # line by line: a head that has not arrived whole, or breaks a rule
                before = self._pos
                line = self._next_line(MAX_HEADER_BYTES + 2 - self._head_bytes, _HEAD_TOO_LARGE)
                if line is None:
                    return None
                self._head_bytes += self._pos - before
                if line:
                    self._lines.append(line)
                    if len(self._lines) > MAX_HEADERS + 1:
                        raise ReplyError(f"the reply head has more than {MAX_HEADERS} fields")
                    continue
                if not self._lines:
                    raise ReplyError("the reply begins with an empty line, not a status line")
                lines = self._lines
            status_line, *fields = lines
            self._lines = []
            self._head_bytes = 0
            try:
                minor, status, headers = parse_response_head(status_line, fields)
            except HTTPError as exc:
                raise ReplyError(f"the reply head is malformed: {exc.detail}") from None
            if status < 200:
                if status == 101:
                    raise ReplyError("the server switched protocols (101), never asked for")
                continue  # an interim reply (100 Continue, 103 Early Hints): the next head
            head = self._frame(minor, status, headers)
            self._compact()
            return head

    def _head_in_piece(self) -> ReplyHead | None:
        """Read a head from the received piece kept whole, without copying it into the
        buffer; what follows the head stays a piece of its own (the body, given out
        uncopied). ``None`` if that piece does not hold a whole final head: it is then in
        the buffer for the line-by-line reading."""
        direct = self._direct
        assert direct is not None
        end = direct.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 2)
        lines = direct[:end].split(b"\r\n") if end > 0 else None
        if (
            lines is None
            or not lines[0]
            or len(lines) > MAX_HEADERS + 1
            or direct.count(b"\n", 0, end) != len(lines) - 1
        ):
            self._buf += direct  # not whole, or breaking a rule: line by line says which
            self._direct = None
            return None
        rest = direct[end + 4 :]
        self._direct = rest or None
        try:
            minor, status, headers = parse_response_head(lines[0], lines[1:])
        except HTTPError as exc:
            raise ReplyError(f"the reply head is malformed: {exc.detail}") from None
        if status < 200:
            if status == 101:
                raise ReplyError("the server switched protocols (101), never asked for")
            return None  # an interim reply: the next head is in the rest
        return self._frame(minor, status, headers)

    def _whole_head(self) -> list[bytes] | None:
        """The lines of a head that lies whole in the buffer and keeps every rule the
        line-by-line reading checks (CR LF only, the size and field limits, a status line
        first), consumed; otherwise ``None``, consuming nothing (the usual case of one read
        holding the whole head, split in one pass)."""
        buf = self._buf
        start = self._pos
        end = buf.find(b"\r\n\r\n", start, start + MAX_HEADER_BYTES + 2)
        if end <= start:
            return None
        block = bytes(buf[start:end])
        lines = block.split(b"\r\n")
        if not lines[0] or len(lines) > MAX_HEADERS + 1 or block.count(b"\n") != len(lines) - 1:
            return None  # an empty first line, too many fields, a bare LF: the line-by-line
            # reading says which
        self._pos = self._scan = end + 4
        return lines

    def _frame(self, minor: int, status: int, headers: dict[str, str]) -> ReplyHead:
        """Decide how the reply body is framed (RFC 9112 section 6.3)."""
        keep_alive = minor == 1 and not asks_to_close(headers.get("connection"))
        coding = headers.get("transfer-encoding")
        framing = headers.get("content-length")
        length: int | None
        if self._head_request or status in (204, 304):
            length = 0  # no body, whatever the headers say
        elif coding is not None:
            if framing is not None:
                raise ReplyError(
                    "the reply has both Transfer-Encoding and Content-Length, so its end "
                    "is ambiguous (RFC 9112 section 6.3)"
                )
            codings = [c.strip(" \t").lower() for c in coding.split(",")]
            if codings != ["chunked"]:
                raise ReplyError(
                    f"the reply's Transfer-Encoding {coding[:60]!r} is not 'chunked' alone; "
                    "this client reads only chunked bodies, so it cannot tell the body's end"
                )
            length = None
            self._chunked = ChunkedDecoder(sys.maxsize)  # no limit: the caller asked for it
            self._pieces = collections.deque()
            self._in = _CHUNKED_BODY
        elif framing is not None:
            length = parse_content_length(framing)
            if length is None:
                raise ReplyError(f"the reply has an invalid Content-Length {framing[:40]!r}")
            self._left = length
            self._in = _LENGTH
        else:  # an HTTP/1.0 server (dataserve 0.1) ends the body by closing the connection
            length = None
            keep_alive = False
            self._in = _UNTIL_CLOSE
        self._keep_alive = keep_alive
        self._length = length
        if length == 0:
            self._done()
        return ReplyHead(status, headers, keep_alive, length)

    def _next_piece(self) -> bytes | None:
        """The next decoded piece of a chunked body, feeding the decoder what arrived;
        ``None`` if more bytes are needed (or the body ended: the state is then DONE)."""
        decoder = self._chunked
        assert decoder is not None
        pieces = self._pieces
        assert pieces is not None
        while not pieces:
            if decoder.done:
                self._chunked = None
                if decoder.leftover:
                    self.leftover = True
                self._done()
                return None
            data = self._take(-1)
            if data is None:
                return None
            try:
                pieces.extend(piece for piece in decoder.feed(bytes(data)) if piece)
            except HTTPError as exc:
                raise ReplyError(f"the chunked reply is malformed: {exc.detail}") from None
        piece = pieces.popleft()
        self._received += len(piece)
        return piece

    def _done(self) -> None:
        """The reply ended: anything received beyond it is a leftover."""
        self._in = _C_DONE
        if self._direct is not None or self._pos < len(self._buf):
            self.leftover = True
            self._direct = None
            self._buf.clear()
            self._pos = self._scan = 0

    def _cut_short(self) -> str:
        state = self._in
        if state == _C_HEAD:
            if not self._got_bytes:
                return "the server closed the connection without replying"
            return "the connection closed in the middle of the reply head"
        if state == _LENGTH:
            return (
                f"the reply body was cut short ({self._received} of {self._length} bytes arrived)"
            )
        return f"the chunked reply was cut short ({self._received} bytes of its body arrived)"
