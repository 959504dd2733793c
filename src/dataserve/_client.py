"""HTTPDataClient: calls a data server over one urllib3 connection pool."""

from __future__ import annotations

import os
import time
import weakref
from types import TracebackType
from typing import Any, Final, Self, TypeVar, overload
from urllib.parse import quote

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import (
    HTTPError as Urllib3Error,
)
from urllib3.util import Retry, Timeout, parse_url

from ._errors import (
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DecodeError,
    ReadTimeout,
    TransportError,
)
from ._protocol import _NO_PARAMS, OCTET_STREAM, parse_media_type, raise_for_reply
from .codecs._base import Codec
from .codecs._registry import CodecRegistry, default_registry

__all__ = ["HTTPDataClient"]

T = TypeVar("T")

CONNECT_RETRIES: Final = 2
"""Failed connection attempts are retried this often: the request never left, so it is safe."""
_PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
_CACHE_LIMIT: Final = 1024

_clients: weakref.WeakSet[HTTPDataClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forget_pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class HTTPDataClient:
    """Calls a data server: ``HTTPDataClient(port=5001).send('/xdata', [4, 5, 6])``.

    One urllib3 connection pool, kept alive between calls; safe to share between threads
    (size ``pool_size`` to the number of threads). A context manager; `close` releases the
    pool. After ``os.fork()`` the child opens connections of its own.

    Retry policy: a failure to connect is retried twice with a short backoff (the request never
    left). A request that may have reached the handler (the connection broke after it was sent,
    or the reply timed out) is never sent again unless ``retries`` says so; use ``retries``
    only for handlers that are safe to run twice. Idle connections the server closed are
    noticed before reuse, so a server restart between calls is not an error.

    Args:
        port: The server's port, appended to ``address``.
        address: Scheme and host ending in a colon, as in dataserve 0.1. ``localhost`` means
            ``127.0.0.1``, so no IPv6 attempt fails on every new connection; reach an
            IPv6-only server at ``"http://[::1]:"``.
        url: The full base URL instead of ``port``/``address``, e.g. ``"http://host:5001"``.
        timeout: Seconds to wait for a reply.
        connect_timeout: Seconds to wait for a connection (always finite).
        retries: How many times to resend a request after a failure that may have happened
            after the handler received it (0: never).
        auth_token: Sent as ``Authorization: Bearer <token>``; never shown in ``repr``.
        registry: Codecs to encode payloads and decode replies; the process-wide default when
            ``None``. Its order of preference is sent as ``Accept``.
        pool_size: Connections kept open for reuse (one per thread sharing the client).
        ssl_context: An `ssl.SSLContext` for ``https`` URLs (e.g. with a custom CA).
    """

    def __init__(
        self,
        port: int | None = None,
        address: str = "http://localhost:",
        *,
        url: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retries: int = 0,
        auth_token: str | None = None,
        registry: CodecRegistry | None = None,
        pool_size: int = 16,
        ssl_context: Any = None,
    ) -> None:
        if url is None:
            if port is None:
                raise ValueError(
                    "give the server's port, e.g. HTTPDataClient(port=5001), "
                    "or url='http://host:port'"
                )
            url = f"{address}{port}"
        try:
            parsed = parse_url(url)
        except LocationParseError:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        if not 0 < connect_timeout < float("inf") or not timeout > 0:
            raise ValueError("timeout and connect_timeout must be positive; connect_timeout finite")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        host = parsed.host
        connect_host = "127.0.0.1" if host == "localhost" else host.strip("[]")
        self.url = (
            f"{parsed.scheme}://{host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
        )
        """The server's base URL, e.g. ``"http://localhost:5001"``."""
        self._scheme = parsed.scheme
        self._host = connect_host
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = (parsed.path or "").rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self._auth = None if auth_token is None else f"Bearer {auth_token}"
        self.registry = registry if registry is not None else default_registry()
        self._pool_size = pool_size
        self._ssl_context = ssl_context
        self._timeout = Timeout(connect=connect_timeout, read=timeout)
        methods = frozenset({"PUT", "HEAD"}) if retries else frozenset({"HEAD"})
        self._retry = Retry(
            total=None,
            connect=CONNECT_RETRIES,
            read=retries,
            redirect=0,
            status=0,
            other=0,
            allowed_methods=methods,
            backoff_factor=0.05,
            raise_on_redirect=False,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        self._headers: dict[str, dict[str, str]] = {}
        self._registry_version = -1
        self._paths: dict[str, str] = {}
        self._pool: urllib3.HTTPConnectionPool | None = self._new_pool()
        _clients.add(self)

    def __repr__(self) -> str:
        return f"<HTTPDataClient {self.url}>"

    # -- calls -----------------------------------------------------------------------------

    @overload
    def send(self, resource: str, payload: object = None) -> Any: ...
    @overload
    def send(self, resource: str, payload: object = None, *, type: type[T]) -> T: ...
    @overload
    def send(self, resource: str, payload: object = None, *, type: object) -> Any: ...

    def send(self, resource: str, payload: object = None, *, type: object = None) -> Any:
        """Call a resource with a payload and return the decoded reply.

        Args:
            resource: The resource, e.g. ``"/xdata"`` (a leading ``/`` is added if missing).
            payload: Any value a codec encodes; ``None`` travels as JSON ``null``.
            type: Decode the reply into this type with msgspec's typed decoding
                (``list[int]``, a Struct, a dataclass, ``str``, ...).
        Returns:
            The reply, decoded (into ``type`` when given).
        Raises:
            EncodeError: No codec encodes ``payload`` (raised before any traffic).
            DecodeError: The reply could not be decoded, or does not fit ``type``.
            TransportError: No connection, a broken connection, or a timeout.
            ServerError: The server answered with an error status (a subclass per status).
        """
        if resource[:1] != "/":
            resource = "/" + resource
        path = self._paths.get(resource)
        if path is None:
            path = self._path(resource)
        codec, body = self.registry.encode(payload, resource)
        if self._registry_version != self.registry.version:
            self._reset_headers()
        headers = self._headers.get(codec.media_type) or self._build_headers(codec)
        response = self._request("PUT", path, body, headers)
        data = response.data
        status = response.status
        content_type = response.headers.get("Content-Type")
        if status != 200:
            raise_for_reply(status, content_type, data, "PUT", self.url + path)
        return self._decode(content_type, data, type, path)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers a ``HEAD`` liveness probe.

        Raises:
            TransportError: No answer within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(
                    f"{self.url} was not ready within {timeout} s (last error: {last})", self.url
                ) from last
            try:
                pool = self._get_pool()
                response = pool.urlopen(
                    "HEAD",
                    self._prefix + "/",
                    retries=False,
                    redirect=False,
                    timeout=Timeout(connect=min(remaining, 1.0), read=remaining),
                    headers={"Authorization": self._auth} if self._auth else None,
                )
                if response.status < 500:
                    return
                last = TransportError(f"HEAD {self.url}/ answered {response.status}")
            except (Urllib3Error, OSError) as exc:
                last = exc
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        """Close every pooled connection. The client can't be used afterwards."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        _clients.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        options: dict[str, Any] = {
            "maxsize": self._pool_size,
            "block": False,
            "timeout": self._timeout,
            "retries": self._retry,
        }
        if self._scheme == "https":
            return urllib3.HTTPSConnectionPool(
                self._host, self._port, ssl_context=self._ssl_context, **options
            )
        return urllib3.HTTPConnectionPool(self._host, self._port, **options)

    def _forget_pool(self) -> None:
        # In a child after fork: drop the parent's sockets without touching them.
        if self._pool is not None:
            self._pool = self._new_pool()

    def _get_pool(self) -> urllib3.HTTPConnectionPool:
        pool = self._pool
        if pool is None:
            raise TransportError(f"this client for {self.url} is closed", self.url)
        return pool

    def _path(self, resource: str) -> str:
        path = self._prefix + quote(resource, safe=_PATH_SAFE)
        if len(self._paths) >= _CACHE_LIMIT:
            self._paths.clear()
        self._paths[resource] = path
        return path

    def _reset_headers(self) -> None:
        self._headers = {}
        self._registry_version = self.registry.version

    def _build_headers(self, codec: Codec[Any]) -> dict[str, str]:
        headers = {
            "Content-Type": codec.media_type,
            "Accept": ", ".join(self.registry.media_types),
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth
        self._headers[codec.media_type] = headers
        return headers

    def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        url = self.url + path
        try:
            return self._get_pool().urlopen(
                method,
                path,
                body=body,
                headers=headers,
                retries=self._retry,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
                decode_content=False,
            )
        except MaxRetryError as exc:
            raise _transport_error(exc.reason or exc, url, method) from exc
        except Urllib3Error as exc:
            raise _transport_error(exc, url, method) from exc

    def _decode(self, content_type: str | None, data: bytes, target: object, path: str) -> Any:
        if content_type is None:
            media_type, params = OCTET_STREAM, _NO_PARAMS
        else:
            media_type, params = parse_media_type(content_type)
        codec = self.registry.codec_for_media_type(media_type)
        if codec is None:
            raise DecodeError(
                f"PUT {self.url}{path} answered with Content-Type "
                f"{media_type!r}, which this client's registry does not decode; "
                "register a codec for it"
            )
        try:
            return self.registry.decode(codec, data, params, target)
        except DecodeError as exc:
            raise DecodeError(
                f"the reply of PUT {self.url}{path} could not be decoded"
                f"{'' if target is None else f' as {target!r}'}: "
                f"{exc.__cause__ or exc}"
            ) from exc


def _transport_error(exc: BaseException, url: str, method: str) -> TransportError:
    if isinstance(exc, NewConnectionError):
        reason = "connection refused" if "refused" in str(exc).lower() else str(exc)
        return ConnectError(
            f"Could not connect to {url} ({reason}); is the server running on that port?", url
        )
    if isinstance(exc, ConnectTimeoutError):
        return ConnectTimeout(f"Could not connect to {url} within the connect timeout", url)
    if isinstance(exc, ReadTimeoutError):
        return ReadTimeout(
            f"{method} {url}: no reply within the timeout; the handler may still be running", url
        )
    if isinstance(exc, SSLError):
        return ConnectError(f"TLS with {url} failed: {exc}", url)
    return ConnectionLost(
        f"{method} {url}: the connection broke before the whole reply "
        f"arrived ({exc}); the handler may have run, so the request was "
        "not resent",
        url,
    )
