"""The sans-I/O server connection (`dataserve._wire.ServerConnection`) driven directly: bytes
in, events and statuses out, with no socket. The adversarial battery and the raw-request
fuzzer that test_adversarial and test_soak send through a real server are replayed here,
whole and split at every byte, and must come out the same."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataserve._protocol import ServerCore
from dataserve._wire import (
    CONTINUE,
    END_OF_MESSAGE,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    NEED_DATA,
    ConnectionClosed,
    Data,
    HTTPError,
    RequestHead,
    ServerConnection,
    date_line,
    parse_version,
    reply_has_body,
)
from dataserve.codecs._registry import default_registry

from .conftest import Echo
from .test_adversarial import BATTERY
from .test_soak import ALLOWED, raw_requests

LIMIT = 1_000_000
CORE = ServerCore(Echo(), default_registry(), max_body_size=LIMIT)
H = b"Host: t\r\n"
JSON = b"Content-Type: application/json\r\n"


def put(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"PUT /echo HTTP/1.1\r\n"
        + H
        + JSON
        + b"Content-Length: %d\r\n" % len(body)
        + extra
        + (b"\r\n" + body)
    )


Outcome = tuple[tuple[int, ...], bool]


def serve(pieces: Iterable[bytes], max_body_size: int = LIMIT) -> Outcome:
    """Serve ``pieces`` (then the peer's close) as the threaded server does, with no socket:
    (the statuses replied, in order; whether the connection ended closed by the server)."""
    core = (
        CORE
        if max_body_size == LIMIT
        else ServerCore(Echo(), default_registry(), max_body_size=max_body_size)
    )
    wire = ServerConnection(max_body_size)
    incoming = iter([*pieces, b""])
    statuses: list[int] = []

    def event() -> object:
        while (ev := wire.next_event()) is NEED_DATA:
            wire.receive_data(next(incoming))
        return ev

    for _ in range(100):  # at most this many requests per connection
        try:
            ev = event()
            if isinstance(ev, ConnectionClosed):
                return tuple(statuses), False
            assert isinstance(ev, RequestHead)
            request = core.check_head(ev)
            body = b""
            if request.codec is not None:  # not HEAD: read the body
                parts = []
                while (ev := event()) is not END_OF_MESSAGE:
                    if isinstance(ev, ConnectionClosed):  # cut short: a half-close reads 400
                        raise wire.cut_short_error()
                    assert isinstance(ev, Data)
                    parts.append(ev.data)
                body = b"".join(parts)
            reply = core.handle(request, body)
            status, headers, close, length = (
                reply.status,
                reply.headers,
                reply.close,
                len(reply.body),
            )
        except HTTPError as error:
            status, headers, close, length = error.status, (), error.close, 0
        head = wire.reply_head(status, headers, length, close=close, date=b"Date: x\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status)
        assert head.endswith(b"\r\n\r\n")
        assert (b"Connection: close\r\n" in head) is wire.must_close
        statuses.append(status)
        if wire.must_close:
            return tuple(statuses), True
        wire.start_next_cycle()
    raise AssertionError("more requests than the bound")


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted({min(c, len(data)) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]  # b"" is the close


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# -- the adversarial battery, without a socket ------------------------------------------------


@pytest.mark.parametrize(("name", "data", "status"), BATTERY, ids=[b[0] for b in BATTERY])
def test_battery_gets_its_status_from_the_connection_alone(
    name: str, data: bytes, status: int | None
) -> None:
    statuses, _ = outcome = serve([data])
    assert statuses[:1] == (() if status is None else (status,))
    if len(data) <= 20_000:  # the long ones only whole and in two (byte by byte is slow)
        assert serve(bytewise(data)) == outcome
    assert serve(split(data, [len(data) // 2])) == outcome


# -- the fuzzer, without a socket -------------------------------------------------------------


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=raw_requests(), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_fuzzed_requests_get_allowed_statuses_however_split(data: bytes, cuts: list[int]) -> None:
    outcome = serve([data], max_body_size=10_000)
    assert all(status in ALLOWED for status in outcome[0]), outcome
    assert serve(split(data, cuts), max_body_size=10_000) == outcome
    assert serve(bytewise(data), max_body_size=10_000) == outcome


# -- events -----------------------------------------------------------------------------------


def test_whole_small_request_in_one_piece_is_head_data_end() -> None:
    wire = ServerConnection(LIMIT)
    data = put(b"[1]")
    wire.receive_data(data)
    head = wire.next_event()
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.length, head.keep_alive) == ("PUT", "/echo", 3, True)
    piece = wire.next_event()
    assert isinstance(piece, Data)
    assert piece.data == b"[1]"
    assert wire.next_event() is END_OF_MESSAGE
    assert not wire.has_trailing_data
    with pytest.raises(RuntimeError, match="reply"):
        wire.next_event()


def test_pipelined_requests_are_kept_and_served_in_order() -> None:
    outcome = serve([put(b"[1]") + put(b"[2]") + put(b"[3]", b"Connection: close\r\n")])
    assert outcome == ((200, 200, 200), True)
    wire = ServerConnection(LIMIT)
    wire.receive_data(put(b"[1]") + b"PUT /x HT")
    assert isinstance(wire.next_event(), RequestHead)
    assert isinstance(wire.next_event(), Data)
    assert wire.next_event() is END_OF_MESSAGE
    assert wire.trailing_data == b"PUT /x HT"
    wire.reply_head(200, (), 3)
    wire.start_next_cycle()
    assert wire.next_event() is NEED_DATA


def test_a_piece_that_is_all_body_comes_back_uncopied() -> None:
    wire = ServerConnection(LIMIT)
    wire.receive_data(put(b"x" * 10)[:-10])
    assert isinstance(wire.next_event(), RequestHead)
    assert wire.next_event() is NEED_DATA
    assert wire.data_pending == 10
    piece = b"y" * 10
    wire.receive_data(piece)
    event = wire.next_event()
    assert isinstance(event, Data)
    assert event.data is piece


def test_body_read_directly_by_the_shell_is_counted() -> None:
    wire = ServerConnection(LIMIT)
    wire.receive_data(put(b"x" * 100)[:-96])  # 4 body bytes with the head
    assert isinstance(wire.next_event(), RequestHead)
    assert isinstance(wire.next_event(), Data)
    assert wire.data_pending == wire.direct_read_pending == 96
    with pytest.raises(RuntimeError):
        wire.data_read_directly(97)  # past the body's end
    wire.data_read_directly(96)
    assert (wire.received, wire.body_complete) == (100, True)
    assert wire.next_event() is END_OF_MESSAGE


def test_peer_closing_between_requests_or_mid_request_is_told_apart() -> None:
    idle = ServerConnection(LIMIT)
    idle.receive_data(b"")
    event = idle.next_event()
    assert isinstance(event, ConnectionClosed)
    assert not event.mid_message
    for data in (b"PUT /echo HTTP/1.1\r\nHo", put(b"[1, 2]")[:-2]):
        wire = ServerConnection(LIMIT)
        wire.receive_data(data)
        while isinstance(event := wire.next_event(), RequestHead | Data):
            pass
        assert event is NEED_DATA
        wire.receive_data(b"")
        event = wire.next_event()
        assert isinstance(event, ConnectionClosed)
        assert event.mid_message
        assert wire.must_close


def test_chunked_body_and_what_follows_it() -> None:
    data = (
        b"PUT /echo HTTP/1.1\r\n" + H + JSON + b"Transfer-Encoding: chunked\r\n\r\n"
        b"2\r\n[1\r\n1\r\n]\r\n0\r\n\r\n" + put(b"[2]")
    )
    assert serve([data]) == ((200, 200), False)
    assert serve(bytewise(data)) == ((200, 200), False)


def test_chunked_body_over_the_limit_is_413_as_soon_as_a_chunk_size_passes_it() -> None:
    data = b"PUT /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"65\r\n"
    wire = ServerConnection(100)
    wire.receive_data(data)
    assert isinstance(wire.next_event(), RequestHead)
    with pytest.raises(HTTPError) as info:
        wire.next_event()
    assert (info.value.status, info.value.close, wire.must_close) == (413, True, True)


def test_content_length_over_the_limit_is_413_when_the_body_is_asked_for() -> None:
    wire = ServerConnection(10)
    wire.receive_data(put(b"x" * 11))
    head = wire.next_event()
    assert isinstance(head, RequestHead)
    assert head.length == 11
    with pytest.raises(HTTPError) as info:
        wire.next_event()
    assert info.value.status == 413


# -- limits and line rules ----------------------------------------------------------------------


def first_error(pieces: list[bytes]) -> int:
    wire = ServerConnection(LIMIT)
    try:
        for piece in pieces:
            wire.receive_data(piece)
            while (event := wire.next_event()) is not NEED_DATA:
                if isinstance(event, RequestHead):
                    return 0
    except HTTPError as error:
        return error.status if error.close else -2  # every such error closes
    return -1  # still waiting


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "trickled"])
def test_request_line_limit_is_414_one_byte_past_it(whole: bool) -> None:
    def request(target_length: int) -> bytes:
        line = b"PUT /" + b"a" * (target_length - 1) + b" HTTP/1.1"
        return line + b"\r\n" + H + b"\r\n"

    at = request(MAX_REQUEST_LINE - len(b"PUT  HTTP/1.1"))
    assert len(at.partition(b"\r\n")[0]) == MAX_REQUEST_LINE
    over = request(MAX_REQUEST_LINE - len(b"PUT  HTTP/1.1") + 1)
    pieces = (lambda d: [d]) if whole else (lambda d: split(d, range(0, len(d), 100)))
    assert first_error(pieces(at)) == 0
    assert first_error(pieces(over)) == 414
    # Never ended: refused without waiting for the line's end.
    assert first_error([b"PUT /" + b"a" * MAX_REQUEST_LINE]) == 414


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "trickled"])
def test_header_limits_are_431_one_past_them(whole: bool) -> None:
    def request(fields: list[bytes]) -> bytes:
        return b"PUT /echo HTTP/1.1\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"

    pieces = (lambda d: [d]) if whole else (lambda d: split(d, range(0, len(d), 333)))
    many = [b"Host: t"] + [b"X%d: v" % i for i in range(MAX_HEADERS - 1)]
    assert first_error(pieces(request(many))) == 0
    assert first_error(pieces(request([*many, b"One: more"]))) == 431
    big = b"X: " + b"v" * (MAX_HEADER_BYTES - 2 - len(b"X: ") - len(b"Host: t\r\n"))
    assert first_error(pieces(request([b"Host: t", big]))) == 0
    assert first_error(pieces(request([b"Host: t", big + b"v"]))) == 431
    assert first_error([b"PUT /echo HTTP/1.1\r\nX: " + b"v" * MAX_HEADER_BYTES]) == 431


@pytest.mark.parametrize(
    "data",
    [
        b"PUT /echo HTTP/1.1\n" + H + b"\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: t\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: t\nX: y\r\n\r\n",
    ],
    ids=["request-line", "last-header", "inner-header"],
)
def test_a_line_ended_by_a_bare_lf_is_400_whole_or_trickled(data: bytes) -> None:
    assert first_error([data]) == 400
    assert first_error(bytewise(data)) == 400
    bare = re.search(rb"(?<!\r)\n", data)
    assert bare is not None
    assert first_error([data[: bare.end()]]) == 400  # at once, not at the head's end


def test_up_to_four_empty_lines_before_a_request_line_are_ignored() -> None:
    assert serve([b"\r\n" * 4 + put(b"[1]")]) == ((200,), False)
    assert serve([b"\r\n" * 5 + put(b"[1]")])[0] == (400,)


# -- replies ------------------------------------------------------------------------------------


def served_head(data: bytes) -> ServerConnection:
    wire = ServerConnection(LIMIT)
    wire.receive_data(data)
    while wire.next_event() not in (END_OF_MESSAGE, NEED_DATA):
        pass
    return wire


def test_head_reply_has_no_body_from_the_parsed_method() -> None:
    head = served_head(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n")
    head.reply_head(200, (), 0)
    assert (head.reply_has_body, head.must_close) == (False, False)
    for method in (b"HEADX", b"PUT"):
        other = served_head(method + b" / HTTP/1.1\r\n" + H + b"\r\n")
        other.reply_head(405, (), 10)
        assert other.reply_has_body
    after_empty_line = served_head(b"\r\nHEAD / HTTP/1.1\r\n" + H + b"\r\n")
    after_empty_line.reply_head(200, (), 0)
    assert not after_empty_line.reply_has_body


@pytest.mark.parametrize(
    ("request_bytes", "close"),
    [
        (b"PUT /x HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", False),
        (b"PUT /x HTTP/1.1\r\n" + H + b"Connection: x-close-later\r\n\r\n", False),
        (b"PUT /x HTTP/1.1\r\n" + H + b"Connection: keep-alive, Close\r\n\r\n", True),
        (b"PUT /x HTTP/1.0\r\n\r\n", True),
        (b"HEAD /x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n", True),  # body unread
    ],
    ids=["keep-alive", "token-not-close", "close-token", "http-1.0", "body-left-unread"],
)
def test_keep_alive_or_close_is_settled_by_the_connection(
    request_bytes: bytes, close: bool
) -> None:
    wire = ServerConnection(LIMIT)
    wire.receive_data(request_bytes)
    assert isinstance(wire.next_event(), RequestHead)
    head = wire.reply_head(200, (("Content-Type", "text/plain"),), 2, date=b"Date: d\r\n")
    assert wire.must_close is close
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nDate: d\r\n"
        + (b"Connection: close\r\n\r\n" if close else b"\r\n")
    )


def test_reply_of_unknown_size_is_chunked_or_delimited_by_the_close() -> None:
    wire = served_head(put(b"[1]"))
    assert b"Transfer-Encoding: chunked\r\n" in wire.reply_head(200, (), None)
    assert wire.piece_framing(26) == (b"1a\r\n", b"\r\n")
    assert wire.end_of_body() == b"0\r\n\r\n"
    old = served_head(b"PUT /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    head = old.reply_head(200, (), None)
    assert b"Transfer-Encoding" not in head
    assert head.endswith(b"Connection: close\r\n\r\n")
    assert (old.piece_framing(26), old.end_of_body()) == ((b"", b""), b"")


def test_100_continue_only_when_asked_with_a_body_to_come_and_once() -> None:
    expect = b"Expect: 100-continue\r\n"
    wire = ServerConnection(LIMIT)
    wire.receive_data(put(b"[1]", expect)[:-3])
    assert isinstance(wire.next_event(), RequestHead)
    assert wire.continue_response() == CONTINUE
    assert wire.continue_response() == b""
    for data in (
        put(b"", expect),  # no body to come
        put(b"[1]")[:-3],  # not asked
        b"PUT /x HTTP/1.0\r\nContent-Length: 3\r\n" + expect + b"\r\n",  # HTTP/1.0
    ):
        other = ServerConnection(LIMIT)
        other.receive_data(data)
        assert isinstance(other.next_event(), RequestHead)
        assert other.continue_response() == b""


def test_next_cycle_needs_a_reply_on_a_connection_that_stays_open() -> None:
    wire = served_head(put(b"[1]"))
    with pytest.raises(RuntimeError):
        wire.start_next_cycle()
    wire.reply_head(200, (), 3, close=True)
    with pytest.raises(RuntimeError):
        wire.start_next_cycle()


@pytest.mark.parametrize(
    "data",
    [
        b"HEAD / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n",  # refused by the grammar
        b"HEAD / HTTP/1.1\r\nHost: t\r\nX: " + b"v" * MAX_HEADER_BYTES,  # by a limit, unended
        b"HEAD / HTTP/1.1\r\nHost: t\nX: y\r\n\r\n",  # a bare LF
    ],
    ids=["grammar", "limit", "bare-lf"],
)
def test_head_refused_in_its_head_gets_a_reply_without_a_body(data: bytes) -> None:
    wire = ServerConnection(LIMIT)
    wire.receive_data(data)
    with pytest.raises(HTTPError) as info:
        wire.next_event()
    wire.reply_head(info.value.status, (), 100)
    assert not wire.reply_has_body
    assert wire.must_close
    other = ServerConnection(LIMIT)
    other.receive_data(data.replace(b"HEAD", b"PUT", 1))
    with pytest.raises(HTTPError):
        other.next_event()
    other.reply_head(400, (), 100)
    assert other.reply_has_body


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (b"PUT /a?q=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", ("PUT", "/a?q=1")),
        (b"PUT /b HTTP/1.1\r\nHost: t\r\nBad Field: x\r\n\r\n", ("PUT", "/b")),
        (b"GET /c HTTP/1.1\r\n\r\n", ("GET", "/c")),  # no Host: the line alone
        (b"PUT /d HTTP/1.1\r\nHost: t\nX: y\r\n\r\n", ("PUT", "/d")),  # a bare LF in a field
        (b"PUT /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", ("PUT", "/e")),
        (b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Le", ("PUT", "/f")),  # cut short in the head
        (b"PUT /g HTTP/3.0\r\nHost: t\r\n\r\n", None),  # 505: no valid request line
        (b"PUT /h\r\nHost: t\r\n\r\n", None),
        (b"PUT /" + b"i" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n", None),  # 414
    ],
)
def test_request_start_tells_method_and_target_of_a_head_refused_or_cut_short(
    data: bytes, start: tuple[str, str] | None
) -> None:
    wire = ServerConnection(LIMIT)
    assert wire.request_start is None  # nothing received yet
    wire.receive_data(data)
    wire.receive_data(b"")  # the peer's close: a head cut short stays cut short
    try:
        event = wire.next_event()
    except HTTPError:
        event = None
    assert isinstance(event, (RequestHead, ConnectionClosed)) or event is None
    assert wire.request_start == start


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (put(b"12345678")[:-3], "ended after 5 of the 8 bytes its Content-Length announced"),
        (
            b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n9\r\nab",
            "ended after 6 bytes, before the last chunk",
        ),
        (
            b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
            "ended after 4 bytes, before the last chunk",
        ),
    ],
    ids=["content-length", "mid-chunk", "between-chunks"],
)
def test_a_body_the_peer_cut_short_gets_the_wires_400(data: bytes, detail: str) -> None:
    wire = ServerConnection(LIMIT)
    wire.receive_data(data)
    wire.receive_data(b"")
    events = [wire.next_event()]
    for _ in range(10):
        if isinstance(events[-1], ConnectionClosed):
            break
        events.append(wire.next_event())
    assert isinstance(events[0], RequestHead)
    last = events[-1]
    assert isinstance(last, ConnectionClosed)
    assert last.mid_message
    error = wire.cut_short_error()
    assert (error.status, error.close) == (400, True)
    assert detail in error.detail


def test_date_line_is_an_imf_fixdate_from_the_time_passed_in() -> None:
    assert date_line(0.0) == b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
    assert date_line(1_700_000_000.9) == b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
    assert date_line(1_700_000_000.1) == b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"  # per second
    assert date_line(951_782_400.0) == b"Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n"


def test_a_served_reply_carries_the_date_line() -> None:
    from email.utils import parsedate_to_datetime

    from dataserve import HTTPDataServer

    from .conftest import put as put_request
    from .conftest import raw_exchange

    with HTTPDataServer(Echo) as server:
        reply = raw_exchange(server.port, put_request("/echo", b"1"))
    assert reply.status == 200
    assert re.fullmatch(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
        reply.headers["date"],
    )
    assert parsedate_to_datetime(reply.headers["date"]).year >= 2024


@pytest.mark.parametrize(("method", "has_body"), [("HEAD", False), ("PUT", True), ("GET", True)])
def test_only_a_reply_to_head_leaves_its_body_out(method: str, has_body: bool) -> None:
    assert reply_has_body(method) is has_body


def test_a_chunked_body_is_never_read_directly() -> None:
    # Its framing lines lie between its bytes: they must pass through the wire.
    wire = ServerConnection(LIMIT)
    wire.receive_data(b"PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(wire.next_event(), RequestHead)
    assert wire.next_event() is NEED_DATA
    wire.receive_data(b"10000\r\nab")
    assert isinstance(wire.next_event(), Data)
    assert wire.data_pending == 0x10000 - 2  # the rest of the chunk is due
    assert wire.direct_read_pending == 0
    with pytest.raises(RuntimeError):
        wire.data_read_directly(1)


@pytest.mark.parametrize(
    ("protocol", "version"),
    [("HTTP/1.1", (1, 1)), ("HTTP/1.0", (1, 0)), ("HTTP/2", None), ("http/1.1", None), ("", None)],
)
def test_parse_version_names_only_the_versions_served(
    protocol: str, version: tuple[int, int] | None
) -> None:
    assert parse_version(protocol) == version
