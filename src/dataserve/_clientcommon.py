"""What the sync and the asyncio client share, with no I/O in it.

Owns reading the constructor's options (``port``/``address``, ``url``, the ``http+unix://``
form, ``unix_socket``) into where to connect and what the ``Host`` header says, the checks of
the timeouts and retries, the bearer header, the retry policy (urllib3's `Retry`, the one
object that decides for both clients), request paths, and turning a 200 reply's body into a
value with msgspec's path in the error. The wire itself is `_clientwire`'s.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Final
from urllib.parse import quote

from urllib3.exceptions import LocationParseError
from urllib3.util import Retry, parse_url

from . import _unix
from ._errors import DecodeError
from ._protocol import check_token, codec_for_content_type
from .codecs._registry import CodecRegistry

__all__ = [
    "CONNECT_RETRIES",
    "PATH_SAFE",
    "USER_AGENT",
    "ClientTarget",
    "bearer_header",
    "decode_reply",
    "request_path",
    "resolve_target",
    "retry_policy",
]

CONNECT_RETRIES: Final = 2
"""Failed connection attempts are retried this often: the request never left, so it is safe."""
PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
"""Characters a resource keeps unescaped in the request path."""
USER_AGENT: Final = "dataserve/0.2"
_URL_EXPECTED: Final = "expected an http://, https:// or http+unix:// URL, got {!r}"


class ClientTarget:
    """Where a client connects, read from its constructor's options.

    Attributes:
        url: The server's base URL as the client reports it (``"http://localhost:5001"``,
            ``"http+unix://%2Frun%2Fapp%2Fdata.sock"``).
        scheme: ``"http"`` or ``"https"`` (``"http"`` for a Unix socket).
        host: The host to connect to: ``127.0.0.1`` for ``localhost`` (SPEC 2), brackets
            stripped from an IPv6 address; ``"localhost"`` for a Unix socket.
        port: The TCP port (80 for a Unix socket, unused).
        prefix: The URL's path, without a trailing ``/``, put before every resource.
        unix_socket: The socket file's path, or ``None`` for TCP.
        host_header: What the ``Host`` header says.
    """

    __slots__ = ("host", "host_header", "port", "prefix", "scheme", "unix_socket", "url")

    def __init__(
        self,
        url: str,
        scheme: str,
        host: str,
        port: int,
        prefix: str,
        unix_socket: str | None,
        host_header: str,
    ) -> None:
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.prefix = prefix
        self.unix_socket = unix_socket
        self.host_header = host_header


def resolve_target(
    port: int | None,
    address: str,
    url: str | None,
    unix_socket: str | os.PathLike[str] | None,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
    connect_timeout: float,
    retries: int,
    client: str = "HTTPDataClient",
) -> ClientTarget:
    """Check a client's constructor options and say where it connects.

    Args:
        client: The class name, for the message when no server is given.
    Raises:
        ValueError: No server given, two given, a malformed URL or an out-of-range option.
    """
    if unix_socket is not None:
        if url is not None or port is not None:
            raise ValueError("give unix_socket, or port or url, not both")
        url = _unix.unix_url(_unix.socket_path(unix_socket))
    if url is None:
        if port is None:
            raise ValueError(
                f"give the server's port, e.g. {client}(port=5001), "
                "or url='http://host:port', or unix_socket='/path/to/data.sock'"
            )
        url = f"{address}{port}"
    if not 0 < connect_timeout < float("inf") or not timeout > 0:
        raise ValueError("timeout and connect_timeout must be positive; connect_timeout finite")
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if _unix.is_unix_url(url):
        if ssl_context is not None:
            raise ValueError(
                "ssl_context is for https:// URLs; a Unix socket is guarded by its file mode"
            )
        path, prefix = _unix.parse_unix_url(url)
        return ClientTarget(
            _unix.unix_url(path), "http", "localhost", 80, prefix, path, "localhost"
        )
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise ValueError(_URL_EXPECTED.format(url)) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(_URL_EXPECTED.format(url))
    host = parsed.host
    number = parsed.port or (443 if parsed.scheme == "https" else 80)
    return ClientTarget(
        f"{parsed.scheme}://{host}:{number}",
        parsed.scheme,
        "127.0.0.1" if host == "localhost" else host.strip("[]"),
        number,
        (parsed.path or "").rstrip("/"),
        None,
        f"{host}:{number}",
    )


def bearer_header(auth_token: str | None) -> str | None:
    """The ``Authorization`` value for a token (checked), or ``None`` without one.

    Raises:
        ValueError: The token is not visible ASCII without spaces (the token is not shown).
    """
    return None if check_token(auth_token) is None else f"Bearer {auth_token}"


def retry_policy(retries: int) -> Retry:
    """The retry policy of both clients, as one urllib3 `Retry`.

    A failure to connect is retried `CONNECT_RETRIES` times (the request never left). A
    request that may have reached the handler (the connection broke after it was sent, or
    the reply timed out) is resent only ``retries`` times (0: never): urllib3's own default
    treats PUT as idempotent and would replay it. Backoff: none before the first retry, then
    0.1 s, 0.2 s, ...
    """
    methods = frozenset({"PUT", "HEAD"}) if retries else frozenset({"HEAD"})
    return Retry(
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


def request_path(prefix: str, resource: str) -> str:
    """The request path of a resource (which starts with ``/``): percent-encoded, after the
    base URL's path."""
    return prefix + quote(resource, safe=PATH_SAFE)


def decode_reply(
    registry: CodecRegistry, content_type: str | None, data: Any, target: object, what: str
) -> Any:
    """Decode a 200 reply's body with the codec its ``Content-Type`` names.

    Args:
        target: The ``type=`` asked for, or ``None`` for the untyped value.
        what: The call, for messages: ``"PUT http://127.0.0.1:5001/xdata"``.
    Raises:
        DecodeError: No codec in ``registry`` decodes that type, or the body does not decode
            (into ``target``); the message ends with msgspec's path (`` at `$[2]` ``).
    """
    codec, media_type, params = codec_for_content_type(registry, content_type)
    if codec is None:
        raise DecodeError(
            f"{what} answered with Content-Type {media_type!r}, which this client's "
            "registry does not decode; register a codec for it"
        )
    try:
        return registry.decode(codec, data, params, target)
    except DecodeError as exc:
        raise DecodeError(
            f"the reply of {what} could not be decoded"
            f"{'' if target is None else f' as {target!r}'}: "
            f"{exc.__cause__ or exc}"
        ) from exc
