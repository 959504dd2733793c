"""The client side of the wire (`_wire`), driven with byte strings: no socket, no loop.

Every reply is fed whole, in every split into two pieces, byte by byte, and in random pieces
(hypothesis): the events must not depend on how the bytes arrived.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataserve._protocol import MAX_HEADER_BYTES, MAX_HEADERS
from dataserve._wire import (
    END_OF_MESSAGE,
    NEED_DATA,
    ClientConnection,
    Data,
    ReplyError,
    ReplyHead,
    RequestHeads,
)
from dataserve.codecs import CodecRegistry

PREFIX = b"PUT /x HTTP/1.1\r\nHost: t\r\n"


def _put(length: int | None = 0) -> ClientConnection:
    conn = ClientConnection()
    conn.start_put(PREFIX, length)
    if length:
        conn.send_data(b"a" * length)
    conn.end_request()
    return conn


def feed(conn: ClientConnection, pieces: list[bytes], *, eof: bool = False) -> list[Any]:
    """Feed ``pieces`` one by one, taking every event; adjacent data joined."""
    events: list[Any] = []

    def drain() -> bool:
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return False
            if event is END_OF_MESSAGE:
                events.append("END")
                return True
            if isinstance(event, ReplyHead):
                events.append(("head", event.status, event.headers, event.keep_alive, event.length))
            else:
                assert isinstance(event, Data)
                data = bytes(event.data)
                assert data, "an empty Data event"
                if events and isinstance(events[-1], bytes):
                    events[-1] += data
                else:
                    events.append(data)

    done = False
    for piece in pieces:
        conn.receive_data(piece)
        done = drain()
    if eof and not done:
        conn.receive_data(b"")
        drain()
    return events


def splits(data: bytes) -> list[list[bytes]]:
    """The data whole, in every split into two pieces, and byte by byte."""
    ways = [[data]]
    ways += [[data[:i], data[i:]] for i in range(1, len(data))]
    ways.append([data[i : i + 1] for i in range(len(data))])
    return ways


def events_every_way(reply: bytes, length: int | None = 0, *, eof: bool = False) -> list[Any]:
    """The events of ``reply``, checked equal however it is split; also that the connection's
    reusability does not depend on the split."""
    results = []
    reusable = set()
    for pieces in splits(reply):
        conn = _put(length)
        results.append(feed(conn, pieces, eof=eof))
        reusable.add(conn.reusable)
    assert all(result == results[0] for result in results)
    assert len(reusable) == 1
    return results[0]


def first_error(reply: bytes, *, eof: bool = False, conn: ClientConnection | None = None) -> str:
    """The ReplyError a reply raises, checked the same however it is split."""
    messages = set()
    for pieces in splits(reply):
        with pytest.raises(ReplyError) as info:
            feed(conn or _put(), pieces, eof=eof)
        messages.add(str(info.value))
        conn = None
    assert len(messages) == 1, messages
    return messages.pop()


# -- framing --------------------------------------------------------------------------------


def test_content_length_reply_gives_head_body_end_however_split() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    assert events_every_way(reply) == [
        ("head", 200, {"content-type": "text/plain", "content-length": "5"}, True, 5),
        b"hello",
        "END",
    ]
    conn = _put()
    feed(conn, [reply])
    assert conn.reusable


def test_chunked_reply_with_extensions_and_trailers_is_decoded_however_split() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1 ; x\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    events = events_every_way(reply)
    assert events[1:] == [b"hello 0123456789", "END"]
    assert events[0][4] is None
    conn = _put()
    feed(conn, [reply])
    assert conn.reusable


def test_interim_1xx_replies_are_skipped() -> None:
    reply = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    assert events_every_way(reply) == [
        ("head", 200, {"content-length": "2"}, True, 2),
        b"ok",
        "END",
    ]


def test_switching_protocols_never_asked_for_is_an_error() -> None:
    assert "101" in first_error(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_whatever_the_headers_say(status: int) -> None:
    reply = b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status
    assert events_every_way(reply) == [
        ("head", status, {"content-length": "5"}, True, 0),
        "END",
    ]


def test_reply_to_head_probe_has_no_body() -> None:
    heads = RequestHeads(CodecRegistry(plugins=False), "t:1", None)
    for pieces in splits(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"):
        conn = ClientConnection()
        conn.start_probe(heads.probe("/"))
        assert feed(conn, pieces)[1:] == ["END"]
        assert conn.reusable


def test_http_1_0_reply_without_length_ends_with_the_connection() -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    events = events_every_way(reply, eof=True)
    assert events == [
        ("head", 200, {"content-type": "text/plain"}, False, None),
        b"all of it",
        "END",
    ]
    conn = _put()
    feed(conn, [reply], eof=True)
    assert not conn.reusable


def test_http_1_0_reply_is_never_kept_alive() -> None:
    conn = _put()
    assert feed(conn, [b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"])[-1] == "END"
    assert not conn.reusable


def test_zero_content_length_ends_at_once() -> None:
    assert events_every_way(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")[1:] == ["END"]


# -- keep-alive and leftovers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "reusable"),
    [("close", False), ("Keep-Alive, CLOSE", False), ("x-close-later", True), ("keep-alive", True)],
)
def test_only_the_close_token_closes(connection: str, reusable: bool) -> None:
    conn = _put()
    feed(
        conn, [f"HTTP/1.1 200 OK\r\nConnection: {connection}\r\nContent-Length: 0\r\n\r\n".encode()]
    )
    assert conn.reusable is reusable


def test_bytes_after_the_reply_in_the_same_piece_make_it_not_reusable() -> None:
    conn = _put()
    events = feed(conn, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"])
    assert events[1:] == [b"ok", "END"]
    assert conn.leftover
    assert not conn.reusable


def test_bytes_after_the_reply_in_a_later_piece_make_it_not_reusable() -> None:
    conn = _put()
    feed(conn, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    assert conn.reusable
    conn.receive_data(b"HTTP/1.1 200 OK\r\n")
    assert conn.leftover
    assert not conn.reusable


def test_bytes_after_a_body_less_reply_are_leftover() -> None:
    conn = _put()
    feed(conn, [b"HTTP/1.1 204 No Content\r\n\r\nsurprise"])
    assert conn.leftover


def test_end_of_stream_after_the_reply_makes_it_not_reusable() -> None:
    conn = _put()
    feed(conn, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn.receive_data(b"")
    assert not conn.reusable


def test_reply_before_the_request_was_sent_whole_is_read_but_not_reused() -> None:
    conn = ClientConnection()
    conn.start_put(PREFIX, 10)
    conn.send_data(b"12345")
    events = feed(conn, [b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\nno"])
    assert events[0][1] == 413
    assert events[1:] == [b"no", "END"]
    assert not conn.request_done
    assert not conn.reusable


def test_next_cycle_carries_a_second_exchange() -> None:
    conn = _put(3)
    feed(conn, [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"])
    conn.start_next_cycle()
    assert conn.start_put(PREFIX, 0).endswith(b"Content-Length: 0\r\n\r\n")
    conn.end_request()
    assert feed(conn, [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"])[1:] == [b"b", "END"]


def test_next_cycle_on_a_connection_that_is_not_reusable_raises() -> None:
    conn = _put()
    feed(conn, [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    with pytest.raises(RuntimeError, match="cannot carry another request"):
        conn.start_next_cycle()


# -- what it refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "coding", [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity", b"chunked, chunked"]
)
def test_transfer_encoding_other_than_chunked_alone_is_an_error(coding: bytes) -> None:
    message = first_error(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n")
    assert "Transfer-Encoding" in message
    assert "cannot tell the body's end" in message


def test_transfer_encoding_with_content_length_is_an_error() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
    assert "ambiguous" in first_error(reply)


@pytest.mark.parametrize("value", [b"-1", b"+3", b"3 3", b"0x10", b"\xc2\xb2", b""])
def test_invalid_content_length_is_an_error(value: bytes) -> None:
    assert "Content-Length" in first_error(
        b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n"
    )


def test_conflicting_content_lengths_are_an_error() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    assert "malformed" in first_error(reply)


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\r"])
def test_control_byte_in_the_reason_phrase_is_a_malformed_reply(byte: bytes) -> None:
    reply = b"HTTP/1.1 200 O" + byte + b"K\r\nContent-Length: 0\r\n\r\n"
    assert "malformed status line" in first_error(reply)


def test_tab_and_obs_text_in_the_reason_phrase_are_accepted() -> None:
    reply = b"HTTP/1.1 200 O\tK \xe9\r\nContent-Length: 0\r\n\r\n"
    assert events_every_way(reply)[1:] == ["END"]


@pytest.mark.parametrize(
    "status_line", [b"HTTP/2 200 OK", b"HTTP/1.1 20 OK", b"ICY 200 OK", b"HTTP/1.1  200 OK"]
)
def test_a_status_line_that_is_not_http_1_is_malformed(status_line: bytes) -> None:
    assert "malformed" in first_error(status_line + b"\r\nContent-Length: 0\r\n\r\n")


def test_a_line_ending_in_a_bare_lf_is_an_error() -> None:
    assert "bare LF" in first_error(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n")
    assert "bare LF" in first_error(b"HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n")


def test_a_reply_head_beyond_the_limit_fails_without_waiting_for_its_end() -> None:
    conn = _put()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEADER_BYTES)
    with pytest.raises(ReplyError, match=f"larger than {MAX_HEADER_BYTES} bytes"):
        conn.next_event()


def test_a_reply_head_of_many_lines_beyond_the_byte_limit_is_an_error() -> None:
    line = b"X-A: " + b"a" * 1000 + b"\r\n"
    conn = _put()
    conn.receive_data(b"HTTP/1.1 200 OK\r\n" + line * (MAX_HEADER_BYTES // len(line) + 1))
    with pytest.raises(ReplyError, match="larger than"):
        conn.next_event()


def test_a_reply_head_at_the_field_limit_is_read_and_one_more_is_an_error() -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS - 1))
    ok = b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n"
    conn = _put()
    assert feed(conn, [ok])[-1] == "END"
    too_many = b"HTTP/1.1 200 OK\r\n" + fields + b"X-Last: 1\r\nContent-Length: 0\r\n\r\n"
    conn = _put()
    with pytest.raises(ReplyError, match=f"more than {MAX_HEADERS} fields"):
        feed(conn, [too_many])


def test_a_reply_beginning_with_an_empty_line_is_an_error() -> None:
    assert "empty line" in first_error(b"\r\nHTTP/1.1 200 OK\r\n\r\n")


@pytest.mark.parametrize(
    "body",
    [b"z\r\nabc\r\n0\r\n\r\n", b"3\r\nabcd\r\n0\r\n\r\n", b"-1\r\n", b"12345678901234567\r\n"],
)
def test_a_malformed_chunked_body_is_an_error(body: bytes) -> None:
    first_error(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)


# -- cut short ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "closed the connection without replying"),
        (b"HTTP/1.1 200 OK\r\nContent-", "in the middle of the reply head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "cut short (3 of 10 bytes arrived)"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "chunked reply was cut"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n", "chunked reply"),
    ],
)
def test_end_of_stream_before_the_reply_ends_says_where(reply: bytes, message: str) -> None:
    conn = _put()
    with pytest.raises(ReplyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        feed(conn, [reply] if reply else [], eof=True)


# -- request side ---------------------------------------------------------------------------


def test_put_with_a_length_is_framed_by_content_length() -> None:
    conn = ClientConnection()
    assert conn.start_put(PREFIX, 3) == PREFIX + b"Content-Length: 3\r\n\r\n"
    assert [bytes(piece) for piece in conn.send_data(b"abc")] == [b"abc"]
    assert conn.end_request() == b""
    assert conn.request_done


def test_put_of_unknown_size_is_chunked_and_pieces_are_framed() -> None:
    conn = ClientConnection()
    assert conn.start_put(PREFIX, None) == PREFIX + b"Transfer-Encoding: chunked\r\n\r\n"
    framed = b"".join(bytes(p) for p in conn.send_data(b"x" * 26) + conn.send_data(b""))
    assert framed == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert conn.end_request() == b"0\r\n\r\n"


def test_a_content_length_body_must_be_sent_exactly() -> None:
    conn = ClientConnection()
    conn.start_put(PREFIX, 3)
    with pytest.raises(RuntimeError, match="4 bytes of body sent where 3"):
        conn.send_data(b"abcd")
    conn.send_data(b"ab")
    with pytest.raises(RuntimeError, match="1 bytes short"):
        conn.end_request()


def test_a_second_request_before_the_cycle_ends_is_refused() -> None:
    conn = _put()
    with pytest.raises(RuntimeError, match="already started"):
        conn.start_put(PREFIX, 0)


def test_request_heads_are_built_once_and_rebuilt_after_register() -> None:
    from dataserve.codecs import MsgpackCodec

    registry = CodecRegistry(plugins=False)
    heads = RequestHeads(registry, "localhost:5001", "Bearer s3cret")
    head = heads.put("/x", "application/json")
    assert head is heads.put("/x", "application/json")
    assert head == (
        b"PUT /x HTTP/1.1\r\nHost: localhost:5001\r\nUser-Agent: dataserve/0.2\r\n"
        b"Content-Type: application/json\r\n"
        b"Accept: application/json, text/plain, application/octet-stream\r\n"
        b"Authorization: Bearer s3cret\r\n"
    )
    registry.register(MsgpackCodec())
    rebuilt = heads.put("/x", "application/json")
    assert b"Accept: application/msgpack, application/json" in rebuilt
    assert heads.probe("/") == (
        b"HEAD / HTTP/1.1\r\nHost: localhost:5001\r\nUser-Agent: dataserve/0.2\r\n"
        b"Authorization: Bearer s3cret\r\n\r\n"
    )


# -- copies and hints -----------------------------------------------------------------------


def test_a_body_piece_received_whole_is_given_out_without_a_copy() -> None:
    conn = _put()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
    assert isinstance(conn.next_event(), ReplyHead)
    assert conn.body_bytes_left == 6
    assert conn.next_event() is NEED_DATA
    piece = bytes(bytearray(b"abcdef"))
    conn.receive_data(piece)
    event = conn.next_event()
    assert isinstance(event, Data)
    assert event.data is piece
    assert conn.body_bytes_left is None  # done
    assert conn.next_event() is END_OF_MESSAGE


# -- property: any body, any framing, any split ---------------------------------------------


@st.composite
def framed_replies(draw: st.DrawFn) -> tuple[bytes, bytes, list[bytes]]:
    body = draw(st.binary(max_size=600))
    if draw(st.booleans()):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        wire = head + body
    else:
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
        wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    points = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    return body, wire, [p for p in pieces if p]


@given(framed_replies())
def test_any_body_in_any_framing_and_split_arrives_whole(
    case: tuple[bytes, bytes, list[bytes]],
) -> None:
    body, _, pieces = case
    conn = _put()
    events = feed(conn, pieces)
    assert events[0][1] == 200
    assert b"".join(e for e in events[1:-1]) == body
    assert events[-1] == "END"
    assert conn.reusable


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=10))
def test_arbitrary_bytes_give_events_or_a_reply_error_never_anything_else(
    data: bytes, points: list[int]
) -> None:
    cuts = sorted(p for p in points if p <= len(data))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    conn = _put()
    try:
        events = feed(conn, [p for p in pieces if p], eof=True)
    except ReplyError:
        return
    assert events[0][0] == "head"  # the end of the stream ended it one way or the other
    assert events[-1] == "END"
    assert all(isinstance(event, bytes) for event in events[1:-1])


# -- bodies a shell moves itself (readinto, sendfile) ---------------------------------------


def test_body_received_counts_bytes_the_shell_read_into_its_own_buffer() -> None:
    conn = _put()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(conn.next_event(), ReplyHead)
    with pytest.raises(RuntimeError):
        conn.body_received(1)  # "abc" still waits in the wire: take it first
    event = conn.next_event()
    assert isinstance(event, Data)
    assert bytes(event.data) == b"abc"
    assert conn.body_bytes_left == 7
    with pytest.raises(RuntimeError):
        conn.body_received(8)  # more than the body has left
    conn.body_received(4)
    assert conn.body_bytes_left == 3
    assert conn.next_event() is NEED_DATA
    conn.body_received(3)
    assert conn.next_event() is END_OF_MESSAGE
    assert conn.reusable


def test_body_received_then_the_end_is_a_body_cut_short() -> None:
    conn = _put()
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(conn.next_event(), ReplyHead)
    assert conn.next_event() is NEED_DATA
    conn.body_received(6)
    conn.receive_data(b"")
    with pytest.raises(ReplyError, match=r"cut short \(6 of 10 bytes arrived\)"):
        conn.next_event()


def test_body_sent_counts_bytes_sent_from_the_kernel() -> None:
    conn = ClientConnection()
    conn.start_put(PREFIX, 10)
    conn.body_sent(4)
    with pytest.raises(RuntimeError):
        conn.body_sent(7)  # more than is left
    with pytest.raises(RuntimeError, match="6 bytes short"):
        conn.end_request()
    chunked = ClientConnection()
    chunked.start_put(PREFIX, None)
    with pytest.raises(RuntimeError):
        chunked.body_sent(1)  # a chunked body is framed by send_data only
