"""What the access log costs per small call: ``HTTPDataServer`` with and without it.

Run (from the repository root)::

    python benchmarks/access_log.py              # 3 rounds, about 20 s
    python benchmarks/access_log.py --rounds 5 --calls 5000
    python benchmarks/access_log.py --before /tmp/old/src   # adds a row: that src, no option

Two servers, each in its own process on 127.0.0.1 (free port), echo ``[1, 2, 3]``: ``off``
(the default) and ``on`` (``access_log=True``, the ``dataserve.access`` logger writing each
line through a ``FileHandler`` to a file in a temporary directory, as ``--access-log`` does to
stderr). With ``--before DIR``, a third row ``before`` runs the server of ``DIR`` (e.g. an
exported older commit's ``src``) without the option: the cost of having the option at all.
This process is the client: one ``HTTPDataClient`` per server, one thread. Each round
runs ``--slices`` slices per server, the two taking turns (the first one alternating), so that
a change in the machine's speed hits both alike. A round's figure for a server is its calls/s
over all its slices and the median latency of its calls; the report gives each round, then the
median over rounds and the spread of the rounds (the noise). Bounded: a fixed number of calls,
and the run stops after ``--max-seconds``. If ``dataserve`` is not installed, it is imported
from ``src/``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

SERVER = textwrap.dedent(
    """
    import logging, sys
    from dataserve import HTTPDataHandler, HTTPDataServer

    class Echo(HTTPDataHandler):
        def handle_request(self, resource, payload):
            return payload

    access_log = sys.argv[1] == "on"
    if access_log:
        handler = logging.FileHandler(sys.argv[2])
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.getLogger("dataserve.access")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    with HTTPDataServer(Echo, port=0, access_log=access_log) as server:
        print(server.port, flush=True)
        sys.stdin.read()  # until the harness closes our stdin
    """
)


def start(row: str, log_path: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    code = SERVER if row != "before" else SERVER.replace(", access_log=access_log", "")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, row, log_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its port once it serves
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"the {row!r} server did not start: {line!r}")
    return proc, int(line)


def run_slice(client: object, calls: int, latencies: list[float]) -> float:
    """``calls`` small calls; returns the seconds they took, appending each call's µs."""
    send = client.send  # type: ignore[attr-defined]
    clock = time.perf_counter
    begin = clock()
    for _ in range(calls):
        start = clock()
        send("/echo", [1, 2, 3])
        latencies.append((clock() - start) * 1e6)
    return clock() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4, help="slices per server and round")
    parser.add_argument("--calls", type=int, default=2500, help="calls per slice")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--before", metavar="DIR", help="also a row for the dataserve in DIR")
    args = parser.parse_args()

    env = dict(os.environ)
    try:
        import dataserve  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(SRC))
        env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    from dataserve import HTTPDataClient

    rows: tuple[str, ...] = ("off", "on") if args.before is None else ("before", "off", "on")
    envs = dict.fromkeys(rows, env)
    if args.before is not None:
        envs["before"] = dict(env, PYTHONPATH=str(Path(args.before).resolve()))
    results: dict[str, list[tuple[float, float]]] = {row: [] for row in rows}
    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "access.log")
        servers = {row: start(row, log_path, envs[row]) for row in rows}
        clients = {row: HTTPDataClient(port=port) for row, (_, port) in servers.items()}
        try:
            for client in clients.values():
                run_slice(client, 500, [])  # warm up: connection, caches
            for number in range(args.rounds):
                seconds = dict.fromkeys(rows, 0.0)
                latencies: dict[str, list[float]] = {row: [] for row in rows}
                for index in range(args.slices):
                    shift = (number * args.slices + index) % len(rows)  # rotate who goes first
                    order = rows[shift:] + rows[:shift]
                    for row in order:
                        seconds[row] += run_slice(clients[row], args.calls, latencies[row])
                for row in rows:
                    rate = len(latencies[row]) / seconds[row]
                    results[row].append((rate, statistics.median(latencies[row])))
                shown = [f"{row} {results[row][-1][0]:,.0f}/s" for row in rows]
                print(f"round {number + 1}: {', '.join(shown)}", file=sys.stderr, flush=True)
                if time.monotonic() > deadline:
                    print("stopped at --max-seconds", file=sys.stderr)
                    break
            lines = Path(log_path).read_text(encoding="utf-8").count("\n")
        finally:
            for client in clients.values():
                client.close()
            for proc, _ in servers.values():
                assert proc.stdin is not None
                proc.stdin.close()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)

    print(f"| access log | calls/s (median of {len(results['off'])} rounds) | spread | p50 µs |")
    print("|---|---|---|---|")
    for row in rows:
        rates = [rate for rate, _ in results[row]]
        p50s = [p50 for _, p50 in results[row]]
        spread = (max(rates) - min(rates)) / statistics.median(rates) * 100
        print(
            f"| {row} | {statistics.median(rates):,.0f} | ±{spread / 2:.1f}% "
            f"| {statistics.median(p50s):.1f} |"
        )
    rate = {row: statistics.median(r for r, _ in results[row]) for row in rows}
    print()
    for row, base in (("on", "off"), ("off", "before")):
        if row in rate and base in rate:
            per_call = (1 / rate[row] - 1 / rate[base]) * 1e6
            change = (rate[row] - rate[base]) / rate[base] * 100
            print(f"{row} against {base}: {per_call:+.1f} µs per call ({change:+.1f}% calls/s)")
    print(f"{lines:,} access lines written by 'on'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
