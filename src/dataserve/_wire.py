"""Wire framing with no I/O: the chunked transfer coding of request bodies (RFC 9112 7.1).

Owns the chunk grammar (the chunk-size line and its extensions, the CRLF after each chunk's
data, the last chunk and the trailer section), the limits on each, the body-size limit, and
where the message ends in the bytes received. It never sees a socket, a thread or a clock: a
shell feeds it the bytes it receives, in pieces of any size, and gets the body bytes back;
the deadline for the whole request stays the shell's.
"""

from __future__ import annotations

import re
from typing import Final

from ._protocol import MAX_HEADER_BYTES, MAX_HEADERS, HTTPError

__all__ = ["MAX_CHUNK_EXTENSIONS", "MAX_CHUNK_LINE", "ChunkedDecoder"]

MAX_CHUNK_LINE: Final = 8192
"""Longest chunk-size line, extensions and CRLF included (400 beyond)."""
MAX_CHUNK_EXTENSIONS: Final = 65536
"""Most bytes of chunk-size lines after the size digits in one body (400 beyond)."""

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-size [ chunk-ext ] CRLF, where chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*)\r\n"
    % (_TOKEN, _TOKEN, _QUOTED)
)
# field-line CRLF, as in the head: a token, a colon, a value without control bytes but HTAB.
_TRAILER_LINE: Final = re.compile(rb"%s:[^\x00-\x08\x0a-\x1f\x7f]*\r\n" % _TOKEN)

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
        if size > self.max_body_size - self.received:
            raise HTTPError(
                413,
                f"chunked body over this server's limit of {self.max_body_size} bytes",
                close=True,
            )
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
