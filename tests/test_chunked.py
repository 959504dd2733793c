"""Chunked request bodies (SPEC section 3): decoded by one sans-I/O decoder, served by the
threaded server, each rule provoked on a raw socket, then a normal call that works."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataserve import HTTPDataClient, HTTPDataServer
from dataserve._protocol import MAX_HEADER_BYTES, MAX_HEADERS, HTTPError
from dataserve._wire import MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE, ChunkedDecoder

from .conftest import Echo, is_closed_by_peer, read_reply

LIMIT = 100_000  # the max_body_size of the server under test

HEAD = (
    b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n"
)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    """A chunked body holding these chunks (each sized in hex), then the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer + b"\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPDataServer]:
    with HTTPDataServer(Echo, max_body_size=LIMIT, request_timeout=2.0) as srv:
        yield srv


def assert_still_serves(server: HTTPDataServer) -> None:
    with HTTPDataClient(url=server.url) as client:
        assert client.send("/echo", [1, "two"]) == [1, "two"]


def connect(server: HTTPDataServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def refused(server: HTTPDataServer, data: bytes, status: int) -> dict[str, object]:
    """Send ``data``; assert the problem reply with ``status``, then that the server closes
    the connection and still serves others. Returns the problem object."""
    with connect(server) as sock:
        sock.sendall(data)
        reply = read_reply(sock)
        assert reply.status == status, reply.body
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.headers["connection"] == "close"
        assert is_closed_by_peer(sock)
    assert_still_serves(server)
    problem: dict[str, object] = msgspec.json.decode(reply.body)
    assert problem["status"] == status
    return problem


# -- served --------------------------------------------------------------------------------


def test_chunked_body_is_decoded_and_the_connection_kept(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + chunked(b"hello, ", b"chunked ", b"world"))
        reply = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"hello, chunked world")
        assert "connection" not in reply.headers
        sock.sendall(HEAD + b"\r\n" + chunked(b"again"))  # the same connection serves on
        reply = read_reply(sock)
        assert (reply.status, reply.body) == (200, b"again")
    assert_still_serves(server)


def test_chunked_json_body_reaches_the_handler_decoded(server: HTTPDataServer) -> None:
    head = b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    with connect(server) as sock:
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"[1, ", b'"two"]'))
        reply = read_reply(sock)
    assert (reply.status, reply.json()) == (200, [1, "two"])


def test_chunked_body_split_in_odd_places_across_sends(server: HTTPDataServer) -> None:
    message = HEAD + b"\r\n" + chunked(b"ab", b"c" * 300, b"\r\n", trailer=b"X-Sum: 1\r\n")
    # Cut inside the size line, inside a CRLF, inside data and inside the trailer.
    cuts = [len(HEAD) + 2, len(HEAD) + 3, len(HEAD) + 4, len(HEAD) + 8, len(HEAD) + 100]
    cuts += [len(message) - 12, len(message) - 3, len(message) - 1]
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = 0
        for cut in [*cuts, len(message)]:
            sock.sendall(message[start:cut])
            start = cut
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"ab" + b"c" * 300 + b"\r\n")


def test_chunked_body_sent_byte_by_byte(server: HTTPDataServer) -> None:
    message = HEAD + b"\r\n" + chunked(b"x" * 17, b"yz", trailer=b"A: b\r\n")
    with connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(message)):
            sock.sendall(message[i : i + 1])
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"x" * 17 + b"yz")


def test_chunk_extensions_are_accepted_and_ignored(server: HTTPDataServer) -> None:
    body = b'3;name=value\r\nabc\r\n2 ; flag ; q="a \\"quoted\\" ;value"\r\nde\r\n0;last\r\n\r\n'
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + body)
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"abcde")


def test_trailer_fields_are_accepted_and_discarded(server: HTTPDataServer) -> None:
    trailer = b"X-Checksum: 1234\r\nX-Other:\tvalue with spaces \r\n"
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + chunked(b"data", trailer=trailer))
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"data")


def test_empty_chunked_body_is_an_empty_payload(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + b"0\r\n\r\n")
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"")


def test_large_chunked_body_round_trips(make_server: Callable[..., HTTPDataServer]) -> None:
    big = make_server()
    payload = bytes(range(256)) * 20_000  # 5 MB in 64 KiB chunks and one odd one
    pieces = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    with connect(big) as sock:
        sock.sendall(HEAD + b"Connection: close\r\n\r\n")
        for piece in pieces:
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = read_reply(sock)
    assert reply.status == 200
    assert reply.body == payload


def test_body_of_exactly_max_body_size_is_served(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + chunked(b"a" * (LIMIT - 10), b"b" * 10))
        reply = read_reply(sock)
    assert (reply.status, len(reply.body)) == (200, LIMIT)


def test_pipelined_request_after_a_chunked_body_is_served(server: HTTPDataServer) -> None:
    second = (
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 3\r\nConnection: close\r\n\r\n[2]"
    )
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + chunked(b"first", trailer=b"T: 1\r\n") + second)
        data = b"".join(iter(lambda: sock.recv(65536), b""))  # to the close the second asks
    replies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().partition(b"content-length: ")[2].partition(b"\r\n")[0])
        replies.append((head.split(b" ")[1], rest[:length]))
        data = rest[length:]
    assert replies == [(b"200", b"first"), (b"200", b"[2]")]


def test_expect_100_continue_is_answered_before_a_chunked_body(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD + b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:  # bounded by the socket timeout
            data = sock.recv(4096)
            assert data, "closed instead of 100 Continue"
            interim += data
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(chunked(b"after ", b"continue"))
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"after continue")


def test_head_with_a_chunked_body_is_200_and_closed(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(chunked(b"ignored"))
        reply = read_reply(sock, head_only=True)
        assert reply.status == 200
        assert reply.headers["connection"] == "close"
        assert is_closed_by_peer(sock)
    assert_still_serves(server)


def test_get_with_a_chunked_body_is_405_and_closed(server: HTTPDataServer) -> None:
    refused(
        server,
        b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"x"),
        405,
    )


def test_peer_closing_mid_body_gets_400_and_server_serves(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD + b"\r\n" + b"10\r\nonly part")
        sock.shutdown(socket.SHUT_WR)  # a half-close: the peer still reads the answer
        reply = read_reply(sock)
        assert reply.status == 400
        assert reply.json()["detail"].startswith(
            "the request body ended after 9 bytes, before the last chunk"
        )
        assert is_closed_by_peer(sock)
    assert_still_serves(server)


def test_stalled_chunked_body_is_408_then_closed(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    slow = make_server(request_timeout=0.5)
    with connect(slow) as sock:
        sock.sendall(HEAD + b"\r\n" + b"10\r\nonly part")  # and then nothing
        reply = read_reply(sock)
        assert reply.status == 408
        assert is_closed_by_peer(sock)
    assert_still_serves(slow)


# -- refused ---------------------------------------------------------------------------------


def test_body_over_max_body_size_is_413_as_soon_as_exceeded(server: HTTPDataServer) -> None:
    # The size line that passes the limit is answered at once: its data never comes.
    problem = refused(
        server, HEAD + b"\r\n" + b"%x\r\n" % (LIMIT - 5) + b"a" * (LIMIT - 5) + b"\r\n6\r\n", 413
    )
    assert str(LIMIT) in str(problem["detail"])


def test_huge_chunk_size_hex_is_413(server: HTTPDataServer) -> None:
    refused(server, HEAD + b"\r\n" + b"f" * 64 + b"\r\n", 413)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("bad-hex", b"zz\r\nab\r\n0\r\n\r\n"),
        ("sign", b"+2\r\nab\r\n0\r\n\r\n"),
        ("hex-prefix", b"0x2\r\nab\r\n0\r\n\r\n"),
        ("empty-size", b"\r\nab\r\n0\r\n\r\n"),
        ("space-before-size", b" 2\r\nab\r\n0\r\n\r\n"),
        ("bare-lf-size-line", b"2\nab\r\n0\r\n\r\n"),
        ("cr-inside-size-line", b"2\rx\r\nab\r\n0\r\n\r\n"),
        ("missing-crlf-after-data", b"2\r\nabc\r\n0\r\n\r\n"),
        ("lf-only-after-data", b"2\r\nab\n0\r\n\r\n"),
        ("extension-without-name", b"2;\r\nab\r\n0\r\n\r\n"),
        ("extension-bad-value", b"2;a=b c\r\nab\r\n0\r\n\r\n"),
        ("extension-open-quote", b'2;a="b\r\nab\r\n0\r\n\r\n'),
        ("trailer-without-colon", b"0\r\nNoColon\r\n\r\n"),
        ("trailer-obs-fold", b"0\r\nA: b\r\n folded\r\n\r\n"),
        ("trailer-control-byte", b"0\r\nA: b\x01c\r\n\r\n"),
        ("trailer-bare-lf", b"0\r\nA: b\n\r\n"),
    ],
)
def test_malformed_chunked_body_is_400_and_closed(
    server: HTTPDataServer, name: str, body: bytes
) -> None:
    refused(server, HEAD + b"\r\n" + body, 400)


def test_chunk_size_line_over_its_limit_is_400(server: HTTPDataServer) -> None:
    # Never ended: refused once the line passes MAX_CHUNK_LINE, not when a CRLF comes.
    problem = refused(server, HEAD + b"\r\n" + b"1;" + b"a" * MAX_CHUNK_LINE, 400)
    assert str(MAX_CHUNK_LINE) in str(problem["detail"])


def test_chunk_extensions_over_their_total_are_400(server: HTTPDataServer) -> None:
    line = b"1;" + b"e" * 4000 + b"\r\nx\r\n"
    count = MAX_CHUNK_EXTENSIONS // 4000 + 1
    refused(server, HEAD + b"\r\n" + line * count + b"0\r\n\r\n", 400)


def test_too_many_trailer_fields_are_431(server: HTTPDataServer) -> None:
    trailer = b"".join(b"T%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    refused(server, HEAD + b"\r\n" + chunked(b"x", trailer=trailer), 431)


def test_trailer_section_over_its_size_is_431(server: HTTPDataServer) -> None:
    # Never ended: refused once the section passes MAX_HEADER_BYTES.
    refused(server, HEAD + b"\r\n" + b"0\r\nBig: " + b"v" * MAX_HEADER_BYTES, 431)


@pytest.mark.parametrize(
    "coding",
    [b"gzip", b"chunked, gzip", b"xchunked", b"chunked;q=1", b"identity", b","],
)
def test_transfer_encoding_not_ending_in_chunked_is_400_and_closed(
    server: HTTPDataServer, coding: bytes
) -> None:
    refused(
        server,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + coding + b"\r\n\r\nabc",
        400,
    )


@pytest.mark.parametrize("coding", [b"chunked, chunked", b"gz ip, chunked", b"gzip;, chunked"])
def test_malformed_transfer_coding_list_is_400_and_closed(
    server: HTTPDataServer, coding: bytes
) -> None:
    refused(
        server,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n",
        400,
    )


@pytest.mark.parametrize(
    "codings",
    [
        [b"gzip, chunked"],
        [b"deflate ,\tCHUNKED"],
        [b"gzip;level=9, chunked"],
        [b"gzip", b"chunked"],  # two fields make one list
    ],
)
def test_coding_the_server_does_not_apply_is_501_and_closed(
    server: HTTPDataServer, codings: list[bytes]
) -> None:
    fields = b"".join(b"Transfer-Encoding: " + c + b"\r\n" for c in codings)
    problem = refused(
        server, b"PUT /echo HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n" + chunked(b"x"), 501
    )
    assert "chunked" in str(problem["detail"])


def test_chunked_token_is_case_insensitive(server: HTTPDataServer) -> None:
    with connect(server) as sock:
        sock.sendall(HEAD.replace(b"chunked", b"Chunked") + b"\r\n" + chunked(b"ok"))
        reply = read_reply(sock)
    assert (reply.status, reply.body) == (200, b"ok")


def test_transfer_encoding_with_content_length_is_400_and_closed(server: HTTPDataServer) -> None:
    refused(server, HEAD + b"Content-Length: 5\r\n\r\n" + chunked(b"x"), 400)


def test_chunked_http_1_0_request_is_400_and_closed(server: HTTPDataServer) -> None:
    refused(
        server,
        b"PUT /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"x"),
        400,
    )


def test_chunked_request_with_a_wrong_token_is_401_before_its_body(
    make_server: Callable[..., HTTPDataServer],
) -> None:
    guarded = make_server(auth_token="sekrit")
    with connect(guarded) as sock:
        sock.sendall(HEAD + b"\r\n")  # no body sent: the reply must come anyway
        reply = read_reply(sock)
        assert reply.status == 401
        assert is_closed_by_peer(sock)


# -- the decoder itself (sans-I/O: bytes in, body bytes out) ---------------------------------


def decode(pieces: list[bytes], max_body_size: int = LIMIT) -> tuple[bytes, bool, bytes, int]:
    """Feed ``pieces`` to one decoder: (body, done, leftover, error status or 0).

    The leftover is what follows the end of the message: the rest of the piece that ended
    it and the pieces after that one.
    """
    decoder = ChunkedDecoder(max_body_size)
    out: list[bytes] = []
    for index, piece in enumerate(pieces):
        try:
            out += decoder.feed(piece)
        except HTTPError as error:  # each closes the connection: -1 if one did not
            return b"", False, b"", error.status if error.close else -1
        if decoder.done:
            return b"".join(out), True, decoder.leftover + b"".join(pieces[index + 1 :]), 0
    return b"".join(out), False, b"", 0


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({min(c, len(data)) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


EXTENSIONS = st.sampled_from([b"", b";a", b";a=b", b' ; q="x;y"', b";n=v;m"])
TRAILERS = st.sampled_from([b"", b"A: b\r\n", b"X-One: 1\r\nX-Two:\t2 \r\n"])


@st.composite
def chunked_messages(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """(wire bytes, body, leftover): a valid chunked body, then unrelated bytes."""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
    parts = []
    for chunk in chunks:
        size = b"%x" % len(chunk)
        if draw(st.booleans()):
            size = size.upper()
        parts.append(b"0" * draw(st.integers(0, 2)) + size + draw(EXTENSIONS) + b"\r\n")
        parts.append(chunk + b"\r\n")
    parts.append(b"0" + draw(EXTENSIONS) + b"\r\n" + draw(TRAILERS) + b"\r\n")
    leftover = draw(st.binary(max_size=20))
    return b"".join(parts) + leftover, b"".join(chunks), leftover


@settings(max_examples=300, deadline=None)
@given(chunked_messages(), st.lists(st.integers(0, 600), max_size=12))
def test_decoder_result_is_the_same_however_the_bytes_are_split(
    message: tuple[bytes, bytes, bytes], cuts: list[int]
) -> None:
    wire, body, leftover = message
    assert decode([wire]) == (body, True, leftover, 0)
    assert decode(split(wire, cuts)) == (body, True, leftover, 0)
    assert decode([wire[i : i + 1] for i in range(len(wire))]) == (body, True, leftover, 0)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"1", b"a", b"F", b"0", b";", b"=", b'"', b" ", b"\r", b"\n", b"x:"])
        | st.binary(max_size=6),
        max_size=30,
    ),
    st.lists(st.integers(0, 200), max_size=10),
    st.integers(0, 40),
)
def test_decoder_outcome_on_any_bytes_is_split_invariant(
    tokens: list[bytes], cuts: list[int], max_body_size: int
) -> None:
    # Any bytes, valid or not: the body, the end, the leftover and the error status never
    # depend on how the bytes arrive.
    data = b"".join(tokens)
    assert decode(split(data, cuts), max_body_size) == decode([data], max_body_size)


def test_decoder_hands_back_a_piece_of_pure_data_uncopied() -> None:
    decoder = ChunkedDecoder(LIMIT)
    assert decoder.feed(b"5\r\n") == []
    assert decoder.data_pending == 5
    piece = b"hello"
    assert decoder.feed(piece)[0] is piece
    assert decoder.data_pending == 0
    assert decoder.feed(b"\r\n0\r\n\r\nNEXT") == []
    assert (decoder.done, decoder.leftover, decoder.received) == (True, b"NEXT", 5)
    with pytest.raises(RuntimeError, match="already ended"):
        decoder.feed(b"more")


def test_decoder_refuses_a_partial_line_once_it_passes_the_limit() -> None:
    decoder = ChunkedDecoder(LIMIT)
    decoder.feed(b"1;" + b"a" * (MAX_CHUNK_LINE - 2))  # exactly at the limit: waits for more
    with pytest.raises(HTTPError) as info:
        decoder.feed(b"a")
    assert info.value.status == 400
