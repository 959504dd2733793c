"""dataserve: serve data from one long-running Python process to other programs over HTTP.

Server::

    from dataserve import HTTPDataHandler, run_http_server

    class MyDataHandler(HTTPDataHandler):
        def handle_request(self, resource, payload):
            if resource == "/xdata":
                return [1, 2, 3] + payload
            return None

    run_http_server(5001, MyDataHandler)

Client::

    from dataserve import HTTPDataClient

    HTTPDataClient(port=5001).send("/xdata", [4, 5, 6])  # [1, 2, 3, 4, 5, 6]

The server side (`HTTPDataServer`, `run_http_server`) and the asyncio client
(`AsyncHTTPDataClient`) are imported on first use, so that a program that only calls a server
does not pay for the one, nor a program without asyncio for the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import HTTPDataClient
from ._errors import (
    BadRequest,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DataServeError,
    DecodeError,
    EncodeError,
    LengthRequired,
    MethodNotAllowed,
    PayloadTooLarge,
    ReadTimeout,
    RemoteError,
    RequestTimeout,
    ResourceNotFound,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    WriteTimeout,
)
from ._handler import HTTPDataHandler, route

if TYPE_CHECKING:
    from ._aclient import AsyncHTTPDataClient
    from ._server import HTTPDataServer, run_http_server

__version__ = "0.2.0.dev0"

__all__ = [
    "AsyncHTTPDataClient",
    "BadRequest",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DataServeError",
    "DecodeError",
    "EncodeError",
    "HTTPDataClient",
    "HTTPDataHandler",
    "HTTPDataServer",
    "LengthRequired",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "ReadTimeout",
    "RemoteError",
    "RequestTimeout",
    "ResourceNotFound",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "WriteTimeout",
    "route",
    "run_http_server",
]

_LAZY = {
    "AsyncHTTPDataClient": "_aclient",
    "HTTPDataServer": "_server",
    "run_http_server": "_server",
}

if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name is an error

    def __getattr__(name: str) -> Any:
        module_name = _LAZY.get(name)
        if module_name is None:
            raise AttributeError(f"module 'dataserve' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(f".{module_name}", __name__), name)
        if isinstance(value, type):
            value.__module__ = __name__
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(__all__)


for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
