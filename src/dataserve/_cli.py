"""The ``dataserve`` command: ``demo``, ``serve`` and ``send``.

Errors end with a one-line message on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, BinaryIO, Final, TextIO

import msgspec

from ._client import HTTPDataClient
from ._errors import DataServeError
from ._handler import HTTPDataHandler, route

__all__ = ["main"]


class Measurement(msgspec.Struct):
    """One row of the demo's sample dataset."""

    station: str
    celsius: float


class DemoHandler(HTTPDataHandler):
    """The demo's handler: a small dataset of temperature readings, kept in memory."""

    def __init__(self) -> None:
        self.readings = [
            Measurement("oslo", 3.5),
            Measurement("lima", 19.0),
            Measurement("pune", 31.25),
        ]

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/readings":  # JSON in, JSON out
            return [r for r in self.readings if r.celsius >= (payload or 0)]
        if resource == "/greet":  # text/plain
            return f"hello, {payload}"
        if resource == "/reverse":  # application/octet-stream
            return bytes(reversed(payload))
        return None

    @route("/mean")
    def mean(self, payload: list[str]) -> float:
        """The mean temperature of the named stations (typed route)."""
        chosen = [r.celsius for r in self.readings if r.station in payload]
        return sum(chosen) / len(chosen) if chosen else 0.0


def _demo(args: argparse.Namespace) -> int:
    from ._server import HTTPDataServer

    with HTTPDataServer(DemoHandler, port=0) as server, HTTPDataClient(url=server.url) as client:
        print(f"dataserve demo: a server with a small dataset is running at {server.url}")
        calls: list[tuple[str, str, object, object]] = [
            ("JSON", "/readings", 10, None),
            ("text", "/greet", "world", None),
            ("bytes", "/reverse", b"\x00\x01\x02dataserve", None),
            ("typed", "/mean", ["oslo", "pune"], float),
            ("typed", "/readings", 0, list[Measurement]),
        ]
        for kind, resource, payload, target in calls:
            client.send(resource, payload, type=target)  # warm the connection
            start = time.perf_counter()
            result = client.send(resource, payload, type=target)
            elapsed = (time.perf_counter() - start) * 1e6
            name = target.__name__ if isinstance(target, type) else str(target)
            shown = f", type={name.replace(__name__ + '.', '')}" if target else ""
            print(f"  {kind:<5} send({resource!r}, {payload!r}{shown})")
            print(f"        -> {result!r}  [{elapsed:,.0f} µs]")
        rounds = 200
        start = time.perf_counter()
        for _ in range(rounds):
            client.send("/readings", 10)
        per_call = (time.perf_counter() - start) / rounds * 1e6
        print(f"  {rounds} JSON calls on one kept-alive connection: {per_call:,.0f} µs per call")
    print("dataserve demo: server stopped. Next: write a handler (see README.md).")
    return 0


def _load_handler(spec: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise DataServeError(f"expected MODULE:HANDLER, e.g. myserver:MyDataHandler; got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, SyntaxError, or whatever the module raised
        raise DataServeError(
            f"cannot import {module_name!r}: {exc.__class__.__name__}: {exc}"
        ) from exc
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise DataServeError(f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def _token_from_env(variable: str | None) -> str | None:
    """The token held in an environment variable (``--auth-token-env``); never printed."""
    if not variable:
        return None
    token = os.environ.get(variable)
    if not token:
        raise DataServeError(f"environment variable {variable} is empty or unset")
    return token


def _serve(args: argparse.Namespace) -> int:
    from ._server import run_http_server

    handler = _load_handler(args.handler)
    token = _token_from_env(args.auth_token_env)
    try:
        run_http_server(args.port, handler, args.host, auth_token=token)
    except TypeError as exc:
        raise DataServeError(str(exc)) from exc
    return 0


def _send(args: argparse.Namespace) -> int:
    payload: object = None
    if args.json is not None:
        try:
            payload = msgspec.json.decode(args.json)
        except msgspec.DecodeError as exc:
            raise DataServeError(f"--json is not valid JSON: {exc}") from exc
    elif args.text is not None:
        payload = args.text
    token = _token_from_env(args.auth_token_env)
    progress = _ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    with contextlib.ExitStack() as stack:
        if args.file is not None:  # streamed from the file, never read whole
            payload = stack.enter_context(open(args.file, "rb"))
        client = stack.enter_context(
            HTTPDataClient(url=args.url, auth_token=token, timeout=args.timeout)
        )
        if progress is not None:
            stack.callback(progress.close)
        if args.out is not None:  # the reply's bytes streamed into the file
            out = _OutFile(args.out)
            stack.callback(out.close)
            client.send(args.resource, payload, out=out, progress=progress)
            out.finish()
            return 0
        result = client.send(args.resource, payload, progress=progress)
    if isinstance(result, str):
        print(result)
    elif isinstance(result, bytes):
        sys.stdout.buffer.write(result)
        sys.stdout.flush()
    else:
        print(json.dumps(msgspec.to_builtins(result), indent=2, ensure_ascii=False))
    return 0


class _OutFile:
    """``--out PATH``, opened on the first byte of a successful reply: an error reply leaves
    an existing file as it was."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: BinaryIO | None = None

    def write(self, data: memoryview, /) -> int:
        if self._file is None:
            self._file = open(self._path, "wb")  # noqa: SIM115
        return self._file.write(data)

    def finish(self) -> None:
        """The reply arrived whole: create the file even if the body was empty."""
        if self._file is None:
            self._file = open(self._path, "wb")  # noqa: SIM115
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


PROGRESS_MIN_BYTES: Final = 4 << 20
"""Transfers below this size draw no progress line."""
_PROGRESS_INTERVAL: Final = 0.1  # seconds between two redraws


class _ProgressLine:
    """The progress line of ``dataserve send`` on a terminal: ``sent 12.0 of 256.0 MiB (4%),
    310.2 MiB/s``, redrawn in place with ``\\r``, for the request body and then the reply.

    A `send` progress callback: each phase begins with a call ``(0, total)``.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._phase = -1  # 0: the request body going out, 1: the reply coming in
        self._start = 0.0
        self._last_draw = 0.0
        self._state: tuple[int, int | None] = (0, None)
        self._drawn: tuple[int, int | None] | None = None  # what the line shows
        self._width = 0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if done == 0:  # a phase begins
            self._end_line()
            self._phase += 1
            self._start = self._last_draw = now
            self._state = (0, total)
            return
        self._state = (done, total)
        final = total is not None and done >= total
        if final or now - self._last_draw >= _PROGRESS_INTERVAL:
            self._draw(now)

    def close(self) -> None:
        """End the line (after the last phase, or before an error message)."""
        self._end_line()

    def _draw(self, now: float) -> None:
        done, total = self._state
        if max(done, total or 0) < PROGRESS_MIN_BYTES or self._drawn == self._state:
            return
        self._last_draw = now
        rate = done / max(now - self._start, 1e-6)
        verb = "sent" if self._phase <= 0 else "received"
        if total:
            text = f"{verb} {_mib(done)} of {_mib(total)} MiB ({done * 100 // total}%)"
        else:
            text = f"{verb} {_mib(done)} MiB"
        line = f"dataserve: {text}, {_mib(rate)} MiB/s"
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)
        self._drawn = self._state

    def _end_line(self) -> None:
        self._draw(time.monotonic())
        if self._drawn is not None:
            self._stream.write("\n")
            self._stream.flush()
        self._drawn = None
        self._width = 0


def _mib(count: float) -> str:
    return f"{count / (1 << 20):.1f}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataserve", description="Serve data from one Python process to others over HTTP."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start a sample server, call it, print what happens")
    demo.set_defaults(run=_demo)
    serve = sub.add_parser("serve", help="serve a handler: dataserve serve MODULE:HANDLER")
    serve.add_argument("handler", metavar="MODULE:HANDLER")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=5001, help="port (5001; 0 picks one)")
    serve.add_argument(
        "--auth-token-env",
        metavar="VAR",
        help="require the bearer token held in this environment variable",
    )
    serve.set_defaults(run=_serve)
    send = sub.add_parser("send", help="one call: dataserve send URL RESOURCE --json '[1]'")
    send.add_argument("url")
    send.add_argument("resource")
    group = send.add_mutually_exclusive_group()
    group.add_argument("--json", metavar="TEXT", help="send this JSON value")
    group.add_argument("--text", metavar="TEXT", help="send this string (text/plain)")
    group.add_argument("--file", metavar="PATH", help="send this file's bytes (streamed)")
    send.add_argument("--out", metavar="PATH", help="write the reply's bytes to this file")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    send.add_argument(
        "--auth-token-env",
        metavar="VAR",
        help="send the bearer token held in this environment variable",
    )
    send.set_defaults(run=_send)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except (DataServeError, OSError, ValueError) as exc:
        print(f"dataserve {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # never a traceback on the command line
        print(f"dataserve {args.command}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return code
