"""A catalogue server for the asyncio fan-out example: 1,000 items built once, each looked up
by its id, with a little work per lookup (as a database or a model would take).

Run it, then ``python fanout_client.py`` in another terminal::

    python fanout_server.py                     # port 5001 (DATASERVE_PORT to change)
"""

import os
import time
from typing import Any

import msgspec

from dataserve import HTTPDataHandler, run_http_server

ITEMS = 1000
WORK_S = 0.005  # what one lookup costs the server: calls in flight at once overlap it


class Item(msgspec.Struct, frozen=True):
    """One item of the catalogue."""

    id: int
    name: str
    price: float


def price_of(item_id: int) -> float:
    """The item's price: a fixed function of its id, so the client's figures can be checked."""
    return round((item_id * 37 % 1000) / 10 + 1, 1)


class Catalogue(HTTPDataHandler):
    """Serves the items by id; a lookup may run in many server threads at once."""

    def __init__(self) -> None:
        self.items = {i: Item(i, f"item-{i}", price_of(i)) for i in range(ITEMS)}

    def handle_request(self, resource: str, payload: Any) -> object:
        # "/item/42" looks up item 42; None (an unknown id or resource) is answered with 404.
        kind, _, number = resource.removeprefix("/").partition("/")
        if kind != "item" or not number.isdigit():
            return None
        time.sleep(WORK_S)
        return self.items.get(int(number))


if __name__ == "__main__":
    run_http_server(int(os.environ.get("DATASERVE_PORT", "5001")), Catalogue)
