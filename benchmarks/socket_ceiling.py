"""The ceiling of any Python bytes echo on this machine: a bare socket, no HTTP at all.

A server process echoes messages framed by an 8-byte length; this process sends each message
and reads the echo back, with TCP_NODELAY on both ends, as dataserve does. Two variants: a
fresh ``bytes`` per message on each side (what an echo that hands the payload to a handler
must do) and one reused ``bytearray`` per side (``recv_into``, the best case). It shows what
bounds dataserve's 1 MB echo: loopback TCP and the kernel's copies, not the protocol.

Run (bounded: at most ``--calls`` messages and ``--seconds`` per variant)::

    python benchmarks/socket_ceiling.py                # 1 MiB, 3 runs of each variant
    python benchmarks/socket_ceiling.py --size 64 --calls 40
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import struct
import time
from multiprocessing.connection import Connection

MiB = 1 << 20
HOST = "127.0.0.1"
_LENGTH = struct.Struct("!Q")


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            raise ConnectionError("peer closed mid-message")
        got += n


def _serve(conn: Connection, reuse: bool) -> None:
    listener = socket.create_server((HOST, 0))
    conn.send(listener.getsockname()[1])
    sock, _ = listener.accept()
    listener.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()
    with sock:
        while True:
            head = sock.recv(_LENGTH.size, socket.MSG_WAITALL)
            if len(head) < _LENGTH.size:
                return
            (size,) = _LENGTH.unpack(head)
            if not reuse or len(buffer) != size:
                buffer = bytearray(size)  # fresh per message unless reused
            data = memoryview(buffer)
            _recv_exactly(sock, data)
            sock.sendall(head)
            sock.sendall(data)


def measure(size: int, calls: int, seconds: float, reuse: bool) -> float:
    """MB/s of a ``size``-byte echo (MB = 2**20 bytes), over at most ``calls``/``seconds``."""
    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(target=_serve, args=(child, reuse), daemon=True)
    server.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the echo server did not start")
        port = parent.recv()
        blob = bytes(range(256)) * (size // 256)
        head = _LENGTH.pack(size)
        reused = memoryview(bytearray(size))
        with socket.create_connection((HOST, port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            done = 0
            start = time.perf_counter()
            while done < calls and time.perf_counter() - start < seconds:
                sock.sendall(head)
                sock.sendall(blob)
                sock.recv(_LENGTH.size, socket.MSG_WAITALL)
                _recv_exactly(sock, reused if reuse else memoryview(bytearray(size)))
                done += 1
            elapsed = time.perf_counter() - start
        return done * size / MiB / elapsed
    finally:
        server.join(5)
        if server.is_alive():
            server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1, help="message size in MiB (1)")
    parser.add_argument("--calls", type=int, default=1500, help="most messages per run (1500)")
    parser.add_argument("--seconds", type=float, default=5.0, help="most seconds per run (5)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant (3)")
    args = parser.parse_args(argv)
    for reuse, label in ((False, "fresh buffer per message"), (True, "one reused buffer")):
        rates = [
            measure(args.size * MiB, args.calls, args.seconds, reuse) for _ in range(args.runs)
        ]
        shown = ", ".join(f"{r:,.0f}" for r in rates)
        print(
            f"bare socket echo, {args.size} MiB, {label}: "
            f"median {statistics.median(rates):,.0f} MB/s ({shown})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
