"""The access log (``access_log=True``, ``dataserve serve --access-log``): one line per reply."""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from dataserve import (
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    ResourceNotFound,
    Unauthorized,
    route,
)

from .conftest import Echo, Gate, free_port, put, raw_exchange, read_reply

TOKEN = "s3cret-token-7f1c"
WRONG = "wrong-token-93ab"
PAYLOAD = "PAYLOAD-MARKER-5e2d"


class AccessLines(logging.Handler):
    """Collects the records of the ``dataserve.access`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def wait_for(self, count: int) -> list[logging.LogRecord]:
        """The first ``count`` records, once logged (after the reply: wait, bounded)."""
        deadline = time.monotonic() + 10
        while len(self.records) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(self.records)} access lines, expected {count}")
            time.sleep(0.01)
        return self.records[:count]

    def text(self) -> str:
        """Every record, formatted, with every attribute it carries."""
        return "\n".join(f"{r.getMessage()} {vars(r)}" for r in self.records)


@pytest.fixture
def access() -> Iterator[AccessLines]:
    logger = logging.getLogger("dataserve.access")
    lines = AccessLines()
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(lines)
    logger.setLevel(level)


def keep_alive(request: bytes) -> bytes:
    return request.replace(b"Connection: close\r\n", b"")


def test_each_reply_is_one_line_with_its_fields(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server(access_log=True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        host, port = sock.getsockname()
        client = f"{host}:{port}"
        sock.sendall(keep_alive(put("/echo", b"[1,2]")))
        assert read_reply(sock).status == 200
        sock.sendall(keep_alive(put("/none", b"1")))
        assert read_reply(sock).status == 404
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_reply(sock, head_only=True).status == 200
    ok, missing, head = access.wait_for(3)
    assert ok.getMessage().startswith(f"{client} PUT '/echo' 200 in=5 out=5 ")
    assert ok.getMessage().endswith("ms")
    fields = ("client", "method", "resource", "status", "bytes_in", "bytes_out")
    assert [vars(ok)[name] for name in fields] == [client, "PUT", "/echo", 200, 5, 5]
    assert vars(ok)["duration_ms"] >= 0.0
    assert (ok.levelno, ok.name) == (logging.INFO, "dataserve.access")
    assert missing.getMessage().startswith(f"{client} PUT '/none' 404 in=1 out=")
    assert vars(missing)["bytes_out"] > 0  # the problem+json body
    assert head.getMessage().startswith(f"{client} HEAD '/' 200 in=0 out=0 ")


def test_404_and_401_lines_never_show_the_token_or_the_payload(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server(access_log=True, auth_token=TOKEN)
    with HTTPDataClient(url=server.url, auth_token=TOKEN) as client:
        assert client.send("/echo", PAYLOAD) == PAYLOAD
        with pytest.raises(ResourceNotFound):
            client.send("/none", PAYLOAD)
    access.wait_for(2)  # logged after the reply: before another connection's line
    with HTTPDataClient(url=server.url, auth_token=WRONG) as client:
        with pytest.raises(Unauthorized):
            client.send("/echo", PAYLOAD)
    ok, missing, refused = access.wait_for(3)
    assert " PUT '/echo' 200 in=19 out=19 " in ok.getMessage()
    assert " PUT '/none' 404 in=19 " in missing.getMessage()
    assert " PUT '/echo' 401 in=0 " in refused.getMessage()  # refused before its body
    assert refused.getMessage().startswith("127.0.0.1:")
    text = access.text()
    for secret in (TOKEN, WRONG, PAYLOAD, "Bearer", "Authorization"):
        assert secret not in text


def test_query_strings_and_line_breaks_never_reach_the_log(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server(access_log=True)
    # Each line is logged after its reply is sent: wait for it before the next request, or
    # two connections' threads may log in either order.
    assert raw_exchange(server.port, put("/echo?key=hidden-value", b"1")).status == 200
    access.wait_for(1)
    assert raw_exchange(server.port, put("/a%0D%0Afake%20200%20line", b"1")).status == 200
    access.wait_for(2)
    assert raw_exchange(server.port, b"PUT /nolength?key=hidden-value HTTP/1.1\r\nHost: t\r\n\r\n")
    query, crlf, refused = access.wait_for(3)
    assert " PUT '/echo' 200 " in query.getMessage()
    assert " PUT '/a\\r\\nfake 200 line' 200 " in crlf.getMessage()
    assert not {"\r", "\n"} & set(crlf.getMessage())
    assert " PUT '/nolength' 411 in=0 " in refused.getMessage()  # refused in its head
    assert "hidden-value" not in access.text()


def test_a_body_that_never_arrives_whole_is_logged_as_408_of_its_resource(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server(access_log=True, request_timeout=0.5)
    head = b"PUT /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n1"
    assert raw_exchange(server.port, head).status == 408
    (late,) = access.wait_for(1)
    assert " PUT '/slow' 408 in=0 " in late.getMessage()


def test_a_503_at_the_connection_limit_is_logged(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    gate = Gate()
    server = make_server(gate, access_log=True, max_connections=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as held:
        held.sendall(put("/wait", b"1"))
        gate.wait_entered(1)
        try:
            assert raw_exchange(server.port, put("/echo", b"1")).status == 503
            (refused,) = access.wait_for(1)
        finally:
            gate.release.set()
        assert read_reply(held).status == 200
    assert refused.getMessage().startswith("127.0.0.1:")
    assert " - - 503 in=0 out=" in refused.getMessage()  # refused before any request


def test_nothing_is_logged_by_default(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server()
    with HTTPDataClient(url=server.url) as client:
        for _ in range(3):
            assert client.send("/echo", [1]) == [1]
        with pytest.raises(ResourceNotFound):
            client.send("/none", 1)
    assert raw_exchange(server.port, b"PUT /x HTTP/1.1\r\nHost: t\r\n\r\n").status == 411
    server.shutdown()  # joins its connection threads: any line they log is logged by now
    assert access.records == []
    logged = make_server(access_log=True)  # and the handler was listening all along
    with HTTPDataClient(url=logged.url) as client:
        assert client.send("/marker", 1) == 1
    (only,) = access.wait_for(1)
    assert " '/marker' " in only.getMessage()


HANDLER = textwrap.dedent(
    """
    from dataserve import HTTPDataHandler

    class H(HTTPDataHandler):
        def handle_request(self, resource, payload):
            return None if resource == "/none" else payload
    """
)


def test_serve_with_access_log_writes_each_line_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "accesshandler.py").write_text(HANDLER)
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", ACCESS_TOKEN=TOKEN)
    command = [sys.executable, "-m", "dataserve", "serve", "accesshandler:H"]
    options = ["--port", str(port), "--auth-token-env", "ACCESS_TOKEN", "--access-log"]
    proc = subprocess.Popen(
        [*command, *options],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        out = b""
        deadline = time.monotonic() + 15
        while b"serving" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        assert b"serving" in out, out
        with HTTPDataClient(port=port, auth_token=TOKEN) as client:
            assert client.send("/xdata", PAYLOAD) == PAYLOAD
            with pytest.raises(ResourceNotFound):
                client.send("/none", 1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = err.decode().splitlines()
    assert len(lines) == 2, lines
    assert " PUT '/xdata' 200 in=19 out=19 " in lines[0]
    assert " PUT '/none' 404 in=1 " in lines[1]
    assert all(" 127.0.0.1:" in line and line.endswith("ms") for line in lines)
    assert TOKEN not in err.decode()
    assert PAYLOAD not in err.decode()


def test_a_unix_socket_client_is_logged_as_a_dash(access: AccessLines) -> None:
    import tempfile

    directory = tempfile.mkdtemp(prefix="ds-log-", dir="/tmp")
    path = os.path.join(directory, "log.sock")
    try:
        with HTTPDataServer(Echo, unix_socket=path, access_log=True) as server:
            with HTTPDataClient(unix_socket=path) as client:
                assert client.send("/xdata", [1]) == [1]
            (record,) = access.wait_for(1)
        assert server.port == 0
        assert record.getMessage().startswith("- PUT '/xdata' 200 in=3 out=3 ")
        assert record.client == "-"  # type: ignore[attr-defined]
    finally:
        os.rmdir(directory)


@pytest.mark.parametrize(
    ("request_bytes", "line"),
    [
        # Refused by the grammar of a field: the head never parsed whole.
        (
            b"PUT /bad?key=hidden-value HTTP/1.1\r\nHost: t\r\nBad Field: x\r\n\r\n",
            "PUT '/bad' 400",
        ),
        (b"GET /g%C3%BC HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", "GET '/gü' 400"),
        # HTTP/1.1 without Host: the line alone says the method and resource.
        (b"PUT /nohost HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "PUT '/nohost' 400"),
        # Refused by the core after the wire parsed the head.
        (b"DELETE /del HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "DELETE '/del' 405"),
        # No valid request line: nothing to tell.
        (b"PUT /v HTTP/2.0\r\nHost: t\r\n\r\n", "- - 505"),
        (b"PUT " + b"/" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", "- - 414"),
    ],
    ids=["bad-field", "control-byte", "no-host", "405", "505", "414"],
)
def test_a_request_refused_in_its_head_is_logged_from_what_the_wire_parsed(
    make_server: Callable[..., HTTPDataServer],
    access: AccessLines,
    request_bytes: bytes,
    line: str,
) -> None:
    server = make_server(access_log=True)
    status = int(line.rsplit(" ", 1)[1])
    assert raw_exchange(server.port, request_bytes).status == status
    (refused,) = access.wait_for(1)
    assert f" {line} in=0 " in refused.getMessage()
    assert "hidden-value" not in access.text()
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/echo", [1]) == [1]


def test_a_head_that_never_arrives_whole_is_logged_as_408_of_its_resource(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server(access_log=True, request_timeout=0.5)
    head = b"PUT /slowhead?key=hidden-value HTTP/1.1\r\nHost: t\r\nContent-Len"
    assert raw_exchange(server.port, head).status == 408
    (late,) = access.wait_for(1)
    assert " PUT '/slowhead' 408 in=0 " in late.getMessage()
    assert "hidden-value" not in access.text()


class Files(HTTPDataHandler):
    """A route that reads its body as a stream, and one that returns a file."""

    @route("/count")
    def count(self, payload: BinaryIO) -> int:
        return len(payload.read())

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/file":
            return io.BytesIO(b"z" * int(payload))
        if resource == "/pipe":
            return Unsized(b"y" * int(payload))
        return None


class Unsized(io.RawIOBase):
    """A readable file of unknown size (no fileno, no seek): sent chunked."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def test_streamed_bodies_and_returned_files_are_logged(
    make_server: Callable[..., HTTPDataServer], access: AccessLines
) -> None:
    server = make_server(Files(), access_log=True)
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/count", b"x" * 300_000) == 300_000
        access.wait_for(1)  # each line is logged after its reply: keep them in order
        assert client.send("/file", 70_000) == b"z" * 70_000
        access.wait_for(2)
        assert client.send("/pipe", 5000) == b"y" * 5000
        access.wait_for(3)
        assert client.send("/count", io.BytesIO(b"w" * 1234)) == 1234
    streamed, file, pipe, again = access.wait_for(4)
    assert " PUT '/count' 200 in=300000 out=6 " in streamed.getMessage()
    assert " PUT '/file' 200 in=5 out=70000 " in file.getMessage()
    assert " PUT '/pipe' 200 in=4 out=5000 " in pipe.getMessage()
    assert " PUT '/count' 200 in=1234 out=4 " in again.getMessage()
