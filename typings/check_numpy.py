"""The NumPy codec against the public API (needs numpy, as the typecheck session installs it)."""

from __future__ import annotations

from typing import Any, assert_type

import numpy as np
import numpy.typing as npt

from dataserve import HTTPDataClient, HTTPDataHandler, route
from dataserve.codecs import Codec, CodecRegistry
from dataserve.codecs.numpy import NumpyCodec


class Arrays(HTTPDataHandler):
    @route("/scale")
    def scale(self, payload: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return payload * 2.0


def arrays(client: HTTPDataClient) -> None:
    registry = CodecRegistry()
    registry.register(NumpyCodec())
    codec: Codec[Any] = NumpyCodec()
    assert_type(NumpyCodec().content_type(np.zeros(3)), str)
    assert_type(registry.content_type(codec, np.zeros(3)), str)
    assert_type(client.send("/scale", np.zeros(3), type=np.ndarray), np.ndarray[Any, Any])
    scaled = client.send("/scale", np.zeros(3), type=npt.NDArray[np.float64])
    assert_type(scaled, npt.NDArray[np.float64])
