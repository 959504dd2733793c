"""Workload (d) of ``run.py`` alone: the 10,000-record JSON list echoed, for A/B runs of a change.

Run (from the repository root)::

    python benchmarks/records.py                          # floor and dataserve
    python benchmarks/records.py --baseline /tmp/old/src  # ... and another checkout's dataserve
    python benchmarks/records.py --rounds 60 --payload nulls

The ``floor`` and ``dataserve`` servers of ``run.py`` start, each in its own process. With
``--baseline SRC``, the dataserve found in ``SRC`` (e.g. ``git archive main src | tar -x -C
/tmp/old``) runs too: its server in a process of its own, its client in this process under the
name ``dataserve_baseline``. In every round each row makes one call, in a rotating order, so a
machine whose speed keeps changing (other jobs on a 2-core box) slows every row alike; the
figure to read is the median, over the rounds, of each round's time against the baseline's
(or the floor's) in the same round. Bounded: ``--rounds`` rounds, at most ``--seconds`` s.

``--payload`` picks the records: ``run`` (those of ``run.py``), ``english`` (keys and text
that hold every letter of ``null``) or ``nulls`` (``run``'s records with a ``None`` in each).

Prints one JSON line: per row, the median ms per call and the median paired ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _clients import make_client  # noqa: E402
from _common import HOST, make_records  # noqa: E402
from run import locate_dataserve, running_server  # noqa: E402

HARD_LIMIT_S = 900.0
START_TIMEOUT_S = 30.0
WARMUP_CALLS = 3

_BASELINE_SERVER = """
import sys, threading
from dataserve import HTTPDataHandler, HTTPDataServer

class Echo(HTTPDataHandler):
    def handle_request(self, resource, payload):
        return payload

with HTTPDataServer(Echo, port=0, host=sys.argv[1]) as srv:
    print(srv.port, flush=True)
    sys.stdin.read()  # until the harness closes our stdin (or exits)
"""


def payload(kind: str) -> list[dict[str, Any]]:
    """The records to echo (see the module docstring)."""
    records = make_records()
    if kind == "english":
        return [
            {"id": r["id"], "label": f"value number {r['id']}", "unit": "kg", "total": r["score"]}
            for r in records
        ]
    if kind == "nulls":
        return [dict(r, note=None) for r in records]
    return records


@contextmanager
def baseline_server(src: Path) -> Iterator[int]:
    """Serve an echo handler with the dataserve of ``src``, in a subprocess; yield its port."""
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.Popen(
        [sys.executable, "-c", _BASELINE_SERVER, HOST],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the child prints its port once it listens
        if not line.strip().isdigit():
            raise RuntimeError(f"the baseline server did not start (got {line!r})")
        yield int(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(START_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()


def baseline_client(src: Path, port: int) -> Any:
    """An ``HTTPDataClient`` of the dataserve in ``src``, imported as ``dataserve_baseline``."""
    init = src / "dataserve" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "dataserve_baseline", init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"no dataserve package in {src}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dataserve_baseline"] = module
    spec.loader.exec_module(module)
    return module.HTTPDataClient(url=f"http://{HOST}:{port}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, metavar="SRC", help="another checkout's src/")
    parser.add_argument("--rounds", type=int, default=40, help="rounds of one call per row (40)")
    parser.add_argument("--seconds", type=float, default=60.0, help="at most this long (60)")
    parser.add_argument("--payload", choices=("run", "english", "nulls"), default="run")
    args = parser.parse_args(argv)
    note, error = locate_dataserve()
    if error:
        print(error, file=sys.stderr)
        return 1
    import dataserve

    records = payload(args.payload)
    echoes: dict[str, Any] = {}
    with ExitStack() as stack:
        for row in ("floor", "dataserve"):
            port, _pid = stack.enter_context(running_server(row, HARD_LIMIT_S))
            client = make_client(row, port)
            stack.callback(client.close)
            echoes[row] = client.echo
        if args.baseline is not None:
            port = stack.enter_context(baseline_server(args.baseline.resolve()))
            client = baseline_client(args.baseline.resolve(), port)
            stack.callback(client.close)
            echoes["baseline"] = lambda value, send=client.send: send("/echo", value)
        rows = list(echoes)
        for row in rows:
            if echoes[row](records) != records:
                raise RuntimeError(f"{row}: the records came back different")
            for _ in range(WARMUP_CALLS):
                echoes[row](records)
        times: dict[str, list[float]] = {row: [] for row in rows}
        deadline = time.perf_counter() + args.seconds
        for i in range(args.rounds):
            for row in rows[i % len(rows) :] + rows[: i % len(rows)]:
                t0 = time.perf_counter()
                echoes[row](records)
                times[row].append(time.perf_counter() - t0)
            if time.perf_counter() >= deadline:
                break
    reference = "baseline" if "baseline" in times else "floor"
    result: dict[str, Any] = {"payload": args.payload, "rounds": len(times["floor"])}
    for row, t in times.items():
        paired = [a / b for a, b in zip(t, times[reference], strict=True)]
        result[row] = {
            "ms": round(statistics.median(t) * 1e3, 2),
            f"vs_{reference}": round(statistics.median(paired), 3),
        }
    result["dataserve_file"] = dataserve.__file__
    if args.baseline is not None:
        result["baseline_file"] = sys.modules["dataserve_baseline"].__file__
    result["note"] = note
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
