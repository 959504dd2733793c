"""The ``dataserve`` command: ``demo``, ``serve`` and ``send``.

Errors end with a one-line message on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import json
import os
import sys
import sysconfig
import time
import traceback
from collections.abc import Sequence
from typing import Any, BinaryIO, Final, NoReturn, TextIO

import msgspec

from ._client import HTTPDataClient
from ._errors import DataServeError
from ._handler import HTTPDataHandler, route
from .codecs import JsonCodec

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
        calls: list[tuple[str, str, object, Any]] = [  # Any: a type form per call
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


class _UserCodeError(DataServeError):
    """The user's module or handler raised: the one-line message names the file and line,
    and ``--traceback`` shows the traceback of what the user's code raised."""


_OWN_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The directories of installed packages, and those of the standard library."""
    paths = sysconfig.get_paths()

    def dirs(*keys: str) -> tuple[str, ...]:
        return tuple({os.path.abspath(paths[key]) + os.sep for key in keys if key in paths})

    return dirs("purelib", "platlib"), dirs("stdlib", "platstdlib")


def _shown_path(filename: str) -> str:
    """A file name as a user would type it: relative to the current directory when inside it."""
    path = os.path.abspath(filename)
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return path
    return path if relative.startswith(os.pardir) else relative


def _user_location(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame of ``exc``'s traceback in the user's code.

    Frames of dataserve itself, of the import machinery and of the standard library are passed
    over, and so are those of installed packages while a frame of the user's own remains (a
    handler installed as a package is still named). ``None`` when no frame is left.
    """
    packages, stdlib = _library_dirs()
    own: list[traceback.FrameSummary] = []
    installed: list[traceback.FrameSummary] = []
    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        if frame.filename.startswith("<") or path.startswith(_OWN_DIR):
            continue
        if path.startswith(packages):  # checked first: site-packages may lie in the stdlib
            installed.append(frame)
        elif not path.startswith(stdlib):
            own.append(frame)
    chosen = own or installed
    if not chosen:
        return None
    return f"{_shown_path(chosen[-1].filename)}:{chosen[-1].lineno}"


def _failure(what: str, exc: BaseException) -> DataServeError:
    """``what`` failed: the exception's type, where in the user's code, and its message."""
    where = _user_location(exc)
    if where is None:  # e.g. the module itself was not found: nothing of the user's ran
        return DataServeError(f"{what}: {exc.__class__.__name__}: {exc}")
    return _UserCodeError(f"{what} at {where}: {exc.__class__.__name__}: {exc}")


def _load_handler(spec: str) -> Any:
    from ._server import ImportGuard, ServerStartedOnImport

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise DataServeError(f"expected MODULE:HANDLER, e.g. myserver:MyDataHandler; got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        with ImportGuard(module_name):
            module = importlib.import_module(module_name)
    except ServerStartedOnImport as exc:
        where = _user_location(exc) or module_name
        raise DataServeError(
            f"{where} starts a server when {module_name!r} is imported "
            f"({exc.call}); guard that call with "
            '`if __name__ == "__main__":` so that `dataserve serve` can import the module '
            f"and serve {spec!r} itself"
        ) from exc
    except Exception as exc:  # ImportError, SyntaxError, or whatever the module raised
        raise _failure(f"cannot import {module_name!r}", exc) from exc
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


def _instantiate(handler: object, spec: str) -> HTTPDataHandler:
    """The handler instance; a class is instantiated here, so that a failing ``__init__``
    (a missing data file) is reported with its file and line."""
    if isinstance(handler, type) and issubclass(handler, HTTPDataHandler):
        try:
            return handler()
        except Exception as exc:
            raise _failure(f"{handler.__qualname__}() failed", exc) from exc
    if isinstance(handler, HTTPDataHandler):
        return handler
    if isinstance(handler, type):
        kind = f"the class {handler.__qualname__}"
    else:
        kind = f"an object of type {type(handler).__qualname__}"
    raise DataServeError(
        f"{spec!r} is {kind}, not an HTTPDataHandler subclass or instance; point it at your "
        "handler class"
    )


def _log_access_to_stderr() -> None:
    """Send the server's access log (``--access-log``) to stderr, one timestamped line each."""
    import logging

    from ._server import ACCESS_LOGGER

    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(stream)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _serve(args: argparse.Namespace) -> int:
    from ._server import run_http_server

    if args.unix is not None and (args.port is not None or args.host is not None):
        raise DataServeError("--unix replaces --host and --port; give one or the other")
    if args.unix is not None:  # a live socket file is refused before the handler is built
        from ._unix import claim_socket_path, socket_path

        claim_socket_path(socket_path(args.unix))
    handler = _load_handler(args.handler)
    token = _token_from_env(args.auth_token_env)
    instance = _instantiate(handler, args.handler)
    if args.access_log:
        _log_access_to_stderr()
    try:
        if args.unix is not None:
            run_http_server(
                0, instance, unix_socket=args.unix, auth_token=token, access_log=args.access_log
            )
        else:
            port = 5001 if args.port is None else args.port
            run_http_server(
                port,
                instance,
                args.host or "127.0.0.1",
                auth_token=token,
                access_log=args.access_log,
            )
    except TypeError as exc:
        raise DataServeError(str(exc)) from exc
    return 0


def _json_argument(text: str) -> object:
    """``--json TEXT`` decoded by the JSON codec the client sends with, so that ``NaN``,
    ``Infinity`` and ``-Infinity`` are read as Python's json module writes them (SPEC 3)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable bytes in argv arrive as lone surrogates
        raise DataServeError(f"--json is not valid UTF-8 text: {exc.reason}") from exc
    try:
        return JsonCodec().decode(data, {})
    except msgspec.DecodeError as exc:
        raise DataServeError(f"--json is not valid JSON: {exc}") from exc


def _send(args: argparse.Namespace) -> int:
    payload: object = None
    if args.json is not None:
        payload = _json_argument(args.json)
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


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr, exit code 2 (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _VersionAction(argparse.Action):
    """``--version``: ``dataserve <version>`` from the installed package's metadata."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: Any) -> None:
        try:
            version = importlib.metadata.version("dataserve")
        except importlib.metadata.PackageNotFoundError:
            version = "(version unknown: not installed as a package)"
        print(f"dataserve {version}")
        parser.exit(0)


MAX_PORT: Final = 65535


def _port(text: str) -> int:
    """``--port``: a number from 0 to 65535, else an argparse error (one line, exit 2)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number such as 5001") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"port {port} is out of range: a TCP port is 0-{MAX_PORT} (0 picks a free one)"
        )
    return port


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dataserve", description="Serve data from one Python process to others over HTTP."
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="demo, serve or send; 'dataserve COMMAND --help' tells more",
    )
    demo = sub.add_parser("demo", help="start a sample server, call it, print what happens")
    demo.set_defaults(run=_demo)
    serve = sub.add_parser("serve", help="serve a handler: dataserve serve MODULE:HANDLER")
    serve.add_argument(
        "handler",
        metavar="MODULE:HANDLER",
        help="the handler to serve, an HTTPDataHandler subclass or instance, as module:name "
        "(e.g. myserver:MyDataHandler); the module is imported from the current directory "
        "and must not start a server itself when imported",
    )
    serve.add_argument("--host", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port (5001; 0 picks one)")
    serve.add_argument(
        "--unix",
        metavar="PATH",
        help="listen on a Unix socket file instead (mode 0o600: this user only)",
    )
    serve.add_argument(
        "--auth-token-env",
        metavar="VAR",
        help="require the bearer token held in this environment variable",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request to stderr: client, method, resource, status, "
        "bytes in and out, duration (never a token or a payload)",
    )
    serve.set_defaults(run=_serve)
    send = sub.add_parser("send", help="one call: dataserve send URL RESOURCE --json '[1]'")
    send.add_argument(
        "url",
        metavar="URL",
        help="the server's base URL: http://HOST:PORT, https://..., or http+unix://%%2Fpath.sock",
    )
    send.add_argument(
        "resource",
        metavar="RESOURCE",
        help="the resource to call, e.g. /xdata (a leading / is added if missing)",
    )
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
    serve.add_argument(
        "--traceback",
        action="store_true",
        help="on an error, print the full traceback before the one-line message",
    )
    return parser


def _one_line(exc: Exception, show_traceback_hint: bool) -> str:
    if isinstance(exc, (DataServeError, OSError, ValueError)):
        message = str(exc)
    else:
        message = f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, _UserCodeError) and show_traceback_hint:
        message += " (--traceback shows the full traceback)"
    return " ".join(message.split())  # one line, whatever the exception's message holds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    show_traceback = bool(getattr(args, "traceback", False))
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback on the command line, unless asked for
        if show_traceback:
            # What the user's code raised, alone: the wrapping by this command is noise.
            cause = exc.__cause__ if isinstance(exc, DataServeError) else None
            traceback.print_exception(cause or exc, file=sys.stderr)
        hint = args.command == "serve" and not show_traceback
        print(f"dataserve {args.command}: {_one_line(exc, hint)}", file=sys.stderr)
        return 1
    return code
