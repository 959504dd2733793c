"""The client side of the public API, as a user writes it. Checked by mypy, never run."""

from __future__ import annotations

import dataclasses
import io
import pathlib
from typing import Annotated, Any, Literal, Optional, Union, assert_type

import msgspec

from dataserve import (
    DataServeError,
    DecodeError,
    EncodeError,
    HTTPDataClient,
    RemoteError,
    ResourceNotFound,
    ServerError,
    TransportError,
)
from dataserve.codecs import CodecRegistry


class Point(msgspec.Struct):
    x: float
    y: float


@dataclasses.dataclass
class Label:
    name: str
    weight: float


def seed_calls() -> None:
    client = HTTPDataClient(port=5001)
    ret = client.send("/xdata", [4, 5, 6])
    assert_type(ret, Any)
    assert_type(client.send("/ydata"), Any)
    assert_type(client.send("ydata", None), Any)


def typed_calls(client: HTTPDataClient) -> None:
    assert_type(client.send("/xs", [4], type=list[int]), list[int])
    assert_type(client.send("/p", type=Point), Point)
    assert_type(client.send("/p", Point(1.0, 2.0), type=Point), Point)
    assert_type(client.send("/label", "a", type=Label), Label)
    assert_type(client.send("/name", type=str), str)
    assert_type(client.send("/blob", b"\x00", type=bytes), bytes)
    assert_type(client.send("/blob", bytearray(b"\x00"), type=bytes), bytes)
    assert_type(client.send("/blob", memoryview(b"\x00"), type=bytes), bytes)
    assert_type(client.send("/weights", type=dict[str, float]), dict[str, float])
    assert_type(client.send("/points", type=list[Point]), list[Point])
    assert_type(client.send("/pair", type=tuple[int, str]), tuple[int, str])
    assert_type(client.send("/n", 3, type=int), int)
    assert_type(client.send("/x", 3, type=float), float)
    assert_type(client.send("/x", 3, type=None), Any)


def type_forms(client: HTTPDataClient) -> None:
    # Type forms that are not a class, through PEP 747's TypeForm (mypy >= 2.2 by default).
    assert_type(client.send("/u", type=int | None), int | None)
    assert_type(client.send("/u", type=Optional[int]), int | None)  # noqa: UP045
    assert_type(client.send("/u", type=Union[int, str]), int | str)  # noqa: UP007
    assert_type(client.send("/u", type=int | str), int | str)
    assert_type(client.send("/l", type=Literal["a", "b"]), Literal["a", "b"])
    assert_type(client.send("/l", type=list[Literal[1, 2]]), list[Literal[1, 2]])
    assert_type(client.send("/p", type=Point | None), Point | None)
    assert_type(client.send("/p", type=Optional[Label]), Label | None)  # noqa: UP045
    assert_type(
        client.send("/p", type=list[Point] | dict[str, Label]), list[Point] | dict[str, Label]
    )
    assert_type(client.send("/a", type=Annotated[int, msgspec.Meta(ge=0)]), int)
    assert_type(client.send("/o", type=object), object)
    alias = list[int]
    assert_type(client.send("/xs", type=alias), list[int])
    maybe: int | None = client.send("/u", type=int | None)
    choice: Literal["a", "b"] = client.send("/l", type=Literal["a", "b"])
    print(maybe, choice)


def typed_results_flow(client: HTTPDataClient) -> None:
    total: int = sum(client.send("/xs", [4], type=list[int]))
    name: str = client.send("/name", type=str).upper()
    point = client.send("/p", type=Point)
    x: float = point.x
    weights = client.send("/weights", type=dict[str, float])
    first: float = weights["a"]
    print(total, name, x, first)


def constructors() -> None:
    assert_type(HTTPDataClient(5001), HTTPDataClient)
    assert_type(HTTPDataClient(port=5001, address="http://localhost:"), HTTPDataClient)
    assert_type(HTTPDataClient(url="http://127.0.0.1:5001"), HTTPDataClient)
    HTTPDataClient(
        url="https://example.invalid:5001",
        timeout=5.0,
        connect_timeout=1.0,
        retries=0,
        auth_token="s3cret",
        registry=CodecRegistry(),
        pool_size=8,
    )
    HTTPDataClient(port=5001, timeout=5, connect_timeout=1)  # ints are floats
    assert_type(HTTPDataClient(unix_socket="/run/app/data.sock"), HTTPDataClient)
    HTTPDataClient(unix_socket=pathlib.Path("/run/app/data.sock"), timeout=5.0, pool_size=8)
    HTTPDataClient(url="http+unix://%2Frun%2Fapp%2Fdata.sock", auth_token="s3cret")
    registry = CodecRegistry(plugins=False)
    client = HTTPDataClient(url="http://127.0.0.1:5001", registry=registry)
    assert_type(client.url, str)
    client.wait_ready(5.0)
    client.wait_ready()
    client.close()


def context_manager() -> None:
    with HTTPDataClient(port=5001) as client:
        assert_type(client, HTTPDataClient)
        assert_type(client.send("/xs", type=list[int]), list[int])


def errors(client: HTTPDataClient) -> None:
    try:
        client.send("/ydata")
    except ResourceNotFound as e:
        assert_type(e.status, int)
        assert_type(e.detail, str)
        assert_type(e.url, str)
    except RemoteError as e:
        assert_type(e.status, int)
        assert_type(e.exception_type, str)
    except ServerError as e:
        assert_type(e.status, int)
        assert_type(e.detail, str)
        assert_type(e.url, str)
        assert_type(e.message, str)
    except TransportError as e:
        assert_type(e.url, str)
        assert_type(e.message, str)
    except EncodeError as e:
        te: TypeError = e
        print(te)
    except DecodeError as e:
        ve: ValueError = e
        print(ve)
    except DataServeError as e:
        ex: Exception = e
        print(ex)


def streaming(client: HTTPDataClient, path: str) -> None:
    """SPEC 10: file payloads, ``out=`` (an int: the bytes written) and ``progress=``."""

    def report(done: int, total: int | None) -> None:
        print(done, total)

    with open(path, "rb") as f:
        assert_type(client.send("/upload", f), Any)
        assert_type(client.send("/upload", f, type=int), int)
        assert_type(client.send("/upload", f, type=int, progress=report), int)
    with open(path, "wb") as out:
        assert_type(client.send("/blob", out=out), int)
        assert_type(client.send("/blob", 3, out=out, progress=report), int)
    assert_type(client.send("/blob", out=io.BytesIO()), int)
    assert_type(client.send("/xs", [1], progress=lambda done, total: None), Any)
    assert_type(client.send("/xs", [1], progress=print), Any)
    written: int = client.send("/blob", out=io.BytesIO())
    print(written)
