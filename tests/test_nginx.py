"""nginx in front of two gunicorn instances of one ``make_app``, for real (SPEC sections 6, 13).

The nginx config is docs/scaling.md's own (its ``nginx`` block, the addresses substituted), wrapped
in a top level that keeps every path in the test's temp dir. One instance listens on a
loopback port, the other on a Unix socket; `HTTPDataClient` calls through nginx.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dataserve import DataServeError, HTTPDataClient, ServerError

from .conftest import free_port, read_reply
from .test_curl import DOCS, fenced_block
from .test_wsgi import _has_module, gunicorn, stop_group

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
# Skipped where nginx is missing, except under CI=true, where .ci/run installs it: a CI run
# without it fails here instead of passing with these tests skipped.
pytestmark = pytest.mark.skipif(
    (NGINX is None and os.environ.get("CI") != "true") or not _has_module("gunicorn"),
    reason="needs nginx (.ci/run installs Debian's package) and gunicorn",
)

TOKEN = "nginx-test-token"
# docs/scaling.md's gunicorn options for instances behind nginx (one worker each here).
GUNICORN_OPTIONS = ("--workers", "1", "--threads", "4", "--keep-alive", "75")

APP = """
import os
import time

from dataserve import HTTPDataHandler
from dataserve.wsgi import make_app

NAME = os.environ["INSTANCE"]
LOG = os.environ["CALL_LOG"]


class Instance(HTTPDataHandler):
    def handle_request(self, resource, payload):
        if resource == "/who":
            return [NAME, os.getpid()]
        if resource == "/echo":
            return payload
        if resource == "/slow":  # noted in the log, then held until released (at most 30 s)
            with open(LOG, "a") as log:
                log.write(NAME + "\\n")
            deadline = time.monotonic() + 30
            while not os.path.exists(LOG + ".release") and time.monotonic() < deadline:
                time.sleep(0.02)
            return NAME
        return None


app = make_app(Instance, auth_token=os.environ["DATASERVE_TOKEN"])
"""


def readme_nginx_config() -> str:
    return fenced_block((DOCS / "scaling.md").read_text(), "## nginx in front", "nginx")


def substitute(config: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert config.count(old) == 1, f"docs/scaling.md nginx config: expected {old!r} once"
        config = config.replace(old, new)
    return config


@dataclass
class Stack:
    """Two gunicorn instances and nginx in front of them, all in ``root``."""

    root: Path
    nginx_port: int
    instances: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # as nginx names them
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "calls.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def client(self, **options: Any) -> HTTPDataClient:
        return HTTPDataClient(url=self.url, auth_token=TOKEN, **options)

    def logged(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def kill(self, name: str) -> None:
        """SIGKILL an instance: its master and workers, with no chance to finish a call."""
        os.killpg(self.instances[name].pid, signal.SIGKILL)
        self.instances[name].wait(10)


def wait_unix_ready(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until a HEAD on the Unix socket gets its 200 (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn on the Unix socket exited"
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.05)
    raise AssertionError(f"gunicorn did not answer on {path} within {timeout} s")


@contextlib.contextmanager
def nginx(root: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run nginx in the foreground with ``config`` in ``http {}``; every path in ``root``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # else workers run as nobody
    (root / "nginx.conf").write_text(
        f"daemon off;\n{user}worker_processes 2;\npid {root}/nginx.pid;\n"
        f"error_log {root}/error.log info;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log {root}/access.log;\n"
        + "".join(
            f"    {kind}_temp_path {root}/{kind}_temp;\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + config
        + "\n}\n"
    )
    assert NGINX is not None
    test = subprocess.run(
        [NGINX, "-t", "-p", str(root), "-c", str(root / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert test.returncode == 0, test.stderr.decode()
    with (root / "nginx.out").open("wb") as out:
        proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_group(proc)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start the two instances and nginx with docs/scaling.md's config (or a variant of it)."""
    with contextlib.ExitStack() as stack:

        def make(edit: Callable[[str], str] = lambda config: config) -> Stack:
            (tmp_path / "app.py").write_text(APP)
            tcp_port, sock_path = free_port(), tmp_path / "data.sock"
            result = Stack(tmp_path, free_port())
            env = {"DATASERVE_TOKEN": TOKEN, "CALL_LOG": str(result.log)}
            for name, bind in (("tcp", f"127.0.0.1:{tcp_port}"), ("unix", f"unix:{sock_path}")):
                result.addresses[name] = bind
                result.instances[name] = stack.enter_context(
                    gunicorn(tmp_path, bind, *GUNICORN_OPTIONS, env={**env, "INSTANCE": name})
                )
            with HTTPDataClient(port=tcp_port) as client:
                client.wait_ready(30)
            wait_unix_ready(sock_path, result.instances["unix"])
            config = substitute(
                readme_nginx_config(),
                {
                    "server 127.0.0.1:5001 ": f"server 127.0.0.1:{tcp_port} ",
                    "unix:/run/dataserve/data.sock": f"unix:{sock_path}",
                    "listen 127.0.0.1:8080;": f"listen 127.0.0.1:{result.nginx_port};",
                },
            )
            stack.enter_context(nginx(tmp_path, edit(config)))
            with result.client() as client:
                client.wait_ready(30)
            return result

        yield make


def test_both_instances_serve_through_nginx(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    seen: dict[str, set[int]] = {}
    with stack.client() as client:
        for _ in range(20):
            name, pid = client.send("/who")
            seen.setdefault(name, set()).add(pid)
    assert set(seen) == {"tcp", "unix"}  # round robin: each instance answered
    assert all(len(pids) == 1 for pids in seen.values())  # one worker per instance
    with HTTPDataClient(url=stack.url) as anonymous, pytest.raises(ServerError) as info:
        anonymous.send("/who")  # the token travels through nginx and is checked
    assert info.value.status == 401


def test_64_mb_body_passes_through_nginx_both_ways(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    payload = bytes(range(256)) * (64 * 1024 * 1024 // 256)
    with stack.client(timeout=120) as client:
        for _ in range(2):  # once on each instance
            assert client.send("/echo", payload) == payload
    # Streamed both ways: nginx warns when it writes a body or a reply to a temp file.
    log = (stack.root / "error.log").read_text()
    assert "a client request body is buffered to a temporary file" not in log
    assert "an upstream response is buffered to a temporary file" not in log


def test_chunked_body_passes_through_nginx(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    request = (
        f"PUT /echo HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", stack.nginx_port), timeout=10) as sock:
            sock.sendall(request)
            reply = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"hello world")


def start_slow_call(stack: Stack) -> tuple[threading.Thread, dict[str, object]]:
    """Call /slow in a thread; return once an instance has begun it (bounded)."""
    outcome: dict[str, object] = {}

    def call() -> None:
        with stack.client() as client:
            try:
                outcome["value"] = client.send("/slow")
            except DataServeError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 20
    while not stack.logged() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stack.logged(), "no instance began the call"
    return thread, outcome


def test_killing_an_instance_mid_call_raises_and_the_other_serves(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack()
    stop = threading.Event()
    results: list[tuple[int, object]] = []

    def steady_calls() -> None:  # calls going on while the instance dies: right or an error
        with stack.client() as client:
            for i in range(2000):
                if stop.is_set():
                    return
                try:
                    results.append((i, client.send("/echo", [i, "x" * (i % 50)])))
                except DataServeError as exc:
                    results.append((i, exc))

    background = threading.Thread(target=steady_calls)
    background.start()
    try:
        thread, outcome = start_slow_call(stack)
        (busy,) = stack.logged()
        survivor = ({"tcp", "unix"} - {busy}).pop()
        stack.kill(busy)
        thread.join(30)
        assert not thread.is_alive(), f"the call is still running: resent? {stack.logged()}"
    finally:
        stop.set()
        background.join(30)
        (stack.root / "calls.log.release").touch()
    error = outcome.get("error")
    assert isinstance(error, ServerError), outcome  # not resent: a clear error instead
    assert error.status == 502
    assert "may have reached it and was not resent" in error.detail
    assert stack.addresses[busy] in error.detail  # nginx's $upstream_addr
    assert "/slow answered 502 Bad Gateway: nginx got no reply" in str(error)
    assert stack.logged() == [busy]  # the handler ran once, on the instance that died
    wrong = [
        (i, got)
        for i, got in results
        if not isinstance(got, DataServeError) and got != [i, "x" * (i % 50)]
    ]
    assert wrong == []
    assert all(got.status == 502 for _, got in results if isinstance(got, ServerError))
    with stack.client() as client:
        names = [client.send("/who")[0] for _ in range(10)]
    assert names == [survivor] * 10  # nginx took the dead instance out


def test_nginx_default_would_resend_the_call_to_the_other_instance(
    make_stack: Callable[..., Stack],
) -> None:
    # Why docs/scaling.md's config says `proxy_next_upstream off`: without it, nginx runs a PUT
    # whose instance died again on the other one.
    stack = make_stack(lambda config: re.sub(r"\n\s*proxy_next_upstream off;[^\n]*", "", config))
    thread, outcome = start_slow_call(stack)
    (busy,) = stack.logged()
    survivor = ({"tcp", "unix"} - {busy}).pop()
    try:
        stack.kill(busy)
        deadline = time.monotonic() + 20
        while len(stack.logged()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        (stack.root / "calls.log.release").touch()
        thread.join(30)
    assert stack.logged() == [busy, survivor]  # the handler ran twice
    assert outcome == {"value": survivor}
