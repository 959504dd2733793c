"""Lines of asyncio client code that must fail type checking, each with its precise error
code (``--strict`` reports an unused ``type: ignore``, so a line that stops failing fails the
check). Never run."""

from __future__ import annotations

import io

from dataserve import AsyncHTTPDataClient


async def wrong(client: AsyncHTTPDataClient) -> None:
    name: int = await client.send("/name", type=str)  # type: ignore[arg-type]
    xs = await client.send("/xs", type=list[int])
    wrong_list: list[str] = xs  # type: ignore[assignment]
    maybe = await client.send("/u", type=int | None)
    sure: int = maybe  # type: ignore[assignment]
    count: str = await client.send("/d", out=io.BytesIO())  # type: ignore[assignment]
    not_awaited: int = client.send("/n", type=int)  # type: ignore[assignment]
    await client.send("/d", out=io.BytesIO(), type=bytes)  # type: ignore[call-overload]
    await client.send("/d", out="not a file")  # type: ignore[call-overload]
    await client.send("/p", progress=lambda done: None)  # type: ignore[arg-type, misc]
    client.send_sync("/x")  # type: ignore[attr-defined]
    with AsyncHTTPDataClient(port=1):  # type: ignore[attr-defined]
        pass
    AsyncHTTPDataClient(port=1, pool_size="8")  # type: ignore[arg-type]
    print(name, wrong_list, sure, count, not_awaited)
