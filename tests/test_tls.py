"""TLS on both ends, with certificates made in the test (trustme)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from dataserve import ConnectError, HTTPDataClient, HTTPDataServer

from .conftest import Echo

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(ca: trustme.CA) -> Iterator[HTTPDataServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with HTTPDataServer(Echo, ssl_context=context, auth_token="tls-token") as server:
        yield server


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_https_round_trip_with_custom_ca(tls_server: HTTPDataServer, ca: trustme.CA) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    with HTTPDataClient(
        url=tls_server.url, ssl_context=client_context(ca), auth_token="tls-token"
    ) as client:
        assert client.send("/echo", {"secret": [1, 2]}) == {"secret": [1, 2]}
        assert client.send("/echo", b"\x00" * 300_000) == b"\x00" * 300_000
        client.wait_ready(5)


def test_client_refuses_a_server_it_does_not_trust(tls_server: HTTPDataServer) -> None:
    other = trustme.CA()  # not the CA that signed the server's certificate
    with HTTPDataClient(
        url=tls_server.url, ssl_context=client_context(other), auth_token="tls-token"
    ) as client:
        with pytest.raises(ConnectError, match="TLS") as info:
            client.send("/echo", 1)
    assert "certificate" in str(info.value).lower()


def test_plain_http_to_a_tls_server_gets_no_data(tls_server: HTTPDataServer) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n1")
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"HTTP/1.1 200")


def test_https_server_keeps_serving_after_a_failed_handshake(
    tls_server: HTTPDataServer, ca: trustme.CA
) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01garbage that is not a TLS hello")
    with HTTPDataClient(
        url=tls_server.url, ssl_context=client_context(ca), auth_token="tls-token"
    ) as client:
        assert client.send("/echo", "still here") == "still here"
