"""What the sync and the asyncio client share, with no I/O in it.

Owns reading the constructor's options (``port``/``address``, ``url``, the ``http+unix://``
form, ``unix_socket``) into where to connect and what the ``Host`` header says, the checks of
the timeouts and retries, the bearer header, the retry policy (urllib3's `Retry`, the one
object that decides for both clients), request paths, and turning a 200 reply's body into a
value with msgspec's path in the error. The wire itself is `_wire`'s (`ClientConnection`).
"""

from __future__ import annotations

import operator
import os
import re
import ssl
from collections.abc import Callable
from typing import Any, Final, Protocol, SupportsIndex, cast
from urllib.parse import quote

from urllib3.exceptions import LocationParseError
from urllib3.util import Retry, parse_url

from . import _unix
from ._errors import DecodeError
from ._protocol import check_token, codec_for_content_type
from .codecs._registry import CodecRegistry, decode_failure

__all__ = [
    "CONNECT_RETRIES",
    "MAX_PORT",
    "OUT_AND_TYPE",
    "PATH_SAFE",
    "BinaryWriter",
    "ClientTarget",
    "LocalError",
    "ProgressCallback",
    "bearer_header",
    "connect_failed",
    "connect_refused",
    "connect_timed_out",
    "connection_broke",
    "decode_reply",
    "file_ended_early",
    "guarded",
    "pipe_not_replayed",
    "read_timed_out",
    "reply_written_then_broke",
    "request_path",
    "resolve_target",
    "retry_policy",
    "send_broke",
    "text_file_message",
    "tls_failed",
    "write_timed_out",
]

CONNECT_RETRIES: Final = 2
"""Failed connection attempts are retried this often: the request never left, so it is safe."""
PATH_SAFE: Final = "/!$&'()*+,;=:@-._~"
"""Characters a resource keeps unescaped in the request path."""
MAX_PORT: Final = 65535
_PORT_ZERO: Final = (
    "{} is not a port a server listens on (0 asks a server to pick a free port); give the "
    "port the server printed, or the server's .port or .url"
)
_URL_PORT: Final = re.compile(  # scheme://[userinfo@]host:PORT, with PORT captured
    r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(?:\[[^\]]*\]|[^/?#:]*):([^/?#]*)"
)


def _check_port(port: object) -> int:
    """The ``port`` argument as an int in 1-65535, or a TypeError/ValueError saying what is wrong.

    An int (or anything with ``__index__``, such as a NumPy integer) is taken as is; a string
    of decimal digits too, since dataserve 0.1 built its URL as ``address + str(port)`` (so
    ``port=os.environ["PORT"]`` keeps working). A bool or any other type is a TypeError.
    """
    if isinstance(port, str) and port.isascii() and port.isdigit():
        number = int(port)
    elif isinstance(port, bool) or not hasattr(type(port), "__index__"):
        raise TypeError(f"port must be an int such as 5001, got {port!r} ({type(port).__name__})")
    else:
        number = operator.index(cast(SupportsIndex, port))
    if number == 0:
        raise ValueError(_PORT_ZERO.format("port 0"))
    if not 0 < number <= MAX_PORT:
        raise ValueError(
            f"port {port!r} is out of range: a TCP port is 1-{MAX_PORT}; give the port the "
            "server listens on"
        )
    return number


def _bad_url_message(url: str) -> str:
    """Why ``url`` is not a server URL: its port, when that is what is wrong, else its form."""
    match = _URL_PORT.match(url)
    if match is not None and match[1]:
        text = match[1]
        if text.isascii() and text.isdigit():
            if int(text) > MAX_PORT:
                return (
                    f"port {text} in the URL {url!r} is out of range: a TCP port is "
                    f"1-{MAX_PORT}; give the port the server listens on"
                )
        else:
            return f"the port {text!r} in the URL {url!r} is not a number such as 5001"
    return (
        "expected an http://, https:// or http+unix:// URL such as 'http://127.0.0.1:5001', "
        f"got {url!r}"
    )


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
    port: object,
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
        TypeError: ``port`` is neither an int nor a string of digits.
        ValueError: No server given, two given, a malformed URL, port 0 or one outside
            1-65535, an address not ending in a colon, or an out-of-range option.
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
        if not address.endswith(":"):
            raise ValueError(
                f"address must end in a colon, as 'http://localhost:' (the port is "
                f"appended to it), got {address!r}; or pass url='http://host:port'"
            )
        url = f"{address}{_check_port(port)}"
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
        raise ValueError(_bad_url_message(url)) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(_bad_url_message(url))
    if parsed.port == 0:
        raise ValueError(_PORT_ZERO.format(f"port 0 (in the URL {url!r})"))
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
            (into ``target``): the message says whether it is valid but does not match
            ``target`` or could not be decoded at all, with msgspec's path such as ``$[2]``.
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
            decode_failure(codec.media_type, target, exc.__cause__ or exc, f"reply of {what}")
        ) from exc


# -- the messages of the errors both clients raise (SPEC 8) ---------------------------------


def connect_refused(url: str) -> str:
    return f"Could not connect to {url} (connection refused); is the server running on that port?"


def connect_failed(url: str, reason: object) -> str:
    return f"Could not connect to {url} ({reason})"


def connect_timed_out(url: str) -> str:
    return f"Could not connect to {url} within the connect timeout"


def tls_failed(url: str, exc: object) -> str:
    return f"TLS with {url} failed: {exc}"


def read_timed_out(method: str, url: str) -> str:
    return f"{method} {url}: no reply within the timeout; the handler may still be running"


def connection_broke(method: str, url: str, reason: object) -> str:
    return (
        f"{method} {url}: the connection broke before the whole reply arrived ({reason}); "
        "the handler may have run, so the request was not resent"
    )


def write_timed_out(url: str, timeout: float) -> str:
    return (
        f"PUT {url}: the server stopped reading the request for more than {timeout} s, so "
        "the request was not sent completely and the handler never received it; is the "
        "server overloaded or stuck? (a larger timeout= waits longer)"
    )


def send_broke(url: str, cause: object) -> str:
    return (
        f"PUT {url}: the connection broke while the request was being sent ({cause}); the "
        "handler never received the whole request, and it was not resent"
    )


def reply_written_then_broke(url: str, written: int, error: object) -> str:
    return (
        f"PUT {url}: the connection broke after {written} bytes of the reply were written "
        f"to out ({error}); the request was not resent"
    )


def pipe_not_replayed(url: str, error: object) -> str:
    return (
        f"PUT {url}: the connection broke ({error}) after part of the request body was read "
        "from a stream that cannot seek back (e.g. a pipe); the request was not resent"
    )


def file_ended_early(url: str, done: int, size: int) -> str:
    return (
        f"the file sent to {url} ended after {done} of the {size} bytes it held when the "
        "call began (did it shrink?); the request was cut short and its connection closed, "
        "so the handler did not receive it"
    )


def text_file_message(resource: str) -> str:
    return (
        f"the file sent to {resource!r} is open in text mode; open it with 'rb' to send its bytes"
    )


OUT_AND_TYPE: Final = (
    "give send() either type= (decode the reply) or out= (write its bytes), not both"
)


class BinaryWriter(Protocol):
    """What ``send(..., out=f)`` writes into: an ``open(path, "wb")`` file, a ``BytesIO``,
    or anything with a ``write`` that takes a ``memoryview`` (and copies what it keeps)."""

    def write(self, data: memoryview, /) -> object: ...


ProgressCallback = Callable[[int, int | None], object]
"""``progress(done, total)``: bytes moved so far, and the body's length (``None`` if unknown)."""


class LocalError(Exception):
    """An error of the caller's own objects (the payload file, ``out``, the progress
    callback): raised as it is by ``send``, never mistaken for a broken connection."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def guarded(callback: ProgressCallback) -> ProgressCallback:
    """``callback``, with whatever it raises marked as the caller's own (`LocalError`)."""

    def report(done: int, total: int | None) -> None:
        try:
            callback(done, total)
        except Exception as exc:
            raise LocalError(exc) from exc

    return report
