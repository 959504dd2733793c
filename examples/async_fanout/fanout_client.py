"""Fans out many calls from one asyncio program to ``fanout_server.py``.

Start ``python fanout_server.py`` first, then::

    python fanout_client.py                     # port 5001 (DATASERVE_PORT to change)

One `AsyncHTTPDataClient` serves every task: at most ``pool_size`` calls are on the wire at
once, the rest wait for a connection, so a fan-out of thousands never opens thousands of
sockets.
"""

import asyncio
import os

from fanout_server import Item  # only the type: importing starts no server

from dataserve import AsyncHTTPDataClient, ResourceNotFound

port = int(os.environ.get("DATASERVE_PORT", "5001"))


async def main() -> None:
    async with AsyncHTTPDataClient(port=port, pool_size=16) as client:
        await client.wait_ready(10)  # waits (at most 10 s) until the server answers

        # A TaskGroup: 200 lookups in flight together; if one failed, the others would be
        # cancelled and the error raised here.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(client.send(f"/item/{i}", type=Item)) for i in range(200)]
        items = [task.result() for task in tasks]
        first, last = items[0].name, items[-1].name
        print(f"{len(items)} items fetched concurrently, in order: {first} .. {last}")
        print(f"total price: {round(sum(item.price for item in items), 1)}")
        cheapest = min(items, key=lambda item: item.price)
        print(f"cheapest: {cheapest.name} at {cheapest.price}")

        # gather(return_exceptions=True): misses come back as errors, the rest as items.
        wanted = [998, 999, 1000, 1001]
        found = await asyncio.gather(
            *(client.send(f"/item/{i}", type=Item) for i in wanted), return_exceptions=True
        )
        missing = [
            i for i, got in zip(wanted, found, strict=True) if isinstance(got, ResourceNotFound)
        ]
        print(f"{len(wanted) - len(missing)} of {len(wanted)} found; missing: {missing}")


asyncio.run(main())
