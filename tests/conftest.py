"""Shared fixtures: real servers on loopback (port 0), stopped by the test that started them."""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dataserve import HTTPDataClient, HTTPDataHandler, HTTPDataServer


class Echo(HTTPDataHandler):
    """Returns the payload; a few resources for errors."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def handle_request(self, resource: str, payload: Any) -> object:
        with self.lock:
            self.calls += 1
        if resource == "/raise":
            raise ValueError("boom with 'quotes'")
        if resource == "/unencodable":
            return object()
        if resource == "/none":
            return None
        if resource == "/sleep":
            time.sleep(float(payload))
            return "slept"
        if resource.startswith("/resource"):
            return resource if payload is None else [resource, payload]
        return payload


@pytest.fixture(scope="module")
def echo_server() -> Iterator[HTTPDataServer]:
    with HTTPDataServer(Echo, port=0) as server:
        yield server


@pytest.fixture
def client(echo_server: HTTPDataServer) -> Iterator[HTTPDataClient]:
    with HTTPDataClient(url=echo_server.url) as c:
        yield c


@pytest.fixture
def make_server() -> Iterator[Callable[..., HTTPDataServer]]:
    """Start servers with any options; every one is shut down when the test ends."""
    servers: list[HTTPDataServer] = []

    def make(handler: Any = Echo, **options: Any) -> HTTPDataServer:
        server = HTTPDataServer(handler, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.raw = raw

    def json(self) -> Any:
        import msgspec

        return msgspec.json.decode(self.body)


def read_reply(sock: socket.socket, *, head_only: bool = False) -> Reply:
    """Read one HTTP/1.1 reply framed by Content-Length (or by close) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a reply head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return Reply(status, headers, b"", head)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        body = rest[:length]
    else:
        body = rest + b"".join(iter(lambda: sock.recv(65536), b""))
    return Reply(status, headers, body, head)


def raw_exchange(
    port: int, request: bytes, *, timeout: float = 5.0, head_only: bool = False
) -> Reply:
    """Send raw bytes on a new connection and read one reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_reply(sock, head_only=head_only)


def is_closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def put(
    resource: str, body: bytes, content_type: str = "application/json", extra: str = ""
) -> bytes:
    """A well-formed PUT request with Connection: close."""
    return (
        f"PUT {resource} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def dataserve_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("dataserve"))


class ScriptedServer:
    """A raw-socket server that runs ``script(conn)`` for each connection (like urllib3's
    SocketDummyServerTestCase), counting the requests it read. Bounded waits only."""

    def __init__(self, script: Callable[[socket.socket, ScriptedServer], None]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.peers: list[tuple[str, int]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scripted-server")

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        self.requests.append(head + b"\r\n\r\n" + body)
        return head + b"\r\n\r\n" + body

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.peers.append(peer)
            conn.settimeout(5)
            with conn, contextlib.suppress(OSError):
                self.script(conn, self)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()


class Gate(Echo):
    """Echo, plus ``/wait``: the handler blocks until ``release`` is set (10 s at most)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)  # released once per call that began to wait
        self.release = threading.Event()

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/wait":
            self.entered.release()
            self.release.wait(10)
            return "released"
        return super().handle_request(resource, payload)

    def wait_entered(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` calls are inside ``/wait``; fail the test after ``timeout``."""
        for _ in range(count):
            if not self.entered.acquire(timeout=timeout):
                raise AssertionError("a call did not reach the handler in time")


def wait_until_pooled_connections_closed(client: Any, timeout: float = 5.0) -> bool:
    """Wait (bounded) until the server's close of each open pooled connection of an
    ``HTTPDataClient`` has arrived; return whether there was one and every one closed.

    Reads the pool's private state, for synchronisation: on a busy machine the close can
    still be in flight when the next call begins, and that is the race SPEC 7 answers with
    an error, not the case a test of reconnection means."""
    deadline = time.monotonic() + timeout
    socks = [c.sock for c in client._pool.idle_connections() if c.sock]
    for sock in socks:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
    return bool(socks)


@functools.cache
def gunicorn_command() -> tuple[str, ...]:
    """``python -m gunicorn`` with the options that keep an instance to itself.

    gunicorn 27 opens a control socket at ``~/.gunicorn/gunicorn.ctl`` by default: outside the
    test's temp dir, and shared by every instance, so that stopping one removes the socket of
    another. Older versions have no such socket and no option to disable it.
    """
    import gunicorn.config

    names = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    isolate = ("--no-control-socket",) if "control_socket_disable" in names else ()
    return (sys.executable, "-m", "gunicorn", *isolate)
