"""The exception tree: every error dataserve raises derives from `DataServeError`.

::

    DataServeError
    ├── EncodeError (also TypeError)     no codec encodes the value; raised before any traffic
    ├── DecodeError (also ValueError)    a body its codec cannot decode, or a failed typed decode
    ├── TransportError                   the exchange itself failed
    │   ├── ConnectError                 could not connect (refused, unreachable, DNS)
    │   │   └── ConnectTimeout           connecting took longer than ``connect_timeout``
    │   ├── ReadTimeout                  no reply within ``timeout``; the handler may have run
    │   ├── WriteTimeout                 the server stopped reading the request: it never ran
    │   └── ConnectionLost               the connection broke while the request or reply travelled
    └── ServerError                      the server answered with an error status
        ├── BadRequest                   400
        ├── Unauthorized                 401
        ├── ResourceNotFound             404
        ├── MethodNotAllowed             405
        ├── RequestTimeout               408
        ├── LengthRequired               411
        ├── PayloadTooLarge              413
        ├── UnsupportedMediaType         415
        ├── RemoteError                  500 (``.exception_type``)
        └── ServiceUnavailable           503

Every exception passes all of its ``__init__`` arguments to ``super().__init__`` so that it
survives pickling (e.g. across a ``multiprocessing`` pool).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BadRequest",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DataServeError",
    "DecodeError",
    "EncodeError",
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
    "error_class_for_status",
]


class DataServeError(Exception):
    """Base class of every error raised by dataserve."""


class EncodeError(DataServeError, TypeError):
    """No codec encodes the value; raised before any network traffic."""


class DecodeError(DataServeError, ValueError):
    """A body its codec cannot decode, or a reply that does not fit the requested ``type=``.

    For a typed decode the message ends with msgspec's path to the offending item
    (``... - at `$[2]```).
    """


class TransportError(DataServeError):
    """The exchange with the server failed: no connection, a broken connection, or a timeout.

    Attributes:
        url: The URL the request was for.
    """

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message, url)
        self.message = message
        self.url = url

    def __str__(self) -> str:
        return self.message


class ConnectError(TransportError):
    """Could not connect to the server (refused, unreachable, name not found).

    The request never left this process, so it is safe to send again.
    """


class ConnectTimeout(ConnectError):
    """No connection could be made within ``connect_timeout``."""


class ReadTimeout(TransportError):
    """The server did not reply within ``timeout``; the handler may have run."""


class WriteTimeout(TransportError):
    """The server stopped reading the request body for longer than ``timeout``.

    The request was not sent completely, so the handler never received it (a dataserve
    server calls the handler only with the whole body). Not resent automatically: a server
    that stopped reading once (overloaded, or stuck) is likely to stop again.
    """


class ConnectionLost(TransportError):
    """The connection broke after the request was sent and before the whole reply arrived.

    The handler may have run: dataserve does not resend such a request unless the client was
    created with ``retries=``.
    """


class ServerError(DataServeError):
    """The server answered with an error status.

    Attributes:
        status: The HTTP status code, e.g. ``404``.
        detail: The ``detail`` member of the server's problem+json body (or the raw body).
        url: The URL of the request.
    """

    status_code: int = 0

    def __init__(self, message: str, status: int, detail: str = "", url: str = "") -> None:
        super().__init__(message, status, detail, url)
        self.message = message
        self.status = status
        self.detail = detail
        self.url = url

    def __str__(self) -> str:
        return self.message


class BadRequest(ServerError):
    """400: the server could not decode the payload (bad JSON, bad UTF-8, failed validation)."""

    status_code = 400


class Unauthorized(ServerError):
    """401: the server requires a token and the request lacked the right one."""

    status_code = 401


class ResourceNotFound(ServerError):
    """404: the handler returned ``None`` for the resource.

    Either the handler does not handle that resource, or ``None`` was its answer: for
    `handle_request` and routes whose return annotation does not admit ``None``, ``None``
    means "not handled". A route annotated ``-> X | None`` answers ``null`` instead, and
    `send` returns ``None``. The message carries the server's explanation (``.detail``).
    """

    status_code = 404


class MethodNotAllowed(ServerError):
    """405: the server accepts only PUT (calls) and HEAD (liveness)."""

    status_code = 405


class RequestTimeout(ServerError):
    """408: the request took longer to arrive than the server's ``request_timeout``."""

    status_code = 408


class LengthRequired(ServerError):
    """411: the request had no ``Content-Length``."""

    status_code = 411


class PayloadTooLarge(ServerError):
    """413: the payload is larger than the server's ``max_body_size``."""

    status_code = 413


class UnsupportedMediaType(ServerError):
    """415: the server has no codec for the request's ``Content-Type``."""

    status_code = 415


class RemoteError(ServerError):
    """500: the handler raised, or returned a value no codec encodes.

    Attributes:
        exception_type: The class name of the exception raised on the server (``""`` when the
            failure was not an exception in the handler).
        traceback: The server's traceback of that exception when the server was started with
            ``expose_tracebacks=True``; ``""`` otherwise.
    """

    status_code = 500

    def __init__(
        self,
        message: str,
        status: int = 500,
        detail: str = "",
        url: str = "",
        exception_type: str = "",
        traceback: str = "",
    ) -> None:
        ServerError.__init__(self, message, status, detail, url)
        self.args = (message, status, detail, url, exception_type, traceback)
        self.exception_type = exception_type
        self.traceback = traceback


class ServiceUnavailable(ServerError):
    """503: the server is at its connection limit or shutting down; try again later."""

    status_code = 503


_BY_STATUS: Final[dict[int, type[ServerError]]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        ResourceNotFound,
        MethodNotAllowed,
        RequestTimeout,
        LengthRequired,
        PayloadTooLarge,
        UnsupportedMediaType,
        RemoteError,
        ServiceUnavailable,
    )
}


def error_class_for_status(status: int) -> type[ServerError]:
    """The `ServerError` subclass for an HTTP status (`ServerError` itself for others)."""
    return _BY_STATUS.get(status, ServerError)
