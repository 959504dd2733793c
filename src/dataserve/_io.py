"""Socket helpers shared by the server backend and the client (the core does no I/O)."""

from __future__ import annotations

import socket
from typing import Any, Final

__all__ = ["ONE_WRITE_LIMIT", "send_message"]

ONE_WRITE_LIMIT: Final = 256 * 1024
"""Messages up to this size go out as one write of head and body together."""


def send_message(sock: socket.socket, head: bytes, body: Any, length: int) -> None:
    """Send a message head and its body (``length`` bytes; any bytes-like object).

    A small message goes out in one write, so that no Nagle / delayed-ACK stall can come
    between head and body; a large body is written from the caller's buffer, after the head,
    never concatenated with it.
    """
    if not length:
        sock.sendall(head)
    elif length <= ONE_WRITE_LIMIT:
        sock.sendall(head + body)
    else:
        sock.sendall(head)
        sock.sendall(body)
