"""The server side of the public API, as a user writes it. Checked by mypy, never run."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from typing import IO, Any, BinaryIO, assert_type

import msgspec

from dataserve import HTTPDataHandler, HTTPDataServer, route, run_http_server
from dataserve.codecs import CodecRegistry


class Point(msgspec.Struct):
    x: float
    y: float


class Seed(HTTPDataHandler):
    """The seed handler verbatim: unannotated, as in dataserve 0.1."""

    def handle_request(self, resource, payload):  # type: ignore[no-untyped-def]
        if resource == "/xdata":
            return [1, 2, 3] + payload  # noqa: RUF005 (the seed, verbatim)
        if resource == "/ydata":
            return 2
        return None


class TypedCatchAll(HTTPDataHandler):
    """A narrower payload and return type than the base: not an override error."""

    def handle_request(self, resource: str, payload: list[int]) -> list[int] | None:
        if resource == "/xdata":
            return [1, 2, 3, *payload]
        return None


class AnyCatchAll(HTTPDataHandler):
    def handle_request(self, resource: str, payload: Any) -> object:
        return payload


class Points(HTTPDataHandler):
    def __init__(self) -> None:
        self.points: list[Point] = []

    @route("/add")
    def add(self, payload: list[int]) -> int:
        return sum(payload)

    @route("/store")
    def store(self, payload: Point) -> None:
        self.points.append(payload)

    @route("points")
    def all_points(self, payload: None) -> list[Point]:
        return self.points


class Files(HTTPDataHandler):
    """SPEC 10: a route reading its body as a stream, routes returning files and buffers."""

    @route("/upload")
    def upload(self, payload: BinaryIO) -> int:
        with open("/tmp/upload.bin", "wb") as f:
            shutil.copyfileobj(payload, f)
            return f.tell()

    @route("/upload-io")
    def upload_io(self, payload: IO[bytes]) -> int:
        return len(payload.read(10))

    @route("/download")
    def download(self, payload: str) -> BinaryIO:
        return open(payload, "rb")

    @route("/view")
    def view(self, payload: int) -> memoryview:
        return memoryview(bytes(payload))

    def handle_request(self, resource: str, payload: Any) -> object:
        return open(resource, "rb")


def routes_keep_their_signatures(handler: Points) -> None:
    # @route returns the method unchanged, so direct calls stay typed.
    assert_type(handler.add([1, 2]), int)
    assert_type(handler.all_points(None), list[Point])
    unbound: Callable[[Points, list[int]], int] = Points.add
    print(unbound)


def servers() -> None:
    server = HTTPDataServer(Points, port=0)
    assert_type(server, HTTPDataServer)
    assert_type(server.port, int)
    assert_type(server.url, str)
    assert_type(server.start(), HTTPDataServer)
    server.shutdown()

    with HTTPDataServer(TypedCatchAll(), port=0) as srv:
        assert_type(srv, HTTPDataServer)
        port: int = srv.port
        url: str = srv.url
        print(port, url)

    HTTPDataServer(Seed)
    HTTPDataServer(Seed, 5001, "0.0.0.0")
    HTTPDataServer(
        AnyCatchAll,
        port=0,
        host="::",
        registry=CodecRegistry(),
        auth_token="s3cret",
        ssl_context=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH),
        max_body_size=1 << 20,
        request_timeout=5.0,
        max_connections=8,
        shutdown_timeout=1,
        expose_tracebacks=True,
    ).serve_forever()


def unix_socket_servers() -> None:
    from pathlib import Path

    server = HTTPDataServer(Points, unix_socket="/run/app/data.sock")
    assert_type(server.unix_socket, str | None)
    assert_type(server.port, int)
    HTTPDataServer(Points(), unix_socket=Path("/run/app/data.sock"), unix_socket_mode=0o660)
    run_http_server(0, Seed, unix_socket="/run/app/data.sock", unix_socket_mode=0o600)
    run_http_server(0, Points, unix_socket=Path("/run/app/data.sock"), auth_token="s3cret")


def run() -> None:
    assert_type(run_http_server(5001, Seed), None)
    run_http_server(5001, Seed())
    run_http_server(0, Points, "0.0.0.0", auth_token="s3cret", max_body_size=1 << 20)
    runner: Callable[[int, type[HTTPDataHandler] | HTTPDataHandler], None] = run_http_server
    print(runner)


def wsgi_app_for_gunicorn() -> None:
    from wsgiref.types import WSGIApplication

    from dataserve.wsgi import make_app

    app = make_app(Points, auth_token="s3cret", max_body_size=1 << 20)
    assert_type(app, WSGIApplication)
    make_app(Points())
