"""Lines that must fail type checking, each with the precise error code it must raise.

``mypy --strict`` reports unused ``type: ignore`` comments, so this file fails the check as soon
as one of these lines stops being an error. Never run.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from typing import Any, Literal, Optional

import msgspec

from dataserve import (
    HTTPDataClient,
    HTTPDataHandler,
    HTTPDataServer,
    RemoteError,
    ServerError,
    route,
    run_http_server,
)
from dataserve.codecs import CodecRegistry, register


class Point(msgspec.Struct):
    x: float
    y: float


@dataclasses.dataclass
class Label:
    name: str


def typed_results(client: HTTPDataClient) -> None:
    wrong: int = client.send("/name", type=str)  # type: ignore[assignment]
    # No send overload is a catch-all, so a typed result never fits an incompatible declared
    # type (msgspec's own decode overloads end in one, ``type: Any -> Any``, which mypy used
    # whenever the class overload failed: this line passed before).
    wrong_list: list[str] = client.send("/xs", type=list[int])  # type: ignore[arg-type]
    xs = client.send("/xs", type=list[int])
    wrong_xs: list[str] = xs  # type: ignore[assignment]
    optional: int = client.send("/u", type=int | None)  # type: ignore[assignment]
    also_optional: int = client.send("/u", type=Optional[int])  # type: ignore[assignment]  # noqa: UP045
    letter: Literal["a"] = client.send("/l", type=Literal["a", "b"])  # type: ignore[call-overload]
    point: Point = client.send("/p", type=Point | None)  # type: ignore[assignment]
    label: Label = client.send("/p", type=Point)  # type: ignore[assignment]
    client.send("/u", type=int | None) + 1  # type: ignore[operator]
    client.send("/xs", type=list[int]).append("x")  # type: ignore[arg-type]
    z = client.send("/p", type=Point).z  # type: ignore[attr-defined]
    client.send("/b", type=bytes).encode()  # type: ignore[attr-defined]
    client.send("/d", type=dict[str, float])[1]  # type: ignore[index]
    print(wrong, wrong_list, wrong_xs, optional, also_optional, letter, point, label, z)


def send_arguments(client: HTTPDataClient) -> None:
    client.send(5)  # type: ignore[call-overload]
    client.send("/xs", [1], list[int])  # type: ignore[call-overload]
    client.send("/xs", typ=list[int])  # type: ignore[call-overload]
    client.wait_ready("soon")  # type: ignore[arg-type]


def streaming_arguments(client: HTTPDataClient) -> None:
    out = io.BytesIO()
    client.send("/blob", out=out, type=bytes)  # type: ignore[call-overload]
    client.send("/blob", out="reply.bin")  # type: ignore[call-overload]
    text: str = client.send("/blob", out=out)  # type: ignore[assignment]
    client.send("/xs", [1], progress=_one_argument)  # type: ignore[arg-type]
    print(text)


def _one_argument(done: int) -> None:
    print(done)


def constructors() -> None:
    HTTPDataClient(port="5001")  # type: ignore[arg-type]
    HTTPDataClient(5001, "http://localhost:", "http://x:1")  # type: ignore[call-arg]
    HTTPDataClient(port=5001, registry=[])  # type: ignore[arg-type]
    HTTPDataServer(object)  # type: ignore[arg-type]
    HTTPDataServer(HTTPDataHandler, port="0")  # type: ignore[arg-type]
    HTTPDataServer(HTTPDataHandler, 0, "127.0.0.1", None)  # type: ignore[call-arg]
    run_http_server("5001", HTTPDataHandler)  # type: ignore[arg-type]
    port: str = HTTPDataServer(HTTPDataHandler).port  # type: ignore[assignment]
    print(port)


class WrongResource(HTTPDataHandler):
    def handle_request(self, resource: int, payload: Any) -> object:  # type: ignore[override]
        return None


class MissingPayload(HTTPDataHandler):
    def handle_request(self, resource: str) -> object:  # type: ignore[override]
        return None


class BadRoutes(HTTPDataHandler):
    @route(5)  # type: ignore[arg-type]
    def add(self, payload: list[int]) -> int:
        return sum(payload)


route("/x")(5)  # type: ignore[type-var]


class NoDecode:
    media_type = "application/x-no-decode"
    types = (complex,)

    def encode(self, value: complex, /) -> bytes:
        return repr(value).encode()


class TextEncode:
    media_type = "application/x-text-encode"
    types = (complex,)

    def encode(self, value: complex, /) -> str:
        return repr(value)

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> complex:
        return complex(data.decode())


class IntMediaType:
    media_type = 5
    types = (complex,)

    def encode(self, value: complex, /) -> bytes:
        return repr(value).encode()

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> complex:
        return complex(data.decode())


def codecs(registry: CodecRegistry) -> None:
    registry.register(NoDecode())  # type: ignore[arg-type]
    register(TextEncode())  # type: ignore[arg-type]
    registry.register(IntMediaType())  # type: ignore[arg-type]
    registry.register(object())  # type: ignore[arg-type]


def errors(client: HTTPDataClient) -> None:
    try:
        client.send("/x")
    except RemoteError as e:
        kind: int = e.exception_type  # type: ignore[assignment]
        print(kind)
    except ServerError as e:
        status: str = e.status  # type: ignore[assignment]
        print(status)


# A misspelt name is an error, not Any (the lazy __getattr__ is hidden from type checkers).
from dataserve import HTTPDataClinet  # type: ignore[attr-defined]  # noqa: E402, F401


def misspelt_server_option(handler: type[HTTPDataHandler]) -> None:
    # run_http_server's options are HTTPDataServer's keywords, checked by name and type.
    run_http_server(5001, handler, auth_tokn="x")  # type: ignore[call-arg]
    run_http_server(5001, handler, request_timeout="30")  # type: ignore[arg-type]
