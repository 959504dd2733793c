"""dataserve.wsgi.make_app: the same protocol under a WSGI server (wsgiref, gunicorn)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.validate import validator

import pytest

from dataserve import (
    BadRequest,
    HTTPDataClient,
    PayloadTooLarge,
    RemoteError,
    ResourceNotFound,
    Unauthorized,
    UnsupportedMediaType,
    route,
)
from dataserve.wsgi import make_app

from .conftest import Echo, free_port, gunicorn_command, put, raw_exchange, read_reply
from .test_typed import Point, Typed


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve_wsgi() -> Iterator[Callable[..., str]]:
    """Serve make_app(...) with wsgiref on a real socket, the app wrapped in PEP 3333 checks."""
    servers: list[tuple[WSGIServer, threading.Thread]] = []

    def serve(handler: Any = Echo, **options: Any) -> str:
        server = make_server(
            "127.0.0.1", 0, validator(make_app(handler, **options)), handler_class=Quiet
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_wsgi_round_trips_every_builtin_codec(serve_wsgi: Callable[..., str]) -> None:
    with HTTPDataClient(url=serve_wsgi()) as client:
        assert client.send("/echo", [1, {"a": None}]) == [1, {"a": None}]
        assert client.send("/echo", "héllo") == "héllo"
        assert client.send("/echo", b"\x00" * 300_000) == b"\x00" * 300_000
        assert client.send("/resource/ü b", 1) == ["/resource/ü b", 1]
        client.wait_ready(5)


def test_wsgi_has_the_same_error_statuses(serve_wsgi: Callable[..., str]) -> None:
    url = serve_wsgi(max_body_size=1000)
    with HTTPDataClient(url=url) as client:
        with pytest.raises(ResourceNotFound):
            client.send("/none", 1)
        with pytest.raises(RemoteError) as info:
            client.send("/raise", 1)
        assert info.value.exception_type == "ValueError"
        assert "Traceback" not in info.value.detail
        with pytest.raises(PayloadTooLarge):
            client.send("/echo", b"x" * 1001)
    port = int(url.rsplit(":", 1)[1])
    assert raw_exchange(port, put("/echo", b"{", "application/json")).status == 400
    assert raw_exchange(port, put("/echo", b"x", "application/x-pickle")).status == 415
    get = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert (get.status, get.headers["allow"]) == (405, "PUT, HEAD")
    head = raw_exchange(
        port, b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", head_only=True
    )
    assert head.status == 200


def test_wsgi_typed_routes_validate(serve_wsgi: Callable[..., str]) -> None:
    with HTTPDataClient(url=serve_wsgi(Typed)) as client:
        assert client.send("/point", {"x": 1, "y": 2}, type=Point) == Point(2, 4)
        with pytest.raises(BadRequest, match=r"\$\[1\]"):
            client.send("/add", [1, "x"])


def test_wsgi_auth_token(serve_wsgi: Callable[..., str]) -> None:
    url = serve_wsgi(auth_token="wsgi-secret")
    with HTTPDataClient(url=url) as anonymous, pytest.raises(Unauthorized) as info:
        anonymous.send("/echo", 1)
    assert "wsgi-secret" not in str(info.value)
    with HTTPDataClient(url=url, auth_token="wrong") as wrong, pytest.raises(Unauthorized):
        wrong.send("/echo", 1)
    with HTTPDataClient(url=url, auth_token="wsgi-secret") as client:
        assert client.send("/echo", [7]) == [7]
    reply = raw_exchange(int(url.rsplit(":", 1)[1]), put("/echo", b"1"))
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_wsgi_registry_is_an_allow_list(serve_wsgi: Callable[..., str]) -> None:
    from dataserve.codecs import CodecRegistry, MsgpackCodec

    registry = CodecRegistry()
    registry.register(MsgpackCodec())
    with HTTPDataClient(url=serve_wsgi(), registry=registry) as client:
        with pytest.raises(UnsupportedMediaType, match="application/msgpack"):
            client.send("/echo", [1])
    with HTTPDataClient(url=serve_wsgi(registry=registry), registry=registry) as client:
        assert client.send("/echo", [1]) == [1]


GUNICORN_APP = textwrap.dedent("""
    import os
    from dataserve import HTTPDataHandler
    from dataserve.wsgi import make_app

    class Data(HTTPDataHandler):
        def __init__(self):
            self.xdata = [1, 2, 3]

        def handle_request(self, resource, payload):
            if resource == "/xdata":
                return self.xdata + payload
            if resource == "/pid":
                return os.getpid()
            return None

    app = make_app(Data, auth_token=os.environ["DATASERVE_TOKEN"])
""")


def test_same_handler_runs_under_gunicorn_workers(tmp_path: Path) -> None:
    if shutil.which("gunicorn") is None and not _has_module("gunicorn"):
        pytest.skip("gunicorn is not installed")
    (tmp_path / "app.py").write_text(GUNICORN_APP)
    port = free_port()
    proc = subprocess.Popen(
        [
            *gunicorn_command(),
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            "app:app",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"DATASERVE_TOKEN": "g-token", "PATH": "", "PYTHONPATH": str(tmp_path)},
    )
    try:
        with HTTPDataClient(port=port, auth_token="g-token") as client:
            client.wait_ready(30)
            assert client.send("/xdata", [4, 5, 6]) == [1, 2, 3, 4, 5, 6]
            pids = {client.send("/pid") for _ in range(40)}
            assert pids  # every call answered by one of the workers
            with pytest.raises(ResourceNotFound):
                client.send("/nope", 1)
        with HTTPDataClient(port=port) as anonymous, pytest.raises(Unauthorized):
            anonymous.send("/xdata", [1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_wsgi_chunked_body_where_the_server_does_not_dechunk_is_411(
    serve_wsgi: Callable[..., str],
) -> None:
    # wsgiref hands the raw chunked bytes to the app and sets no wsgi.input_terminated: the
    # app must not guess where the body ends.
    port = int(serve_wsgi().rsplit(":", 1)[1])
    reply = raw_exchange(
        port,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert reply.status == 411
    assert "wsgi.input_terminated" in reply.json()["detail"]
    with HTTPDataClient(port=port) as client:
        assert client.send("/echo", [1]) == [1]


# -- under real gunicorn -------------------------------------------------------------------


def needs_gunicorn() -> None:
    if not _has_module("gunicorn"):
        pytest.skip("gunicorn is not installed")


GRACE = ("--graceful-timeout", "5")


@contextlib.contextmanager
def gunicorn(
    app_dir: Path, bind: str, *options: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``gunicorn app:app`` from ``app_dir`` in its own process group; always stopped
    (SIGTERM, then SIGKILL to the whole group) when the block ends. Output goes to
    ``app_dir/gunicorn-<n>.log``."""
    log_path = app_dir / f"gunicorn-{len(list(app_dir.glob('gunicorn-*.log')))}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*gunicorn_command(), "--bind", bind, *GRACE, *options, "app:app"],
            cwd=app_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": "", "PYTHONPATH": str(app_dir), **(env or {})},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM a process group, wait (bounded), then SIGKILL what is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


CHUNKED_APP = textwrap.dedent("""
    from typing import BinaryIO

    from dataserve import route
    from dataserve.wsgi import make_app
    from tests.conftest import Echo

    class Counts(Echo):
        @route("/count")
        def count(self, payload: BinaryIO) -> int:
            return len(payload.read())

    app = make_app(Counts, max_body_size=1000)
""")


@pytest.fixture(scope="module")
def gunicorn_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    needs_gunicorn()
    app_dir = tmp_path_factory.mktemp("gunicorn-chunked")
    (app_dir / "app.py").write_text(CHUNKED_APP)
    port = free_port()
    root = str(Path(__file__).resolve().parent.parent)
    with gunicorn(app_dir, f"127.0.0.1:{port}", env={"PYTHONPATH": f"{app_dir}:{root}"}):
        with HTTPDataClient(port=port) as client:
            client.wait_ready(30)
        yield port


CHUNKED_HEAD = (
    b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n"
)


def _still_serves(port: int) -> None:
    with HTTPDataClient(port=port) as client:
        assert client.send("/echo", [1, "two"]) == [1, "two"]


def test_gunicorn_serves_a_chunked_body_split_across_sends(gunicorn_port: int) -> None:
    body = b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nT: v\r\n\r\n"
    message = CHUNKED_HEAD + b"Connection: close\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", gunicorn_port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(message), 7):
            sock.sendall(message[start : start + 7])
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"hello world")
    _still_serves(gunicorn_port)


def test_gunicorn_chunked_body_over_max_body_size_is_413(gunicorn_port: int) -> None:
    with socket.create_connection(("127.0.0.1", gunicorn_port), timeout=10) as sock:
        sock.sendall(CHUNKED_HEAD + b"Connection: close\r\n\r\n" + b"3e9\r\n" + b"x" * 1001)
        sock.sendall(b"\r\n0\r\n\r\n")
        reply = read_reply(sock)
    assert reply.status == 413
    assert "1000 bytes" in reply.json()["detail"]
    _still_serves(gunicorn_port)


def test_gunicorn_chunked_body_of_max_body_size_is_served(gunicorn_port: int) -> None:
    body = b"".join(b"64\r\n" + b"%03d" % i * 33 + b"z\r\n" for i in range(10)) + b"0\r\n\r\n"
    reply = raw_exchange(gunicorn_port, CHUNKED_HEAD + b"Connection: close\r\n\r\n" + body)
    assert (reply.status, len(reply.body)) == (200, 1000)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),  # passed to the app, which refuses
        (b"Transfer-Encoding: gzip\r\n", 400),  # gunicorn's own 400
        (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400),  # gunicorn's own
    ],
)
def test_gunicorn_refuses_what_the_server_refuses(
    gunicorn_port: int, fields: bytes, status: int
) -> None:
    reply = raw_exchange(
        gunicorn_port,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + fields + b"\r\n0\r\n\r\n",
    )
    assert reply.status == status
    _still_serves(gunicorn_port)


FRAMING = [
    (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400),  # smuggling
    (b"Transfer-Encoding: gzip\r\n", 400),  # does not end in chunked
    (b"Transfer-Encoding: gzip, chunked\r\n", 501),  # a coding not applied
    (b"", 411),  # a PUT without framing
    (b"Content-Length: 1001\r\n", 413),
]


@pytest.mark.parametrize(("framing", "status"), FRAMING, ids=[str(s) for _, s in FRAMING])
def test_wsgi_frames_a_body_as_the_socket_server_does(
    serve_wsgi: Callable[..., str],
    make_server: Callable[..., Any],
    framing: bytes,
    status: int,
) -> None:
    # One wire decides, under both backends: the same bytes get the same status and detail.
    request = (
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + framing
        + b"Connection: close\r\n\r\n"
    )
    wsgi_port = int(serve_wsgi(max_body_size=1000).rsplit(":", 1)[1])
    server = make_server(max_body_size=1000)
    under_wsgi = raw_exchange(wsgi_port, request)
    on_socket = raw_exchange(server.port, request)
    assert under_wsgi.status == on_socket.status == status
    assert under_wsgi.json()["detail"] == on_socket.json()["detail"]
    with HTTPDataClient(port=wsgi_port) as client:
        assert client.send("/echo", [1]) == [1]


def test_wsgi_head_with_a_refused_framing_gets_no_body(serve_wsgi: Callable[..., str]) -> None:
    port = int(serve_wsgi().rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))  # wsgiref closes after one
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    assert body == b""


class Counts(Echo):
    """Echo, plus a route that reads its body as a stream."""

    @route("/count")
    def count(self, payload: BinaryIO) -> int:
        return len(payload.read())


def _half_closed_exchange(port: int, request: bytes) -> Any:
    """Send ``request``, close the sending side (the body ends there), read the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return read_reply(sock)


CUT_SHORT = (
    b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: 10\r\n\r\n12345"
)


@pytest.mark.parametrize("resource", [b"/echo", b"/count"], ids=["decoded", "streamed"])
def test_a_body_shorter_than_its_content_length_is_400_from_the_wire_on_both_backends(
    serve_wsgi: Callable[..., str],
    make_server: Callable[..., Any],
    resource: bytes,
) -> None:
    # One wire decides (body_cut_short): the connection ending mid-body on the socket
    # server, wsgi.input running out under WSGI; the same status and detail.
    wsgi_port = int(serve_wsgi(Counts).rsplit(":", 1)[1])
    server = make_server(Counts)
    request = CUT_SHORT % resource
    under_wsgi = _half_closed_exchange(wsgi_port, request)
    on_socket = _half_closed_exchange(server.port, request)
    assert under_wsgi.status == on_socket.status == 400
    detail = on_socket.json()["detail"]
    assert detail == under_wsgi.json()["detail"]
    assert detail.startswith("the request body ended after 5 of the 10 bytes its Content-Length")
    for url in (server.url, f"http://127.0.0.1:{wsgi_port}"):
        with HTTPDataClient(url=url) as client:
            assert client.send("/count", b"abc") == 3


@pytest.mark.parametrize("resource", [b"/echo", b"/count"], ids=["decoded", "streamed"])
def test_a_chunked_body_cut_short_on_the_socket_server_is_400(
    make_server: Callable[..., Any], resource: bytes
) -> None:
    server = make_server(Counts)
    request = (
        b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab" % resource
    )
    reply = _half_closed_exchange(server.port, request)
    assert reply.status == 400
    assert reply.json()["detail"].startswith(
        "the request body ended after 7 bytes, before the last chunk"
    )
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/count", b"abc") == 3


def test_gunicorn_answers_a_body_cut_short_as_the_socket_server_does(
    gunicorn_port: int, make_server: Callable[..., Any]
) -> None:
    server = make_server(Echo)
    under_gunicorn = _half_closed_exchange(gunicorn_port, CUT_SHORT % b"/echo")
    on_socket = _half_closed_exchange(server.port, CUT_SHORT % b"/echo")
    assert under_gunicorn.status == on_socket.status == 400
    assert under_gunicorn.json()["detail"] == on_socket.json()["detail"]
    _still_serves(gunicorn_port)


def _chunked_request(resource: bytes, size: int, piece: int = 300) -> bytes:
    body = b"".join(
        b"%x\r\n%s\r\n" % (len(p), p)
        for p in (b"q" * min(piece, size - i) for i in range(0, size, piece))
    )
    return (
        b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % resource + body + b"0\r\n\r\n"
    )


def test_one_limit_for_chunked_bodies_decoded_or_streamed_on_both_backends(
    gunicorn_port: int, make_server: Callable[..., Any]
) -> None:
    # max_body_size exists once, in the wire: a chunked body one byte past it gets the
    # wire's 413 whether the route decodes it or reads it as a stream, on either backend.
    server = make_server(Counts, max_body_size=1000)
    details = set()
    for port in (server.port, gunicorn_port):
        for resource in (b"/echo", b"/count"):
            reply = raw_exchange(port, _chunked_request(resource, 1001))
            assert reply.status == 413, (port, resource, reply.body)
            details.add(reply.json()["detail"])
            at_limit = raw_exchange(port, _chunked_request(resource, 1000))
            assert at_limit.status == 200
            assert at_limit.body == (b"q" * 1000 if resource == b"/echo" else b"1000")
        _still_serves(port)
    assert details == {"chunked body over this server's limit of 1000 bytes"}
