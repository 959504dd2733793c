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
dtypes are refused: their bytes are not the values (an object array holds pointers to Python
objects, which only pickle could send, and dataserve never uses pickle).
"""

from __future__ import annotations

import builtins
import typing
from collections.abc import Mapping
from typing import Any, Final

import msgspec
import numpy as np

from ._registry import type_name

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
            raise TypeError(
                "NumpyCodec does not send masked arrays: the mask would be lost; send "
                "array.filled(...), or the data and the mask as two arrays"
            )
        _wire_dtype(value.dtype)
        array = np.ascontiguousarray(value)
        return array.reshape(-1).view(np.uint8).data

    def decode(
        self, data: bytes, params: Mapping[str, str], type: object = None
    ) -> np.ndarray[Any, Any]:
        """A read-only array over the body, with the dtype and shape of the parameters.

        Raises:
            ValueError: A parameter is missing or malformed, or the body's size does not match.
            TypeError: The dtype is an object or structured one.
            msgspec.ValidationError: The body is a valid array but ``type`` is not an array
                type.
        """
        try:
            dtype = np.dtype(params["dtype"])
            text = params["shape"]
        except KeyError as exc:
            raise ValueError(f"{self.media_type} needs a {exc.args[0]!r} parameter") from None
        except TypeError as exc:
            raise ValueError(f"invalid dtype parameter {params['dtype']!r}") from exc
        _wire_dtype(dtype, received=True)
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
        if type is not None:
            origin = _origin(type)
            if not (isinstance(origin, builtins.type) and issubclass(np.ndarray, origin)):
                raise msgspec.ValidationError(f"Expected `{type_name(type)}`, got `numpy.ndarray`")
        return np.ndarray(shape, dtype, buffer=data)  # a view over the body: no copy


def _origin(target: object) -> object:
    """The class behind ``np.ndarray[Any, ...]`` or ``NDArray[...]``, through ``type`` aliases
    (numpy defines ``NDArray`` as one on Python 3.12+, whose origin is the alias itself)."""
    for _ in range(8):  # bounded: an alias of an alias of ...
        origin = typing.get_origin(target) or target
        value = getattr(origin, "__value__", None)  # a typing.TypeAliasType
        if value is None:
            return origin
        target = value
    return target


def _wire_dtype(dtype: np.dtype[Any], *, received: bool = False) -> str:
    """The dtype's string on the wire (``"<f8"``); refuses what cannot travel as raw bytes."""
    if dtype.hasobject and dtype.fields is None:
        if received:
            raise TypeError(
                "an array of dtype object is refused: its bytes would be pointers to Python "
                "objects (only pickle sends those, and dataserve never unpickles)"
            )
        raise TypeError(
            "NumpyCodec does not send arrays of dtype object (they hold Python objects, whose "
            "bytes are pointers); convert to a numeric, bool, bytes or str dtype (e.g. "
            "array.astype(float)), or send bytes you encode yourself"
        )
    if dtype.fields is not None or dtype.kind == "V":
        if received:
            raise TypeError(f"an array of structured or void dtype {dtype.str!r} is refused")
        raise TypeError(
            f"NumpyCodec does not send arrays of structured or void dtype {dtype.str!r}; send "
            "each field as an array of its own, or send bytes you encode yourself"
        )
    return dtype.str
