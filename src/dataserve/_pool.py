"""A cheaper checkout and check-in for the sync client's urllib3 connection pools.

urllib3 keeps idle connections in a ``queue.LifoQueue`` (a ``threading.Condition`` taken and
notified on every get and put) and checks each one it hands out with a ``select.poll`` object
built, registered and polled anew. On a small call over a Unix socket that is a few µs of a
~60 µs round trip. `FastCheckout` keeps what it guarantees, more cheaply:

- The same policy as urllib3's non-blocking pool (``block=False``, which the client uses): a
  checkout takes the most recently used idle connection (LIFO), or makes a new one when none
  is idle; a check-in keeps at most ``maxsize`` idle connections and closes any beyond that.
- Thread safe: the idle list is only touched under one `threading.Lock`, held for a few
  list operations, never across I/O.
- The check before reuse: a connection the server closed while it sat idle (or that has
  unread bytes waiting: a reply nobody asked for) is closed and handed out disconnected, so
  the caller connects afresh and no request is ever sent on it and replayed. As urllib3's
  check, it is ``poll`` with a zero timeout on the socket's file descriptor: readable, hung
  up or in error means dropped. The ``poll`` object is made once per socket and kept with it
  (a plain socket and a TLS one alike: for TLS, as for urllib3, any record waiting on an idle
  connection means it is not reusable).
- `close` (and the pool's garbage collection) closes every idle connection; one checked in
  after `close` is closed instead of kept, and a checkout after it raises ``ClosedPoolError``.
- Fork: the client makes a new pool in the child (see ``HTTPDataClient``); nothing here is
  shared with the parent but the objects the child never uses.
"""

from __future__ import annotations

import contextlib
import select
import threading
import weakref
from typing import Any, Final

import urllib3
from urllib3.exceptions import ClosedPoolError

__all__ = ["FastCheckout", "Pool", "TLSPool", "is_dropped"]

_POLL_IN: Final = select.POLLIN
_WATCH: Final = "_dataserve_watch"


class FastCheckout(urllib3.HTTPConnectionPool):
    """urllib3's pool with `_get_conn`/`_put_conn` replaced by a locked LIFO list.

    Only the non-blocking policy is implemented (``block=False``): a pool made with
    ``block=True`` raises ``ValueError``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.block:
            raise ValueError(
                f"{type(self).__name__} for {self.host!r} cannot block: it opens a new "
                "connection when none is idle; create it with block=False"
            )
        queue = self.pool
        assert queue is not None
        self._limit: int = queue.maxsize
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        self.pool = None  # urllib3's own queue is never used: anything still reaching it fails
        weakref.finalize(self, _close_all, self._idle)

    def _get_conn(self, timeout: float | None = None) -> Any:
        """The most recently used idle connection, checked; else a new (unconnected) one.

        Raises:
            ClosedPoolError: The pool was closed.
        """
        with self._idle_lock:
            if self._closed:
                raise ClosedPoolError(self, "Pool is closed.")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            return self._new_conn()
        if is_dropped(conn):
            conn.close()  # the caller connects it afresh
        return conn

    def _put_conn(self, conn: Any) -> None:
        """Keep ``conn`` for reuse, or close it when ``maxsize`` are idle or the pool is closed."""
        if conn is None:  # urllib3's urlopen hands back None for a connection it dropped
            return
        with self._idle_lock:
            if not self._closed and len(self._idle) < self._limit:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close every idle connection; those in use are closed when checked in."""
        with self._idle_lock:
            self._closed = True
            idle = self._idle[:]
            self._idle.clear()  # the same list: the finalizer holds it
        _close_all(idle)

    def idle_connections(self) -> list[Any]:
        """The connections waiting idle, least recently used first (a copy, for tests)."""
        with self._idle_lock:
            return self._idle[:]


class Pool(FastCheckout):
    """A plain-HTTP pool (TCP, or a Unix socket through its connection class)."""


class TLSPool(FastCheckout, urllib3.HTTPSConnectionPool):
    """An HTTPS pool."""


def is_dropped(conn: Any) -> bool:
    """Whether a connected idle connection can no longer be reused: its peer closed it, it is
    in error, or bytes wait unread on it. ``False`` for a connection with no socket."""
    sock = conn.sock
    if sock is None:
        return False
    watch = getattr(conn, _WATCH, None)
    fd = sock.fileno()
    if watch is None or watch[0] is not sock or watch[1] != fd:
        if fd < 0:
            return True
        poller = select.poll()
        poller.register(fd, _POLL_IN)
        watch = (sock, fd, poller)
        setattr(conn, _WATCH, watch)
    return bool(watch[2].poll(0))


def _close_all(conns: list[Any]) -> None:
    for conn in conns:
        with contextlib.suppress(OSError):  # best effort: the socket is released anyway
            conn.close()
