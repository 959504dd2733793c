"""What each gunicorn worker costs in memory, with and without ``--preload``.

For each kind of dataset (one bytes buffer, one NumPy array, and the same amount of data as
Python objects) and each mode (no preload: every worker loads its own copy; ``--preload``:
the master loads it once and forks; ``--preload`` with ``gc.freeze()`` after loading), this
starts gunicorn serving a handler that holds a dataset of ``--mb`` MB on a free loopback port,
calls ``/touch`` (which reads the whole dataset) until every worker has answered at least
``--calls`` times, then reads the RSS and PSS of the master and of each worker from
``/proc/<pid>/smaps_rollup`` and prints one Markdown table. Linux only.

Bounded: every gunicorn runs in its own process group and is stopped (SIGTERM, then SIGKILL)
before the next starts, whatever happens; each wait has a deadline.

    python benchmarks/worker_memory.py                     # 4 workers, 200 MB: ~1 minute
    python benchmarks/worker_memory.py --workers 2 --mb 50 --calls 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from dataserve import HTTPDataClient

APP = textwrap.dedent("""
    import gc
    import os

    from dataserve import HTTPDataHandler
    from dataserve.wsgi import make_app

    KIND = os.environ["DATASET_KIND"]
    SIZE = int(os.environ["DATASET_MB"]) * 1_000_000


    def load():
        if KIND == "bytes":
            return bytes(range(256)) * (SIZE // 256)  # every page written: resident
        if KIND == "numpy":
            import numpy as np

            return np.arange(SIZE // 8, dtype=np.float64)
        # Python objects: about 100 bytes per row (a 2-tuple, an int, a float).
        return [(i, i * 0.5) for i in range(SIZE // 100)]


    class Dataset(HTTPDataHandler):
        def __init__(self):
            self.data = load()
            if os.environ.get("DATASET_FREEZE"):
                gc.freeze()  # the collector leaves the loaded objects alone from now on

        def handle_request(self, resource, payload):
            if resource != "/touch":
                return None
            data = self.data
            if KIND == "bytes":
                total = sum(data[::4096])  # one byte of every page
            elif KIND == "numpy":
                total = float(data.sum())
            else:
                total = sum(row[1] for row in data)  # what a handler iterating rows does
            return [os.getpid(), total]


    app = make_app(Dataset)
""")

MODES = {
    "no preload": ([], {}),
    "--preload": (["--preload"], {}),
    "--preload + gc.freeze()": (["--preload"], {"DATASET_FREEZE": "1"}),
}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process, in MB, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])  # kB
    return fields["Rss"] / 1000, fields["Pss"] / 1000


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def measure(kind: str, mode: str, args: argparse.Namespace, app_dir: Path) -> dict[str, float]:
    options, extra_env = MODES[mode]
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(app_dir),
        "DATASET_KIND": kind,
        "DATASET_MB": str(args.mb),
        **extra_env,
    }
    command = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers)]
    command += ["--bind", f"127.0.0.1:{port}", "--timeout", "120", *options, "app:app"]
    proc = subprocess.Popen(
        command,
        cwd=app_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with HTTPDataClient(port=port, timeout=120) as client:
            client.wait_ready(120)
            deadline = time.monotonic() + 120
            seen: dict[int, int] = {}
            while time.monotonic() < deadline:
                workers = children(proc.pid)
                if len(workers) == args.workers and all(
                    seen.get(w, 0) >= args.calls for w in workers
                ):
                    break
                # A new connection per call, so that every worker gets its turn.
                with HTTPDataClient(port=port, timeout=120) as fresh:
                    pid, _ = fresh.send("/touch")
                seen[pid] = seen.get(pid, 0) + 1
            else:
                raise RuntimeError(f"not every worker answered {args.calls} calls in 120 s")
        master_rss, master_pss = memory_mb(proc.pid)
        per_worker = [memory_mb(pid) for pid in children(proc.pid)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    worker_rss = sum(r for r, _ in per_worker) / len(per_worker)
    worker_pss = sum(p for _, p in per_worker) / len(per_worker)
    return {
        "master_rss": master_rss,
        "worker_rss": worker_rss,
        "worker_pss": worker_pss,
        "total_pss": master_pss + sum(p for _, p in per_worker),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--mb", type=int, default=200, help="dataset size in MB")
    parser.add_argument("--calls", type=int, default=3, help="calls each worker answers")
    parser.add_argument("--kinds", default="bytes,numpy,objects")
    args = parser.parse_args()
    print(
        f"{args.workers} gunicorn sync workers, a {args.mb} MB dataset, each worker having "
        f"answered /touch (reads it all) at least {args.calls} times; MB from smaps_rollup\n"
    )
    print("| dataset | mode | master RSS | RSS per worker | PSS per worker | all processes, PSS |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="dataserve-memory-") as tmp:
        app_dir = Path(tmp)
        (app_dir / "app.py").write_text(APP)
        for kind in args.kinds.split(","):
            for mode in MODES:
                if kind != "objects" and "freeze" in mode:
                    continue  # no Python objects to freeze: the same as --preload
                m = measure(kind, mode, args, app_dir)
                print(
                    f"| {kind} | {mode} | {m['master_rss']:,.0f} | {m['worker_rss']:,.0f} | "
                    f"{m['worker_pss']:,.0f} | {m['total_pss']:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
