"""The asyncio client as a user writes it: awaited results pinned with ``assert_type``.
Checked by mypy, never run."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import pathlib
from typing import Any, Literal, assert_type

import msgspec

from dataserve import AsyncHTTPDataClient, ResourceNotFound, TransportError
from dataserve.codecs import CodecRegistry


class Point(msgspec.Struct):
    x: float
    y: float


@dataclasses.dataclass
class Label:
    name: str


async def seed_calls() -> None:
    async with AsyncHTTPDataClient(port=5001) as client:
        assert_type(client, AsyncHTTPDataClient)
        assert_type(await client.send("/xdata", [4, 5, 6]), Any)
        assert_type(await client.send("/ydata"), Any)


async def typed_calls(client: AsyncHTTPDataClient) -> None:
    assert_type(await client.send("/xs", [4], type=list[int]), list[int])
    assert_type(await client.send("/p", type=Point), Point)
    assert_type(await client.send("/label", "a", type=Label), Label)
    assert_type(await client.send("/name", type=str), str)
    assert_type(await client.send("/blob", b"\x00", type=bytes), bytes)
    assert_type(await client.send("/weights", type=dict[str, float]), dict[str, float])
    assert_type(await client.send("/pair", type=tuple[int, str]), tuple[int, str])
    # PEP 747 TypeForm: forms that are not classes are inferred precisely too.
    assert_type(await client.send("/u", type=int | None), int | None)
    assert_type(await client.send("/l", type=Literal["a", "b"]), Literal["a", "b"])
    total: int = sum(await client.send("/xs", type=list[int]))
    print(total)


async def streaming(client: AsyncHTTPDataClient, path: pathlib.Path) -> None:
    with path.open("rb") as f:
        assert_type(await client.send("/upload", f), Any)
    with path.open("wb") as out:
        assert_type(await client.send("/download", out=out), int)
    assert_type(await client.send("/d", b"x", out=io.BytesIO()), int)

    def report(done: int, total: int | None) -> None:
        print(done, total)

    assert_type(await client.send("/p", b"x", progress=report), Any)
    assert_type(await client.send("/p", type=bytes, progress=report), bytes)
    assert_type(await client.send("/p", out=io.BytesIO(), progress=report), int)


async def constructors_and_lifecycle() -> None:
    AsyncHTTPDataClient(
        url="https://example.invalid:5001",
        timeout=5.0,
        connect_timeout=1.0,
        retries=0,
        auth_token="s3cret",
        registry=CodecRegistry(),
        pool_size=8,
    )
    AsyncHTTPDataClient(unix_socket=pathlib.Path("/run/app/data.sock"))
    client = AsyncHTTPDataClient(url="http+unix://%2Frun%2Fapp%2Fdata.sock")
    assert_type(client.url, str)
    assert_type(await client.wait_ready(5.0), None)
    try:
        results = await asyncio.gather(*(client.send("/x", i, type=int) for i in range(3)))
        assert_type(results, list[int])
    except ResourceNotFound as e:
        assert_type(e.status, int)
    except TransportError as e:
        assert_type(e.url, str)
    finally:
        assert_type(await client.aclose(), None)
