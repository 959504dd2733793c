"""Client side of the benchmark: one echo client per row, and the large-echo subprocess.

``make_client(row, port)`` returns an object with ``echo(value)`` (a JSON value or bytes, sent
the way that row's peer sends it, reply decoded), ``for_thread()`` (the client a worker thread
uses: the same object for thread-safe clients, a new one for xmlrpc and the manager proxy) and
``close()``. For a Unix-socket row ``port`` is the socket file's path.

Run as a script, this module is the large-echo workload (c) for one row, in a process of its
own so that the client's peak memory is measured from a clean baseline::

    python benchmarks/_clients.py ROW PORT|SOCKET_PATH SERVER_PID [--mb1 CALLS S] [--mb64 CALLS S]

and, with ``--stream FILE``, the file-streaming workload instead: FILE sent to the server's
``/upload`` route (which streams it to disk) and streamed back from ``/download`` into a file
next to FILE (compared with it, then removed); MB/s each way and the peak RSS of both processes
above their baselines. Rows whose client has ``upload``/``download`` (floor, dataserve,
dataserve-unix) run it.

(PORT is a socket file path for a Unix-socket row.)

It prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
from typing import Any, BinaryIO, Protocol

from _common import (
    ASYNC_POOL_SIZE,
    AUTHKEY,
    CONNECT_TIMEOUT_S,
    HOST,
    READ_TIMEOUT_S,
    SMALL_PAYLOAD,
    STREAM_BLOCK,
    MiB,
    PeakRSS,
    make_blob,
)


class EchoClient(Protocol):
    def echo(self, value: Any) -> Any: ...
    def for_thread(self) -> EchoClient: ...
    def close(self) -> None: ...


_BINARY = (bytes, bytearray, memoryview)


class FloorClient:
    """A bare ``urllib3.HTTPConnectionPool(maxsize=8)``, msgspec encode/decode; thread-safe."""

    def __init__(self, port: int) -> None:
        import msgspec
        import urllib3

        self._pool = urllib3.HTTPConnectionPool(
            HOST,
            port,
            maxsize=8,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            blocksize=STREAM_BLOCK,  # a file body goes out in 1 MiB reads (urllib3: 16 KiB)
        )
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder().decode
        self._json_headers = {"Content-Type": "application/json"}
        self._bytes_headers = {"Content-Type": "application/octet-stream"}

    def echo(self, value: Any) -> Any:
        body: Any
        if isinstance(value, _BINARY):
            body, headers = value, self._bytes_headers
        else:
            body, headers = self._encode(value), self._json_headers
        r = self._pool.urlopen("PUT", "/echo", body=body, headers=headers)
        if r.status != 200:
            raise RuntimeError(f"floor server answered {r.status}")
        if r.headers.get("Content-Type") == "application/json":
            return self._decode(r.data)
        return r.data

    def upload(self, f: BinaryIO) -> int:
        """Stream the open file ``f`` to ``/upload`` (urllib3 reads it in blocks); its reply."""
        size = os.fstat(f.fileno()).st_size
        headers = {**self._bytes_headers, "Content-Length": str(size)}
        r = self._pool.urlopen("PUT", "/upload", body=f, headers=headers)
        if r.status != 200:
            raise RuntimeError(f"floor server answered {r.status}")
        return int(self._decode(r.data))

    def download(self, out: BinaryIO) -> int:
        """Stream ``/download``'s reply into ``out`` in blocks: bytes written."""
        r = self._pool.urlopen("PUT", "/download", body=b"", preload_content=False)
        try:
            if r.status != 200:
                raise RuntimeError(f"floor server answered {r.status}")
            buf = memoryview(bytearray(STREAM_BLOCK))
            written = 0
            while n := r.readinto(buf):
                written += out.write(buf[:n])
            return written
        finally:
            r.release_conn()

    def for_thread(self) -> FloorClient:
        return self

    def close(self) -> None:
        self._pool.close()


class DataserveClient:
    """``dataserve.HTTPDataClient``; thread-safe, so every thread shares it."""

    def __init__(self, port: int) -> None:
        from dataserve import HTTPDataClient

        self._client = HTTPDataClient(url=f"http://{HOST}:{port}")

    def echo(self, value: Any) -> Any:
        return self._client.send("/echo", value)

    def upload(self, f: BinaryIO) -> int:
        """``send('/upload', f)``: the file streamed to the server's ``BinaryIO`` route."""
        return int(self._client.send("/upload", f))

    def download(self, out: BinaryIO) -> int:
        """``send('/download', out=out)``: the reply streamed into ``out``."""
        return self._client.send("/download", out=out)

    def for_thread(self) -> DataserveClient:
        return self

    def close(self) -> None:
        self._client.close()


class DataserveUnixClient(DataserveClient):
    """``dataserve.HTTPDataClient(unix_socket=...)``: the same client over a socket file."""

    def __init__(self, path: str) -> None:
        from dataserve import HTTPDataClient

        self._client = HTTPDataClient(unix_socket=path)


class DataserveAsyncClient:
    """``dataserve.AsyncHTTPDataClient`` on an event loop of its own, run by each call.

    ``echo`` runs one call to completion on the loop (the single-call figures). The
    concurrent workload does not use threads: ``concurrent_echoes`` keeps ``tasks`` calls in
    flight from this one loop (64 in the harness) and is what the 8-threads column reports
    for this row.
    """

    def __init__(self, port: int) -> None:
        import asyncio

        from dataserve import AsyncHTTPDataClient

        self._loop = asyncio.new_event_loop()
        self._client = AsyncHTTPDataClient(
            url=f"http://{HOST}:{port}",
            timeout=READ_TIMEOUT_S,
            connect_timeout=CONNECT_TIMEOUT_S,
            pool_size=ASYNC_POOL_SIZE,
        )

    def echo(self, value: Any) -> Any:
        return self._loop.run_until_complete(self._client.send("/echo", value))

    def concurrent_echoes(
        self, payload: Any, tasks: int, per_task: int, seconds: float
    ) -> tuple[int, float]:
        """``tasks`` coroutines each echoing ``payload`` up to ``per_task`` times or until
        ``seconds`` pass: (calls, elapsed s)."""
        import asyncio

        send = self._client.send

        async def worker(deadline: float) -> int:
            n = 0
            while n < per_task:
                await send("/echo", payload)
                n += 1
                if time.perf_counter() >= deadline:
                    break
            return n

        async def main() -> tuple[int, float]:
            await asyncio.gather(*(send("/echo", payload) for _ in range(tasks)))  # connect
            t0 = time.perf_counter()
            counts = await asyncio.gather(*(worker(t0 + seconds) for _ in range(tasks)))
            return sum(counts), time.perf_counter() - t0

        return self._loop.run_until_complete(main())

    def for_thread(self) -> DataserveAsyncClient:
        return self

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


class XMLRPCClient:
    """``xmlrpc.client.ServerProxy`` (not thread-safe: one per thread); bytes as ``Binary``."""

    def __init__(self, port: int) -> None:
        import xmlrpc.client

        class Transport(xmlrpc.client.Transport):
            def make_connection(self, host: Any) -> Any:
                conn = super().make_connection(host)
                conn.timeout = READ_TIMEOUT_S
                return conn

        self._port = port
        self._binary = xmlrpc.client.Binary
        self._proxy = xmlrpc.client.ServerProxy(
            f"http://{HOST}:{port}/", transport=Transport(), allow_none=True
        )

    def echo(self, value: Any) -> Any:
        if isinstance(value, _BINARY):
            reply: Any = self._proxy.echo(self._binary(bytes(value)))
            return reply.data
        return self._proxy.echo(value)

    def for_thread(self) -> XMLRPCClient:
        return XMLRPCClient(self._port)

    def close(self) -> None:
        self._proxy("close")()


class MpManagerClient:
    """A ``BaseManager`` proxy to the served ``EchoObject``; one proxy per thread."""

    def __init__(self, port: int, manager: Any = None) -> None:
        from multiprocessing.managers import BaseManager

        if manager is None:

            class Manager(BaseManager):
                pass

            Manager.register("Echo")
            manager = Manager(address=(HOST, port), authkey=AUTHKEY)
            manager.connect()
        self._port = port
        self._manager = manager
        self._proxy = manager.Echo()

    def echo(self, value: Any) -> Any:
        return self._proxy.echo(value)

    def for_thread(self) -> MpManagerClient:
        return MpManagerClient(self._port, self._manager)

    def close(self) -> None:
        del self._proxy  # the proxy's finalizer releases the remote object


class MpManagerUnixClient(MpManagerClient):
    """The ``mp-manager`` proxy over the socket file ``path`` (family AF_UNIX); one per thread."""

    def __init__(self, path: str) -> None:
        from multiprocessing.managers import BaseManager

        class Manager(BaseManager):
            pass

        Manager.register("Echo")
        manager = Manager(address=path, authkey=AUTHKEY)  # a str address: AF_UNIX
        manager.connect()
        super().__init__(0, manager)  # for_thread() shares this connected manager


class FastAPIClient:
    """One ``httpx.Client`` (thread-safe, so every thread shares it), msgspec encode/decode."""

    def __init__(self, port: int) -> None:
        import httpx
        import msgspec

        self._client = httpx.Client(
            base_url=f"http://{HOST}:{port}",
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        )
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder().decode
        self._json_headers = {"Content-Type": "application/json"}
        self._bytes_headers = {"Content-Type": "application/octet-stream"}

    def echo(self, value: Any) -> Any:
        body: Any
        if isinstance(value, _BINARY):
            body, headers = bytes(value), self._bytes_headers
        else:
            body, headers = self._encode(value), self._json_headers
        r = self._client.put("/echo", content=body, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"FastAPI server answered {r.status_code}")
        if r.headers.get("content-type") == "application/json":
            return self._decode(r.content)
        return r.content

    def for_thread(self) -> FastAPIClient:
        return self

    def close(self) -> None:
        self._client.close()


class V01WireClient:
    """What dataserve 0.1's client did: ``requests.put`` per call, no Session, stdlib json."""

    def __init__(self, port: int) -> None:
        import requests

        self._put = requests.put
        self._url = f"http://{HOST}:{port}/echo"

    def echo(self, value: Any) -> Any:
        if isinstance(value, _BINARY):
            data, ctype = bytes(value), "application/octet-stream"
        elif isinstance(value, str):
            data, ctype = value.encode("utf-8"), "text/plain"
        else:
            data, ctype = json.dumps(value).encode("utf-8"), "application/json"
        r = self._put(
            self._url,
            data=data,
            headers={"Content-Type": ctype},
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        )
        if r.status_code != 200:
            raise RuntimeError(f"0.1-wire server answered {r.status_code}")
        rtype = r.headers.get("Content-Type")
        if rtype == "application/json":
            return json.loads(r.content)
        if rtype == "text/plain":
            return r.content.decode("utf-8")
        return r.content

    def for_thread(self) -> V01WireClient:
        return self

    def close(self) -> None:
        pass


_CLIENTS: dict[str, type[Any]] = {
    "floor": FloorClient,
    "dataserve": DataserveClient,
    "dataserve-unix": DataserveUnixClient,
    "dataserve-async": DataserveAsyncClient,
    "xmlrpc": XMLRPCClient,
    "mp-manager": MpManagerClient,
    "dataserve-0.1-wire": V01WireClient,
    "multiprocessing manager (unix)": MpManagerUnixClient,
    "FastAPI + uvicorn": FastAPIClient,
}


def make_client(row: str, port: int | str) -> EchoClient:
    """The echo client of ``row`` connected to 127.0.0.1:``port`` (or to the socket file
    ``port`` names, for a Unix-socket row)."""
    client: EchoClient = _CLIENTS[row](port)
    return client


# ---------------------------------------------------------------------------------------------
# Workload (c): large bytes echo, run in this module's own process.


def _timed_echoes(
    client: EchoClient, blob: bytes, max_calls: int, max_seconds: float, first_s: float = 0.0
) -> dict[str, float]:
    """Echo ``blob`` until ``max_calls`` calls or ``max_seconds`` (counting an already timed
    first call of ``first_s`` seconds, if any); return MB/s over all calls."""
    calls = 1 if first_s else 0
    elapsed = first_s
    while calls < max_calls and elapsed < max_seconds:
        t0 = time.perf_counter()
        reply = client.echo(blob)
        elapsed += time.perf_counter() - t0
        calls += 1
        if len(reply) != len(blob):
            raise RuntimeError(f"echo returned {len(reply)} bytes for {len(blob)}")
        del reply
    return {"calls": calls, "seconds": elapsed, "MBps": calls * len(blob) / MiB / elapsed}


def large_echo(
    row: str, port: int | str, server_pid: int, mb1: tuple[int, float], mb64: tuple[int, float]
) -> dict[str, Any]:
    """1 MiB and 64 MiB bytes echo: MB/s, and the peak RSS of both processes for one 64 MiB call.

    The baselines are taken just before that call, with the payload already built (the caller
    owns it): the figure is what the round trip costs each side, reply included. ``mb1`` and
    ``mb64`` bound each size's timing loop as (calls, seconds); one 64 MiB call always runs.
    """
    client = make_client(row, port)
    try:
        client.echo(SMALL_PAYLOAD)  # connect
        out: dict[str, Any] = {}
        small = make_blob(1 * MiB)
        if client.echo(small) != small:
            raise RuntimeError("1 MB echo came back different")
        out["mb1"] = _timed_echoes(client, small, *mb1)
        del small

        size = 64 * MiB
        blob = make_blob(size)
        gc.collect()
        client_peak, server_peak = PeakRSS(os.getpid()), PeakRSS(server_pid)
        server_peak.start()
        client_peak.start()
        t0 = time.perf_counter()
        reply = client.echo(blob)
        first_s = time.perf_counter() - t0
        c_hwm, s_hwm = client_peak.stop(), server_peak.stop()
        if reply != blob:
            raise RuntimeError("64 MB echo came back different")
        del reply
        out["mb64"] = _timed_echoes(client, blob, *mb64, first_s=first_s)
        for side, probe, hwm in (("client", client_peak, c_hwm), ("server", server_peak, s_hwm)):
            growth = None if hwm is None or probe.baseline is None else hwm - probe.baseline
            out[f"mb64_{side}_peak"] = {
                "baseline_MB": None if probe.baseline is None else probe.baseline / MiB,
                "peak_above_MB": None if growth is None else growth / MiB,
                "x_payload": None if growth is None else growth / size,
                "method": probe.method,
            }
        return out
    finally:
        client.close()


def _same_file_samples(a: str, b: str, size: int) -> bool:
    """Whether ``a`` and ``b`` agree in size and in 1 MiB samples at 9 offsets (every block
    of the source starts with its own index, so a misplaced block shows)."""
    if os.path.getsize(a) != size or os.path.getsize(b) != size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for i in range(9):
            offset = (size - STREAM_BLOCK) * i // 8 // STREAM_BLOCK * STREAM_BLOCK
            fa.seek(offset)
            fb.seek(offset)
            if fa.read(STREAM_BLOCK) != fb.read(STREAM_BLOCK):
                return False
    return True


def stream_through(row: str, port: int | str, server_pid: int, src: str) -> dict[str, Any]:
    """The file ``src`` streamed up to ``/upload`` and back from ``/download``: MB/s each way
    and, per direction, the peak RSS of this process and of the server above their RSS just
    before that transfer. The copy received is checked against ``src``, then removed."""
    client = make_client(row, port)
    dst = src + f".{os.getpid()}.back"
    size = os.path.getsize(src)
    out: dict[str, Any] = {"bytes": size}
    try:
        if not (hasattr(client, "upload") and hasattr(client, "download")):
            raise RuntimeError(f"the {row} client cannot stream a file")
        client.echo(SMALL_PAYLOAD)  # connect
        gc.collect()
        for way in ("up", "down"):
            os.sync()  # earlier files' dirty pages written back now, not during this transfer
            client_peak, server_peak = PeakRSS(os.getpid()), PeakRSS(server_pid)
            server_peak.start()
            client_peak.start()
            t0 = time.perf_counter()
            if way == "up":
                with open(src, "rb") as f:
                    moved = client.upload(f)  # type: ignore[attr-defined]
            else:
                with open(dst, "wb") as f:
                    moved = client.download(f)  # type: ignore[attr-defined]
            seconds = time.perf_counter() - t0
            c_hwm, s_hwm = client_peak.stop(), server_peak.stop()
            if moved != size:
                raise RuntimeError(f"{way}: {moved} bytes moved for a {size}-byte file")
            out[way] = {"seconds": seconds, "MBps": size / MiB / seconds}
            for side, probe, hwm in (
                ("client", client_peak, c_hwm),
                ("server", server_peak, s_hwm),
            ):
                growth = None if hwm is None or probe.baseline is None else hwm - probe.baseline
                out[way][f"{side}_peak_above_MB"] = None if growth is None else growth / MiB
                out[way][f"{side}_baseline_MB"] = (
                    None if probe.baseline is None else probe.baseline / MiB
                )
            out["memory_method"] = client_peak.method
        if not _same_file_samples(src, dst, size):
            raise RuntimeError("the file streamed back differs from the one sent")
        return out
    finally:
        client.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)


def make_stream_file(path: str, size: int) -> None:
    """Write ``size`` bytes to ``path``: one random 1 MiB block, each copy starting with its
    index (so a misplaced block is caught), written block by block (never whole in memory)."""
    block = bytearray(make_blob(STREAM_BLOCK))
    with open(path, "wb") as f:
        for i in range(size // STREAM_BLOCK):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)
        f.write(block[: size % STREAM_BLOCK])


def _port_or_path(arg: str) -> int | str:
    return int(arg) if arg.isdigit() else arg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("row")
    parser.add_argument("port", type=_port_or_path, help="a TCP port, or a socket file's path")
    parser.add_argument("server_pid", type=int)
    parser.add_argument("--mb1", nargs=2, type=float, default=(200, 1.0), metavar=("CALLS", "S"))
    parser.add_argument("--mb64", nargs=2, type=float, default=(10, 2.0), metavar=("CALLS", "S"))
    parser.add_argument("--stream", metavar="FILE", help="stream FILE up and back instead")
    args = parser.parse_args(argv)
    mb1 = (int(args.mb1[0]), args.mb1[1])
    mb64 = (int(args.mb64[0]), args.mb64[1])
    try:
        if args.stream:
            result = stream_through(args.row, args.port, args.server_pid, args.stream)
        else:
            result = large_echo(args.row, args.port, args.server_pid, mb1, mb64)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
