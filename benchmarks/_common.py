"""Shared bits of the benchmark: row names, payloads, the loopback address, peak-memory probes.

Imported by the harness (``run.py``), by the server processes (``_servers.py``) and by the
large-echo client subprocess (``_clients.py``); it imports nothing beyond the stdlib.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Final

HOST: Final = "127.0.0.1"
ROWS: Final = (
    "floor",
    "dataserve",
    "dataserve-unix",
    "dataserve-async",
    "xmlrpc",
    "mp-manager",
    "multiprocessing manager (unix)",
    "dataserve-0.1-wire",
    "FastAPI + uvicorn",
)
AUTHKEY: Final = b"dataserve-benchmark"  # multiprocessing manager handshake (loopback only)
MiB: Final = 1 << 20
SMALL_PAYLOAD: Final = [1, 2, 3]
#: Block size of the file-streaming workload (the file's blocks, the floor's reads and writes).
STREAM_BLOCK: Final = 1 << 20
#: Client-side ceiling for one call (connect, then read); the harness's own bounds are tighter.
CONNECT_TIMEOUT_S: Final = 10.0
#: Tasks the dataserve-async row keeps in flight in its concurrent workload, and its pool.
ASYNC_TASKS: Final = 64
ASYNC_POOL_SIZE: Final = 8
READ_TIMEOUT_S: Final = 120.0


def make_records(n: int = 10_000) -> list[dict[str, Any]]:
    """The 10,000-record JSON list of workload (d)."""
    return [{"id": i, "name": f"item{i}", "score": i * 0.5, "tags": ["a", "b"]} for i in range(n)]


def make_blob(size: int) -> bytes:
    """Incompressible bytes of ``size`` (every page touched, so it counts in RSS)."""
    return os.urandom(size)


def listen_overflows() -> int | None:
    """Linux's count of connects dropped because a listen queue was full (TcpExt
    ListenOverflows; each costs that client a SYN retransmit, 1 s or more), or None."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split(), values.split(), strict=True))
            if "ListenOverflows" in fields:
                return int(fields["ListenOverflows"])
    return None


# ---------------------------------------------------------------------------------------------
# Peak memory (Linux /proc). Writing "5" to /proc/PID/clear_refs resets VmHWM to the current
# RSS; where that is refused, a thread samples VmRSS every millisecond instead.


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    """Current resident set size of ``pid`` in bytes, or None where /proc is missing."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb * 1024


class PeakRSS:
    """Peak RSS of one process over a window: ``start()``, the work, ``stop()`` -> bytes.

    ``baseline`` is the RSS at ``start()``; ``stop()`` returns the peak RSS (not the growth).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline: int | None = None
        self.method = "VmHWM"
        self._peak = 0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.baseline = rss_bytes(self.pid)
        if self.baseline is None:
            self.method = "unavailable"
            return
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            self.method = "sampled VmRSS"
            self._peak = self.baseline
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = rss_bytes(self.pid)
            if rss is not None and rss > self._peak:
                self._peak = rss
            time.sleep(0.001)

    def stop(self) -> int | None:
        if self.method == "unavailable":
            return None
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join(5)
            return self._peak
        kb = _status_kb(self.pid, "VmHWM")
        return None if kb is None else kb * 1024
