"""Large bodies streamed (SPEC 10): file payloads, ``out=``, ``progress=``, handlers returning
files or memoryviews, routes reading their body as a ``BinaryIO``, the CLI's --file/--out.

Real servers on loopback (port 0), raw sockets where the framing on the wire is the point,
gunicorn and the CLI in subprocesses. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.validate import validator

import pytest

from dataserve import (
    ConnectionLost,
    EncodeError,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    LengthRequired,
    PayloadTooLarge,
    RemoteError,
    ResourceNotFound,
    WriteTimeout,
    route,
)
from dataserve.wsgi import make_app

from .conftest import ScriptedServer, free_port, gunicorn_command, read_reply

MB = 1 << 20
WAIT = 10.0  # seconds: the bound of every wait in this file


def _blob(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that are not all the same (so an offset error shows)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def _wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _recv_head(sock: socket.socket, step: int = 65536) -> bytes:
    """Receive until the end of a message head (and perhaps more), bounded in count."""
    data = b""
    for _ in range(100_000):
        chunk = sock.recv(step)
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            return data
    raise AssertionError(f"no whole head arrived: {data[:200]!r}")


def _feed_pipe(data: bytes, piece: int = 100_000) -> tuple[BinaryIO, threading.Thread]:
    """A pipe's read end, fed with ``data`` by a thread (bounded: it ends once all is written
    or the reader is gone)."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(write_fd, "wb") as w:
                for start in range(0, len(data), piece):
                    w.write(data[start : start + piece])
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return os.fdopen(read_fd, "rb"), thread


class Streams(HTTPDataHandler):
    """Routes that stream, and a catch-all returning files, pipes and memoryviews."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dataserve-streams-"))
        self.returned: list[Any] = []  # the files handed to the server, to check they close
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def _keep(self, f: Any) -> Any:
        with self.lock:
            self.returned.append(f)
        return f

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/echo":
            return payload
        if resource == "/kind":
            return type(payload).__name__
        if resource == "/file":  # a temporary file of `payload` bytes
            data = _blob(payload, seed=1)
            f = tempfile.TemporaryFile()  # noqa: SIM115 (the server closes it)
            f.write(data)
            f.seek(0)
            return self._keep(f)
        if resource == "/file-from":  # a file positioned at `payload[1]` of `payload[0]` bytes
            size, position = payload
            f = tempfile.TemporaryFile()  # noqa: SIM115 (the server closes it)
            f.write(_blob(size, seed=1))
            f.seek(position)
            return self._keep(f)
        if resource == "/bytesio":
            return self._keep(io.BytesIO(_blob(payload, seed=2)))
        if resource == "/pipe":  # a file of unknown size
            read_end, _ = _feed_pipe(_blob(payload, seed=3))
            return self._keep(read_end)
        if resource == "/memoryview":
            return memoryview(_blob(payload, seed=4))
        if resource == "/sparse":  # a large file that costs no disk
            f = tempfile.TemporaryFile()  # noqa: SIM115 (the server closes it)
            f.truncate(payload)
            return self._keep(f)
        return None

    @route("/sha256")
    def sha256(self, payload: BinaryIO) -> list[object]:
        digest = hashlib.sha256()
        count = 0
        while chunk := payload.read(100_000):
            digest.update(chunk)
            count += len(chunk)
        return [count, digest.hexdigest()]

    @route("/to-disk")
    def to_disk(self, payload: IO[bytes]) -> list[object]:
        path = self.directory / "upload.bin"
        with open(path, "wb") as f:
            shutil.copyfileobj(payload, f)
        return [path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()]

    @route("/head10")
    def head10(self, payload: BinaryIO) -> int:
        return len(payload.read(10))

    @route("/guarded")
    def guarded(self, payload: BinaryIO) -> int:
        try:
            return len(payload.read())
        except OSError as exc:
            with self.lock:
                self.errors.append(exc)
            raise

    @route("/stream-back")
    def stream_back(self, payload: BinaryIO) -> BinaryIO:
        f = tempfile.TemporaryFile()  # noqa: SIM115 (the server closes it)
        shutil.copyfileobj(payload, f)
        f.seek(0)
        return self._keep(f)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def handler() -> Iterator[Streams]:
    h = Streams()
    yield h
    shutil.rmtree(h.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def server(handler: Streams) -> Iterator[HTTPDataServer]:
    with HTTPDataServer(handler, port=0) as srv:
        yield srv


@pytest.fixture
def client(server: HTTPDataServer) -> Iterator[HTTPDataClient]:
    with HTTPDataClient(url=server.url) as c:
        yield c


def _recording_server() -> ScriptedServer:
    """A raw server that records each request's head and body, de-chunking a chunked one,
    and answers 200 with JSON ``"ok"``."""
    return ScriptedServer(_record)


def _record(conn: socket.socket, srv: ScriptedServer) -> None:
    """Record one request (head and body, de-chunked) and answer 200 ``"ok"``."""
    rfile = conn.makefile("rb")
    with rfile:
        head = b""
        for _ in range(200):  # the head's lines
            line = rfile.readline(65537)
            if not line:
                return
            head += line
            if head.endswith(b"\r\n\r\n"):
                break
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
        }
        if fields.get(b"transfer-encoding") == b"chunked":
            parts = []
            for _ in range(100_000):  # bounded: far more chunks than any test sends
                size = int(rfile.readline(100).strip(), 16)
                if size == 0:
                    assert rfile.readline(100) == b"\r\n"  # no trailers
                    break
                parts.append(rfile.read(size))
                assert rfile.read(2) == b"\r\n"
            body = b"".join(parts)
        else:
            body = rfile.read(int(fields.get(b"content-length", b"0")))
    srv.requests.append(head + body)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b'Content-Length: 4\r\n\r\n"ok"'
    )


def _head_and_body(request: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = request.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return fields, body


# -- client: streaming out --------------------------------------------------------------------


def test_file_payload_with_a_size_travels_with_its_content_length(tmp_path: Path) -> None:
    data = _blob(3 * MB + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with _recording_server() as srv, HTTPDataClient(url=srv.url) as client:
        with open(path, "rb") as f:
            assert client.send("/up", f) == "ok"
            assert not f.closed  # the caller's file is left open
    fields, body = _head_and_body(srv.requests[0])
    assert fields["content-length"] == str(len(data))
    assert "transfer-encoding" not in fields
    assert fields["content-type"] == "application/octet-stream"
    assert body == data


def test_file_payload_is_sent_from_its_current_position(tmp_path: Path) -> None:
    data = _blob(2 * MB)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with _recording_server() as srv, HTTPDataClient(url=srv.url) as client:
        with open(path, "rb") as f:
            f.read(1000)  # a buffered file reads ahead: the size must follow tell(), not the fd
            client.send("/up", f)
        seekable = io.BytesIO(data)
        seekable.seek(MB)
        client.send("/up", seekable)  # no fileno: sized by seek/tell
    (fields, body), (fields2, body2) = map(_head_and_body, srv.requests)
    assert (fields["content-length"], body) == (str(len(data) - 1000), data[1000:])
    assert (fields2["content-length"], body2) == (str(len(data) - MB), data[MB:])


def test_pipe_payload_travels_chunked_with_its_exact_bytes() -> None:
    data = _blob(3 * MB + 5)
    pipe, feeder = _feed_pipe(data)
    with pipe, _recording_server() as srv, HTTPDataClient(url=srv.url) as client:
        assert client.send("/up", pipe) == "ok"
    feeder.join(WAIT)
    fields, body = _head_and_body(srv.requests[0])
    assert fields["transfer-encoding"] == "chunked"
    assert "content-length" not in fields
    assert body == data  # the recording server de-chunked it


class ReadOnly:
    """A reader with only ``read`` (no readinto, no fileno, no seek): sent chunked."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 70_000))


def test_reader_with_only_read_travels_chunked() -> None:
    data = _blob(MB + 3)
    with _recording_server() as srv, HTTPDataClient(url=srv.url) as client:
        client.send("/up", ReadOnly(data))
    fields, body = _head_and_body(srv.requests[0])
    assert fields["transfer-encoding"] == "chunked"
    assert body == data


def test_pipe_payload_reaches_a_binaryio_route_exactly(client: HTTPDataClient) -> None:
    data = _blob(3 * MB + 5)
    pipe, feeder = _feed_pipe(data)
    with pipe:
        assert client.send("/sha256", pipe) == [len(data), hashlib.sha256(data).hexdigest()]
    feeder.join(WAIT)


def test_chunked_upload_past_max_body_size_is_413(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    srv = make_server(Streams(), max_body_size=MB)
    pipe, feeder = _feed_pipe(_blob(4 * MB))
    with pipe, HTTPDataClient(url=srv.url) as client:
        with pytest.raises(PayloadTooLarge, match="over this server's limit of 1048576 bytes"):
            client.send("/sha256", pipe)
        assert client.send("/sha256", b"ok") == [2, hashlib.sha256(b"ok").hexdigest()]
    feeder.join(WAIT)


def _chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-T: 1\r\n\r\n"


def test_chunked_body_to_a_route_reading_part_keeps_the_connection(
    server: HTTPDataServer,
) -> None:
    body = _blob(300_000)
    first = (
        b"PUT /head10 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body)
    )
    second = (
        b"PUT /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + _chunked(b"abcdef", size=4)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(first)
        reply = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"10")
        assert "connection" not in reply.headers  # the rest, trailer and all, was drained
        sock.sendall(second)
        reply = read_reply(sock)
    assert reply.json() == [6, hashlib.sha256(b"abcdef").hexdigest()]


def test_malformed_chunk_in_a_streamed_body_is_400_and_the_server_serves_on(
    server: HTTPDataServer, client: HTTPDataClient
) -> None:
    request = (
        b"PUT /guarded HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\nnot hex\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        reply = read_reply(sock)
    assert reply.status == 400
    assert "malformed chunk-size line" in reply.json()["detail"]
    assert reply.headers["connection"] == "close"
    assert client.send("/guarded", b"abc") == 3


def test_text_mode_file_payload_is_an_encode_error_before_any_traffic(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("text")
    with _recording_server() as srv, HTTPDataClient(url=srv.url) as client:
        with open(path, encoding="utf-8") as f, pytest.raises(EncodeError, match="'rb'"):
            client.send("/up", f)
    assert srv.requests == []


class Shrinking:
    """Claims (by seek/tell) more bytes than it then delivers: a file that shrank."""

    def __init__(self, claimed: int, real: int) -> None:
        self._claimed = claimed
        self._data = io.BytesIO(b"s" * real)
        self._position = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        self._position = self._claimed if whence == io.SEEK_END else offset
        self._data.seek(min(self._position, len(self._data.getbuffer())))
        return self._position

    def readinto(self, view: Any) -> int:
        return self._data.readinto(view)


def test_file_that_shrinks_while_sent_is_an_encode_error_and_the_server_serves_on(
    server: HTTPDataServer, client: HTTPDataClient
) -> None:
    with pytest.raises(EncodeError, match=r"ended after 1048576 of the 4194304 bytes"):
        client.send("/sha256", Shrinking(4 * MB, MB))
    assert client.send("/sha256", b"abc") == [3, hashlib.sha256(b"abc").hexdigest()]


def _close_after_first_request() -> ScriptedServer:
    """First connection: read the whole request, close without a reply. Then: record and
    answer (see `_recording_server`)."""
    seen = []

    def script(conn: socket.socket, srv: ScriptedServer) -> None:
        if not seen:
            seen.append(True)
            srv.read_request(conn)
            return
        _record(conn, srv)

    return ScriptedServer(script)


def test_seekable_file_payload_is_rewound_and_resent_when_retries_allow(tmp_path: Path) -> None:
    data = _blob(2 * MB)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with _close_after_first_request() as srv, HTTPDataClient(url=srv.url, retries=1) as client:
        with open(path, "rb") as f:
            assert client.send("/up", f) == "ok"
    assert len(srv.requests) == 2
    assert _head_and_body(srv.requests[0])[1] == data
    assert _head_and_body(srv.requests[1])[1] == data  # the whole body again, from the start


def test_pipe_payload_partly_sent_is_never_replayed() -> None:
    data = _blob(MB)
    pipe, feeder = _feed_pipe(data)

    def close_after_body(conn: socket.socket, srv: ScriptedServer) -> None:
        rfile = conn.makefile("rb")
        with rfile:
            for _ in range(100_000):  # the head, then the chunked body to its last chunk
                line = rfile.readline(65537)
                if not line or line == b"0\r\n":
                    break
        srv.requests.append(b"seen")

    with pipe, ScriptedServer(close_after_body) as srv:
        with HTTPDataClient(url=srv.url, retries=3) as client:
            with pytest.raises(ConnectionLost, match="cannot seek back") as info:
                client.send("/up", pipe)
    feeder.join(WAIT)
    assert "not resent" in str(info.value)
    assert srv.requests == [b"seen"]


def test_streamed_upload_the_server_stops_reading_is_a_write_timeout(tmp_path: Path) -> None:
    release = threading.Event()

    def stall(conn: socket.socket, srv: ScriptedServer) -> None:
        srv.requests.append(_recv_head(conn))
        release.wait(WAIT)  # reads nothing more: the client's send stalls

    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(64 * MB)
    with ScriptedServer(stall) as srv, HTTPDataClient(url=srv.url, timeout=0.5) as client:
        try:
            with open(path, "rb") as f, pytest.raises(WriteTimeout, match="not sent completely"):
                client.send("/up", f)
        finally:
            release.set()
    assert len(srv.requests) == 1


def test_pipe_payload_cut_while_sending_is_not_replayed_even_with_retries() -> None:
    def cut(conn: socket.socket, srv: ScriptedServer) -> None:
        srv.requests.append(_recv_head(conn))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset

    pipe, feeder = _feed_pipe(_blob(16 * MB))
    with pipe, ScriptedServer(cut) as srv, HTTPDataClient(url=srv.url, retries=3) as client:
        with pytest.raises(ConnectionLost, match="cannot seek back"):
            client.send("/up", pipe)
    feeder.join(WAIT)
    assert len(srv.requests) == 1  # not sent again


def test_early_error_reply_during_a_large_upload_is_raised_not_a_broken_pipe(
    tmp_path: Path,
) -> None:
    def refuse(conn: socket.socket, srv: ScriptedServer) -> None:
        head = _recv_head(conn)
        body = b'{"type":"about:blank","title":"Content Too Large","status":413,"detail":"big"}'
        conn.sendall(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/problem+json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        srv.requests.append(head)
        # closing with the upload unread sends a reset: the client's send fails mid-body

    path = tmp_path / "big.bin"
    with open(path, "wb") as f:
        f.truncate(64 * MB)
    with ScriptedServer(refuse) as srv, HTTPDataClient(url=srv.url) as client:
        with open(path, "rb") as f, pytest.raises(PayloadTooLarge, match="big"):
            client.send("/up", f)
    assert len(srv.requests) == 1


# -- client: streaming in ---------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["/file", "/pipe", "/bytesio"])
def test_out_receives_the_exact_body_and_returns_its_length(
    client: HTTPDataClient, resource: str
) -> None:
    seed = {"/file": 1, "/pipe": 3, "/bytesio": 2}[resource]
    out = io.BytesIO()
    assert client.send(resource, 3 * MB + 1, out=out) == 3 * MB + 1
    assert out.getvalue() == _blob(3 * MB + 1, seed=seed)


def test_out_into_a_real_file(client: HTTPDataClient, tmp_path: Path) -> None:
    path = tmp_path / "reply.bin"
    with open(path, "wb") as f:
        assert client.send("/file", 5 * MB, out=f) == 5 * MB
    assert path.read_bytes() == _blob(5 * MB, seed=1)


def test_out_takes_any_successful_reply_as_its_bytes(client: HTTPDataClient) -> None:
    out = io.BytesIO()
    assert client.send("/echo", {"a": [1, 2]}, out=out) == len(b'{"a":[1,2]}')
    assert out.getvalue() == b'{"a":[1,2]}'  # as it travelled: not decoded


@pytest.mark.parametrize(("resource", "error"), [("/none", ResourceNotFound), ("/file", None)])
def test_error_reply_with_out_raises_and_writes_nothing(
    client: HTTPDataClient, resource: str, error: type[Exception] | None
) -> None:
    out = io.BytesIO()
    with pytest.raises(error or RemoteError):
        client.send(resource, "not a size" if error is None else 1, out=out)
    assert out.getvalue() == b""
    assert client.send("/echo", [1]) == [1]  # the connection and the server carry on


def test_out_with_type_is_refused(client: HTTPDataClient) -> None:
    with pytest.raises(TypeError, match="not both"):
        client.send("/echo", 1, type=int, out=io.BytesIO())  # type: ignore[call-overload]


# -- progress ---------------------------------------------------------------------------------


def _phases(calls: list[tuple[int, int | None]]) -> list[list[tuple[int, int | None]]]:
    """Split progress calls into phases: each begins with a call (0, total)."""
    phases: list[list[tuple[int, int | None]]] = []
    for call in calls:
        if call[0] == 0:
            phases.append([])
        phases[-1].append(call)
    return phases


def _check_phase(phase: list[tuple[int, int | None]], total: int | None, moved: int) -> None:
    assert phase[0] == (0, total)
    assert all(t == total for _, t in phase)
    dones = [d for d, _ in phase]
    assert dones == sorted(dones)
    assert len(set(dones)) == len(dones)  # no call repeats a figure
    assert dones[-1] == moved
    assert len(phase) <= moved // (64 * 1024) + 2  # at most one call per 64 KiB, and the ends


def test_progress_reports_the_upload_then_the_download(
    client: HTTPDataClient, tmp_path: Path
) -> None:
    data = _blob(6 * MB + 123)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    calls: list[tuple[int, int | None]] = []
    with open(path, "rb") as f:
        reply = client.send(
            "/stream-back", f, out=io.BytesIO(), progress=lambda *c: calls.append(c)
        )
    assert reply == len(data)
    upload, download = _phases(calls)
    _check_phase(upload, len(data), len(data))
    _check_phase(download, len(data), len(data))


def test_progress_of_in_memory_payload_and_chunked_reply(client: HTTPDataClient) -> None:
    calls: list[tuple[int, int | None]] = []
    data = _blob(2 * MB)
    assert client.send("/echo", data, progress=lambda *c: calls.append(c)) == data
    upload, download = _phases(calls)
    _check_phase(upload, len(data), len(data))
    _check_phase(download, len(data), len(data))
    calls.clear()
    out = io.BytesIO()
    client.send("/pipe", 2 * MB, out=out, progress=lambda *c: calls.append(c))
    upload, download = _phases(calls)
    _check_phase(download, None, 2 * MB)  # chunked: the total is unknown


def test_progress_callback_that_raises_aborts_the_call(client: HTTPDataClient) -> None:
    def cancel(done: int, total: int | None) -> None:
        if done > MB:
            raise KeyError("cancelled")

    with pytest.raises(KeyError, match="cancelled"):
        client.send("/sha256", _blob(4 * MB), progress=cancel)
    assert client.send("/echo", "still fine") == "still fine"


# -- server: streaming out --------------------------------------------------------------------


def test_returned_file_is_streamed_with_content_length_and_closed(
    server: HTTPDataServer, handler: Streams
) -> None:
    request = (
        b"PUT /file HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 7\r\nConnection: close\r\n\r\n4000000"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        reply = read_reply(sock)
    assert reply.status == 200
    assert reply.headers["content-length"] == "4000000"
    assert reply.headers["content-type"] == "application/octet-stream"
    assert "transfer-encoding" not in reply.headers
    assert reply.body == _blob(4_000_000, seed=1)
    returned = handler.returned[-1]
    assert _wait_until(lambda: returned.closed)


def test_returned_file_is_sent_from_its_position(client: HTTPDataClient) -> None:
    assert client.send("/file-from", [3 * MB, 1000]) == _blob(3 * MB, seed=1)[1000:]
    assert client.send("/file-from", [1000, 10]) == _blob(1000, seed=1)[10:]  # a small one


def test_returned_memoryview_is_sent_whole(client: HTTPDataClient) -> None:
    assert client.send("/memoryview", 3 * MB) == _blob(3 * MB, seed=4)


def test_returned_file_of_unknown_size_is_sent_chunked(
    server: HTTPDataServer, client: HTTPDataClient
) -> None:
    request = (
        b"PUT /pipe HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 6\r\nConnection: keep-alive\r\n\r\n300000"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        head = _recv_head(sock)
    assert b"\r\nTransfer-Encoding: chunked\r\n" in head
    assert b"Content-Length" not in head
    assert client.send("/pipe", 300_000) == _blob(300_000, seed=3)


def test_returned_file_of_unknown_size_to_http10_is_delimited_by_close(
    server: HTTPDataServer,
) -> None:
    request = (
        b"PUT /pipe HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 6\r\n\r\n300000"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        reply = read_reply(sock)
    assert "transfer-encoding" not in reply.headers
    assert reply.headers["connection"] == "close"
    assert reply.body == _blob(300_000, seed=3)


def test_returned_file_is_closed_when_the_client_goes_mid_reply(
    server: HTTPDataServer, handler: Streams, client: HTTPDataClient
) -> None:
    before = len(handler.returned)
    request = (
        b"PUT /sparse HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 9\r\n\r\n268435456"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        got = sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 ")
    # closed with 256 MB unread: the server's send fails, and it closes the file
    assert _wait_until(lambda: len(handler.returned) > before)
    returned = handler.returned[before]
    assert _wait_until(lambda: returned.closed)
    assert client.send("/echo", "next") == "next"


@pytest.mark.parametrize("resource", [b"/memoryview", b"/sparse"])
def test_large_reply_to_a_slow_reader_that_keeps_reading_outlasts_request_timeout(
    make_server: Callable[..., HTTPDataServer], resource: bytes
) -> None:
    srv = make_server(Streams(), request_timeout=1.0)
    size = 8 * MB
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(
            b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%d" % (resource, len(str(size)), size)
        )
        received = 0
        for _ in range(10_000):  # about 3 MB/s: near 3 s in all, never a 1 s stall
            chunk = sock.recv(256 * 1024)
            if not chunk:
                break
            received += len(chunk)
            time.sleep(0.02)
    assert received > size  # the whole body (and the head) arrived


# -- server: streaming in ---------------------------------------------------------------------


def test_binaryio_route_writes_an_upload_to_disk(
    client: HTTPDataClient, handler: Streams, tmp_path: Path
) -> None:
    data = _blob(12 * MB + 9)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        size, digest = client.send("/to-disk", f)
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert (handler.directory / "upload.bin").read_bytes() == data


def test_binaryio_route_takes_any_content_type_and_in_memory_payloads(
    server: HTTPDataServer, client: HTTPDataClient
) -> None:
    assert client.send("/sha256", "text") == [4, hashlib.sha256(b"text").hexdigest()]
    request = (
        b"PUT /sha256 HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-anything\r\n"
        b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(request)
        reply = read_reply(sock)
    assert reply.status == 200
    assert reply.json() == [3, hashlib.sha256(b"abc").hexdigest()]


def test_handle_request_still_gets_decoded_payloads(client: HTTPDataClient) -> None:
    assert client.send("/kind", io.BytesIO(b"raw")) == "bytes"
    assert client.send("/kind", [1]) == "list"


def test_binaryio_route_reading_part_keeps_the_connection(server: HTTPDataServer) -> None:
    body = _blob(300_000)
    first = (
        b"PUT /head10 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    second = (
        b"PUT /head10 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 4\r\nConnection: close\r\n\r\nabcd"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(first)
        reply = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"10")
        assert "connection" not in reply.headers  # kept alive: the rest was drained
        sock.sendall(second)
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"4")


def test_binaryio_route_leaving_much_unread_gets_its_reply_then_a_close(
    server: HTTPDataServer, client: HTTPDataClient
) -> None:
    assert client.send("/head10", _blob(16 * MB)) == 10  # a reply, not a broken connection
    body = _blob(8 * MB)
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(
            b"PUT /head10 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sent = threading.Thread(target=lambda: _sendall_quietly(sock, body), daemon=True)
        sent.start()
        reply = read_reply(sock)
        sent.join(WAIT)
    assert (reply.status, reply.headers["connection"]) == (200, "close")
    assert client.send("/head10", b"abc") == 3


def _sendall_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_streamed_upload_above_max_body_size_is_413(
    make_server: Callable[..., HTTPDataServer], tmp_path: Path
) -> None:
    srv = make_server(Streams(), max_body_size=MB)
    path = tmp_path / "big.bin"
    path.write_bytes(_blob(4 * MB))
    with HTTPDataClient(url=srv.url) as client:
        with open(path, "rb") as f, pytest.raises(PayloadTooLarge, match="1048576"):
            client.send("/to-disk", f)
        assert client.send("/sha256", b"ok") == [2, hashlib.sha256(b"ok").hexdigest()]


def test_expect_100_continue_is_answered_before_a_streamed_body(server: HTTPDataServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(
            b"PUT /sha256 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = _recv_head(sock, step=1)  # byte by byte: nothing past the interim reply
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        reply = read_reply(sock)
    assert reply.json() == [5, hashlib.sha256(b"hello").hexdigest()]


def _trickle(port: int, body: bytes, pieces: int, pause: float, resource: bytes) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(
            b"PUT %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (resource, len(body))
        )
        step = len(body) // pieces
        for i in range(pieces):
            sock.sendall(body[i * step : (i + 1) * step if i < pieces - 1 else len(body)])
            time.sleep(pause)
        return read_reply(sock)


def test_streamed_upload_that_keeps_moving_may_outlast_request_timeout(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    srv = make_server(Streams(), request_timeout=1.0)
    body = _blob(100_000)
    # 12 pieces 0.25 s apart: 3 s in all, three times the timeout, never a 1 s stall
    reply = _trickle(srv.port, body, 12, 0.25, b"/sha256")
    assert reply.status == 200
    assert reply.json() == [len(body), hashlib.sha256(body).hexdigest()]


def test_streamed_upload_that_stalls_is_408_and_the_server_serves_on(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    handler = Streams()
    srv = make_server(handler, request_timeout=0.5)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
        sock.sendall(
            b"PUT /guarded HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000\r\n\r\nonly a part"
        )
        reply = read_reply(sock)  # then nothing more: a stall
    assert reply.status == 408
    assert reply.headers["connection"] == "close"
    assert isinstance(handler.errors[0], TimeoutError)
    with HTTPDataClient(url=srv.url) as client:
        assert client.send("/guarded", b"abc") == 3


def test_client_gone_mid_upload_raises_connection_error_in_the_route(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    handler = Streams()
    srv = make_server(handler)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
        sock.sendall(
            b"PUT /guarded HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000\r\n\r\nonly a part"
        )
    assert _wait_until(lambda: bool(handler.errors))
    assert isinstance(handler.errors[0], ConnectionError)
    assert "ended after 11 of the 1000 bytes" in str(handler.errors[0])
    with HTTPDataClient(url=srv.url) as client:
        assert client.send("/guarded", b"abc") == 3


# -- TLS: no sendfile, the chunked path ------------------------------------------------------


def test_file_streams_both_ways_over_tls(handler: Streams, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    data = _blob(3 * MB)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with HTTPDataServer(handler, ssl_context=server_context) as srv:
        with HTTPDataClient(url=srv.url, ssl_context=client_context) as client:
            with open(path, "rb") as f:
                assert client.send("/sha256", f) == [len(data), hashlib.sha256(data).hexdigest()]
            out = io.BytesIO()
            assert client.send("/file", 3 * MB, out=out) == 3 * MB
            assert out.getvalue() == _blob(3 * MB, seed=1)


# -- WSGI -------------------------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_wsgi_streams_routes_files_and_memoryviews(handler: Streams, tmp_path: Path) -> None:
    # wsgiref, the app wrapped in PEP 3333 checks (bytes only, close() called, no over-read)
    httpd = make_server("127.0.0.1", 0, validator(make_app(handler)), handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    data = _blob(3 * MB + 1)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    try:
        with HTTPDataClient(url=f"http://127.0.0.1:{httpd.server_port}") as client:
            with open(path, "rb") as f:
                assert client.send("/to-disk", f) == [len(data), hashlib.sha256(data).hexdigest()]
            assert client.send("/head10", _blob(300_000)) == 10
            assert client.send("/file", 3 * MB) == _blob(3 * MB, seed=1)
            returned = handler.returned[-1]
            assert _wait_until(lambda: returned.closed)  # by the server's close() (PEP 3333)
            assert client.send("/bytesio", MB) == _blob(MB, seed=2)
            assert client.send("/memoryview", 3 * MB) == _blob(3 * MB, seed=4)
            pipe, feeder = _feed_pipe(b"x" * 1000)
            with pipe, pytest.raises(LengthRequired, match="does not de-chunk"):
                client.send("/sha256", pipe)  # wsgiref does not de-chunk: refused, not misread
            feeder.join(WAIT)
    finally:
        httpd.shutdown()
        thread.join(WAIT)
        httpd.server_close()


GUNICORN_APP = textwrap.dedent(
    """
    import hashlib, os, shutil, tempfile
    from typing import BinaryIO
    from dataserve import HTTPDataHandler, route
    from dataserve.wsgi import make_app

    class Files(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == "/file":
                f = tempfile.TemporaryFile()  # noqa: SIM115 (the server closes it)
                f.write(bytes(range(256)) * (payload // 256))
                f.seek(0)
                return f
            return None

        @route("/to-disk")
        def to_disk(self, payload: BinaryIO) -> list:
            with tempfile.TemporaryFile() as f:
                shutil.copyfileobj(payload, f)
                f.seek(0)
                return [f.seek(0, 2), hashlib.sha256((f.seek(0), f.read())[1]).hexdigest()]

    app = make_app(Files, max_body_size=int(os.environ["MAX_BODY"]))
    """
)


def test_gunicorn_serves_a_binaryio_route_and_a_returned_file(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(GUNICORN_APP)
    port = free_port()
    proc = subprocess.Popen(
        [
            *gunicorn_command(),
            "--workers",
            "1",
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
        env={"PATH": "", "PYTHONPATH": str(tmp_path), "MAX_BODY": str(8 * MB)},
    )
    data = _blob(5 * MB + 7)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    try:
        with HTTPDataClient(port=port) as client:
            client.wait_ready(30)
            with open(path, "rb") as f:
                assert client.send("/to-disk", f) == [len(data), hashlib.sha256(data).hexdigest()]
            pipe, feeder = _feed_pipe(data)
            with pipe:  # chunked: gunicorn de-chunks, the route reads to the end it marks
                assert client.send("/to-disk", pipe) == [
                    len(data),
                    hashlib.sha256(data).hexdigest(),
                ]
            feeder.join(WAIT)
            out = io.BytesIO()
            assert client.send("/file", 4 * MB, out=out) == 4 * MB  # sendfile in gunicorn
            assert out.getvalue() == bytes(range(256)) * (4 * MB // 256)
            big = tmp_path / "big.bin"
            big.write_bytes(_blob(9 * MB))
            with open(big, "rb") as f, pytest.raises(PayloadTooLarge):
                client.send("/to-disk", f)  # answered early: the client still reads the 413
            assert client.send("/to-disk", b"ab") == [2, hashlib.sha256(b"ab").hexdigest()]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# -- the command line -------------------------------------------------------------------------

CLI_HANDLER = textwrap.dedent(
    """
    import hashlib, tempfile
    from typing import BinaryIO
    from dataserve import HTTPDataHandler, route

    class Cli(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == "/blob":
                f = tempfile.TemporaryFile()  # noqa: SIM115 (the server closes it)
                f.write(bytes(range(256)) * (payload // 256))
                f.seek(0)
                return f
            return None

        @route("/sha256")
        def sha256(self, payload: BinaryIO) -> str:
            digest = hashlib.sha256()
            while chunk := payload.read(1 << 20):
                digest.update(chunk)
            return digest.hexdigest()
    """
)


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("cli")
    (directory / "cli_handler.py").write_text(CLI_HANDLER)
    sys.path.insert(0, str(directory))
    try:
        import cli_handler  # type: ignore[import-not-found]

        with HTTPDataServer(cli_handler.Cli) as srv:
            yield srv.url
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("cli_handler", None)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataserve", "send", *args]


def test_cli_file_and_out_stream_quietly_when_piped(cli_server: str, tmp_path: Path) -> None:
    data = _blob(12 * MB)
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    result = subprocess.run(
        _cli(cli_server, "/sha256", "--file", str(source)),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == hashlib.sha256(data).hexdigest()
    assert result.stderr == b""  # stderr is a pipe: no progress line
    result = subprocess.run(
        _cli(cli_server, "/blob", "--json", str(12 * MB), "--out", str(target)),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == (b"", b"")
    assert target.read_bytes() == bytes(range(256)) * (12 * MB // 256)


def test_cli_out_is_left_alone_on_an_error_reply(cli_server: str, tmp_path: Path) -> None:
    target = tmp_path / "keep.bin"
    target.write_bytes(b"precious")
    result = subprocess.run(
        _cli(cli_server, "/nothing", "--json", "1", "--out", str(target)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "404" in result.stderr
    assert target.read_bytes() == b"precious"


def _run_on_pty(command: list[str]) -> tuple[int, bytes, bytes]:
    """Run with stderr on a pseudo-terminal: (exit code, stdout, what the terminal got)."""
    import pty
    import select

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        return proc.wait(WAIT), stdout, seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        os.close(master)


def test_cli_draws_a_progress_line_on_a_terminal(cli_server: str, tmp_path: Path) -> None:
    data = _blob(12 * MB)
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(data)
    code, stdout, terminal = _run_on_pty(_cli(cli_server, "/sha256", "--file", str(source)))
    assert code == 0, terminal
    assert stdout.decode().strip() == hashlib.sha256(data).hexdigest()
    assert b"\rdataserve: sent " in terminal
    assert b"sent 12.0 of 12.0 MiB (100%)" in terminal
    assert b"MiB/s" in terminal
    assert terminal.endswith(b"\r\n")  # the line is ended, the terminal left clean
    code, _, terminal = _run_on_pty(
        _cli(cli_server, "/blob", "--json", str(12 * MB), "--out", str(target))
    )
    assert code == 0, terminal
    assert b"received 12.0 of 12.0 MiB (100%)" in terminal
    assert target.stat().st_size == 12 * MB
    code, _, terminal = _run_on_pty(_cli(cli_server, "/sha256", "--text", "small"))
    assert code == 0
    assert terminal == b""  # below a few MB: nothing drawn


# -- memory: a large upload to disk and a large download into a file (opt-in: nox -s slow) -----

SLOW_SERVER = textwrap.dedent(
    """
    import os, shutil, sys
    from typing import BinaryIO
    from dataserve import HTTPDataHandler, HTTPDataServer, route

    DIRECTORY = sys.argv[1]

    class Big(HTTPDataHandler):
        @route("/upload")
        def upload(self, payload: BinaryIO) -> int:  # straight to disk
            with open(os.path.join(DIRECTORY, "uploaded.bin"), "wb") as f:
                shutil.copyfileobj(payload, f, 1 << 20)
                return f.tell()

        @route("/download")
        def download(self, payload: int) -> BinaryIO:  # a sparse file: no disk, no memory
            f = open(os.path.join(DIRECTORY, "served.bin"), "w+b")
            f.truncate(payload)
            for offset in (0, payload // 2, payload - 4096):
                f.seek(offset)
                f.write(b"served-%d" % offset)
            f.seek(0)
            return f

    with HTTPDataServer(Big, request_timeout=60, max_body_size=1 << 33) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the test closes stdin
    """
)

SLOW_CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from dataserve import HTTPDataClient

    url, source, target, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    with HTTPDataClient(url=url, timeout=120) as client:
        client.send("/download", 4096, out=open("/dev/null", "wb"))  # warm: imports, a socket
        baseline = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS: the peak from here on
        start = time.monotonic()
        with open(source, "rb") as f:
            uploaded = client.send("/upload", f)
        middle = time.monotonic()
        with open(target, "wb") as f:
            downloaded = client.send("/download", size, out=f)
        end = time.monotonic()
    print(json.dumps({
        "baseline": baseline, "peak": status("VmHWM"), "uploaded": uploaded,
        "downloaded": downloaded, "up_s": middle - start, "down_s": end - middle,
    }))
    """
)


def _proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_large_upload_and_download_keep_each_process_under_100_mb_above_baseline() -> None:
    size = int(os.environ.get("DATASERVE_SLOW_MB", "2048")) * MB
    directory = Path(tempfile.mkdtemp(prefix="dataserve-slow-"))
    server = subprocess.Popen(
        [sys.executable, "-c", SLOW_SERVER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        import select

        ready, _, _ = select.select([server.stdout], [], [], 60)  # it prints its URL, listening
        assert ready, "the server did not start within 60 s"
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        source, target = directory / "source.bin", directory / "received.bin"
        with open(source, "wb") as f:  # sparse: reading it costs no disk
            f.truncate(size)
            for offset in (0, size // 2, size - 4096):
                f.seek(offset)
                f.write(b"source-%d" % offset)
        with HTTPDataClient(url=url) as warm:  # the server's connection thread, its buffers
            assert warm.send("/upload", b"warm") == 4
        server_baseline = _proc_status(server.pid, "VmRSS")
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")  # the server's VmHWM from here on
        client = subprocess.run(
            [sys.executable, "-c", SLOW_CLIENT, url, str(source), str(target), str(size)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        server_peak = _proc_status(server.pid, "VmHWM")
        figures = __import__("json").loads(client.stdout)
        assert figures["uploaded"] == figures["downloaded"] == size
        assert (directory / "uploaded.bin").stat().st_size == size
        assert target.stat().st_size == size
        with open(directory / "uploaded.bin", "rb") as up, open(target, "rb") as down:
            for offset in (0, size // 2, size - 4096):
                up.seek(offset)
                down.seek(offset)
                assert up.read(32).rstrip(b"\0") == b"source-%d" % offset
                assert down.read(32).rstrip(b"\0") == b"served-%d" % offset
        server_growth = server_peak - server_baseline
        client_growth = figures["peak"] - figures["baseline"]
        print(
            f"\n{size // MB} MB up to disk in {figures['up_s']:.1f} s "
            f"({size / MB / figures['up_s']:.0f} MB/s), back into a file in "
            f"{figures['down_s']:.1f} s ({size / MB / figures['down_s']:.0f} MB/s)\n"
            f"server: baseline {server_baseline / MB:.1f} MB, peak {server_peak / MB:.1f} MB "
            f"(+{server_growth / MB:.1f} MB)\n"
            f"client: baseline {figures['baseline'] / MB:.1f} MB, peak "
            f"{figures['peak'] / MB:.1f} MB (+{client_growth / MB:.1f} MB)"
        )
        assert server_growth < 100 * MB
        assert client_growth < 100 * MB
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(WAIT)
        if server.stdout is not None:
            server.stdout.close()
        shutil.rmtree(directory, ignore_errors=True)
    assert server.returncode == 0
