"""The ``dataserve`` command in real subprocesses: demo, serve, send, and its errors."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port
from .test_seed import SERVER as SEED_SERVER

TIMEOUT = 30.0
STARTUP_TIMEOUT = 15.0

HANDLER_MODULE = textwrap.dedent(
    """
    from dataserve import HTTPDataHandler

    xdata = [1, 2, 3]


    class CliHandler(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == "/xdata":
                return xdata + payload
            if resource == "/greet":
                return f"hello, {payload}"
            if resource == "/reverse":
                return bytes(reversed(payload))
            if resource == "/reprs":  # what the handler received, float by float
                return [repr(x) for x in payload]
            if resource == "/nonfinite":
                return {"values": [1.5, float("nan"), float("inf"), float("-inf")]}
            return None
    """
)

COMMANDS = [pytest.param([sys.executable, "-m", "dataserve"], id="python-m")]
if shutil.which("dataserve"):
    COMMANDS.append(pytest.param([shutil.which("dataserve")], id="console-script"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(
    command: list[str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=_env(),
        check=False,
    )


def _run_bytes(command: list[str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*command, *args], capture_output=True, timeout=TIMEOUT, env=_env(), check=False
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class Serve:
    """A ``dataserve serve`` subprocess, killed in ``stop`` whatever happened."""

    def __init__(
        self, command: list[str], cwd: Path, port: int, spec: str = "clihandler:CliHandler"
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout = b""
        self.proc = subprocess.Popen(
            [*command, "serve", spec, "--port", str(port)],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def wait_serving(self) -> None:
        """Read stdout until the "serving" line, for at most STARTUP_TIMEOUT seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"serving" not in self.stdout:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no 'serving' line within {STARTUP_TIMEOUT} s: {self.stdout!r}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    pytest.fail(f"serve exited before serving: {self.stdout!r}")
                self.stdout += chunk

    def stop(self, signum: int) -> tuple[int, str, str]:
        """Send a signal; return the exit code, the rest of stdout, and stderr."""
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, (self.stdout + out).decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT)


@pytest.fixture
def handler_dir(tmp_path: Path) -> Path:
    (tmp_path / "clihandler.py").write_text(HANDLER_MODULE)
    return tmp_path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    cwd = tmp_path_factory.mktemp("serve")
    (cwd / "clihandler.py").write_text(HANDLER_MODULE)
    server = Serve([sys.executable, "-m", "dataserve"], cwd, free_port())
    try:
        server.wait_serving()
        yield server
    finally:
        server.kill()


# -- demo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_demo_prints_each_codec_and_typed_call_and_exits_0(command: list[str]) -> None:
    result = _run(command, "demo")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    out = result.stdout
    for kind in ("JSON", "text", "bytes", "typed"):
        assert f"  {kind} " in out, kind
    assert "'hello, world'" in out  # text
    assert "b'evresatad\\x02\\x01\\x00'" in out  # bytes
    assert "type=float" in out  # typed
    assert "µs" in out  # latency


# -- serve and send ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_send_json_prints_json_reply(served: Serve, command: list[str]) -> None:
    result = _run(command, "send", served.url, "/xdata", "--json", "[4,5,6]")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [1, 2, 3, 4, 5, 6]
    assert result.stderr == ""


def test_send_resource_without_slash_is_the_same_resource(served: Serve) -> None:
    result = _run([sys.executable, "-m", "dataserve"], "send", served.url, "xdata", "--json", "[]")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [1, 2, 3]


def test_send_text_prints_text_as_is(served: Serve) -> None:
    result = _run([sys.executable, "-m", "dataserve"], "send", served.url, "/greet", "--text", "wö")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, wö\n"


def test_send_file_writes_bytes_reply_to_stdout(served: Serve, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    result = _run_bytes(
        [sys.executable, "-m", "dataserve"], "send", served.url, "/reverse", "--file", str(path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == blob[::-1]
    assert result.stderr == b""


def test_send_file_with_out_writes_reply_to_path(served: Serve, tmp_path: Path) -> None:
    blob = b"\x00\x01\x02dataserve\xff"
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(blob)
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send",
        served.url,
        "/reverse",
        "--file",
        str(source),
        "--out",
        str(target),
    )
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == blob[::-1]
    assert result.stdout == ""


def test_send_json_with_out_writes_json_to_path(served: Serve, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send",
        served.url,
        "/xdata",
        "--json",
        "[4]",
        "--out",
        str(target),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_bytes()) == [1, 2, 3, 4]


def test_send_text_with_out_writes_text_to_path(served: Serve, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send",
        served.url,
        "/greet",
        "--text",
        "you",
        "--out",
        str(target),
    )
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8") == "hello, you"


def test_send_to_resource_handler_returns_none_for_fails_with_404_line(served: Serve) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"], "send", served.url, "/nothing", "--json", "1"
    )
    line = _assert_one_line_error(result)
    assert "404" in line
    assert "/nothing" in line
    assert result.stdout == ""


def test_send_json_nan_and_infinity_reach_the_handler_as_floats(served: Serve) -> None:
    # SPEC 3: NaN/Infinity travel as Python's json writes them; --json goes through the
    # JSON codec, so they are accepted and arrive as floats, never refused or made None.
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send", served.url, "/reprs", "--json", "[1.5, NaN, Infinity, -Infinity]",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["1.5", "nan", "inf", "-inf"]


def test_send_json_bare_nan_is_accepted(served: Serve) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"], "send", served.url, "/reprs", "--json", "[NaN]"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["nan"]


def test_send_prints_non_finite_reply_floats_as_python_json_writes_them(served: Serve) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"], "send", served.url, "/nonfinite", "--json", "null"
    )
    assert result.returncode == 0, result.stderr
    assert "null" not in result.stdout
    assert "NaN" in result.stdout
    assert "-Infinity" in result.stdout
    values = json.loads(result.stdout)["values"]  # the json module reads NaN and Infinity
    assert values[0] == 1.5
    assert values[1] != values[1]  # NaN
    assert values[2:] == [float("inf"), float("-inf")]


def test_send_json_nan_payload_with_out_writes_non_finite_reply_bytes(
    served: Serve, tmp_path: Path
) -> None:
    out = tmp_path / "reply.json"
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send", served.url, "/nonfinite", "--json", "[NaN]", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b'{"values":[1.5,NaN,Infinity,-Infinity]}'


def test_send_json_misspelled_nan_still_fails_with_one_line(served: Serve) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"], "send", served.url, "/reprs", "--json", "[nan]"
    )
    line = _assert_one_line_error(result)
    assert "--json is not valid JSON" in line


def test_send_invalid_json_fails_with_one_line(served: Serve) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"], "send", served.url, "/xdata", "--json", "[4,"
    )
    line = _assert_one_line_error(result)
    assert "--json" in line


# -- stopping serve ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_signal_with_exit_0(
    handler_dir: Path, command: list[str], signum: int
) -> None:
    if signum == signal.SIGINT and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process, so the child would ignore it too")
    server = Serve(command, handler_dir, free_port())
    try:
        server.wait_serving()
        reply = _run(command, "send", server.url, "/xdata", "--json", "[4]")
        assert json.loads(reply.stdout) == [1, 2, 3, 4]
        code, out, err = server.stop(signum)
    finally:
        server.kill()
    assert code == 0, err
    assert "Traceback" not in err
    assert f"127.0.0.1:{server.port}" in out


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_send_to_port_with_nothing_listening_fails_with_one_line(command: list[str]) -> None:
    port = free_port()
    result = _run(command, "send", f"http://127.0.0.1:{port}", "/xdata", "--json", "[1]")
    line = _assert_one_line_error(result)
    assert str(port) in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_serve_unknown_module_fails_with_one_line(tmp_path: Path, command: list[str]) -> None:
    proc = subprocess.Popen(
        [*command, "serve", "nosuchmodule:X", "--port", str(free_port())],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    line = _assert_one_line_error(result)
    assert "nosuchmodule" in line
    assert "serving" not in out


def test_serve_missing_attribute_fails_with_one_line(handler_dir: Path) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "clihandler:NoSuchHandler",
        "--port",
        str(free_port()),
        cwd=handler_dir,
    )
    line = _assert_one_line_error(result)
    assert "NoSuchHandler" in line


def test_serve_on_port_in_use_fails_with_one_line_naming_address_and_remedy(
    served: Serve, handler_dir: Path
) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "clihandler:CliHandler",
        "--port",
        str(served.port),
        cwd=handler_dir,
    )
    line = _assert_one_line_error(result)
    assert result.returncode == 1
    assert line.startswith(f"dataserve serve: cannot listen on 127.0.0.1:{served.port}: ")
    assert "already in use" in line
    assert "another program" in line  # who is there ...
    assert "stop it, or choose another port (0 picks a free one)" in line  # ... what to do
    assert "serving" not in result.stdout
    assert _run(  # the server already there is untouched
        [sys.executable, "-m", "dataserve"], "send", served.url, "/xdata", "--json", "[]"
    ).stdout.split() == ["[", "1,", "2,", "3", "]"]


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("99999", "argument --port: port 99999 is out of range: a TCP port is 0-65535"),
        ("65536", "argument --port: port 65536 is out of range: a TCP port is 0-65535"),
        ("-1", "argument --port: port -1 is out of range: a TCP port is 0-65535"),
        ("http", "argument --port: 'http' is not a port number such as 5001"),
    ],
)
def test_serve_port_out_of_range_is_one_line_usage_error_exit_2(
    handler_dir: Path, port: str, expected: str
) -> None:
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "clihandler:CliHandler",
        f"--port={port}",
        cwd=handler_dir,
    )
    line = _assert_one_line_error(result)
    assert result.returncode == 2
    assert line.startswith(f"dataserve serve: error: {expected}")
    assert "OverflowError" not in line
    assert result.stdout == ""


def test_run_http_server_on_port_in_use_raises_os_error_naming_address(
    served: Serve,
) -> None:
    import errno

    from dataserve import run_http_server

    from .conftest import Echo

    with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1:\d+: the address") as info:
        run_http_server(served.port, Echo)
    assert info.value.errno == errno.EADDRINUSE  # still the OSError code can test for
    assert str(served.port) in str(info.value)


def test_server_port_out_of_range_is_value_error_not_overflow() -> None:
    from dataserve import HTTPDataServer

    from .conftest import Echo

    with pytest.raises(ValueError, match=r"cannot listen on port 99999: a TCP port is 0-65535"):
        HTTPDataServer(Echo, port=99999)


@pytest.mark.parametrize(
    "url", ["notaurl", "http://127.0.0.1:99999"], ids=["no-scheme", "port-out-of-range"]
)
def test_send_to_malformed_url_fails_with_one_line(url: str) -> None:
    result = _run([sys.executable, "-m", "dataserve"], "send", url, "/xdata", "--json", "[1]")
    line = _assert_one_line_error(result)
    assert line.startswith("dataserve send: ")


def test_send_missing_file_fails_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send",
        f"http://127.0.0.1:{free_port()}",
        "/reverse",
        "--file",
        str(missing),
    )
    line = _assert_one_line_error(result)
    assert "missing.bin" in line


def test_serve_module_with_syntax_error_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("xdata = (\n")
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "broken:Handler",
        "--port",
        str(free_port()),
        cwd=tmp_path,
    )
    line = _assert_one_line_error(result)
    assert "broken" in line


def test_serve_with_unset_auth_token_env_fails_with_one_line(handler_dir: Path) -> None:
    env_var = "DATASERVE_TEST_TOKEN_THAT_IS_NOT_SET"
    assert env_var not in os.environ
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "clihandler:CliHandler",
        "--port",
        str(free_port()),
        "--auth-token-env",
        env_var,
        cwd=handler_dir,
    )
    line = _assert_one_line_error(result)
    assert env_var in line


def test_send_with_unset_auth_token_env_fails_with_one_line() -> None:
    env_var = "DATASERVE_TEST_TOKEN_THAT_IS_NOT_SET"
    assert env_var not in os.environ
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "send",
        f"http://127.0.0.1:{free_port()}",
        "/xdata",
        "--auth-token-env",
        env_var,
    )
    line = _assert_one_line_error(result)
    assert env_var in line  # refused before any call, as serve does


# -- a module that starts a server when imported ---------------------------------------------


def test_serve_seed_server_py_fails_saying_to_guard_it_and_binds_nothing(tmp_path: Path) -> None:
    # The seed's own server.py, verbatim: run_http_server(PORT, MyDataHandler), unguarded.
    seed_port, cli_port = free_port(), free_port()
    script = SEED_SERVER.replace("PORT", str(seed_port))
    (tmp_path / "server.py").write_text(script)
    call_line = script.splitlines().index(f"run_http_server({seed_port}, MyDataHandler)") + 1
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "server:MyDataHandler",
        "--port",
        str(cli_port),
        cwd=tmp_path,
    )  # an import-time server would serve until the timeout: this would raise TimeoutExpired
    line = _assert_one_line_error(result)
    assert result.returncode == 1
    assert line.startswith(f"dataserve serve: server.py:{call_line} starts a server when ")
    assert f"(run_http_server({seed_port}, ...))" in line
    assert 'guard that call with `if __name__ == "__main__":`' in line
    assert "serving" not in result.stdout  # neither server ever listened
    for port in (seed_port, cli_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


IMPORT_TIME_SERVERS = {
    "serve_forever": "HTTPDataServer(MyDataHandler, port=PORT).serve_forever()",
    "start": "server = HTTPDataServer(MyDataHandler, port=PORT).start()",
    "with": "with HTTPDataServer(MyDataHandler, port=PORT):\n    time.sleep(60)",
    "unix": "HTTPDataServer(MyDataHandler, unix_socket=SOCK).start()",
}


@pytest.mark.parametrize("kind", list(IMPORT_TIME_SERVERS))
def test_serve_module_creating_a_server_on_import_fails_and_binds_nothing(
    tmp_path: Path, kind: str
) -> None:
    # HTTPDataServer(...).serve_forever() or .start() at import: refused as run_http_server is.
    module_port, cli_port = free_port(), free_port()
    sock_path = tmp_path / "module.sock"
    call = IMPORT_TIME_SERVERS[kind].replace("PORT", str(module_port))
    call = call.replace("SOCK", repr(str(sock_path)))
    script = SEED_SERVER.replace("from dataserve import", "import time\nfrom dataserve import")
    script = script.replace("run_http_server(PORT, MyDataHandler)", call)
    script = script.replace("run_http_server", "HTTPDataServer, run_http_server")
    (tmp_path / "server.py").write_text(script)
    call_line = script.splitlines().index(call.splitlines()[0]) + 1
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "server:MyDataHandler",
        "--port",
        str(cli_port),
        cwd=tmp_path,
    )  # an import-time server would serve until the timeout: this would raise TimeoutExpired
    line = _assert_one_line_error(result)
    assert result.returncode == 1
    assert line.startswith(f"dataserve serve: server.py:{call_line} starts a server when ")
    where = f"unix_socket={str(sock_path)!r}" if kind == "unix" else f"port={module_port}"
    assert f"(HTTPDataServer(..., {where}))" in line
    assert 'guard that call with `if __name__ == "__main__":`' in line
    assert "serving" not in result.stdout
    assert not sock_path.exists()  # the socket file was never created
    for port in (module_port, cli_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_serve_guarded_seed_server_py_serves_on_the_cli_port(tmp_path: Path) -> None:
    # The fix the message asks for works: guarded, the module is imported and served.
    seed_port = free_port()
    script = SEED_SERVER.replace("PORT", str(seed_port)).replace(
        "run_http_server(", 'if __name__ == "__main__":\n    run_http_server('
    )
    (tmp_path / "server.py").write_text(script)
    cli_port = free_port()
    server = Serve([sys.executable, "-m", "dataserve"], tmp_path, cli_port, "server:MyDataHandler")
    try:
        server.wait_serving()
        reply = _run(
            [sys.executable, "-m", "dataserve"], "send", server.url, "/ydata", "--json", "0"
        )
        assert reply.stdout.strip() == "2"
        code, out, err = server.stop(signal.SIGTERM)
    finally:
        server.kill()
    assert code == 0, err
    assert out.count("serving") == 1  # one server, on --port, and no second one after SIGTERM
    assert f"127.0.0.1:{cli_port}" in out


# -- a handler whose __init__ fails: where, and the whole traceback on request ----------------

FAILING_HANDLER = textwrap.dedent(
    """
    from dataserve import HTTPDataHandler


    def load(path):
        with open(path) as f:
            return f.read()


    class Loads(HTTPDataHandler):
        def __init__(self):
            self.data = load("missing-data.csv")

        def handle_request(self, resource, payload):
            return self.data
    """
)


def _line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_serve_handler_init_failure_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "loads.py").write_text(FAILING_HANDLER)
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "loads:Loads",
        "--port",
        str(free_port()),
        cwd=tmp_path,
    )
    line = _assert_one_line_error(result)
    assert result.returncode == 1
    where = _line_of(FAILING_HANDLER, "with open(path)")  # the innermost frame of the user's
    assert line == (
        f"dataserve serve: Loads() failed at loads.py:{where}: FileNotFoundError: [Errno 2] "
        "No such file or directory: 'missing-data.csv' (--traceback shows the full traceback)"
    )
    assert "serving" not in result.stdout


def test_serve_traceback_flag_prints_the_traceback_then_the_line(tmp_path: Path) -> None:
    (tmp_path / "loads.py").write_text(FAILING_HANDLER)
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "loads:Loads",
        "--port",
        str(free_port()),
        "--traceback",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    for fragment in ("self.data = load(", "with open(path)"):  # each user frame, with its line
        number = _line_of(FAILING_HANDLER, fragment)
        assert f'loads.py", line {number}, in ' in result.stderr
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'missing-data.csv'" in lines
    assert lines[-1].startswith("dataserve serve: Loads() failed at loads.py:")
    assert "--traceback" not in lines[-1]  # given already


def test_serve_module_failing_on_import_names_file_and_line(tmp_path: Path) -> None:
    source = "from dataserve import HTTPDataHandler\n\nRATIO = 1 / 0\n"
    (tmp_path / "ratio.py").write_text(source)
    result = _run(
        [sys.executable, "-m", "dataserve"],
        "serve",
        "ratio:Handler",
        "--port",
        str(free_port()),
        cwd=tmp_path,
    )
    line = _assert_one_line_error(result)
    assert line.startswith(
        "dataserve serve: cannot import 'ratio' at ratio.py:3: ZeroDivisionError: division by zero"
    )


# -- --version and help ------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_version_prints_dataserve_and_the_installed_version(command: list[str]) -> None:
    result = _run(command, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"dataserve {importlib.metadata.version('dataserve')}\n"
    assert result.stderr == ""


def test_every_positional_argument_has_help() -> None:
    from dataserve._cli import _parser

    parsers = [_parser()]
    seen: list[str] = []
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            if not action.option_strings:
                assert action.help, f"{parser.prog}: {action.metavar or action.dest} has no help"
                seen.append(f"{parser.prog} {action.metavar or action.dest}")
    assert sorted(seen) == [
        "dataserve COMMAND",
        "dataserve send RESOURCE",
        "dataserve send URL",
        "dataserve serve MODULE:HANDLER",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], [r"COMMAND +demo, serve or send"]),
        (["serve", "--help"], [r"MODULE:HANDLER +the handler to serve", r"--traceback +on an"]),
        (["send", "--help"], [r"URL +the server's base URL", r"RESOURCE +the resource to call"]),
    ],
)
def test_help_describes_each_positional_argument(args: list[str], expected: list[str]) -> None:
    result = _run([sys.executable, "-m", "dataserve"], *args)
    assert result.returncode == 0, result.stderr
    for pattern in expected:
        assert re.search(pattern, result.stdout), result.stdout
