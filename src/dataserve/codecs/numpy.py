"""NumPy arrays as ``application/x-numpy`` (opt-in; the only dataserve module importing numpy).

Needs the ``numpy`` extra (``pip install 'dataserve[numpy]'``). Register the codec on both
sides::

    from dataserve.codecs import CodecRegistry
    from dataserve.codecs.numpy import NumpyCodec

    registry = CodecRegistry()
    registry.register(NumpyCodec())
    client = HTTPDataClient(port=5001, registry=registry)

On the wire, the body is the array's bytes in C order and the ``Content-Type`` carries its dtype
and shape: ``application/x-numpy; dtype="<f8"; shape="3,4"``. An array is sent from its own
buffer (a non-contiguous one is made contiguous first), and decoded without copying the body:
the array received is a read-only view of it (``.copy()`` it to write). Object and structured
dtypes are refused: they would need pickle, which dataserve never uses.
"""

from __future__ import annotations

import builtins
import typing
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

__all__ = ["NumpyCodec"]


class NumpyCodec:
    """``numpy.ndarray`` as ``application/x-numpy``, dtype and shape in media-type parameters.

    Safe to share between threads. Decoding checks that the body has exactly the size that
    dtype and shape announce, so a hostile peer cannot make it read past the body.
    """

    media_type: Final = "application/x-numpy"
    types: Final[tuple[type, ...]] = (np.ndarray,)

    def content_type(self, value: np.ndarray[Any, Any], /) -> str:
        """The ``Content-Type`` for this array: the media type with its dtype and shape."""
        shape = ",".join(str(n) for n in value.shape)
        return f'{self.media_type}; dtype="{_wire_dtype(value.dtype)}"; shape="{shape}"'

    def encode(self, value: np.ndarray[Any, Any], /) -> memoryview:
        """The array's bytes in C order, from its own buffer when it is C-contiguous.

        Raises:
            TypeError: An object or structured dtype, or a masked array (its mask would be
                lost: send ``.filled()``, or data and mask separately).
        """
        if isinstance(value, np.ma.MaskedArray):
            raise TypeError("a masked array is not sent: its mask would be lost")
        _wire_dtype(value.dtype)
        array = np.ascontiguousarray(value)
        return array.reshape(-1).view(np.uint8).data

    def decode(
        self, data: bytes, params: Mapping[str, str], type: object = None
    ) -> np.ndarray[Any, Any]:
        """A read-only array over the body, with the dtype and shape of the parameters.

        Raises:
            ValueError: A parameter is missing or malformed, the body's size does not match,
                or ``type`` is not an array type.
            TypeError: The dtype is an object or structured one.
        """
        if type is not None:
            origin = typing.get_origin(type) or type  # np.ndarray[Any, ...], NDArray[...]
            if not (isinstance(origin, builtins.type) and issubclass(np.ndarray, origin)):
                raise ValueError(f"{self.media_type} decodes to numpy.ndarray, not {type!r}")
        try:
            dtype = np.dtype(params["dtype"])
            text = params["shape"]
        except KeyError as exc:
            raise ValueError(f"{self.media_type} needs a {exc.args[0]!r} parameter") from None
        except TypeError as exc:
            raise ValueError(f"invalid dtype parameter {params['dtype']!r}") from exc
        _wire_dtype(dtype)
        try:
            shape = tuple(int(n) for n in text.split(",")) if text else ()
        except ValueError:
            raise ValueError(f"invalid shape parameter {text!r}") from None
        if any(n < 0 for n in shape):
            raise ValueError(f"invalid shape parameter {text!r}")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != len(data):
            raise ValueError(
                f"body of {len(data)} bytes does not hold an array of shape {shape} "
                f"and dtype {dtype.str!r}"
            )
        return np.ndarray(shape, dtype, buffer=data)  # a view over the body: no copy


def _wire_dtype(dtype: np.dtype[Any]) -> str:
    """The dtype's string on the wire (``"<f8"``); refuses what cannot travel as raw bytes."""
    if dtype.hasobject or dtype.fields is not None or dtype.kind == "V":
        raise TypeError(
            f"arrays of dtype {dtype!r} are not sent: object and structured dtypes would need "
            "pickle; send a numeric, bool, bytes or str array"
        )
    return dtype.str
