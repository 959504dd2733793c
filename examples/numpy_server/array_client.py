"""Calls the server of ``array_server.py``: fetches rows as arrays and sends one back.

Start ``python array_server.py`` first, then::

    python array_client.py                      # port 5001 (DATASERVE_PORT to change)
"""

import os

import numpy as np
from array_server import Rows  # only the type: importing starts no server

from dataserve import HTTPDataClient
from dataserve.codecs import CodecRegistry
from dataserve.codecs.numpy import NumpyCodec

port = int(os.environ.get("DATASERVE_PORT", "5001"))

registry = CodecRegistry()
registry.register(NumpyCodec())  # the same codec as the server's

with HTTPDataClient(port=port, registry=registry) as client:
    client.wait_ready(10)  # waits (at most 10 s) until the server answers
    print(f"shape: {client.send('/shape', type=list[int])}")  # plain JSON

    rows = client.send("/rows", Rows(start=40, stop=45), type=np.ndarray)
    print(f"rows 40-44: shape {rows.shape}, dtype {rows.dtype}")

    # The array received is a read-only view of the reply's bytes: no copy was made.
    print(f"writeable: {rows.flags.writeable}")
    try:
        rows[0, 0] = 0.0
    except ValueError as exc:
        print(f"writing to it: ValueError: {exc}")

    # To change it, copy it first: the copy is yours to write.
    query = rows[2].copy()  # row 42
    query += np.float32(0.01)  # nudge it a little
    print(f"nearest to a nudged row 42: {client.send('/nearest', query, type=int)}")
