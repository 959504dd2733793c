"""Unix domain sockets (SPEC 13): server, client, CLI and gunicorn, on real socket files.

The socket files live in short directories under /tmp: pytest's tmp_path can be longer than
the 107 bytes AF_UNIX allows.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings

from dataserve import (
    ConnectError,
    ConnectTimeout,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    PayloadTooLarge,
    ResourceNotFound,
    TransportError,
    Unauthorized,
)
from dataserve.codecs import CodecRegistry, MsgpackCodec

from .conftest import Echo, gunicorn_command, put, read_reply
from .strategies import json_values
from .test_properties import same
from .test_typed import Point, Typed

TIMEOUT = 30.0


def short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ds-", dir="/tmp"))


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = short_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def unix_server() -> Iterator[HTTPDataServer]:
    path = short_dir()
    try:
        with HTTPDataServer(Echo, unix_socket=path / "echo.sock") as server:
            yield server
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def unix_client(unix_server: HTTPDataServer) -> Iterator[HTTPDataClient]:
    with HTTPDataClient(url=unix_server.url) as client:
        yield client


@pytest.fixture
def make_unix_server(sock_dir: Path) -> Iterator[Callable[..., HTTPDataServer]]:
    """Start servers on socket files in one temp dir; each is shut down when the test ends."""
    servers: list[HTTPDataServer] = []

    def make(handler: Any = Echo, name: str = "data.sock", **options: Any) -> HTTPDataServer:
        server = HTTPDataServer(handler, unix_socket=sock_dir / name, **options).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


def raw_unix_exchange(path: str, request: bytes, timeout: float = 5.0) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request)
        return read_reply(sock)


def mode_of(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class Recording(HTTPDataHandler):
    built: ClassVar[list[int]] = []

    def __init__(self) -> None:
        Recording.built.append(1)

    def handle_request(self, resource: str, payload: Any) -> object:
        return payload


class Where(HTTPDataHandler):
    def handle_request(self, resource: str, payload: Any) -> object:
        return resource


# -- the server ---------------------------------------------------------------------------


def test_server_on_unix_socket_has_http_unix_url_and_port_zero(
    make_unix_server: Callable[..., HTTPDataServer], sock_dir: Path
) -> None:
    server = make_unix_server()
    path = str(sock_dir / "data.sock")
    assert server.unix_socket == path
    assert server.url == "http+unix://" + quote(path, safe="")
    assert server.url.startswith("http+unix://%2Ftmp%2Fds-")
    assert server.port == 0
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert repr(server) == f"<HTTPDataServer Echo at {server.url}>"


def test_relative_socket_path_is_made_absolute(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sock_dir)
    with HTTPDataServer(Echo, unix_socket="rel.sock") as server:
        assert server.unix_socket == str(sock_dir / "rel.sock")
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", [1]) == [1]


def test_every_builtin_codec_round_trips_over_unix_socket(unix_client: HTTPDataClient) -> None:
    assert unix_client.send("/echo", [1, {"a": None, "b": 2.5}]) == [1, {"a": None, "b": 2.5}]
    assert unix_client.send("/echo", "héllo\n") == "héllo\n"
    assert unix_client.send("/echo", b"\x00\xff" * 10) == b"\x00\xff" * 10
    big = bytes(range(256)) * 8192  # 2 MB: the body goes out after the head, not with it
    assert unix_client.send("/echo", big) == big
    assert unix_client.send("/resource/ü b", 1) == ["/resource/ü b", 1]


def test_msgpack_round_trips_over_unix_socket(sock_dir: Path) -> None:
    registry = CodecRegistry(plugins=False)
    registry.register(MsgpackCodec())
    path = sock_dir / "mp.sock"
    with (
        HTTPDataServer(Echo, unix_socket=path, registry=registry),
        HTTPDataClient(unix_socket=path, registry=registry) as client,
    ):
        assert client.send("/echo", {"k": [1, 2, b"\x00"]}) == {"k": [1, 2, b"\x00"]}


def test_numpy_round_trips_over_unix_socket(sock_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    from dataserve.codecs.numpy import NumpyCodec

    registry = CodecRegistry(plugins=False)
    registry.register(NumpyCodec())
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    with (
        HTTPDataServer(Echo, unix_socket=sock_dir / "np.sock", registry=registry) as server,
        HTTPDataClient(url=server.url, registry=registry) as client,
    ):
        back = client.send("/echo", array)
    assert back.dtype == array.dtype
    assert np.array_equal(back, array)


def test_typed_routes_over_unix_socket(sock_dir: Path) -> None:
    with (
        HTTPDataServer(Typed, unix_socket=sock_dir / "t.sock") as server,
        HTTPDataClient(url=server.url) as client,
    ):
        assert client.send("/point", {"x": 1, "y": 2}, type=Point) == Point(2, 4)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=json_values)
def test_every_json_value_round_trips_over_unix_socket(
    unix_client: HTTPDataClient, value: object
) -> None:
    if value is None:
        return  # None is "not handled" to the echo handler (404)
    assert same(unix_client.send("/echo", value), value)


def test_keep_alive_reuses_one_connection_over_unix_socket(
    make_unix_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_unix_server()
    with HTTPDataClient(url=server.url) as client:
        for i in range(20):
            assert client.send("/echo", [i]) == [i]
        pool: Any = client._pool
        assert pool.num_connections == 1
        assert len(server._connections) == 1


def test_eight_threads_share_one_client_over_unix_socket(unix_server: HTTPDataServer) -> None:
    errors: list[BaseException] = []
    with HTTPDataClient(unix_socket=str(unix_server.unix_socket), pool_size=8) as client:

        def work(n: int) -> None:
            try:
                for i in range(25):
                    assert client.send("/echo", [n, i]) == [n, i]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        pool: Any = client._pool
        assert pool.num_connections <= 8
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)


# -- the socket file ----------------------------------------------------------------------


def test_socket_file_is_owner_only_by_default_whatever_the_umask(sock_dir: Path) -> None:
    old = os.umask(0)  # nothing masked: the 0o600 comes from the server, not the umask
    try:
        with HTTPDataServer(Echo, unix_socket=sock_dir / "a.sock"):
            assert mode_of(sock_dir / "a.sock") == 0o600
    finally:
        os.umask(old)


def test_unix_socket_mode_sets_the_exact_mode_beyond_the_umask(sock_dir: Path) -> None:
    old = os.umask(0o077)  # would cut the group bits: the server sets them anyway
    try:
        with HTTPDataServer(Echo, unix_socket=sock_dir / "g.sock", unix_socket_mode=0o660) as srv:
            assert mode_of(sock_dir / "g.sock") == 0o660
            with HTTPDataClient(url=srv.url) as client:
                assert client.send("/echo", [1]) == [1]
    finally:
        os.umask(old)


def test_socket_file_is_born_owner_only_even_for_a_wider_mode(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mode the file has when bind() creates it, seen at the chmod() that widens it: no
    # instant in which another user could connect.
    born: list[int] = []
    real_chmod = os.chmod

    def chmod(path: Any, mode: int, **kwargs: Any) -> None:
        born.append(mode_of(path))
        real_chmod(path, mode, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod)
    old = os.umask(0)
    try:
        with HTTPDataServer(Echo, unix_socket=sock_dir / "w.sock", unix_socket_mode=0o666):
            assert mode_of(sock_dir / "w.sock") == 0o666
    finally:
        os.umask(old)
    assert born == [0o600]


def test_stale_socket_file_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # what a killed server leaves: a socket file nobody listens on
    dead.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with HTTPDataServer(Echo, unix_socket=path) as server:
        assert mode_of(path) == 0o600
        with HTTPDataClient(url=server.url) as client:
            assert client.send("/echo", "fresh") == "fresh"


def test_live_socket_file_is_refused_before_the_handler_is_built(
    make_unix_server: Callable[..., HTTPDataServer], sock_dir: Path
) -> None:
    first = make_unix_server()
    Recording.built.clear()
    with pytest.raises(OSError, match=r"another server is listening on '.*data\.sock'") as info:
        HTTPDataServer(Recording, unix_socket=sock_dir / "data.sock")
    assert "stop it or choose another path" in str(info.value)
    assert Recording.built == []  # the handler was never constructed
    assert os.path.exists(sock_dir / "data.sock")
    with HTTPDataClient(url=first.url) as client:
        assert client.send("/echo", [2]) == [2]


def test_socket_another_program_listens_on_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "other.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen(1)
        Recording.built.clear()
        with pytest.raises(OSError, match="another server is listening"):
            HTTPDataServer(Recording, unix_socket=path)
        assert Recording.built == []
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_path_that_is_not_a_socket_is_refused_and_kept(sock_dir: Path, kind: str) -> None:
    path = sock_dir / "not-a-socket"
    if kind == "file":
        path.write_bytes(b"precious data")
    elif kind == "directory":
        path.mkdir()
    else:
        (sock_dir / "target").write_bytes(b"precious data")
        path.symlink_to(sock_dir / "target")
    Recording.built.clear()
    with pytest.raises(OSError, match="exists and is not a socket; it was left alone"):
        HTTPDataServer(Recording, unix_socket=path)
    assert Recording.built == []
    if kind == "directory":
        assert path.is_dir()
    else:
        assert path.read_bytes() == b"precious data"


def test_socket_file_is_removed_at_shutdown(sock_dir: Path) -> None:
    path = sock_dir / "gone.sock"
    with HTTPDataServer(Echo, unix_socket=path) as server:
        with HTTPDataClient(url=server.url) as client:
            client.send("/echo", 1)  # an idle keep-alive connection open at shutdown
            assert path.exists()
        never_started = HTTPDataServer(Echo, unix_socket=sock_dir / "unused.sock")
        assert (sock_dir / "unused.sock").exists()
        never_started.shutdown()
        assert not (sock_dir / "unused.sock").exists()
    assert not path.exists()


def test_shutdown_keeps_a_socket_file_that_is_no_longer_its_own(sock_dir: Path) -> None:
    path = sock_dir / "shared.sock"
    old = HTTPDataServer(Echo, unix_socket=path).start()
    try:
        os.unlink(path)  # e.g. removed by hand, and a new server started on the path
        with HTTPDataServer(Where, unix_socket=path) as new:
            old.shutdown()
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            with HTTPDataClient(url=new.url) as client:
                assert client.send("/mine", 1) == "/mine"
    finally:
        old.shutdown()


def test_client_reconnects_after_server_restart_on_same_path(sock_dir: Path) -> None:
    path = sock_dir / "restart.sock"
    with HTTPDataClient(unix_socket=path) as client:
        with HTTPDataServer(Echo, unix_socket=path):
            assert client.send("/echo", [1]) == [1]
        with HTTPDataServer(Where, unix_socket=path):
            assert client.send("/after", [2]) == "/after"  # no error: a fresh connection


def test_too_long_socket_path_is_a_clear_error(sock_dir: Path) -> None:
    deep = sock_dir / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "data.sock"
    Recording.built.clear()
    with pytest.raises(ValueError, match=r"bytes long; AF_UNIX allows at most 10[37] here"):
        HTTPDataServer(Recording, unix_socket=path)
    assert Recording.built == []
    with pytest.raises(ValueError, match="bytes long"):
        HTTPDataClient(unix_socket=path)
    with pytest.raises(ValueError, match="bytes long"):
        HTTPDataClient(url="http+unix://" + quote(str(path), safe=""))


def test_unix_socket_with_port_host_or_tls_is_rejected(sock_dir: Path) -> None:
    import ssl

    path = sock_dir / "x.sock"
    for options in (
        {"port": 5001},
        {"host": "0.0.0.0"},
        {"ssl_context": ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)},
    ):
        with pytest.raises(ValueError, match="unix_socket= replaces port, host and ssl_context"):
            HTTPDataServer(Echo, unix_socket=path, **options)
    assert not path.exists()
    with pytest.raises(ValueError, match="unix_socket_mode"):
        HTTPDataServer(Echo, unix_socket=path, unix_socket_mode=0o1777)
    with pytest.raises(ValueError, match="not both"):
        HTTPDataClient(5001, unix_socket=path)
    with pytest.raises(ValueError, match="not both"):
        HTTPDataClient(url="http://127.0.0.1:5001", unix_socket=path)
    with pytest.raises(ValueError, match="ssl_context is for https"):
        HTTPDataClient(unix_socket=path, ssl_context=ssl.create_default_context())


# -- the client ---------------------------------------------------------------------------


def test_missing_socket_file_is_connect_error_naming_the_path(sock_dir: Path) -> None:
    path = str(sock_dir / "absent.sock")
    with HTTPDataClient(unix_socket=path) as client, pytest.raises(ConnectError) as info:
        client.send("/echo", 1)
    assert str(info.value) == (
        f"Could not connect to http+unix://{quote(path, safe='')}/echo: "
        f"no socket file at {path!r}; is the server running, and is that its path?"
    )
    assert info.value.url == f"http+unix://{quote(path, safe='')}/echo"


def test_stale_socket_file_is_connect_error_saying_nothing_listens(sock_dir: Path) -> None:
    path = sock_dir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    with HTTPDataClient(unix_socket=path) as client, pytest.raises(ConnectError) as info:
        client.send("/echo", 1)
    assert str(info.value) == (
        f"Could not connect to http+unix://{quote(str(path), safe='')}/echo: nothing is "
        f"listening on {str(path)!r} (a stale socket file); is the server running?"
    )


def test_connect_timeout_applies_when_the_listen_queue_is_full(sock_dir: Path) -> None:
    path = str(sock_dir / "full.sock")
    queued: list[socket.socket] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(0)  # never accepts: the queue fills after a connection or two
        try:
            for _ in range(16):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                queued.append(sock)
                sock.setblocking(False)
                try:
                    sock.connect(path)
                except BlockingIOError:
                    break
            else:
                pytest.fail("the listen queue never filled")
            with (
                HTTPDataClient(unix_socket=path, connect_timeout=0.2) as client,
                pytest.raises(ConnectTimeout, match="within the connect timeout"),
            ):
                client.send("/echo", 1)
        finally:
            for sock in queued:
                sock.close()


def test_url_with_unencoded_path_is_rejected_with_an_example() -> None:
    with pytest.raises(ValueError, match=r"percent-encoded.*http\+unix://%2Frun%2Fapp"):
        HTTPDataClient(url="http+unix:///tmp/data.sock")


def test_url_path_after_the_socket_is_a_prefix(
    make_unix_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_unix_server(Where)
    with HTTPDataClient(url=server.url + "/api/") as client:
        assert client.url == server.url
        assert client.send("/thing", 1) == "/api/thing"


def test_client_sends_host_localhost_over_unix_socket(sock_dir: Path) -> None:
    path = str(sock_dir / "raw.sock")
    heads: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(TIMEOUT)

        def serve_one() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                data = b""
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                heads.append(data.partition(b"\r\n\r\n")[0])
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n[]"
                )

        thread = threading.Thread(target=serve_one)
        thread.start()
        try:
            with HTTPDataClient(unix_socket=path) as client:
                assert client.send("/x", 1) == []
        finally:
            thread.join(TIMEOUT)
    assert len(heads) == 1
    lines = heads[0].split(b"\r\n")
    assert lines[0] == b"PUT /x HTTP/1.1"
    assert b"Host: localhost" in lines[1:]


def test_repr_and_errors_show_the_http_unix_url(unix_server: HTTPDataServer) -> None:
    with HTTPDataClient(unix_socket=str(unix_server.unix_socket)) as client:
        assert repr(client) == f"<HTTPDataClient {unix_server.url}>"
        assert client.url == unix_server.url
        with pytest.raises(ResourceNotFound) as info:
            client.send("/none", 1)
    assert info.value.url == unix_server.url + "/none"
    assert unix_server.url + "/none" in str(info.value)


def test_wait_ready_over_unix_socket(unix_server: HTTPDataServer, sock_dir: Path) -> None:
    with HTTPDataClient(url=unix_server.url) as client:
        client.wait_ready(5)
    missing = str(sock_dir / "nobody.sock")
    with HTTPDataClient(unix_socket=missing) as client:
        with pytest.raises(TransportError, match=r"was not ready within 0\.3 s") as info:
            client.wait_ready(0.3)
    assert f"no socket file at {missing!r}" in str(info.value)


def test_wait_ready_waits_for_a_server_that_starts_later(sock_dir: Path) -> None:
    path = sock_dir / "late.sock"
    started = threading.Event()
    servers: list[HTTPDataServer] = []

    def start_later() -> None:
        started.wait(TIMEOUT)
        time.sleep(0.2)
        servers.append(HTTPDataServer(Echo, unix_socket=path).start())

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        with HTTPDataClient(unix_socket=path) as client:
            started.set()
            client.wait_ready(TIMEOUT)
            assert client.send("/echo", [3]) == [3]
    finally:
        thread.join(TIMEOUT)
        for server in servers:
            server.shutdown()


# -- statuses, auth and limits as over TCP ------------------------------------------------


def test_auth_token_is_required_over_unix_socket(
    make_unix_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_unix_server(auth_token="unix-secret")
    with HTTPDataClient(url=server.url) as anonymous, pytest.raises(Unauthorized) as info:
        anonymous.send("/echo", 1)
    assert "unix-secret" not in str(info.value)
    with HTTPDataClient(url=server.url, auth_token="wrong") as wrong, pytest.raises(Unauthorized):
        wrong.send("/echo", 1)
    with HTTPDataClient(url=server.url, auth_token="unix-secret") as client:
        assert client.send("/echo", [7]) == [7]
        client.wait_ready(5)


def test_404_and_413_over_unix_socket_then_server_keeps_serving(
    make_unix_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_unix_server(max_body_size=1000)
    with HTTPDataClient(url=server.url) as client:
        with pytest.raises(ResourceNotFound):
            client.send("/none", 1)
        with pytest.raises(PayloadTooLarge):
            client.send("/echo", b"x" * 1001)
        with pytest.raises(PayloadTooLarge):
            client.send("/echo", b"x" * (8 << 20))  # far beyond: answered before it is read
        assert client.send("/echo", b"x" * 1000) == b"x" * 1000


def test_malformed_request_over_unix_socket_is_400_and_server_keeps_serving(
    make_unix_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_unix_server()
    path = str(server.unix_socket)
    assert raw_unix_exchange(path, put("/echo", b"{")).status == 400
    assert raw_unix_exchange(path, put("/echo", b"1", "application/x-pickle")).status == 415
    reply = raw_unix_exchange(path, b"PUT /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert reply.status == 411
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/echo", [1]) == [1]


def test_slow_request_over_unix_socket_is_408(
    make_unix_server: Callable[..., HTTPDataServer],
) -> None:
    server = make_unix_server(request_timeout=0.5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(server.unix_socket))
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: t\r\n")  # and then nothing
        reply = read_reply(sock)
    assert reply.status == 408
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/echo", [1]) == [1]


# -- the command line ---------------------------------------------------------------------

HANDLER_MODULE = textwrap.dedent(
    """
    from dataserve import HTTPDataHandler

    class CliHandler(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == "/xdata":
                return [1, 2, 3] + payload
            if resource == "/greet":
                return f"hello, {payload}"
            return None
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _dataserve(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataserve", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=_env(),
        check=False,
    )


def _read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no {marker!r} within {timeout} s: {out!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"the process exited first: {out!r}")
            out += chunk
    return out


def test_cli_serve_unix_and_send_http_unix(sock_dir: Path) -> None:
    (sock_dir / "clihandler.py").write_text(HANDLER_MODULE)
    path = str(sock_dir / "cli.sock")
    url = "http+unix://" + quote(path, safe="")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataserve", "serve", "clihandler:CliHandler", "--unix", path],
        cwd=sock_dir,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        banner = _read_until(proc, b"Ctrl-C", TIMEOUT).decode()
        assert f"serving CliHandler at {url} (socket file {path}; Ctrl-C to stop)" in banner
        assert mode_of(path) == 0o600
        sent = _dataserve("send", url, "/xdata", "--json", "[4, 5]")
        assert (sent.returncode, sent.stdout, sent.stderr) == (
            0,
            "[\n  1,\n  2,\n  3,\n  4,\n  5\n]\n",
            "",
        )
        text = _dataserve("send", url, "greet", "--text", "unix")
        assert (text.returncode, text.stdout) == (0, "hello, unix\n")
        missing = _dataserve("send", url, "/nothing", "--json", "1")
        assert missing.returncode == 1
        assert "404" in missing.stderr
        assert "Traceback" not in missing.stderr
        second = _dataserve("serve", "clihandler:CliHandler", "--unix", path, cwd=sock_dir)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"dataserve serve: another server is listening on {path!r}; "
            "stop it or choose another path"
        ]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert b"dataserve: stopped" in out
    assert not os.path.exists(path)


def test_cli_send_to_missing_socket_fails_with_one_line_naming_the_path(sock_dir: Path) -> None:
    path = str(sock_dir / "absent.sock")
    result = _dataserve("send", "http+unix://" + quote(path, safe=""), "/x", "--json", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"no socket file at {path!r}" in lines[0]


def test_cli_serve_unix_with_port_fails_with_one_line(sock_dir: Path) -> None:
    (sock_dir / "clihandler.py").write_text(HANDLER_MODULE)
    path = str(sock_dir / "cli.sock")
    result = _dataserve(
        "serve", "clihandler:CliHandler", "--unix", path, "--port", "5001", cwd=sock_dir
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "dataserve serve: --unix replaces --host and --port; give one or the other"
    ]
    assert not os.path.exists(path)


# -- gunicorn ------------------------------------------------------------------------------

GUNICORN_APP = textwrap.dedent(
    """
    import os
    from dataserve import HTTPDataHandler
    from dataserve.wsgi import make_app

    class Data(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == "/xdata":
                return [1, 2, 3] + payload
            if resource == "/pid":
                return os.getpid()
            return None

    app = make_app(Data, auth_token=os.environ["DATASERVE_TOKEN"])
    """
)


def test_wsgi_app_under_gunicorn_bound_to_a_unix_socket(sock_dir: Path) -> None:
    pytest.importorskip("gunicorn")
    (sock_dir / "app.py").write_text(GUNICORN_APP)
    path = str(sock_dir / "g.sock")
    proc = subprocess.Popen(
        [
            *gunicorn_command(),
            "--workers",
            "2",
            "--bind",
            f"unix:{path}",
            "--umask",
            "0o077",  # as the README advises: gunicorn's default (0) lets every user in
            "--graceful-timeout",
            "5",
            "app:app",
        ],
        cwd=sock_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"DATASERVE_TOKEN": "g-token", "PATH": "", "PYTHONPATH": str(sock_dir)},
    )
    try:
        with HTTPDataClient(unix_socket=path, auth_token="g-token") as client:
            client.wait_ready(TIMEOUT)
            assert mode_of(path) == 0o700
            assert client.send("/xdata", [4, 5, 6]) == [1, 2, 3, 4, 5, 6]
            pids = {client.send("/pid", type=int) for _ in range(20)}
            assert os.getpid() not in pids  # answered by gunicorn's worker processes
            assert proc.pid not in pids  # (not by its arbiter)
            with pytest.raises(ResourceNotFound):
                client.send("/nope", 1)
        with HTTPDataClient(unix_socket=path) as anonymous, pytest.raises(Unauthorized):
            anonymous.send("/xdata", [1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            with contextlib.suppress(OSError):
                proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_cli_serve_unix_on_a_live_socket_fails_before_the_handler_is_built(
    sock_dir: Path,
) -> None:
    marker = sock_dir / "built"
    (sock_dir / "markhandler.py").write_text(
        "from pathlib import Path\n"
        "from dataserve import HTTPDataHandler\n\n"
        "class MarkHandler(HTTPDataHandler):\n"
        "    def __init__(self):\n"
        f"        Path({str(marker)!r}).write_text('built')\n\n"
        "    def handle_request(self, resource, payload):\n"
        "        return payload\n"
    )
    path = str(sock_dir / "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen(4)
        result = _dataserve("serve", "markhandler:MarkHandler", "--unix", path, cwd=sock_dir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"dataserve serve: another server is listening on {path!r}; stop it or choose another path"
    ]
    assert not marker.exists()  # the handler (its data) was never loaded
