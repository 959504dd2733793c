"""dataserve benchmark: dataserve against the floor of its own stack and its peers (SPEC §12).

Run (from the repository root)::

    python benchmarks/run.py                   # full run, a few minutes
    python benchmarks/run.py --quick           # under a minute
    python benchmarks/run.py --repeat 3 --json bench.json --chart bench.png
    python benchmarks/run.py --quick --runs 3 --markdown -   # median of 3, Markdown for the README
    python benchmarks/run.py --quick --stream --rows floor dataserve dataserve-unix
    python benchmarks/run.py --quick --rows floor dataserve
    python benchmarks/run.py --quick --rows floor "FastAPI + uvicorn"   # quote names with spaces

If ``dataserve`` is not installed but ``src/dataserve`` exists, it is imported from ``src/``
(for the harness, its servers and its subprocesses alike). A row whose packages are missing
(``requests`` for the 0.1 wire, ``dataserve`` itself, fastapi/uvicorn/httpx for the FastAPI row)
is skipped with a note.

Rows (each server in its own spawned process on 127.0.0.1, free port, or for a Unix-socket row
on a socket file in a temp dir made for it and removed after; this process is the client):

``floor``
    A bare ``http.server.ThreadingHTTPServer``: HTTP/1.1 keep-alive, TCP_NODELAY, a listen
    backlog of 1024, a hand-built reply head sent in one write with a small body (head, then
    body, for a large one); it does a handler's msgspec work (JSON decoded then encoded, bytes
    passed through). Client: a bare ``urllib3.HTTPConnectionPool(maxsize=8)`` with
    ``urlopen('PUT', ...)`` and msgspec encode/decode. What dataserve stands on.
``dataserve``
    ``HTTPDataServer`` with an echo ``HTTPDataHandler``; ``HTTPDataClient``.
``dataserve-unix``
    The same over a Unix socket file in a fresh /tmp directory:
    ``HTTPDataServer(unix_socket=...)``; ``HTTPDataClient(unix_socket=...)``.
``dataserve-async``
    The ``dataserve`` server; client ``AsyncHTTPDataClient`` (pool of 8) on one event loop.
    Single calls run one at a time on that loop; its "8 threads" figure is 64 tasks in flight
    on the one loop (no threads), SPEC §12's asyncio workload.
``xmlrpc``
    stdlib ``SimpleXMLRPCServer`` + ``ThreadingMixIn`` (stdlib defaults: HTTP/1.0, a connection
    per call; only its gzip of large replies is off); ``ServerProxy``, one per thread; bytes as
    ``xmlrpc.client.Binary``.
``mp-manager``
    ``multiprocessing.managers.BaseManager`` serving an object's ``echo`` through a proxy
    (pickle), as dataserve 0.1's ProxyServer did; one proxy per thread.
``multiprocessing manager (unix)``
    The ``mp-manager`` row over a socket file: the same manager and proxies, with
    ``address=<temp dir>/server.sock`` (family AF_UNIX); the same-transport peer of a dataserve
    Unix-socket row.
``dataserve-0.1-wire``
    dataserve 0.1 on the wire: a non-threaded HTTP/1.0 ``HTTPServer``, no keep-alive, replies
    without Content-Length, stdlib json, content types compared as strings; client
    ``requests.put`` with a new connection per call (no Session).
``FastAPI + uvicorn``
    What a user would write instead: a FastAPI app (``_fastapi_app.py``) whose ``PUT /echo``
    reads the raw body and does the floor's msgspec work, returning a ``Response`` of bytes;
    ``uvicorn.Server`` with one worker, httptools and uvloop where installed (else h11 and
    asyncio), ``log_level='warning'``, no access log, keep-alive timeout raised to 600 s. Client:
    one shared ``httpx.Client`` (thread-safe; 8 connections), msgspec encode/decode. Only where
    fastapi, uvicorn and httpx are installed (the nox ``bench`` session installs them).

All servers of a run start together (each in its own process) and are always terminated at
its end (a watchdog kills them if a run overstays its bound). Each workload runs in rounds: in
every round each row gets one slice, the rows taking turns in a rotating order, so that a
change in the machine's speed (another job, a frequency step) hits every row alike and the
ratios to the floor stay fair. Workloads, each bounded per row by a call count and a time cap
(``--quick`` lowers both):

(a) small JSON round trips (``[1, 2, 3]``) from one thread: calls/s, p50 and p99 latency;
(b) 8 threads sharing one client (or one client per thread where it is not thread-safe): calls/s
    (for ``dataserve-async``: 64 concurrent tasks on one event loop);
(c) 1 MB and 64 MB bytes echo (1 MB = 2**20 bytes), in a client subprocess of its own: MB/s,
    and for one 64 MB call per round the peak RSS (VmHWM, reset through /proc/PID/clear_refs)
    of client and server above their RSS just before the call (the payload already built: the
    figure is what the call costs, reply included), in MB and as a multiple of the payload (P);
(d) a 10,000-record JSON list echoed: median time per call;
(e) a 512 MiB file streamed through (full runs, or ``--quick --stream``; ``--stream-mib`` sets
    the size, ``--no-stream`` skips it), one round per run, for the floor and the dataserve
    TCP and Unix-socket rows: the file (generated once per run in a temp dir, removed at its
    end) is sent with ``send(resource, f)`` to a ``typing.BinaryIO`` route that streams it to
    disk, and streamed back with ``send(..., out=f)`` into a file (checked, then removed), from
    a client subprocess; the floor does the same with urllib3 (a file body, ``readinto`` of the
    reply) and ``ThreadingHTTPServer`` in 1 MiB blocks. MB/s each way, and the peak RSS of
    client and server above their RSS just before each transfer (the larger direction);
and ``import dataserve`` against ``import msgspec, urllib3`` (``python -X importtime`` in fresh
interpreters, cumulative time of the top-level imports, median of several runs).

Output: a Markdown table on stdout (each figure followed by its ratio to the floor), then the
SPEC §12 targets with PASS/FAIL; progress goes to stderr. ``--json PATH`` writes every raw
figure, ``--chart PATH`` a PNG bar chart (needs matplotlib), ``--markdown PATH`` (``-`` for
stdout) the tables and the targets as Markdown to paste. ``--repeat N`` (or ``--runs N``) runs
everything N times and reports the median of each figure (the targets are checked on the median
of three). A target whose rows did not run (``--rows``, a row skipped for a missing package, a
row not on this branch) or whose workload did not run is SKIP, with the reason.
Under the table it also counts connects dropped by a full listen queue (Linux ListenOverflows;
each one costs a client a SYN retransmit of 1 s or more). The harness reports; it exits 0
whether or not a target is met.
"""

# ruff: noqa: RUF001 - the output uses the multiplication sign and the en dash on purpose

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script it is sys.path[0] already
    sys.path.insert(0, str(HERE))

from _common import ASYNC_TASKS, ROWS, SMALL_PAYLOAD, listen_overflows, make_records  # noqa: E402

#: Rows that run the file-streaming workload (their clients can send a file and receive one
#: into a file; the floor with urllib3, streaming to and from disk on the server as well).
STREAM_ROWS = ("floor", "dataserve", "dataserve-unix")

N_THREADS = 8
SERVER_START_TIMEOUT_S = 30.0
#: Bound of one row's file-streaming slice (up and back, the copy checked): its subprocess is
#: killed after this long.
STREAM_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Budget:
    """Bounds of each workload per row and run: at most ``*_calls`` calls or ``*_s`` seconds,
    whichever comes first, spread over ``rounds`` slices (``large_rounds`` for 1 MB/64 MB)."""

    rounds: int
    large_rounds: int
    warmup_calls: int
    warmup_s: float
    small_calls: int
    small_s: float
    threads_calls: int
    threads_s: float
    mb1_calls: int
    mb1_s: float
    mb64_calls: int  # one 64 MB call per round always runs: the one whose memory is measured
    mb64_s: float
    records_calls: int
    records_s: float
    import_runs: int
    stream_mib: int = 0  # size of the file streamed through (one round per run); 0: not run

    def hard_limit_s(self, n_rows: int) -> float:
        """After this long the servers are killed, so a hung call cannot hang the run."""
        per_row = self.small_s + self.threads_s + self.mb1_s + self.mb64_s + self.records_s
        stream = STREAM_TIMEOUT_S if self.stream_mib else 0.0
        return n_rows * (3 * per_row + 60 + stream) + 120


QUICK = Budget(
    rounds=3, large_rounds=1,
    warmup_calls=100, warmup_s=0.2,
    small_calls=20_000, small_s=1.2,
    threads_calls=40_000, threads_s=1.2,
    mb1_calls=200, mb1_s=0.6,
    mb64_calls=5, mb64_s=0.8,
    records_calls=50, records_s=0.8,
    import_runs=5,
    stream_mib=0,  # --stream adds it
)  # fmt: skip
FULL = Budget(
    rounds=5, large_rounds=3,
    warmup_calls=500, warmup_s=0.5,
    small_calls=200_000, small_s=5.0,
    threads_calls=400_000, threads_s=5.0,
    mb1_calls=2_000, mb1_s=3.0,
    mb64_calls=40, mb64_s=5.0,
    records_calls=400, records_s=4.0,
    import_runs=11,
    stream_mib=512,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Figures: key, column title, True if higher is better (informational only)

FIGURES: list[tuple[str, str]] = [
    ("small_calls_s", "small calls/s"),
    ("small_p50_us", "p50 µs"),
    ("small_p99_us", "p99 µs"),
    ("threads8_calls_s", "8 threads calls/s"),
    ("mb1_MBps", "1 MB MB/s"),
    ("mb64_MBps", "64 MB MB/s"),
    ("mb64_client_peak_MB", "64 MB client peak"),
    ("mb64_server_peak_MB", "64 MB server peak"),
    ("records10k_ms", "10k records ms"),
]
#: The file streamed through (SPEC §12): a table of its own, for the rows that ran it.
STREAM_FIGURES: list[tuple[str, str]] = [
    ("stream_up_MBps", "file up MB/s"),
    ("stream_down_MBps", "file down MB/s"),
    ("stream_client_peak_MB", "client peak"),
    ("stream_server_peak_MB", "server peak"),
]
#: Figures shown without a ratio to the floor (a peak of a few MB against the floor's few KB
#: says nothing; the target is the 100 MB bound).
NO_RATIO = frozenset({"stream_client_peak_MB", "stream_server_peak_MB"})
EXTRA_FIGURES = ("mb64_client_peak_x", "mb64_server_peak_x", "small_max_us")


# ---------------------------------------------------------------------------------------------
# Environment


def locate_dataserve() -> tuple[str | None, str | None]:
    """Make ``dataserve`` importable here and in child processes.

    Returns (note, error): a note when it comes from ``src/``; an error when it cannot be
    imported (the row and the import figure are then skipped).
    """
    note = None
    if importlib.util.find_spec("dataserve") is None:
        src = HERE.parent / "src"
        if (src / "dataserve" / "__init__.py").is_file():
            sys.path.insert(0, str(src))
            old = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = str(src) + (os.pathsep + old if old else "")
            note = f"dataserve imported from {src} (not installed)"
    try:
        import dataserve

        dataserve.HTTPDataServer  # noqa: B018 - the names the rows need
        dataserve.HTTPDataClient  # noqa: B018
    except Exception as exc:
        return note, f"cannot import dataserve ({type(exc).__name__}: {exc})"
    return note, None


def row_unavailable(row: str, dataserve_error: str | None) -> str | None:
    """Why ``row`` cannot run here, or None."""
    if row in ("dataserve", "dataserve-unix", "dataserve-async") and dataserve_error:
        return dataserve_error
    if row == "dataserve-0.1-wire" and importlib.util.find_spec("requests") is None:
        return "needs `requests` (pip install requests)"
    if row == "multiprocessing manager (unix)" and not hasattr(socket, "AF_UNIX"):
        return "needs Unix domain sockets (socket.AF_UNIX), which this platform lacks"
    if row == "FastAPI + uvicorn" and (why := fastapi_unavailable()):
        return why
    return None


def fastapi_unavailable() -> str | None:
    """Why the ``FastAPI + uvicorn`` row cannot run here (a package missing), or None."""
    missing = [m for m in ("fastapi", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"needs {', '.join(missing)}, installed only by `nox -s bench` "
            "(or: pip install fastapi 'uvicorn[standard]' httpx)"
        )
    return None


def fastapi_note() -> str:
    """What the ``FastAPI + uvicorn`` row ran: versions and uvicorn's http and loop."""
    from importlib.metadata import version

    import _servers

    http, loop = _servers.fastapi_http_impl()
    return (
        f"FastAPI + uvicorn: fastapi {version('fastapi')}, uvicorn {version('uvicorn')} "
        f"(http={http}, loop={loop}, 1 worker), httpx {version('httpx')}"
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Servers


@contextmanager
def running_server(row: str, hard_limit_s: float) -> Iterator[tuple[int | str, int]]:
    """Run ``row``'s server in a spawned process; yield (port, pid); always terminate it.

    The port is a socket file's path for a Unix-socket row: the file is in a temp dir made here
    and removed, with all it holds, once the server process is gone.
    A watchdog terminates the server after ``hard_limit_s``, which makes any client call still
    waiting on it fail instead of hanging the run.
    """
    import _servers

    ctx = mp.get_context("spawn")
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    sock_dir = tempfile.mkdtemp(prefix="dataserve-bench-")
    proc = ctx.Process(target=_servers.serve, args=(row, send_conn, sock_dir), name=f"bench-{row}")
    proc.daemon = True
    watchdog = threading.Timer(hard_limit_s, proc.terminate)
    watchdog.daemon = True
    try:
        proc.start()
        send_conn.close()
        if not recv_conn.poll(SERVER_START_TIMEOUT_S):
            raise RuntimeError(f"{row} server did not start within {SERVER_START_TIMEOUT_S:.0f} s")
        try:
            msg = recv_conn.recv()
        except EOFError:
            raise RuntimeError(f"{row} server exited at start (code {proc.exitcode})") from None
        if isinstance(msg, tuple):
            raise RuntimeError(f"{row} server failed to start: {msg[1]}")
        watchdog.start()
        assert proc.pid is not None
        yield (msg if isinstance(msg, str) else int(msg)), proc.pid
    finally:
        watchdog.cancel()
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        recv_conn.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


@dataclass
class RowState:
    """One row during a run: its server, its client, and what its workloads gathered."""

    row: str
    port: int | str  # a socket file's path for a Unix-socket row
    pid: int
    client: Any
    thread_clients: list[Any] = field(default_factory=list)
    slices: dict[str, list[Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    listen_overflows: int = 0  # connects dropped by a full listen queue during its slices
    stream_src: str | None = None  # the file of the streaming workload (one per run, shared)


# ---------------------------------------------------------------------------------------------
# Workloads. Each runs in slices: in every round each row gets one slice, the rows taking turns
# in a rotating order, so that a change in the machine's speed (another job, a frequency step)
# hits every row alike instead of whichever row ran at that moment.


@functools.cache
def records() -> list[dict[str, Any]]:
    """The 10,000-record list, built once (not at import: spawned servers import this file)."""
    return make_records()


def _percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def _bounded_calls(echo: Callable[[Any], Any], payload: Any, calls: int, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    for _ in range(calls):
        echo(payload)
        if time.perf_counter() >= deadline:
            break


def prepare(st: RowState, b: Budget) -> None:
    """Check that the row echoes correctly, and warm it up (connections, caches)."""
    echo = st.client.echo
    got = echo(SMALL_PAYLOAD)
    if got != SMALL_PAYLOAD:
        raise RuntimeError(f"small echo came back as {got!r}")
    if echo(records()) != records():
        raise RuntimeError("the 10k records came back different")
    _bounded_calls(echo, SMALL_PAYLOAD, b.warmup_calls, b.warmup_s)
    st.thread_clients = [st.client.for_thread() for _ in range(N_THREADS)]


def slice_small(st: RowState, b: Budget) -> tuple[list[int], float]:
    """(a) Small JSON round trips from one thread: (latencies in ns, elapsed s)."""
    echo = st.client.echo
    payload = SMALL_PAYLOAD
    _bounded_calls(echo, payload, 20, 0.05)  # this row's code and connection back in cache
    clock = time.perf_counter_ns
    latencies: list[int] = []
    append = latencies.append
    start = t1 = clock()
    stop = start + int(b.small_s / b.rounds * 1e9)
    for _ in range(max(1, b.small_calls // b.rounds)):
        t0 = clock()
        echo(payload)
        t1 = clock()
        append(t1 - t0)
        if t1 >= stop:
            break
    return latencies, (t1 - start) / 1e9


def combine_small(slices: list[tuple[list[int], float]]) -> dict[str, Any]:
    latencies = sorted(x for lat, _ in slices for x in lat)
    return {
        "small_calls": len(latencies),
        "small_calls_s": len(latencies) / sum(sec for _, sec in slices),
        "small_p50_us": _percentile(latencies, 50) / 1e3,
        "small_p99_us": _percentile(latencies, 99) / 1e3,
        "small_max_us": latencies[-1] / 1e3,
        "small_slices_calls_s": [len(lat) / sec for lat, sec in slices],
    }


def slice_threads(st: RowState, b: Budget) -> tuple[int, float]:
    """(b) ``N_THREADS`` threads calling at once (sharing the client where it is thread-safe):
    (calls, elapsed s). A client with ``concurrent_echoes`` (the asyncio row) runs
    ``ASYNC_TASKS`` tasks on its one loop instead, with the same per-slice call budget."""
    concurrent = getattr(st.client, "concurrent_echoes", None)
    if concurrent is not None:
        per_task = max(1, b.threads_calls // b.rounds // ASYNC_TASKS)
        calls, elapsed = concurrent(SMALL_PAYLOAD, ASYNC_TASKS, per_task, b.threads_s / b.rounds)
        return int(calls), float(elapsed)
    barrier = threading.Barrier(N_THREADS + 1, timeout=60)
    counts = [0] * N_THREADS
    errors: list[BaseException] = []
    per_thread = max(1, b.threads_calls // b.rounds // N_THREADS)
    seconds = b.threads_s / b.rounds

    def work(i: int) -> None:
        echo = st.thread_clients[i].echo
        try:
            echo(SMALL_PAYLOAD)  # each thread has its connection before the clock starts
            barrier.wait()
            deadline = time.perf_counter() + seconds
            n = 0
            while n < per_thread:
                echo(SMALL_PAYLOAD)
                n += 1
                if time.perf_counter() >= deadline:
                    break
            counts[i] = n
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    with suppress(threading.BrokenBarrierError):
        barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(seconds + 180)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a client thread did not finish")
    return sum(counts), elapsed


def combine_threads(slices: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "threads8_calls": sum(n for n, _ in slices),
        "threads8_calls_s": sum(n for n, _ in slices) / sum(sec for _, sec in slices),
        "threads8_slices_calls_s": [n / sec for n, sec in slices],
    }


def slice_records(st: RowState, b: Budget) -> list[float]:
    """(d) The 10,000-record JSON list echoed: seconds of each call."""
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(max(1, b.records_calls // b.rounds)):
        t0 = time.perf_counter()
        st.client.echo(records())
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 - start >= b.records_s / b.rounds:
            break
    return times


def combine_records(slices: list[list[float]]) -> dict[str, Any]:
    times = [t for s in slices for t in s]
    return {"records10k_calls": len(times), "records10k_ms": statistics.median(times) * 1e3}


def slice_large(st: RowState, b: Budget) -> dict[str, Any]:
    """(c) 1 MB and 64 MB bytes echo in a client subprocess (see ``_clients.large_echo``)."""
    n = b.large_rounds
    mb1_s, mb64_s = b.mb1_s / n, b.mb64_s / n
    cmd = [
        sys.executable,
        str(HERE / "_clients.py"),
        st.row,
        str(st.port),
        str(st.pid),
        "--mb1", str(max(1, b.mb1_calls // n)), str(mb1_s),
        "--mb64", str(max(1, b.mb64_calls // n)), str(mb64_s),
    ]  # fmt: skip
    timeout = 3 * (mb1_s + mb64_s) + 120
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"large-echo client exited {proc.returncode}: {proc.stderr[-500:]}")
    raw: dict[str, Any] = json.loads(lines[-1])
    if "error" in raw:
        raise RuntimeError(raw["error"])
    return raw


def combine_large(slices: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, mib in (("mb1", 1), ("mb64", 64)):
        calls = sum(s[size]["calls"] for s in slices)
        out[f"{size}_calls"] = calls
        out[f"{size}_MBps"] = calls * mib / sum(s[size]["seconds"] for s in slices)
    for side in ("client", "server"):
        peaks = [s[f"mb64_{side}_peak"] for s in slices]
        for key, name in (("peak_above_MB", "MB"), ("x_payload", "x"), ("baseline_MB", "base_MB")):
            vals = [p[key] for p in peaks if p[key] is not None]
            out[f"mb64_{side}_peak_{name}"] = statistics.median(vals) if vals else None
        out["memory_method"] = peaks[0]["method"]
    out["large_slices"] = slices
    return out


def slice_stream(st: RowState, b: Budget) -> dict[str, Any]:
    """(e) The file streamed up to a route that writes it to disk, and back into a file, in
    a client subprocess (see ``_clients.stream_through``)."""
    assert st.stream_src is not None
    cmd = [sys.executable, str(HERE / "_clients.py"), st.row, str(st.port), str(st.pid),
           "--stream", st.stream_src]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=STREAM_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"streaming client exited {proc.returncode}: {proc.stderr[-500:]}")
    raw: dict[str, Any] = json.loads(lines[-1])
    if "error" in raw:
        raise RuntimeError(raw["error"])
    return raw


def combine_stream(slices: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"stream_MiB": slices[0]["bytes"] / (1 << 20)}
    for way in ("up", "down"):
        out[f"stream_{way}_MBps"] = statistics.median(s[way]["MBps"] for s in slices)
    for side in ("client", "server"):  # the larger of the two directions' peaks
        peaks = [
            max(v for way in ("up", "down") if (v := s[way][f"{side}_peak_above_MB"]) is not None)
            for s in slices
            if any(s[way][f"{side}_peak_above_MB"] is not None for way in ("up", "down"))
        ]
        out[f"stream_{side}_peak_MB"] = statistics.median(peaks) if peaks else None
    out["stream_slices"] = slices
    return out


WORKLOADS: list[
    tuple[str, Callable[[RowState, Budget], Any], Callable[[list[Any]], dict[str, Any]]]
] = [
    ("small", slice_small, combine_small),
    ("threads", slice_threads, combine_threads),
    ("records", slice_records, combine_records),
    ("large", slice_large, combine_large),
    ("stream", slice_stream, combine_stream),
]


def _rounds(name: str, b: Budget) -> int:
    if name == "stream":
        return 1 if b.stream_mib else 0
    return b.large_rounds if name == "large" else b.rounds


def run_once(rows: list[str], b: Budget, run_index: int) -> dict[str, dict[str, Any]]:
    """Start every row's server, run each workload in interleaved slices, stop the servers.

    Returns, per row, ``{"figures": {...}, "errors": {...}}``.
    """
    from _clients import make_client, make_stream_file

    states: list[RowState] = []
    failed: dict[str, dict[str, str]] = {}
    with ExitStack() as stack:
        stream_src = None
        if b.stream_mib and any(r in STREAM_ROWS for r in rows):
            stream_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dataserve-bench-"))
            stream_src = os.path.join(stream_dir, "stream.bin")
            make_stream_file(stream_src, b.stream_mib << 20)
        for row in rows:
            try:
                port, pid = stack.enter_context(running_server(row, b.hard_limit_s(len(rows))))
                client = make_client(row, port)
                stack.callback(client.close)
                st = RowState(row, port, pid, client, stream_src=stream_src)
                states.append(st)
                prepare(st, b)
            except Exception as exc:
                failed[row] = {"server": f"{type(exc).__name__}: {exc}"}
                states = [s for s in states if s.row != row]
            else:
                stack.callback(_close_thread_clients, st)
        for name, run_slice, _ in WORKLOADS:
            rounds = _rounds(name, b)
            if not rounds:
                continue
            t0 = time.perf_counter()
            for r in range(rounds):
                k = (r + run_index) % len(states) if states else 0
                for st in states[k:] + states[:k]:
                    if name in st.errors or (name == "stream" and st.row not in STREAM_ROWS):
                        continue
                    before = listen_overflows()
                    try:
                        st.slices.setdefault(name, []).append(run_slice(st, b))
                    except Exception as exc:
                        st.errors[name] = f"{type(exc).__name__}: {exc}"
                    after = listen_overflows()
                    if before is not None and after is not None:
                        st.listen_overflows += after - before
            log(f"    {name}: {time.perf_counter() - t0:.1f} s")
    results: dict[str, dict[str, Any]] = {}
    for st in states:
        figures: dict[str, Any] = {}
        for name, _, combine in WORKLOADS:
            if name not in st.errors and st.slices.get(name):
                figures.update(combine(st.slices[name]))
        figures["listen_overflows"] = st.listen_overflows
        results[st.row] = {"figures": figures, "errors": st.errors}
    for row, errors in failed.items():
        results[row] = {"figures": {}, "errors": errors}
    return {row: results[row] for row in rows}


def _close_thread_clients(st: RowState) -> None:
    for c in st.thread_clients:
        if c is not st.client:
            c.close()


# ---------------------------------------------------------------------------------------------
# Import time


def _import_us(modules: list[str]) -> float:
    """Cumulative ``-X importtime`` of ``import <modules>`` in a fresh interpreter, in µs."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import " + ", ".join(modules)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"import {', '.join(modules)} failed: {proc.stderr[-300:]}")
    total = 0.0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].split(":")[1].strip().isdigit():
            continue  # the header line
        name = parts[2][1:]  # one space after the bar, then two per nesting level
        if not name.startswith(" ") and name.strip() in modules:
            total += int(parts[1])
    return total


def measure_import(runs: int) -> dict[str, Any]:
    """Median import times of dataserve and of its two dependencies, interleaved runs."""
    ours, deps = ["dataserve"], ["msgspec", "urllib3"]
    _import_us(ours), _import_us(deps)  # discarded: bytecode caches written, files in page cache
    a: list[float] = []
    c: list[float] = []
    for _ in range(runs):
        a.append(_import_us(ours))
        c.append(_import_us(deps))
    ds, base = statistics.median(a), statistics.median(c)
    return {
        "import_dataserve_ms": ds / 1e3,
        "import_msgspec_urllib3_ms": base / 1e3,
        "import_ratio": ds / base,
        "import_dataserve_runs_ms": [x / 1e3 for x in a],
        "import_msgspec_urllib3_runs_ms": [x / 1e3 for x in c],
    }


# ---------------------------------------------------------------------------------------------
# Reporting


def median_figures(
    runs: list[dict[str, dict[str, Any]]], rows: list[str]
) -> dict[str, dict[str, float]]:
    """Per row and figure, the median over the runs that produced it."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        keys = {k for run in runs for k in run.get(row, {}).get("figures", {})}
        med: dict[str, float] = {}
        for k in sorted(keys):
            vals = [run[row]["figures"].get(k) for run in runs if row in run]
            nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if nums:
                med[k] = statistics.median(nums)
        out[row] = med
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _ratio(v: float | None, floor: float | None) -> str:
    if v is None or not floor:
        return ""
    return f" ({v / floor:.2f}×)"


def format_table(
    med: dict[str, dict[str, float]],
    rows: list[str],
    figures: list[tuple[str, str]] = FIGURES,
) -> str:
    """A Markdown table of ``figures`` per row, each followed by its ratio to the floor's."""
    floor = med.get("floor", {})
    head = ["row"] + [title for _, title in figures]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * len(figures)]
    for row in rows:
        f = med.get(row, {})
        cells = [row]
        for key, _ in figures:
            v = f.get(key)
            versus = None if key in NO_RATIO else floor.get(key)
            cell = _fmt(v) + _ratio(v, versus)
            if key.endswith("_peak_MB") and v is not None:
                x = f.get(key[:-3] + "_x")
                shown = f"{_fmt(v)} MB" + ("" if x is None else f" = {x:.2f} P")
                cell = shown + _ratio(v, versus)
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class TargetSpec:
    """One SPEC §12 target: ``row``'s figure ``key`` divided by ``versus``'s (or the figure
    itself when ``versus`` is None) must be at least (or at most) ``limit``."""

    name: str
    row: str
    key: str
    versus: str | None
    limit: float
    higher_is_better: bool


def _t(name: str, row: str, key: str, versus: str | None, limit: float, higher: bool) -> TargetSpec:
    return TargetSpec(name, row, key, versus, limit, higher)


DS, DSU, DSA, FL = "dataserve", "dataserve-unix", "dataserve-async", "floor"
MPM, MPU = "mp-manager", "multiprocessing manager (unix)"
#: SPEC §12's targets, in its order, as ratios in the same run (read on the median of 3 runs).
#: ``import_ratio`` is not a row's figure: it comes from the import measurement.
TARGETS: list[TargetSpec] = [
    _t("small JSON calls/s ≥ 1.8× floor", DS, "small_calls_s", FL, 1.8, True),
    _t("small JSON p99 latency ≤ floor's", DS, "small_p99_us", FL, 1.0, False),
    _t("8 threads calls/s ≥ 4× floor", DS, "threads8_calls_s", FL, 4.0, True),
    _t("1 MB echo MB/s ≥ 0.95× floor", DS, "mb1_MBps", FL, 0.95, True),
    _t("64 MB echo MB/s ≥ 0.95× floor", DS, "mb64_MBps", FL, 0.95, True),
    _t("1 MB echo MB/s ≥ 3× mp-manager", DS, "mb1_MBps", MPM, 3.0, True),
    _t("64 MB echo MB/s ≥ 3× mp-manager", DS, "mb64_MBps", MPM, 3.0, True),
    _t("unix: small calls/s ≥ mp-manager (TCP)", DSU, "small_calls_s", MPM, 1.0, True),
    _t("unix: small calls/s ≥ 0.7× mp-manager (unix)", DSU, "small_calls_s", MPU, 0.7, True),
    _t("unix: small calls/s ≥ mp-manager (unix) (aim)", DSU, "small_calls_s", MPU, 1.0, True),
    _t("unix: 8 threads ≥ mp-manager (unix)", DSU, "threads8_calls_s", MPU, 1.0, True),
    _t("unix: 1 MB echo ≥ 3× mp-manager (unix)", DSU, "mb1_MBps", MPU, 3.0, True),
    _t("unix: small calls/s ≥ dataserve (TCP)", DSU, "small_calls_s", DS, 1.0, True),
    _t("unix: 8 threads ≥ dataserve (TCP)", DSU, "threads8_calls_s", DS, 1.0, True),
    _t("unix: 1 MB echo ≥ dataserve (TCP)", DSU, "mb1_MBps", DS, 1.0, True),
    _t("unix: 64 MB echo ≥ dataserve (TCP)", DSU, "mb64_MBps", DS, 1.0, True),
    _t("async: 64 concurrent ≥ sync 8 threads", DSA, "threads8_calls_s", DS, 1.0, True),
    _t("async: 1 MB echo within 10 % of sync", DSA, "mb1_MBps", DS, 0.9, True),
    _t("async: 64 MB echo within 10 % of sync", DSA, "mb64_MBps", DS, 0.9, True),
    _t("64 MB client peak ≤ 2.2× payload", DS, "mb64_client_peak_x", None, 2.2, False),
    _t("64 MB server peak ≤ 2.2× payload", DS, "mb64_server_peak_x", None, 2.2, False),
    _t("file streamed: client peak ≤ 100 MB", DS, "stream_client_peak_MB", None, 100, False),
    _t("file streamed: server peak ≤ 100 MB", DS, "stream_server_peak_MB", None, 100, False),
    _t("unix: file streamed: client peak ≤ 100 MB", DSU, "stream_client_peak_MB", None, 100, False),
    _t("unix: file streamed: server peak ≤ 100 MB", DSU, "stream_server_peak_MB", None, 100, False),
    _t("10k records time ≤ 1.05× floor", DS, "records10k_ms", FL, 1.05, False),
    _t("import dataserve ≤ 1.2× import msgspec, urllib3", DS, "import_ratio", None, 1.2, False),
]  # fmt: skip
#: A figure measured only by some workloads: its target is skipped (not failed) without it.
_OPTIONAL_WORKLOAD = {"stream_": "the file-streaming workload (--stream, or a full run)"}


@dataclass
class Target:
    name: str
    value: float | None  # the ratio (or figure) checked
    limit: float
    higher_is_better: bool
    skipped: str | None = None  # why the target was not checked (its rows or workload absent)

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.value is None:
            return "n/a"
        ok = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        return "PASS" if ok else "FAIL"


def check_targets(med: dict[str, dict[str, float]], imp: dict[str, Any] | None) -> list[Target]:
    """SPEC §12 targets on the median figures; a target whose rows did not run is skipped.

    ``med`` holds the rows that ran (a row that failed has no figures and gives ``n/a``).
    """
    out: list[Target] = []
    for spec in TARGETS:
        absent = [r for r in (spec.row, spec.versus) if r is not None and r not in med]
        why = f"row {', '.join(absent)} not in this run" if absent else None
        if why is None:
            for prefix, workload in _OPTIONAL_WORKLOAD.items():
                ran = any(k.startswith(prefix) for figures in med.values() for k in figures)
                if spec.key.startswith(prefix) and not ran:
                    why = f"{workload} not run"
        value: float | None = None
        if why is None and spec.key == "import_ratio":
            value = imp["import_ratio"] if imp else None
        elif why is None:
            x = med[spec.row].get(spec.key)
            y = 1.0 if spec.versus is None else med[spec.versus].get(spec.key)
            value = x / y if x is not None and y else None
        out.append(Target(spec.name, value, spec.limit, spec.higher_is_better, why))
    return out


def _shown(t: Target) -> str:
    if t.value is None:
        return "–"
    return f"{_fmt(t.value)} MB" if t.name.endswith("MB") else f"{t.value:.2f}×"


def format_targets(targets: list[Target], n_runs: int, markdown: bool = False) -> str:
    """The targets with PASS/FAIL/SKIP: aligned text, or a Markdown table."""
    what = f"median of {n_runs} runs" if n_runs > 1 else "one run; targets are for the median of 3"
    title = f"targets (SPEC §12, dataserve as a ratio; {what}):"
    if markdown:
        lines = [title, "", "| target | measured | |", "|---|---:|---|"]
        for t in targets:
            lines.append(
                f"| {t.name} | {_shown(t)} | {t.status}{f' ({t.skipped})' * bool(t.skipped)} |"
            )
        return "\n".join(lines)
    lines = [title]
    for t in targets:
        note = f"  ({t.skipped})" if t.skipped else ""
        lines.append(f"  {t.status:<4}  {t.name:<50} {_shown(t)}{note}")
    return "\n".join(lines)


def write_chart(path: str, med: dict[str, dict[str, float]], rows: list[str], title: str) -> None:
    """Bar chart of small calls/s and 1 MB / 64 MB MB/s per row (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("small_calls_s", "small JSON calls/s (1 thread)"),
        ("mb1_MBps", "1 MB bytes echo, MB/s"),
        ("mb64_MBps", "64 MB bytes echo, MB/s"),
    ]
    colors = {"floor": "#888888", "dataserve": "#1f77b4"}
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.8))
    for ax, (key, label) in zip(axes, panels, strict=True):
        names = [r for r in rows if med.get(r, {}).get(key) is not None]
        vals = [med[r][key] for r in names]
        bars = ax.bar(names, vals, color=[colors.get(r, "#bbbbbb") for r in names])
        ax.bar_label(bars, labels=[_fmt(v) for v in vals], fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.margins(y=0.15)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark dataserve against its stack's floor and its peers (SPEC §12)."
    )
    parser.add_argument("--quick", action="store_true", help="smaller budgets: under a minute")
    parser.add_argument(
        "--repeat",
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="run everything N times; report medians (targets: N=3)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="with --quick, run the file-streaming workload too (full runs do)",
    )
    parser.add_argument(
        "--no-stream", action="store_true", help="skip the file-streaming workload in a full run"
    )
    parser.add_argument(
        "--stream-mib",
        type=int,
        default=512,
        metavar="MIB",
        help="size of the file streamed through (default 512)",
    )
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="also write the tables and targets as Markdown ('-': stdout)",
    )
    parser.add_argument("--rows", nargs="+", choices=ROWS, metavar="ROW",
                        help=f"rows to run, of: {', '.join(ROWS)} (default: all)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="write all raw figures as JSON")
    parser.add_argument("--chart", metavar="PATH", help="write a PNG bar chart (matplotlib)")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    streaming = (args.stream or not args.quick) and not args.no_stream
    if args.stream_mib < 1:
        parser.error("--stream-mib must be at least 1")
    budget = replace(budget, stream_mib=args.stream_mib if streaming else 0)
    wanted = list(args.rows or ROWS)
    started = time.perf_counter()

    notes: list[str] = []
    ds_note, ds_error = locate_dataserve()
    if ds_note:
        notes.append(ds_note)
    skipped = {r: why for r in wanted if (why := row_unavailable(r, ds_error))}
    rows = [r for r in wanted if r not in skipped]
    if "FastAPI + uvicorn" in rows:
        notes.append(fastapi_note())
    if "floor" not in rows:
        notes.append("no floor row: ratios are not shown")

    runs: list[dict[str, dict[str, Any]]] = []
    imports: list[dict[str, Any]] = []
    for i in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        log(f"[run {i + 1}/{args.repeat}] {', '.join(rows)}")
        run = run_once(rows, budget, i)
        for row, res in run.items():
            for name, err in res["errors"].items():
                log(f"    {row}, {name}: {err}")
        log(f"    {time.perf_counter() - t0:.1f} s")
        runs.append(run)
        if ds_error is None:
            try:
                imports.append(measure_import(budget.import_runs))
            except Exception as exc:
                notes.append(f"import time not measured: {exc}")

    med = median_figures(runs, rows)
    imp: dict[str, Any] | None = None
    if imports:
        imp = {
            k: statistics.median(x[k] for x in imports)
            for k in ("import_dataserve_ms", "import_msgspec_urllib3_ms", "import_ratio")
        }
    targets = check_targets(med, imp)

    cpus = os.cpu_count()
    header = (
        f"dataserve benchmark — Python {platform.python_version()}, {platform.system()}, "
        f"{cpus} CPUs, {'quick' if args.quick else 'full'}, "
        f"{f'median of {len(runs)} runs' if len(runs) > 1 else '1 run'}"
    )
    stream_rows = [r for r in rows if "stream_up_MBps" in med.get(r, {})]
    stream_title = (
        f"A {budget.stream_mib} MiB file streamed through (send(resource, f) to a BinaryIO "
        "route writing it to disk, then send(..., out=f) back; floor: urllib3 and "
        "ThreadingHTTPServer in 1 MiB blocks). Peaks: RSS above the RSS just before each "
        "transfer, the larger of the two directions."
    )
    legend = (
        "(ratio) = figure / floor's figure. p50/p99: latency of one small call. "
        "dataserve-async's 8-threads column: 64 tasks on one event loop. "
        "Peaks: RSS above the RSS just before one 64 MB call, in MB and in payloads (P)."
    )
    print(header + "\n")
    print(format_table(med, rows))
    print("\n" + legend)
    if stream_rows:
        print("\n" + stream_title + "\n")
        print(format_table(med, stream_rows, STREAM_FIGURES))
    if imp:
        print(
            f"\nimport dataserve: {imp['import_dataserve_ms']:.1f} ms; import msgspec, urllib3: "
            f"{imp['import_msgspec_urllib3_ms']:.1f} ms ({imp['import_ratio']:.2f}×; "
            "-X importtime, median)"
        )
    dropped = {r: int(n) for r in rows if (n := med.get(r, {}).get("listen_overflows"))}
    if dropped:
        print(
            "\nconnects dropped by a full listen queue (each a client SYN retry of ≥ 1 s): "
            + ", ".join(f"{r} {n}" for r, n in dropped.items())
        )
    for row, why in skipped.items():
        print(f"\nskipped {row}: {why}")
    for i, run in enumerate(runs):
        for row, res in run.items():
            for name, err in res["errors"].items():
                print(f"\nrun {i + 1}, {row}, {name} failed: {err}")
    for note in notes:
        print(f"\nnote: {note}")
    print("\n" + format_targets(targets, len(runs)))
    if args.markdown:
        parts = [f"*{header}*", format_table(med, rows), legend]
        if stream_rows:
            parts += [stream_title, format_table(med, stream_rows, STREAM_FIGURES)]
        parts.append(format_targets(targets, len(runs), markdown=True))
        text = "\n\n".join(parts) + "\n"
        if args.markdown == "-":
            print("\n" + text, end="")
        else:
            Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(args.markdown).write_text(text, encoding="utf-8")
            log(f"wrote {args.markdown}")
    elapsed = time.perf_counter() - started
    print(f"\n({elapsed:.0f} s)")

    if args.json:
        doc = {
            "meta": {
                "python": sys.version,
                "platform": platform.platform(),
                "cpus": cpus,
                "quick": args.quick,
                "repeat": len(runs),
                "budget": asdict(budget),
                "elapsed_s": elapsed,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "rows": rows,
            "skipped": skipped,
            "notes": notes,
            "median": med,
            "import": {"median": imp, "runs": imports},
            "runs": runs,
            "targets": [
                {
                    "name": t.name,
                    "ratio": t.value,
                    "limit": t.limit,
                    "status": t.status,
                    "skipped": t.skipped,
                }
                for t in targets
            ],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    if args.chart:
        try:
            write_chart(args.chart, med, rows, header)
            log(f"wrote {args.chart}")
        except ImportError as exc:
            print(f"\nchart not written: {exc} (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
