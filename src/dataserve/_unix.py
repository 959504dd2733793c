"""Unix domain sockets: the ``http+unix://`` URL form, connecting to a socket file, listening
on one.

Owns the rules for a socket file: the length limit of its path, the owner-only mode it is
created with, replacing a stale file, refusing a live one or a path that is not a socket, and
removing the file at shutdown only while it is still the one this process created. Stdlib
only: both the server and the client use it, and the server must not import urllib3.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys
import threading
import time
from typing import Final
from urllib.parse import quote, unquote

__all__ = [
    "DEFAULT_MODE",
    "UNIX_SCHEME",
    "SocketFileError",
    "claim_socket_path",
    "connect_failure_reason",
    "connect_unix",
    "is_unix_url",
    "listen_unix",
    "parse_unix_url",
    "remove_socket_file",
    "socket_path",
    "unix_url",
]

UNIX_SCHEME: Final = "http+unix"
DEFAULT_MODE: Final = 0o600
"""Owner only: other local users cannot connect (a ``127.0.0.1`` port is open to them all)."""

# sockaddr_un.sun_path is 108 bytes on Linux and 104 on the BSDs and macOS, NUL included.
MAX_PATH_BYTES: Final = 107 if sys.platform.startswith("linux") else 103
_PROBE_TIMEOUT: Final = 1.0
_umask_lock = threading.Lock()


class SocketFileError(OSError):
    """A socket file cannot be used: another server is listening on it, or the path is
    something else. The message says which and what to do (an `OSError`, as a TCP port in
    use is)."""

    def __init__(self, message: str, path: str = "", code: int = 0) -> None:
        super().__init__(message)  # one argument: str() is the message alone
        self.path = path
        if code:
            self.errno = code  # e.g. EADDRINUSE, as for a TCP port in use


def socket_path(path: str | os.PathLike[str]) -> str:
    """Check a socket file path and return it as a ``str``.

    Raises:
        ValueError: The path is empty, holds a NUL byte, or is longer than ``AF_UNIX``
            allows.
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"a Unix socket path must be a str or os.PathLike[str], got {path!r}")
    if not text or "\0" in text:
        raise ValueError(f"{text!r} is not a usable Unix socket path (empty, or holds a NUL)")
    size = len(os.fsencode(text))
    if size > MAX_PATH_BYTES:
        raise ValueError(
            f"the Unix socket path {text!r} is {size} bytes long; AF_UNIX allows at most "
            f"{MAX_PATH_BYTES} here: choose a shorter path (e.g. under /run or /tmp)"
        )
    return text


def unix_url(path: str) -> str:
    """The ``http+unix://`` URL of a socket file: the path percent-encoded as one host part,
    e.g. ``"http+unix://%2Frun%2Fapp%2Fdata.sock"``."""
    return f"{UNIX_SCHEME}://{quote(path, safe='')}"


def is_unix_url(url: str) -> bool:
    """Whether ``url`` is of the ``http+unix://`` form."""
    return url[: len(UNIX_SCHEME) + 3].lower() == UNIX_SCHEME + "://"


def parse_unix_url(url: str) -> tuple[str, str]:
    """Split an ``http+unix://`` URL into the socket file path and the path prefix after it.

    ``"http+unix://%2Frun%2Fdata.sock/api"`` gives ``("/run/data.sock", "/api")``.

    Raises:
        ValueError: No socket path, an unencoded one, a query or a fragment.
    """
    rest = url[len(UNIX_SCHEME) + 3 :]
    encoded, slash, tail = rest.partition("/")
    if not encoded:
        raise ValueError(
            f"expected the socket path percent-encoded after http+unix://, got {url!r}; "
            f"e.g. {unix_url('/run/app/data.sock')!r}"
        )
    if "?" in rest or "#" in rest:
        raise ValueError(f"a base URL has no query or fragment, got {url!r}")
    return socket_path(unquote(encoded)), (slash + tail).rstrip("/")


def connect_unix(path: str, timeout: float | None) -> socket.socket:
    """A stream socket connected to ``path`` within ``timeout`` seconds (``None``: no limit).

    Linux answers a connect to a listener whose queue is full with ``EAGAIN`` at once
    (where TCP would wait for the queue to drain), so that case is retried with a short
    backoff until the timeout: the timeout bounds the wait either way.

    Raises:
        TimeoutError: Not connected within ``timeout``.
        OSError: ``FileNotFoundError``, ``ConnectionRefusedError``, ``PermissionError``...
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        delay = 0.0005
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"timed out connecting to {path!r}")
            sock.settimeout(remaining)
            try:
                sock.connect(path)
            except BlockingIOError:  # the listen queue is full (EAGAIN)
                wait = delay if remaining is None else min(delay, remaining)
                time.sleep(wait)
                delay = min(delay * 2, 0.05)
                continue
            return sock
    except BaseException:
        sock.close()
        raise


def connect_failure_reason(path: str, exc: OSError) -> str:
    """Why connecting to ``path`` failed, and what to do, for an error message."""
    if isinstance(exc, FileNotFoundError):
        return f"no socket file at {path!r}; is the server running, and is that its path?"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing is listening on {path!r} (a stale socket file); is the server running?"
    if isinstance(exc, PermissionError):
        return (
            f"permission denied on {path!r}; the socket file's mode (or a directory above "
            "it) keeps this user out"
        )
    return f"{exc.strerror or exc} on {path!r}"


def _live_error(path: str) -> SocketFileError:
    return SocketFileError(
        f"another server is listening on {path!r}; stop it or choose another path",
        path,
        errno.EADDRINUSE,
    )


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new socket file: remove a stale one (nothing listening), and
    refuse a live one or anything that is not a socket.

    Raises:
        SocketFileError: Another server listens there, or the path is not a socket (left as
            it is), or it cannot be checked.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketFileError(
            f"{path!r} exists and is not a socket; it was left alone: remove it yourself "
            "or choose another path",
            path,
            errno.EEXIST,
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(_PROBE_TIMEOUT)
        probe.connect(path)
    except ConnectionRefusedError:
        # Nothing listens: the file a stopped (or killed) server left behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except FileNotFoundError:
        return  # removed meanwhile
    except (BlockingIOError, TimeoutError):
        raise _live_error(path) from None  # listening, with its queue full
    except OSError as exc:
        raise SocketFileError(
            f"cannot tell whether a server is listening on {path!r} "
            f"({exc.strerror or exc}); remove the file or choose another path",
            path,
            exc.errno or 0,
        ) from exc
    finally:
        probe.close()
    raise _live_error(path)


def listen_unix(path: str, mode: int, backlog: int) -> tuple[socket.socket, tuple[int, int]]:
    """A listening socket on a new socket file at ``path`` with permission bits ``mode``.

    Returns the socket and the file's identity (device, inode), for `remove_socket_file`.
    The file is never, not even for an instant, more open than ``mode`` and owner-only.

    Raises:
        SocketFileError: As `claim_socket_path`, or another server took the path meanwhile.
    """
    claim_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        # The file appears at bind() with the socket's own mode masked by the umask, and a
        # client could connect from that moment. So the mode is narrowed before bind(), never
        # after: on Linux by fchmod() of the unbound socket (thread-safe: no process-wide
        # state); elsewhere by a umask held around bind() (process-wide, hence the lock).
        # The owner-only subset of ``mode`` first; then chmod() widens it to exactly ``mode``
        # (e.g. 0o660 for a group), which a umask alone would have cut.
        first = mode & 0o600
        if sys.platform.startswith("linux"):
            os.fchmod(sock.fileno(), first)
            sock.bind(path)
        else:
            with _umask_lock:
                old = os.umask(0o777 & ~first)
                try:
                    sock.bind(path)
                finally:
                    os.umask(old)
        bound = True
        os.chmod(path, mode)
        st = os.lstat(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if bound:
            with contextlib.suppress(OSError):
                os.unlink(path)
        if exc.errno == errno.EADDRINUSE:
            raise _live_error(path) from None  # another server bound it since the check
        raise
    except BaseException:
        sock.close()
        raise
    return sock, (st.st_dev, st.st_ino)


def remove_socket_file(path: str, identity: tuple[int, int]) -> None:
    """Remove the socket file at ``path`` if it is still the one created (same inode): a
    server that started on the same path since keeps its own."""
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == identity and stat.S_ISSOCK(st.st_mode):
            os.unlink(path)
    except OSError:
        pass
