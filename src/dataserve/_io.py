"""Socket helpers shared by the server backend and the client (the core does no I/O)."""

from __future__ import annotations

import socket
from typing import Any, Final

__all__ = ["ONE_WRITE_LIMIT", "SEND_SLICE", "send_message"]

ONE_WRITE_LIMIT: Final = 256 * 1024
"""Messages up to this size go out as one write of head and body together."""
SEND_SLICE: Final = 256 * 1024
"""A large body goes out in ``sendall`` calls of at most this many bytes."""


def send_message(sock: socket.socket, head: bytes, body: Any, length: int) -> None:
    """Send a message head and its body (``length`` bytes; any bytes-like object).

    A small message goes out in one write, so that no Nagle / delayed-ACK stall can come
    between head and body; a large body is written from the caller's buffer, after the head,
    never concatenated with it, in slices of `SEND_SLICE`: the socket's timeout bounds each
    ``sendall`` call as a whole, so per slice it bounds a stall of the peer, and a slow peer
    that keeps reading a large body is not cut.
    """
    if not length:
        sock.sendall(head)
    elif length <= ONE_WRITE_LIMIT:
        sock.sendall(head + body)
    else:
        sock.sendall(head)
        view = body if isinstance(body, memoryview) else memoryview(body)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        for start in range(0, length, SEND_SLICE):
            sock.sendall(view[start : start + SEND_SLICE])
