"""Server side of the benchmark: one echo server per row, each run in its own spawned process.

``serve(row, conn, sock_dir)`` is the process target: it binds 127.0.0.1 on a free port (or, for
a Unix-socket row, a socket file in ``sock_dir``, a temp dir the harness made and removes), sends
the port (or the socket file's path) through ``conn`` and serves until the harness terminates the
process. Every server echoes its payload back, doing the decode/encode work its protocol implies.

The ``floor`` and dataserve servers also serve the file-streaming workload: ``/upload`` streams
the request body to ``upload.bin`` in ``sock_dir`` (never holding it whole) and answers its size;
``/download`` streams that file back and unlinks it (the open file is read to its end first),
so no copy outlives the call.
"""

from __future__ import annotations

import contextlib
import json
import os
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import Any, BinaryIO, cast

from _common import AUTHKEY, HOST, STREAM_BLOCK

#: Replies up to this size are sent as one ``head + body`` write; larger ones as two writes.
ONE_WRITE_MAX = 64 * 1024
#: The directory the streaming routes write ``upload.bin`` into: the row's temp dir, set by
#: ``serve`` (the harness made it and removes it with all it holds).
_STORE_DIR = ""


def _upload_path() -> str:
    return os.path.join(_STORE_DIR, "upload.bin")


# ---------------------------------------------------------------------------------------------
# floor: the bare stack dataserve is built on (ThreadingHTTPServer + msgspec)


class _FloorServer(ThreadingHTTPServer):
    request_queue_size = 1024  # listen backlog: a burst of connects is never dropped
    daemon_threads = True


class _FloorHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive echo doing the msgspec work of a dataserve handler, and no more."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, set by StreamRequestHandler.setup()

    def do_PUT(self) -> None:
        if self.path != "/echo":
            self._stream()
            return
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "application/octet-stream")
        out: bytes
        if ctype == "application/json":
            out = _ENCODE(_DECODE(body))
        elif ctype == "text/plain":
            out = body.decode("utf-8").encode("utf-8")
        else:
            out = body
        head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            ctype.encode("latin-1"),
            len(out),
        )
        if len(out) <= ONE_WRITE_MAX:
            self.wfile.write(head + out)
        else:
            self.wfile.write(head)
            self.wfile.write(out)

    def _stream(self) -> None:
        """``/upload``: the body to disk in blocks; ``/download``: ``upload.bin`` back."""
        length = int(self.headers["Content-Length"])
        buf = memoryview(bytearray(STREAM_BLOCK))
        if self.path == "/upload":
            with open(_upload_path(), "wb") as f:
                left = length
                while left:
                    n = self.rfile.readinto(buf[: min(left, STREAM_BLOCK)])
                    if not n:
                        raise ConnectionError("the upload ended early")
                    f.write(buf[:n])
                    left -= n
                out = b"%d" % f.tell()
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
            )
            return
        self.rfile.read(length)
        with open(_upload_path(), "rb") as f:
            os.unlink(_upload_path())
            size = os.fstat(f.fileno()).st_size
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % size
            )
            while n := f.readinto(buf):
                self.wfile.write(buf[:n])

    def log_message(self, format: str, *args: Any) -> None:
        pass


_ENCODE: Callable[[Any], bytes]
_DECODE: Callable[[bytes], Any]


def _serve_floor(conn: Connection) -> None:
    global _ENCODE, _DECODE
    import msgspec

    _ENCODE = msgspec.json.Encoder().encode
    _DECODE = msgspec.json.Decoder().decode
    srv = _FloorServer((HOST, 0), _FloorHandler)
    conn.send(srv.server_address[1])
    srv.serve_forever()


# ---------------------------------------------------------------------------------------------
# dataserve


def _echo_handler() -> type[Any]:
    """dataserve's echo handler (``handle_request``), with the two streaming routes."""
    import shutil

    from dataserve import HTTPDataHandler, route

    class Echo(HTTPDataHandler):
        def handle_request(self, resource: str, payload: Any) -> object:
            return payload

        @route("/upload")
        def upload(self, payload: BinaryIO) -> int:  # the body as a stream, not decoded
            with open(_upload_path(), "wb") as f:
                shutil.copyfileobj(payload, f, STREAM_BLOCK)
                return f.tell()

        @route("/download")
        def download(self, payload: None) -> BinaryIO:
            f = open(_upload_path(), "rb")  # noqa: SIM115 - the server streams and closes it
            os.unlink(_upload_path())
            return f

    return Echo


def _serve_dataserve(conn: Connection) -> None:
    from dataserve import HTTPDataServer

    srv = HTTPDataServer(_echo_handler(), port=0, host=HOST)
    srv.start()
    conn.send(srv.port)
    threading.Event().wait()  # until SIGTERM from the harness


def _serve_dataserve_unix(conn: Connection, path: str) -> None:
    """dataserve on a socket file at ``path``; sends the path, not a port."""
    from dataserve import HTTPDataServer

    with HTTPDataServer(_echo_handler(), unix_socket=path) as srv:
        conn.send(srv.unix_socket)
        threading.Event().wait()  # until SIGTERM from the harness


# ---------------------------------------------------------------------------------------------
# xmlrpc: stdlib SimpleXMLRPCServer made threaded


def _serve_xmlrpc(conn: Connection) -> None:
    from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

    class Handler(SimpleXMLRPCRequestHandler):
        # The stdlib gzips replies above 1400 bytes for a client that accepts gzip (its own
        # ServerProxy does): off, so the row measures the protocol, not zlib on random bytes.
        encode_threshold = None  # type: ignore[assignment]  # None: never gzip (stdlib)

    class Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
        daemon_threads = True

    srv = Server((HOST, 0), requestHandler=Handler, logRequests=False, allow_none=True)
    srv.register_function(lambda value: value, "echo")
    conn.send(srv.server_address[1])
    srv.serve_forever()


# ---------------------------------------------------------------------------------------------
# mp-manager: multiprocessing.managers.BaseManager proxy (dataserve 0.1's ProxyServer)


class EchoObject:
    """The object served through the manager; proxies call ``echo`` on it (pickled args)."""

    def echo(self, value: Any) -> Any:
        return value


def _serve_mp_manager(conn: Connection) -> None:
    from multiprocessing.managers import BaseManager

    class Manager(BaseManager):
        pass

    Manager.register("Echo", callable=EchoObject)
    server = Manager(address=(HOST, 0), authkey=AUTHKEY).get_server()
    conn.send(cast(tuple[str, int], server.address)[1])
    server.serve_forever()


def _serve_mp_manager_unix(conn: Connection, path: str) -> None:
    """The same manager as ``mp-manager``, on a socket file: ``address=path`` (multiprocessing
    takes a str address as family AF_UNIX)."""
    from multiprocessing.managers import BaseManager

    class Manager(BaseManager):
        pass

    Manager.register("Echo", callable=EchoObject)
    server = Manager(address=path, authkey=AUTHKEY).get_server()
    conn.send(cast(str, server.address))
    server.serve_forever()


# ---------------------------------------------------------------------------------------------
# FastAPI + uvicorn: what a user would write instead (only where fastapi and uvicorn are installed)


def fastapi_http_impl() -> tuple[str, str]:
    """The (http, loop) implementations uvicorn is given: httptools and uvloop where installed
    (``uvicorn[standard]``), else h11 and asyncio."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return http, loop


def _serve_fastapi(conn: Connection) -> None:
    import socket

    import uvicorn
    from _fastapi_app import app

    http, loop = fastapi_http_impl()
    config = uvicorn.Config(
        app,
        http=http,
        loop=loop,
        workers=1,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=600,  # the rounds leave a client idle longer than uvicorn's 5 s
        timeout_graceful_shutdown=1,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(config.backlog)  # connects queue until uvicorn accepts: none is refused
    conn.send(sock.getsockname()[1])
    uvicorn.Server(config).run(sockets=[sock])


# ---------------------------------------------------------------------------------------------
# dataserve-0.1-wire: HTTP/1.0, one request per connection, one request at a time, stdlib json


class _V01Handler(BaseHTTPRequestHandler):
    """What dataserve 0.1's server did on the wire (protocol_version stays "HTTP/1.0")."""

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        ctype = self.headers["Content-Type"]
        value: Any
        if ctype == "application/json":
            value = json.loads(body)
        elif ctype == "text/plain":
            value = body.decode("utf-8")
        elif ctype == "application/octet-stream":
            value = body
        else:
            self.send_error(400)
            return
        result = value  # the handler: echo
        if isinstance(result, bytes):
            out, out_type = result, "application/octet-stream"
        elif isinstance(result, str):
            out, out_type = result.encode("utf-8"), "text/plain"
        else:
            out, out_type = json.dumps(result).encode("utf-8"), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", out_type)  # no Content-Length: the close ends the body
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # 0.1 logged each request to stderr; left out to keep the harness output readable


def _serve_v01(conn: Connection) -> None:
    srv = HTTPServer((HOST, 0), _V01Handler)  # not threaded, stdlib backlog of 5
    conn.send(srv.server_address[1])
    srv.serve_forever()


_SERVERS: dict[str, Callable[[Connection], None]] = {
    "floor": _serve_floor,
    "dataserve": _serve_dataserve,
    "dataserve-async": _serve_dataserve,  # the same server; the client differs
    "xmlrpc": _serve_xmlrpc,
    "mp-manager": _serve_mp_manager,
    "dataserve-0.1-wire": _serve_v01,
    "FastAPI + uvicorn": _serve_fastapi,
}
#: Rows that listen on a socket file; each is given a path in the harness's temp dir.
_UNIX_SERVERS: dict[str, Callable[[Connection, str], None]] = {
    "dataserve-unix": _serve_dataserve_unix,
    "multiprocessing manager (unix)": _serve_mp_manager_unix,
}


def serve(row: str, conn: Connection, sock_dir: str) -> None:
    """Process target: serve ``row``'s echo server on 127.0.0.1:<free port> until terminated,
    or for a Unix-socket row on a socket file in ``sock_dir`` (made and removed by the harness).

    Sends the port (or the socket file's path) through ``conn`` once listening, or
    ``("error", message)`` if it cannot start.
    """
    global _STORE_DIR
    _STORE_DIR = sock_dir
    try:
        if row in _UNIX_SERVERS:
            _UNIX_SERVERS[row](conn, os.path.join(sock_dir, "server.sock"))
        else:
            _SERVERS[row](conn)
    except BaseException as exc:  # report start-up failures to the harness, then exit
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
