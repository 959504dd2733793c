"""A NumPy array server: one matrix loaded once, served as slices and searched by similarity.

Needs numpy (``pip install 'dataserve[numpy]'``). Run it, then ``python array_client.py``::

    python array_server.py                      # port 5001 (DATASERVE_PORT to change)
"""

import os

import msgspec
import numpy as np
import numpy.typing as npt

from dataserve import HTTPDataHandler, route, run_http_server
from dataserve.codecs import CodecRegistry
from dataserve.codecs.numpy import NumpyCodec

Matrix = npt.NDArray[np.float32]

# Arrays travel as raw bytes (dtype and shape in the Content-Type) with the NumpyCodec. It is
# opt-in: register it on the registry of both the server and the client.
registry = CodecRegistry()
registry.register(NumpyCodec())


class Rows(msgspec.Struct):
    """The rows ``start <= index < stop``, as in ``matrix[start:stop]``."""

    start: int
    stop: int


class Embeddings(HTTPDataHandler):
    """10,000 vectors of 64 float32 (2.5 MB), kept in memory; a stand-in for a real model's."""

    def __init__(self) -> None:
        # Built once, before the server listens. A real server would np.load() a file here.
        rng = np.random.default_rng(seed=0)
        vectors = rng.standard_normal((10_000, 64), dtype=np.float32)
        # Each row scaled to unit length, so that a dot product is a cosine similarity.
        self.vectors: Matrix = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        # Requests run in several threads at once; they only read self.vectors, so no lock.

    @route("/shape")
    def shape(self, payload: None) -> list[int]:
        return list(self.vectors.shape)

    @route("/rows")
    def rows(self, payload: Rows) -> Matrix:
        # A slice of rows is a view, not a copy, and the codec sends the bytes of the array's
        # own memory: nothing is converted value by value, as it would be for JSON.
        return self.vectors[payload.start : payload.stop]

    @route("/nearest")
    def nearest(self, payload: Matrix) -> int:
        # The client sent the payload with the NumpyCodec. Anything else (a JSON list, say) is
        # answered 400 before this method runs: the annotation asks for an array.
        return int(np.argmax(self.vectors @ payload))


if __name__ == "__main__":
    run_http_server(int(os.environ.get("DATASERVE_PORT", "5001")), Embeddings, registry=registry)
