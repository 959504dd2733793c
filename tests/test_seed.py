"""The seed example of SPEC section 2, verbatim, as two real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import free_port

SERVER = textwrap.dedent("""
    # server.py
    from dataserve import HTTPDataHandler, run_http_server

    xdata = [1, 2, 3]

    class MyDataHandler(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == '/xdata':
                return xdata + payload
            elif resource == '/ydata':
                return 2
            return None

    run_http_server(PORT, MyDataHandler)
""")

CLIENT = textwrap.dedent("""
    # client.py
    from dataserve import HTTPDataClient

    client = HTTPDataClient(port=PORT)
    ret = client.send('/xdata', [4, 5, 6])   # -> [1, 2, 3, 4, 5, 6]
    print(ret)
    ret = client.send('/ydata')              # -> 2
    print(ret)
""")


def start_server(tmp_path: Path, port: int, script: str = SERVER) -> subprocess.Popen[str]:
    (tmp_path / "server.py").write_text(script.replace("PORT", str(port)))
    proc = subprocess.Popen(
        [sys.executable, "server.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the server accepts connections
    assert f"127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() else "")
    return proc


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_seed_example_runs_verbatim_and_stops_cleanly(tmp_path: Path, sig: int) -> None:
    port = free_port()
    server = start_server(tmp_path, port)
    try:
        (tmp_path / "client.py").write_text(CLIENT.replace("PORT", str(port)))
        client = subprocess.run(
            [sys.executable, "client.py"], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["[1, 2, 3, 4, 5, 6]", "2"]
    finally:
        code, out, err = stop(server, sig)
    assert code == 0
    assert "Traceback" not in err
    assert "stopped" in out


def test_run_http_server_stops_on_ctrl_c_while_serving_a_client(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(tmp_path, port)
    try:
        # An open keep-alive connection must not keep the process alive.
        from dataserve import HTTPDataClient

        with HTTPDataClient(port=port) as client:
            assert client.send("/ydata") == 2
            time.sleep(0.1)
            code, _, err = stop(server, signal.SIGINT)
    finally:
        server.kill()
    assert code == 0
    assert "Traceback" not in err


SLOW_SERVER = textwrap.dedent("""
    import sys, time
    from dataserve import HTTPDataHandler, run_http_server

    class Slow(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == '/slow':
                print('handling', flush=True)
                time.sleep(1.0)
                return payload
            return None

    run_http_server(PORT, Slow, shutdown_timeout=10)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signal_during_a_call_lets_it_finish_then_exits_0(tmp_path: Path, sig: int) -> None:
    import threading

    from dataserve import HTTPDataClient

    port = free_port()
    proc = start_server(tmp_path, port, SLOW_SERVER)
    results: list[object] = []
    try:
        assert proc.stdout is not None
        with HTTPDataClient(port=port, timeout=10) as client:
            caller = threading.Thread(target=lambda: results.append(client.send("/slow", [7])))
            caller.start()
            assert proc.stdout.readline().strip() == "handling"  # the call is in the handler
            proc.send_signal(sig)
            caller.join(15)
            assert not caller.is_alive()
            out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert results == [[7]]  # the in-flight call got its reply
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "stopped" in out
