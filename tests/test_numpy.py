"""The opt-in NumPy codec: arrays sent from their buffer, decoded without copying the body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from dataserve import (
    DecodeError,
    EncodeError,
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    UnsupportedMediaType,
    route,
)
from dataserve.codecs import CodecRegistry
from dataserve.codecs.numpy import NumpyCodec

from .conftest import put, raw_exchange


class Arrays(HTTPDataHandler):
    def __init__(self) -> None:
        self.seen: list[np.ndarray[Any, Any]] = []

    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/echo":
            self.seen.append(payload)
            return payload
        if resource == "/objects":  # a reply NumpyCodec cannot send
            return np.array([{}, None], dtype=object)
        if resource == "/flags":  # what the handler was given
            return {
                "writeable": bool(payload.flags.writeable),
                "owns_data": bool(payload.flags.owndata),
                "base": type(payload.base).__name__,
            }
        return None

    @route("/scale")
    def scale(self, payload: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return payload * 2


def numpy_registry() -> CodecRegistry:
    registry = CodecRegistry(plugins=False)
    registry.register(NumpyCodec())
    return registry


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPDataServer]:
    with HTTPDataServer(Arrays, registry=numpy_registry()) as srv:
        yield srv


@pytest.fixture
def client(server: HTTPDataServer) -> Iterator[HTTPDataClient]:
    with HTTPDataClient(url=server.url, registry=numpy_registry()) as c:
        yield c


ARRAYS = {
    "float64-2d": np.arange(12, dtype=np.float64).reshape(3, 4) / 7,
    "int32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "big-endian": np.arange(5, dtype=">u2"),
    "bool": np.array([True, False, True]),
    "zero-d": np.array(3.5),
    "empty": np.empty((0, 3), dtype=np.int16),
    "non-contiguous": np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2],
    "fortran-order": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "unicode": np.array(["a", "héllo", ""], dtype="<U5"),
    "bytes": np.array([b"ab", b"\x00\xff"], dtype="S2"),
    "datetime64": np.array(["2026-12-01T10:00", "1970-01-01T00:00"], dtype="datetime64[ns]"),
    "complex": np.array([1 + 2j, -3j], dtype=np.complex128),
}


@pytest.mark.parametrize("array", ARRAYS.values(), ids=ARRAYS.keys())
def test_array_round_trips_with_dtype_shape_and_values(
    client: HTTPDataClient, array: np.ndarray[Any, Any]
) -> None:
    reply = client.send("/echo", array, type=np.ndarray)
    assert reply.dtype == array.dtype
    assert reply.shape == array.shape
    np.testing.assert_array_equal(reply, array)


def test_wire_carries_dtype_and_shape_parameters_and_raw_bytes(server: HTTPDataServer) -> None:
    array = np.arange(6, dtype="<f8").reshape(2, 3)
    reply = raw_exchange(
        server.port,
        put("/echo", array.tobytes(), 'application/x-numpy; dtype="<f8"; shape="2,3"'),
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == 'application/x-numpy; dtype="<f8"; shape="2,3"'
    assert reply.body == array.tobytes()


def test_contiguous_array_is_sent_from_its_own_buffer() -> None:
    array = np.arange(1000, dtype=np.float64)
    body = NumpyCodec().encode(array)
    assert np.shares_memory(np.frombuffer(body, dtype=np.uint8), array)


def test_body_is_decoded_without_copying() -> None:
    data = np.arange(4, dtype="<i4").tobytes()
    array = NumpyCodec().decode(data, {"dtype": "<i4", "shape": "2,2"})
    assert array.base is data  # a view over the received body
    assert not array.flags.writeable
    assert array.tolist() == [[0, 1], [2, 3]]


def test_handler_receives_a_read_only_view_of_the_body(client: HTTPDataClient) -> None:
    flags = client.send("/flags", np.arange(3))
    assert flags == {"writeable": False, "owns_data": False, "base": "bytes"}


def test_typed_route_takes_and_returns_arrays(client: HTTPDataClient) -> None:
    reply = client.send("/scale", np.array([1, 2, 3], dtype=np.int64), type=np.ndarray)
    assert reply.tolist() == [2, 4, 6]
    assert reply.dtype == np.int64


def test_object_array_is_refused_before_any_traffic(
    server: HTTPDataServer, client: HTTPDataClient
) -> None:
    calls = len(server.handler.seen)  # type: ignore[attr-defined]
    with pytest.raises(EncodeError, match="object"):
        client.send("/echo", np.array([{}, None], dtype=object))
    assert len(server.handler.seen) == calls  # type: ignore[attr-defined]


def test_object_array_error_says_why_numpy_codec_refuses_it(client: HTTPDataClient) -> None:
    # NumpyCodec is registered: the message must not say to register a codec for ndarray.
    with pytest.raises(EncodeError) as info:
        client.send("/echo", np.array([{}, None], dtype=object))
    assert str(info.value) == (
        "The application/x-numpy codec cannot encode this 'ndarray' value (sending to '/echo'): "
        "NumpyCodec does not send arrays of dtype object (they hold Python objects, whose bytes "
        "are pointers); convert to a numeric, bool, bytes or str dtype (e.g. "
        "array.astype(float)), or send bytes you encode yourself"
    )
    with pytest.raises(EncodeError, match=r"structured or void dtype '\|V8'; send each field"):
        client.send("/echo", np.zeros(1, dtype="i4,i4"))


def test_object_array_reply_is_500_saying_why(server: HTTPDataServer) -> None:
    reply = raw_exchange(server.port, put("/objects", b"[]"))
    assert reply.status == 500
    detail = reply.json()["detail"]
    assert detail.startswith(
        "the handler returned a value of type 'ndarray' for '/objects' that the server could "
        "not encode: The application/x-numpy codec cannot encode this 'ndarray' value: "
        "NumpyCodec does not send arrays of dtype object"
    )
    assert "register a codec" not in detail
    reply = raw_exchange(
        server.port, put("/echo", b"\x00" * 8, 'application/x-numpy; dtype="<f8"; shape="1"')
    )
    assert reply.status == 200


def test_array_reply_decoded_as_another_type_does_not_match_it(client: HTTPDataClient) -> None:
    with pytest.raises(DecodeError) as info:
        client.send("/echo", np.arange(3), type=list[int])
    assert str(info.value) == (
        f"the application/x-numpy reply of PUT {client.url}/echo is valid but does not match "
        "list[int]: Expected `list[int]`, got `numpy.ndarray`"
    )


def test_masked_array_is_refused_rather_than_losing_its_mask(client: HTTPDataClient) -> None:
    with pytest.raises(EncodeError, match="mask"):
        client.send("/echo", np.ma.masked_array([1, 2], mask=[False, True]))


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ('application/x-numpy; dtype="<f8"; shape="2,3"', b"\x00" * 47),  # one byte short
        ('application/x-numpy; dtype="<f8"; shape="1"', b"\x00" * 16),  # too long
        ('application/x-numpy; dtype="<f8"', b"\x00" * 8),  # no shape
        ('application/x-numpy; shape="1"', b"\x00" * 8),  # no dtype
        ('application/x-numpy; dtype="|O"; shape="1"', b"\x00" * 8),  # pickle's dtype
        ('application/x-numpy; dtype="<i4,<i4"; shape="1"', b"\x00" * 8),  # structured
        ('application/x-numpy; dtype="nonsense"; shape="1"', b"\x00" * 8),
        ('application/x-numpy; dtype="<f8"; shape="-1"', b"\x00" * 8),
        ('application/x-numpy; dtype="<f8"; shape="a,b"', b"\x00" * 8),
    ],
)
def test_malformed_array_body_is_400_and_server_keeps_serving(
    server: HTTPDataServer, client: HTTPDataClient, content_type: str, body: bytes
) -> None:
    reply = raw_exchange(server.port, put("/echo", body, content_type))
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/problem+json"
    np.testing.assert_array_equal(client.send("/echo", np.arange(3), type=np.ndarray), [0, 1, 2])


def test_server_without_the_codec_refuses_arrays_with_415(client: HTTPDataClient) -> None:
    with HTTPDataServer(Arrays, registry=CodecRegistry(plugins=False)) as plain:
        reply = raw_exchange(
            plain.port, put("/echo", b"\x00" * 8, 'application/x-numpy; dtype="<f8"; shape="1"')
        )
        assert reply.status == 415
        with HTTPDataClient(url=plain.url, registry=numpy_registry()) as c:
            with pytest.raises(UnsupportedMediaType, match="x-numpy"):
                c.send("/echo", np.arange(2))


def test_ndarray_type_forms_decode_on_every_python() -> None:
    # numpy.typing.NDArray is a `type` alias on Python 3.12+, whose origin is the alias itself:
    # a typed route or type= of NDArray[np.float32] must still take the array.
    from numpy.typing import NDArray

    codec = NumpyCodec()
    data = np.arange(3, dtype=np.float32).tobytes()
    params = {"dtype": "<f4", "shape": "3"}
    for target in (NDArray[np.float32], np.ndarray, np.ndarray[Any, Any]):
        assert codec.decode(data, params, target).tolist() == [0.0, 1.0, 2.0]
