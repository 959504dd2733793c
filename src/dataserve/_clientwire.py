"""The client side of the wire: one HTTP/1.1 connection as a sans-I/O state machine.

In h11's shape (``Connection``: events in, bytes out; bytes in, events out), with no socket,
no thread and no clock in it. A shell (the asyncio client on asyncio transports, the sync
client on urllib3's sockets) moves the bytes:

- events in, bytes out: `RequestHeads` builds a request head once per (path, media type);
  `ClientConnection.start_put` frames it with ``Content-Length``, or with
  ``Transfer-Encoding: chunked`` for a body of unknown size; `ClientConnection.send_data`
  frames each piece of the body and `ClientConnection.end_request` ends it.
- bytes in, events out: `ClientConnection.receive_data` takes what arrived (``b""`` for the
  end of the stream), then `ClientConnection.next_event` gives a `ReplyHead`, `Data` pieces,
  `END` or `NEED_DATA`.

Owns line splitting and the CR LF rule, the reply-head limits (`MAX_HEADER_BYTES`,
`MAX_HEADERS`), 1xx interim replies (skipped), replies without a body (HEAD, 204, 304),
``Content-Length`` and chunked framing (decoding with `_wire.ChunkedDecoder`, the server's
decoder; encoding), HTTP/1.0 replies framed by the end of the connection, keep-alive from
the ``Connection`` tokens (`_protocol.asks_to_close`), and bytes left over after a reply
(the connection is then not reused). Any reply it cannot frame is a `ReplyError`,
never a guess. The grammar of a head line is `_protocol.parse_response_head`'s.
"""

from __future__ import annotations

import collections
import enum
import sys
from typing import Final

from ._clientcommon import USER_AGENT
from ._protocol import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    HTTPError,
    asks_to_close,
    parse_content_length,
    parse_response_head,
)
from ._wire import ChunkedDecoder
from .codecs._registry import CodecRegistry

__all__ = [
    "END",
    "LAST_CHUNK",
    "NEED_DATA",
    "ClientConnection",
    "Data",
    "ReplyError",
    "ReplyHead",
    "RequestHeads",
]

LAST_CHUNK: Final = b"0\r\n\r\n"
"""The last chunk of a chunked body, with no trailer fields."""
_CHUNK_TAIL: Final = b"\r\n"
_CHUNKED: Final = b"Transfer-Encoding: chunked\r\n\r\n"
_CACHE_LIMIT: Final = 1024
_HEAD_TOO_LARGE: Final = f"the reply head is larger than {MAX_HEADER_BYTES} bytes"


class _Event(enum.Enum):
    NEED_DATA = "NEED_DATA"
    END = "END"


NEED_DATA: Final = _Event.NEED_DATA
"""`ClientConnection.next_event`: nothing more until `ClientConnection.receive_data`."""
END: Final = _Event.END
"""`ClientConnection.next_event`: the reply is complete (its last `Data` was given)."""


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
            `ClientConnection.reusable`, known at `END`.
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


class Data:
    """A piece of the reply body: ``data`` is ``bytes`` or a ``memoryview`` of what
    `ClientConnection.receive_data` was given (valid as long as the caller keeps it)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<Data {len(self.data)} bytes>"


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
            if len(self._puts) >= _CACHE_LIMIT:
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
_HEAD: Final = 1  # reading a reply head (1xx ones included)
_LENGTH: Final = 2  # a Content-Length body
_CHUNKED_BODY: Final = 3  # a chunked body, decoded by _wire.ChunkedDecoder (the server's decoder)
_UNTIL_CLOSE: Final = 4  # a body that ends when the connection does
_DONE: Final = 5


class ClientConnection:
    """One client connection's HTTP/1.1 state, one request and reply at a time.

    Not thread-safe: one shell drives it. Use: `start_put` (or `start_probe`), write what it
    returns, then `send_data`/`end_request` for the body; meanwhile or afterwards, feed every
    received byte to `receive_data` and take events from `next_event` until `END`. If
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
        self._in = _HEAD

    def send_data(self, data: bytes | bytearray | memoryview) -> tuple[bytes | memoryview, ...]:
        """Frame one piece of the request body: the pieces to write, in order (the data
        itself is never copied)."""
        view = data if isinstance(data, memoryview) else memoryview(data)
        size = view.nbytes
        if self._request_done or not self._request_started:
            raise RuntimeError("no request body is being sent")
        if self._sending is None:
            return (b"%x\r\n" % size, view, _CHUNK_TAIL) if size else ()
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
        if self._in == _DONE:
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

    def next_event(self) -> ReplyHead | Data | _Event:
        """The next event of the reply: a `ReplyHead`, `Data`, `END` or `NEED_DATA`.

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
            elif state == _DONE:
                return END
            elif state == _HEAD:
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
            self._in == _DONE
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
        self._in = _DONE
        if self._direct is not None or self._pos < len(self._buf):
            self.leftover = True
            self._direct = None
            self._buf.clear()
            self._pos = self._scan = 0

    def _cut_short(self) -> str:
        state = self._in
        if state == _HEAD:
            if not self._got_bytes:
                return "the server closed the connection without replying"
            return "the connection closed in the middle of the reply head"
        if state == _LENGTH:
            return (
                f"the reply body was cut short ({self._received} of {self._length} bytes arrived)"
            )
        return f"the chunked reply was cut short ({self._received} bytes of its body arrived)"
