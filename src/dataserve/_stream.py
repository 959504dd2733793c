"""Streaming large bodies through the shells, with no HTTP in it.

Owns what the client, the threaded server and the WSGI adapter need to move a body without
holding it whole: telling a binary file object from a value (`is_binary_file`), its size
(`stream_size`), reading it in chunks into one reused buffer (`FileChunks`), sending a region
of a regular file from the kernel (`send_file_region`), the throttled progress reporter, the
reply body a handler's returned file becomes (`FileBody`), and the stream a route annotated
``BinaryIO`` reads its request body from (`RequestBody`). Chunk framing is the wire's
(`_protocol.chunk_head`), not this module's.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import types
import typing
from collections.abc import Callable
from typing import Any, Final, Protocol

__all__ = [
    "CHUNK_SIZE",
    "DRAIN_LIMIT",
    "PROGRESS_STEP",
    "BodyCutShort",
    "BodyError",
    "BodyRejected",
    "BodySource",
    "BodyTimeout",
    "BodyTooLarge",
    "FileBody",
    "FileChunks",
    "FileEndedEarly",
    "Progress",
    "Read1Source",
    "RequestBody",
    "is_binary_file",
    "is_stream_annotation",
    "is_text_file",
    "kernel_offset",
    "position_of",
    "read_whole",
    "send_file_region",
    "stream_size",
    "write_all",
]

CHUNK_SIZE: Final = 256 * 1024
"""Bytes read from a file (or a socket) per step, into one buffer reused for the whole body."""
PROGRESS_STEP: Final = 64 * 1024
"""A progress callback is called at most once per this many bytes (and at each phase's end)."""
DRAIN_LIMIT: Final = 1 << 20
"""After a streamed route returns, at most this much of the body it left unread is read and
discarded to keep the connection; beyond it, the connection is closed after the reply."""
_SENDFILE_SLICE: Final = 1 << 20  # with progress reports: one report per slice

_NOT_FILES: Final = (bytes, bytearray, memoryview, str, int, float, list, dict, tuple, type(None))


def is_binary_file(value: object) -> bool:
    """Whether a payload or a handler's return value is a file object to stream.

    Anything with ``readinto`` or ``read`` that is not itself a bytes-like object or another
    plain value; a text file also counts (the caller refuses it with a clear error).
    """
    if isinstance(value, _NOT_FILES):
        return False
    return hasattr(value, "readinto") or hasattr(value, "read")


def is_text_file(value: object) -> bool:
    """Whether a file object reads ``str`` (opened in text mode), which cannot be streamed."""
    return isinstance(value, io.TextIOBase)


def is_stream_annotation(annotation: object, *, or_none: bool = False) -> bool:
    """Whether a route's payload (or return) annotation asks for a binary stream:
    ``typing.BinaryIO`` or ``typing.IO[bytes]`` (with ``or_none``, also ``BinaryIO | None``)."""
    if annotation is typing.BinaryIO:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.IO:
        return typing.get_args(annotation) == (bytes,)
    if or_none and (origin is typing.Union or origin is types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return len(rest) == 1 and is_stream_annotation(rest[0])
    return False


def _fileno(f: Any) -> int | None:
    try:
        fd = f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return fd if isinstance(fd, int) else None


def position_of(f: Any) -> int | None:
    """A seekable file object's current position, or ``None`` if it cannot seek back."""
    try:
        if not f.seekable():
            return None
        position = f.tell()
    except (AttributeError, OSError, ValueError):
        return None
    return position if isinstance(position, int) else None


def stream_size(f: Any) -> int | None:
    """How many bytes a file object holds from its current position, or ``None`` if unknown.

    A regular file: its ``os.fstat`` size minus the current position. Otherwise, if it is
    seekable: by seeking to its end and back. A pipe, a socket, or a reader that cannot seek:
    ``None`` (the body then travels chunked).
    """
    fd = _fileno(f)
    if fd is not None:
        try:
            info = os.fstat(fd)
        except OSError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode):
            position = position_of(f)
            return max(0, info.st_size - (position or 0))
        if info is not None:
            return None  # a pipe, a socket, a character device: never seek those
    position = position_of(f)
    if position is None:
        return None
    try:
        end = f.seek(0, io.SEEK_END)
        f.seek(position)
    except (OSError, ValueError):
        return None
    return max(0, end - position) if isinstance(end, int) else None


def kernel_offset(f: Any) -> int | None:
    """The offset to hand ``sendfile`` for a regular file object, or ``None`` if it is not one.

    Aligns the descriptor's position with the object's (a buffered file that was read from
    has read ahead), so that a WSGI server's ``sendfile``, which reads from the descriptor's
    position, starts where the object stands.
    """
    fd = _fileno(f)
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        position = f.tell()
        f.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return position if isinstance(position, int) else None


class FileEndedEarly(Exception):
    """A file held fewer bytes than its size announced when the body began (it shrank)."""

    def __init__(self, done: int, size: int) -> None:
        super().__init__(done, size)
        self.done = done
        self.size = size


class FileChunks:
    """Reads a binary file object in chunks into one buffer, reused for every chunk.

    Args:
        file: Has ``readinto`` (preferred: no allocation per chunk) or ``read``.
        size: The bytes to read (the body's announced length), or ``None`` to read to EOF.
        chunk_size: The buffer's size.
    """

    def __init__(self, file: Any, size: int | None, chunk_size: int = CHUNK_SIZE) -> None:
        self._file = file
        self.size = size
        self.done = 0
        self._view = memoryview(bytearray(chunk_size))
        # A stream of unknown size may be live (a pipe): take what has arrived, as it arrives.
        self._readinto = (getattr(file, "readinto1", None) if size is None else None) or getattr(
            file, "readinto", None
        )

    def next(self) -> memoryview | bytes:
        """The next chunk: a view of the reused buffer (valid until the next call) or the
        bytes ``read`` returned; empty once the body is complete.

        Raises:
            FileEndedEarly: The file ended before ``size`` bytes.
            TypeError: The file reads ``str`` or something else that is not bytes.
        """
        wanted = len(self._view)
        if self.size is not None:
            wanted = min(wanted, self.size - self.done)
            if wanted <= 0:
                return b""
        if self._readinto is not None:
            count = self._readinto(self._view[:wanted])
            if count is None:
                raise TypeError("the file is in non-blocking mode and had no data ready")
            data: memoryview | bytes = self._view[:count]
        else:
            data = self._file.read(wanted)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"the file's read() returned {type(data).__name__}, not bytes; open it in "
                    "binary mode ('rb')"
                )
            data = memoryview(data).cast("B")
            count = len(data)
        if count == 0 and self.size is not None:
            raise FileEndedEarly(self.done, self.size)
        self.done += count
        return data


def read_whole(file: Any, size: int) -> bytes:
    """Read exactly ``size`` bytes of a (small) file.

    Raises:
        FileEndedEarly: It held fewer.
    """
    chunks = FileChunks(file, size, chunk_size=max(1, size))
    parts = []
    while chunk := chunks.next():
        parts.append(bytes(chunk))
    return b"".join(parts)


def send_file_region(
    sock: socket.socket,
    f: Any,
    offset: int,
    count: int,
    sent: Callable[[int], object] | None = None,
) -> None:
    """Send ``count`` bytes of a regular file from ``offset`` with ``sendfile`` (zero-copy on
    a plain TCP socket; the stdlib falls back to reads and sends elsewhere).

    Args:
        sent: Called with the bytes sent after each slice (progress), if given.
    Raises:
        FileEndedEarly: The file held fewer bytes (it shrank).
    """
    done = 0
    while done < count:
        step = count - done if sent is None else min(_SENDFILE_SLICE, count - done)
        moved = sock.sendfile(f, offset + done, step)
        if moved <= 0:
            raise FileEndedEarly(done, count)
        done += moved
        if sent is not None:
            sent(moved)


def write_all(out: Any, view: memoryview) -> None:
    """Write all of ``view`` into a binary file object (an ``out=`` of the clients), whose
    ``write`` may take only part of it (a raw file) or return ``None`` (most writers).

    Raises:
        OSError: ``out.write`` wrote nothing; or whatever ``out.write`` raises.
    """
    done = 0
    while done < len(view):
        count = out.write(view[done:])
        if not isinstance(count, int) or count >= len(view) - done:
            return  # None (as many writers return) or all of it
        if count <= 0:
            raise OSError(f"{out!r}.write() wrote nothing")
        done += count


class Progress:
    """Calls ``callback(done, total)`` as a body moves, at most once per `PROGRESS_STEP`.

    Each phase (the request body going out, then the reply body coming in) begins with one
    call ``(0, total)`` and ends with a call whose ``done`` is every byte moved.
    """

    __slots__ = ("_callback", "_reported", "done", "total")

    def __init__(self, callback: Callable[[int, int | None], object]) -> None:
        self._callback = callback
        self.done = 0
        self.total: int | None = None
        self._reported = 0

    def begin(self, total: int | None) -> None:
        self.done = self._reported = 0
        self.total = total
        self._callback(0, total)

    def advance(self, count: int) -> None:
        self.done += count
        if self.done - self._reported >= PROGRESS_STEP:
            self._reported = self.done
            self._callback(self.done, self.total)

    def end(self) -> None:
        if self._reported != self.done:
            self._reported = self.done
            self._callback(self.done, self.total)


class FileBody:
    """A reply body that is a binary file object a handler returned, streamed by the shell.

    Attributes:
        file: The file object; the shell closes it once the reply is sent or has failed.
        size: Its length from its current position, or ``None`` (then sent chunked).
        resource: The resource it answers (for messages).
    """

    __slots__ = ("file", "resource", "size")

    def __init__(self, file: Any, size: int | None, resource: str) -> None:
        self.file = file
        self.size = size
        self.resource = resource

    def close(self) -> None:
        """Close the file; errors closing it are ignored (the reply is done either way)."""
        close = getattr(self.file, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


class BodyError(OSError):
    """A streamed request body could not be read; the server answers for it (see below)."""


class BodyTimeout(BodyError, TimeoutError):
    """No byte of a streamed request body arrived within the server's ``request_timeout``."""


class BodyCutShort(BodyError, ConnectionError):
    """The client closed the connection before the whole request body arrived."""


class BodyTooLarge(BodyError):
    """A streamed request body went past the server's ``max_body_size`` (413); its message
    is the wire's (`_wire.check_body_total`)."""


class BodyRejected(BodyError):
    """A streamed request body broke a framing rule (a malformed chunk): ``status`` says
    what the server answers (400, 431)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class BodySource(Protocol):
    """Where a `RequestBody` gets its bytes: one shell's bounded view of the connection.

    ``read`` and ``readinto`` return as many bytes as asked unless the body ends first;
    ``read1`` and ``readinto1`` return what arrived (at least one byte), waiting at most
    once for body bytes. All return nothing at the end of the body. A failure raises a
    `BodyError`: `BodyCutShort`, `BodyTimeout`, `BodyTooLarge` or `BodyRejected`.
    """

    def read(self, size: int, /) -> bytes: ...

    def read1(self, size: int, /) -> bytes: ...

    def readinto(self, view: memoryview, /) -> int: ...

    def readinto1(self, view: memoryview, /) -> int: ...

    def exhausted(self) -> bool:
        """Whether the body's last byte has been delivered (known without waiting)."""
        ...


class Read1Source:
    """A `BodySource` built on its ``read1``: ``read``, ``readinto`` and ``readinto1`` follow
    from it. A shell whose reads of the connection cannot do better subclasses this."""

    __slots__ = ()

    def read1(self, size: int, /) -> bytes:
        raise NotImplementedError

    def read(self, size: int, /) -> bytes:
        parts = []
        missing = size
        while missing > 0 and (piece := self.read1(missing)):
            parts.append(piece)
            missing -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, view: memoryview, /) -> int:
        filled = 0
        while filled < len(view) and (count := self.readinto1(view[filled:])):
            filled += count
        return filled

    def readinto1(self, view: memoryview, /) -> int:
        piece = self.read1(len(view))
        view[: len(piece)] = piece
        return len(piece)


class RequestBody(io.BufferedIOBase):
    """The request body a route annotated ``typing.BinaryIO`` (or ``IO[bytes]``) reads.

    A readable, non-seekable binary stream of exactly the body's bytes: ``read(n)`` returns
    ``n`` bytes unless the body ends first, ``read()`` the rest; ``readinto``, ``read1``,
    ``readline`` and iteration work, so ``shutil.copyfileobj(payload, f)`` streams an upload
    to disk. It holds at most one chunk at a time and never reads past the body's end. It
    applies no limit of its own: the source is bounded by the wire (``max_body_size``: a
    ``Content-Length`` over it is refused before the route runs, a chunked body as soon as
    it passes it), so a route reads at most ``max_body_size`` bytes.

    A read that cannot complete raises: `BodyCutShort` (a `ConnectionError`: the client went
    away), `BodyTimeout` (a `TimeoutError`: nothing arrived for ``request_timeout``),
    `BodyTooLarge` (an `OSError`: past ``max_body_size``) or `BodyRejected` (a framing
    rule broken). The server then answers that failure itself (400, 408, 413, ...),
    whatever the route returns or raises.

    Args:
        source: The shell's view of the body, bounded by the wire.
    """

    def __init__(self, source: BodySource) -> None:
        super().__init__()
        self._source = source
        self.received = 0
        """Bytes delivered so far."""
        self._ended = False
        self.error: OSError | None = None
        """The failure a read met, if any; it is raised again by every later read."""

    @property
    def at_end(self) -> bool:
        """Whether the whole body has been read."""
        return self._ended or self._source.exhausted()

    def readable(self) -> bool:
        return True

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise ValueError("I/O operation on a closed request body")

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._take(self._source.read1, CHUNK_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        return self._take(self._source.read, size)

    def read1(self, size: int | None = -1, /) -> bytes:
        return self._take(self._source.read1, CHUNK_SIZE if size is None or size < 0 else size)

    def readinto(self, buffer: Any, /) -> int:
        return self._fill(self._source.readinto, buffer)

    def readinto1(self, buffer: Any, /) -> int:
        return self._fill(self._source.readinto1, buffer)

    def _take(self, read: Callable[[int], bytes], size: int) -> bytes:
        self._check()
        if self.at_end or size == 0:
            return b""
        try:
            data = read(size)
        except BodyError as exc:
            self.error = exc
            raise
        if not data:
            self._ended = True
        self.received += len(data)
        return data

    def _fill(self, readinto: Callable[[memoryview], int], buffer: Any) -> int:
        self._check()
        view = memoryview(buffer).cast("B")
        if self.at_end or not len(view):
            return 0
        try:
            count = readinto(view)
        except BodyError as exc:
            self.error = exc
            raise
        if not count:
            self._ended = True
        self.received += count
        return count

    def readall(self) -> bytes:
        return self.read()

    def drain(self, limit: int) -> bool:
        """Read and discard what the route left unread, at most ``limit`` bytes.

        Returns:
            Whether the body is now read to its end (the connection can carry another
            request); ``False`` when more is left or a read failed.
        """
        if self.error is not None:
            return False
        scratch = memoryview(bytearray(CHUNK_SIZE))
        left = limit
        try:
            while not self.at_end and left > 0:
                count = self._source.readinto1(scratch[: min(CHUNK_SIZE, left)])
                if not count:
                    self._ended = True
                    break
                self.received += count
                left -= count
        except OSError as exc:
            self.error = exc
            return False
        return self.at_end
