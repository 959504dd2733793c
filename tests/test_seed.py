"""The seed example of SPEC section 2, verbatim, as two real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dataserve import HTTPDataClient, HTTPDataServer

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


# -- the seed client's port: checked where it is given ------------------------------------


@pytest.mark.parametrize("port", [70000, 65536, -1, "99999"])
def test_client_port_out_of_range_is_value_error_saying_so(port: object) -> None:
    with pytest.raises(ValueError, match=r"is out of range: a TCP port is 1-65535") as info:
        HTTPDataClient(port=port)  # type: ignore[arg-type]
    assert "URL" not in str(info.value)  # not "expected an http:// or https:// URL"


def test_client_port_0_is_value_error_pointing_at_the_servers_port() -> None:
    with pytest.raises(ValueError, match=r"port 0 is not a port a server listens on") as info:
        HTTPDataClient(port=0)
    assert ".port" in str(info.value)


@pytest.mark.parametrize(
    "port", [5001.0, True, b"5001", "50 01", "\uff15\uff10\uff10\uff11", [5001]]
)
def test_client_port_of_another_type_is_type_error(port: object) -> None:
    with pytest.raises(TypeError, match=r"port must be an int such as 5001, got "):
        HTTPDataClient(port=port)  # type: ignore[arg-type]


def test_client_port_as_digit_string_reaches_the_server_as_in_01(
    echo_server: HTTPDataServer,
) -> None:
    # dataserve 0.1 built its URL as address + str(port): port=os.environ["PORT"] worked.
    with HTTPDataClient(port=str(echo_server.port), address="http://127.0.0.1:") as client:  # type: ignore[arg-type]
        assert client.url == f"http://127.0.0.1:{echo_server.port}"
        assert client.send("/echo", [1]) == [1]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://127.0.0.1:70000",
            "port 70000 in the URL 'http://127.0.0.1:70000' is out of range",
        ),
        ("http://[::1]:99999/x", "port 99999 in the URL 'http://[::1]:99999/x' is out of range"),
        ("http://127.0.0.1:0", "port 0 (in the URL 'http://127.0.0.1:0') is not a port"),
        (
            "http://127.0.0.1:http",
            "the port 'http' in the URL 'http://127.0.0.1:http' is not a number",
        ),
        ("ftp://127.0.0.1:21", "expected an http://, https:// or http+unix:// URL"),
    ],
)
def test_client_url_with_bad_port_says_what_is_wrong(url: str, expected: str) -> None:
    with pytest.raises(ValueError, match=r"^(port|the port|expected) ") as info:
        HTTPDataClient(url=url)
    assert str(info.value).startswith(expected)


def test_client_address_without_colon_is_value_error() -> None:
    # Not "http://localhost5001": the port is appended to the address.
    with pytest.raises(ValueError, match=r"address must end in a colon"):
        HTTPDataClient(port=5001, address="http://localhost")
