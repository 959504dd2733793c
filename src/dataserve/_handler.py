"""HTTPDataHandler, the class users subclass, and the ``@route`` decorator for typed routes."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar

from ._stream import is_stream_annotation

__all__ = [
    "HTTPDataHandler",
    "ResolvedRoute",
    "admits_none",
    "instantiate_handler",
    "resolve_routes",
    "route",
]

F = TypeVar("F", bound=Callable[..., Any])

_ROUTE_ATTR: Final = "__dataserve_route__"


def route(resource: str) -> Callable[[F], F]:
    """Declare a method of an `HTTPDataHandler` subclass as the handler of one resource.

    The payload is decoded into the method's ``payload`` annotation before the method runs (a
    mismatch is a 400 with msgspec's path in ``detail``), and the return value must fit the
    return annotation (otherwise a 500). Unannotated means untyped. String annotations
    (``from __future__ import annotations``) are resolved when the server is created.

    Returning ``None``: a route whose return annotation admits ``None`` (``X | None``,
    ``Optional[X]``, a union with ``None``, or ``None`` itself) answers ``200`` with JSON
    ``null``, and the client's `send` returns ``None``: that is how a handler says "nothing"
    (a cache miss, an empty answer) as a value. Any other route, and `handle_request`, keep the
    seed's meaning: ``None`` is "not handled", a 404 (`ResourceNotFound` for the caller).

    A payload annotated ``typing.BinaryIO`` (or ``IO[bytes]``) is not decoded: the route gets
    the request body as a readable binary stream (any ``Content-Type``), reads what it wants
    (at most the body, never more than ``max_body_size``), and may write it straight to disk
    with ``shutil.copyfileobj``. What it leaves unread is discarded after it returns (up to
    1 MiB; beyond that the connection is closed after the reply). A route may also return a
    binary file object (streamed back, then closed) or a ``memoryview``.

    Example::

        class Points(HTTPDataHandler):
            @route("/add")
            def add(self, payload: list[int]) -> int:
                return sum(payload)

            @route("/find")
            def find(self, payload: str) -> int | None:  # None answers null, not 404
                return self.index.get(payload)

    Args:
        resource: The path, e.g. ``"/add"`` (a leading ``/`` is added if missing).
    """
    if not resource.startswith("/"):
        resource = "/" + resource

    def decorate(func: F) -> F:
        setattr(func, _ROUTE_ATTR, resource)
        return func

    return decorate


class HTTPDataHandler:
    """The base class of a data server's handler.

    Override `handle_request` (the catch-all of the seed API), declare typed routes with
    `route`, or both. A server creates one instance (or takes yours) and calls it from several
    threads at once, so guard shared mutable state with a lock.

    Example::

        class MyDataHandler(HTTPDataHandler):
            def handle_request(self, resource, payload):
                if resource == "/xdata":
                    return [1, 2, 3] + payload
                return None  # 404
    """

    _dataserve_routes: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                resource = getattr(attr, _ROUTE_ATTR, None)
                if isinstance(resource, str):
                    routes[resource] = name
        cls._dataserve_routes = routes

    def __new__(cls, *args: Any, **kwargs: Any) -> HTTPDataHandler:
        if cls.handle_request is HTTPDataHandler.handle_request and not cls._dataserve_routes:
            raise TypeError(
                f"{cls.__qualname__} handles no resource: override "
                "handle_request(self, resource, payload) or declare a method with "
                "@route('/name')"
            )
        return super().__new__(cls)

    def handle_request(self, resource: str, payload: Any) -> object:
        """Answer a call to a resource that no route names.

        Called from several threads at once (one per connection being served).

        Args:
            resource: The URL path, percent-decoded, e.g. ``"/xdata"``.
            payload: The decoded request body (``None`` when the client sent none).
        Returns:
            The value to send back, or ``None`` for "this resource is not handled" (404,
            whatever the annotation says). To answer "nothing" as a value (JSON ``null``),
            declare a `route` whose return annotation admits ``None``.
        """
        return None


class ResolvedRoute:
    """A route bound to a handler instance, with its annotations resolved.

    ``stream`` is set for a payload annotated ``typing.BinaryIO`` (or ``IO[bytes]``): the
    route reads the request body as a stream instead of receiving a decoded value.
    """

    __slots__ = ("method", "none_is_value", "payload_type", "return_type", "stream")

    def __init__(
        self,
        method: Callable[[Any], object],
        payload_type: object,
        return_type: object,
        none_is_value: bool = False,
        stream: bool = False,
    ) -> None:
        self.method = method
        self.payload_type = payload_type
        self.return_type = return_type
        self.stream = stream
        self.none_is_value = none_is_value
        """The return annotation admits ``None``: a returned ``None`` is answered as ``null``."""


def admits_none(annotation: object) -> bool:
    """Whether a return annotation admits ``None``: ``None``, ``X | None``, ``Optional[X]``,
    a ``Union`` with ``None`` (``Annotated`` and type aliases looked through).

    ``Any`` and ``object`` do not count: they mean "untyped", where ``None`` stays "not
    handled".
    """
    for _ in range(16):  # bounded: aliases of aliases
        if annotation is None or annotation is type(None):
            return True
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union or origin is types.UnionType:
            return any(admits_none(arg) for arg in typing.get_args(annotation))
        elif origin is typing.Literal:
            return None in typing.get_args(annotation)
        elif hasattr(annotation, "__value__"):  # a `type X = ...` alias (Python 3.12+)
            annotation = annotation.__value__
        else:
            return False
    return False


def resolve_routes(handler: HTTPDataHandler) -> dict[str, ResolvedRoute]:
    """Bind a handler's routes and resolve their annotations (once, at server creation).

    Raises:
        TypeError: A route's signature does not take exactly one payload argument, or an
            annotation cannot be resolved.
    """
    resolved: dict[str, ResolvedRoute] = {}
    for resource, name in type(handler)._dataserve_routes.items():
        method = getattr(handler, name)
        func = getattr(method, "__func__", method)
        params = list(inspect.signature(method).parameters.values())
        if len(params) != 1:
            raise TypeError(
                f"route {resource!r} ({type(handler).__qualname__}.{name}) must take exactly "
                "one argument besides self: the payload"
            )
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:
            raise TypeError(f"cannot resolve the annotations of route {resource!r}: {exc}") from exc
        payload_type = hints.get(params[0].name)
        return_type = hints.get("return")
        none_is_value = "return" in hints and admits_none(return_type)
        if payload_type is Any:
            payload_type = None
        if return_type in (Any, object, type(None)):
            return_type = None
        stream = is_stream_annotation(payload_type)  # the body as a stream, not decoded
        if stream:
            payload_type = None
        if is_stream_annotation(return_type, or_none=True):  # a returned file goes as it is
            return_type = None
        resolved[resource] = ResolvedRoute(method, payload_type, return_type, none_is_value, stream)
    return resolved


def instantiate_handler(handler: type[HTTPDataHandler] | HTTPDataHandler) -> HTTPDataHandler:
    """The handler instance: a subclass is instantiated once, with no arguments."""
    if isinstance(handler, type):
        if not issubclass(handler, HTTPDataHandler):
            raise TypeError(f"{handler.__qualname__} is not a subclass of HTTPDataHandler")
        return handler()
    if not isinstance(handler, HTTPDataHandler):
        raise TypeError(
            f"expected an HTTPDataHandler subclass or instance, got {type(handler).__qualname__}"
        )
    return handler
