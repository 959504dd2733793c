"""Where a small call's time goes: the small JSON echo profiled in both processes.

One row's server (``_servers.serve``, the benchmark's own) runs in one process and one client
thread calls it in another, both optionally under a tool, for a bounded number of calls::

    python benchmarks/profile_small.py dataserve-unix                 # µs per call only
    python benchmarks/profile_small.py dataserve-unix --tool py-spy   # + sampled profiles
    python benchmarks/profile_small.py "multiprocessing manager (unix)" --tool strace
    python benchmarks/profile_small.py dataserve-unix --tool breakdown  # client, step by step

``--tool py-spy`` runs each process under ``py-spy record --native --format raw`` and prints,
per process, the functions holding the most samples (inclusive and self; idle threads are not
sampled, so this is CPU time). ``--tool strace`` runs each under ``strace -f -c`` and prints the
system calls per call. ``--tool breakdown`` times, in the client process, each step a dataserve
small call makes (the real functions of ``dataserve._client``, called the way ``send`` calls
them) against the whole call. Everything is written to ``--out DIR`` (default: a temp dir,
kept). The socket file lives in a temp dir removed at the end; every process is stopped.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import SMALL_PAYLOAD  # noqa: E402

START_TIMEOUT_S = 30.0


class _Announce:
    """Stands in for the harness's pipe: ``_servers.serve`` sends the port or path here."""

    def send(self, msg: object) -> None:
        print(f"READY {os.getpid()} {msg}", flush=True)

    def close(self) -> None:
        pass


def cmd_serve(row: str, sock_dir: str) -> int:
    import _servers

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _servers.serve(row, _Announce(), sock_dir)  # type: ignore[arg-type]
    return 0


def _cpu_and_switches(pid: int) -> tuple[float, int, int]:
    """(CPU seconds of user + system, voluntary, involuntary context switches) of ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    switches = {}
    for task in os.listdir(f"/proc/{pid}/task"):  # every thread: the server's work is in one
        with open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.endswith("ctxt_switches"):
                    switches[key] = switches.get(key, 0) + int(value)
    return cpu, switches["voluntary_ctxt_switches"], switches["nonvoluntary_ctxt_switches"]


def cmd_call(row: str, address: str, calls: int, seconds: float, server_pid: int) -> int:
    from _clients import make_client

    client = make_client(row, int(address) if address.isdigit() else address)
    try:
        for _ in range(200):  # connected and warm
            client.echo(SMALL_PAYLOAD)
        me = os.getpid()
        c0, s0 = _cpu_and_switches(me), _cpu_and_switches(server_pid)
        clock = time.perf_counter_ns
        t0 = clock()
        deadline = t0 + int(seconds * 1e9)
        n = 0
        while n < calls:
            client.echo(SMALL_PAYLOAD)
            n += 1
            if not n % 256 and clock() >= deadline:
                break
        elapsed = clock() - t0
        c1, s1 = _cpu_and_switches(me), _cpu_and_switches(server_pid)
        print(f"CALLS {n} {elapsed / n / 1e3:.1f}", flush=True)
        for side, a, b in (("client", c0, c1), ("server", s0, s1)):
            print(
                f"  {side}: {(b[0] - a[0]) / n * 1e6:.1f} µs CPU per call, context switches "
                f"per call {(b[1] - a[1]) / n:.2f} voluntary, {(b[2] - a[2]) / n:.2f} involuntary",
                flush=True,
            )
    finally:
        client.close()
    return 0


def cmd_breakdown(address: str, calls: int) -> int:
    """Time each step of a dataserve small call over the Unix socket, in this process."""
    import dataserve._client as dc
    from dataserve import HTTPDataClient
    from dataserve._wire import END_OF_MESSAGE, ClientConnection

    client = HTTPDataClient(unix_socket=address)
    send = client.send
    for _ in range(500):
        send("/echo", SMALL_PAYLOAD)
    clock = time.perf_counter_ns

    def per_call(fn: Any, n: int = calls) -> float:
        t0 = clock()
        for _ in range(n):
            fn()
        return (clock() - t0) / n / 1e3

    whole = per_call(lambda: send("/echo", SMALL_PAYLOAD))
    pool = client._get_pool()
    conn = pool._get_conn()
    pool._put_conn(conn)
    registry = client.registry
    codec, body = registry.encode(SMALL_PAYLOAD, "/echo")
    path = "/echo"
    media = registry.content_type(codec, SMALL_PAYLOAD)

    def request_head() -> bytes:  # as _exchange builds it (the cached prefix, then the length)
        if hasattr(client, "_heads"):
            return b"%sContent-Length: %d\r\n\r\n" % (client._heads.put(path, media), len(body))
        return b"%s%d\r\n\r\n" % (client._head_prefix(path, media), len(body))

    head = request_head()
    rows: list[tuple[str, float]] = []

    def checkout() -> None:
        c = pool._get_conn()
        pool._put_conn(c)

    rows.append(
        (
            "urllib3 pool _get_conn + _put_conn (incl. is_connection_dropped poll)",
            per_call(checkout),
        )
    )
    rows.append(("client._get_pool()", per_call(client._get_pool)))
    rows.append(
        (
            "registry.encode + content_type",
            per_call(
                lambda: (
                    registry.encode(SMALL_PAYLOAD, path),
                    registry.content_type(codec, SMALL_PAYLOAD),
                )
            ),
        )
    )
    rows.append(("memoryview(body) + checks", per_call(lambda: memoryview(body).cast("B"))))
    rows.append(
        (
            "request head: cached prefix + %-format",
            per_call(request_head),
        )
    )
    sock = conn.sock
    rows.append(("sock.settimeout(timeout)", per_call(lambda: sock.settimeout(client.timeout))))
    ctype = "application/json"
    rows.append(
        (
            "reply decode: codec_for_content_type + registry.decode",
            per_call(lambda: client._decode(ctype, b"[1,2,3]", None, path)),
        )
    )
    rows.append(("conn.wire() (the connection's sans-I/O wire)", per_call(conn.wire)))
    # The round trip on the socket alone: the same request bytes, reply read with recv.
    reply_len = 0

    def raw_round_trip() -> None:
        nonlocal reply_len
        sock.sendall(head + body)
        data = sock.recv(65536)
        reply_len = len(data)

    c2 = pool._get_conn()
    if c2.sock is None:
        c2.connect()
    sock = c2.sock
    raw_round_trip()
    sock.sendall(head + body)
    reply = sock.recv(65536)
    # Interleaved rounds: the socket with the client's timeout (CPython polls before each
    # send and recv) and made blocking (timeout None: no poll), medians of 5 rounds each.
    with_timeout: list[float] = []
    blocking: list[float] = []
    layers: dict[str, list[float]] = {"send": [], "exchange": [], "snr": []}
    timeout = client.timeout

    unframed = client._heads.put(path, media)  # the wire adds the framing

    def snr() -> None:
        wire = c2.wire()
        dc._send_and_receive(c2.sock, wire, unframed, body, len(body), timeout)
        wire.start_next_cycle()  # as the check-in does

    for _ in range(5):
        sock.settimeout(client.timeout)
        with_timeout.append(per_call(raw_round_trip, calls // 5))
        sock.settimeout(None)
        blocking.append(per_call(raw_round_trip, calls // 5))
        sock.settimeout(client.timeout)
        layers["snr"].append(per_call(snr, calls // 5))
        pool._put_conn(c2)
        layers["send"].append(per_call(lambda: send("/echo", SMALL_PAYLOAD), calls // 5))
        layers["exchange"].append(per_call(lambda: client._exchange(path, media, body), calls // 5))
        c2 = pool._get_conn()
    sock.settimeout(client.timeout)
    for key, name in (
        ("send", "send('/echo', [1, 2, 3]), median of 5 interleaved rounds"),
        ("exchange", "_exchange: pool checkout + _send_and_receive + checkin"),
        ("snr", "_send_and_receive on a held connection"),
    ):
        rows.append((name, statistics.median(layers[key])))
    rows.append(
        (
            "raw sendall + recv of the request, socket with timeout (server included)",
            statistics.median(with_timeout),
        )
    )
    rows.append(
        (
            "the same, socket blocking (no poll() before send and recv; median of 5)",
            statistics.median(blocking),
        )
    )
    pool._put_conn(c2)

    def parse_reply() -> None:  # the reply as the wire takes it: one piece, head and body
        wire = ClientConnection()
        wire.put_whole(head, len(body))
        wire.receive_data(reply)
        while wire.next_event() is not END_OF_MESSAGE:
            pass

    rows.append(
        ("reply: a fresh ClientConnection fed the whole reply, to its end", per_call(parse_reply))
    )
    rows.append(("(a Python lambda call, the loop's own cost)", per_call(lambda: None)))
    print(f"client: whole send('/echo', [1, 2, 3]): {whole:.1f} µs per call ({calls} calls)")
    for name, us in rows:
        print(f"  {us:7.2f} µs  {name}")
    client.close()
    _server_breakdown(head + body, calls)
    return 0


def _server_breakdown(request: bytes, calls: int) -> None:
    """Time the server's steps for one small request, in this process, on a socketpair."""
    import dataserve._server as ds

    clock = time.perf_counter_ns

    def per_call(fn: Any, n: int = calls) -> float:
        t0 = clock()
        for _ in range(n):
            fn()
        return (clock() - t0) / n / 1e3

    import _servers

    with tempfile.TemporaryDirectory() as d:
        srv = ds.HTTPDataServer(_servers._echo_handler(), unix_socket=os.path.join(d, "s.sock"))
        conn = ds._Connection(None, 0)  # type: ignore[arg-type]
        head_len = request.index(b"\r\n\r\n") + 4
        body = request[head_len:]
        rows: list[tuple[str, float]] = []
        rows.append(
            (
                "_read_head: 7 readline + parse_request_head + core.check_head",
                per_call(lambda: srv._read_head(conn, io.BufferedReader(io.BytesIO(request)))),
            )
        )  # type: ignore[arg-type]
        rows.append(
            (
                "  of which io.BufferedReader(io.BytesIO(...)) (not in a real call)",
                per_call(lambda: io.BufferedReader(io.BytesIO(request))),
            )
        )  # type: ignore[arg-type]
        req = srv._read_head(conn, io.BufferedReader(io.BytesIO(request)))  # type: ignore[arg-type]
        rows.append(
            (
                "core.handle: decode, handler, encode, reply headers",
                per_call(lambda: srv._core.handle(req, body)),
            )
        )
        reply = srv._core.handle(req, body)
        rows.append(
            (
                "_head: the reply head (with Date)",
                per_call(lambda: ds._head(reply, len(reply.body))),
            )
        )
        a, b = socket.socketpair()
        with a, b:
            a.settimeout(30.0)
            b.settimeout(30.0)

            def send_and_drain() -> None:
                ds._send(a, reply)
                b.recv(65536)

            rows.append(
                (
                    "_send + the peer's recv, on a socketpair with timeouts (2 polls)",
                    per_call(send_and_drain),
                )
            )
            rows.append(
                (
                    "sock.settimeout() x2 (idle, then request timeout)",
                    per_call(
                        lambda: (a.settimeout(srv.idle_timeout), a.settimeout(srv.request_timeout))
                    ),
                )
            )
            rows.append(
                (
                    "lock + bookkeeping: with srv._lock, monotonic(), next(ticks)",
                    per_call(
                        lambda: (
                            srv._lock.__enter__(),
                            srv._lock.__exit__(None, None, None),
                            time.monotonic(),
                            next(srv._ticks),
                        )
                    ),
                )
            )
        srv.server_close() if hasattr(srv, "server_close") else None
    print("server steps, timed in this process:")
    for name, us in rows:
        print(f"  {us:7.2f} µs  {name}")


def _start(cmd: list[str], log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited (code {proc.poll()}) before '{prefix}'")
        if line.startswith(prefix):
            return line.strip()
    raise RuntimeError(f"no '{prefix}' line within {timeout} s")


def _stop(proc: subprocess.Popen[str], pid: int | None = None) -> None:
    if proc.poll() is None:
        os.kill(pid or proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wrap(tool: str, out: Path, side: str) -> list[str]:
    if tool in ("py-spy", "py-spy-native"):
        # --nonblocking: the process is never paused to be sampled (a paused process makes
        # each call 20x slower and the profile about the pauses). --native needs pauses.
        spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
        how = (
            ["--native", "--rate", "200"]
            if tool == "py-spy-native"
            else ["--nonblocking", "--rate", "500"]
        )
        idle = ["--idle"] if side == "client" else []  # the client's wall time, the server's CPU
        return [spy, "record", *how, *idle, "--format", "raw",
                "-o", str(out / f"{side}.pyspy.txt"), "--"]  # fmt: skip
    if tool == "strace":
        return ["strace", "-f", "-c", "-o", str(out / f"{side}.strace.txt")]
    return []


def summarize_pyspy(path: Path, top: int, us_per_call: float | None) -> str:
    """The functions holding most samples, inclusive (anywhere in the stack) and self, as a
    share and, given the measured µs per call, as µs per call. The client keeps only the
    calling loop's samples (wall time, waits included); the server drops start-up imports and
    is CPU time of all its threads."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    client = path.name.startswith("client")
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if (client and "cmd_call" not in stack) or "importlib._bootstrap" in stack:
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0]
            + (" " + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] if " (" in f else "")
            for f in stack.split(";")
        ]
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    what = "wall time of the calling thread" if client else "CPU time, idle threads excluded"
    lines = [f"{path.name}: {total} samples ({what})", "  inclusive:"]

    def row(f: str, n: int) -> str:
        us = "" if us_per_call is None else f"{us_per_call * n / total:6.1f} µs  "
        return f"    {100 * n / total:5.1f} %  {us}{f}"

    lines += [row(f, n) for f, n in inclusive.most_common(top)]
    lines.append("  self:")
    lines += [row(f, n) for f, n in own.most_common(top)]
    return "\n".join(lines)


def summarize_strace(path: Path, calls: int) -> str:
    lines = [f"{path.name}: system calls per small call ({calls} calls + warm-up)"]
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[3].isdigit():
            name = parts[-1]
            n = int(parts[3])
            if n >= calls // 2:
                lines.append(f"  {n / calls:5.2f}  {name}")
        elif parts and parts[-1] == "total":
            lines.append(f"  {int(parts[2]) / calls:5.2f}  total")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("row", help="a benchmark row, e.g. dataserve-unix")
    parser.add_argument(
        "--tool", choices=("none", "py-spy", "py-spy-native", "strace", "breakdown"), default="none"
    )
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="directory for the tools' output (default: a temp dir)")
    parser.add_argument("--_serve", metavar="SOCK_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--_call", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--_breakdown", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--_server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._serve:
        return cmd_serve(args.row, args._serve)
    if args._call:
        return cmd_call(args.row, args._call, args.calls, args.seconds, args._server_pid)
    if args._breakdown:
        return cmd_breakdown(args._breakdown, args.calls)

    out = Path(args.out or tempfile.mkdtemp(prefix="dataserve-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    sock_dir = tempfile.mkdtemp(prefix="dataserve-profile-sock-")
    me = [sys.executable, str(Path(__file__).resolve()), args.row]
    tool = "none" if args.tool == "breakdown" else args.tool
    server = client = None
    try:
        server = _start(_wrap(tool, out, "server") + me + ["--_serve", sock_dir],
                        out / "server.log")  # fmt: skip
        _, pid, address = _wait_line(server, "READY", START_TIMEOUT_S).split(" ", 2)
        if args.tool == "breakdown":
            client_cmd = [*me, "--_breakdown", address, "--calls", str(args.calls)]
        else:
            client_cmd = (
                _wrap(tool, out, "client")
                + me
                + [
                    "--_call",
                    address,
                    "--calls",
                    str(args.calls),
                    "--seconds",
                    str(args.seconds),
                    "--_server-pid",
                    pid,
                ]
            )
        client = _start(client_cmd, out / "client.log")
        assert client.stdout is not None
        text, _ = client.communicate(timeout=args.seconds * 20 + 120)
        print(text, end="")
        _stop(server, int(pid))
        calls = args.calls
        done = [ln.split() for ln in text.splitlines() if ln.startswith("CALLS")]
        us_per_call = float(done[0][2]) if done else None
        if tool == "strace" and (m := [ln for ln in text.splitlines() if ln.startswith("CALLS")]):
            calls = int(m[0].split()[1]) + 200
        for side in ("client", "server"):
            if tool.startswith("py-spy") and (f := out / f"{side}.pyspy.txt").exists():
                print(summarize_pyspy(f, args.top, us_per_call if side == "client" else None))
            if tool == "strace" and (f := out / f"{side}.strace.txt").exists():
                print(summarize_strace(f, calls))
        print(f"(output in {out})")
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(sock_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
