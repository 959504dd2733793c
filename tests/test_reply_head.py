"""The client's reply-head parser (`_wire.parse_response_head`) and the heads it keeps:
a head seen before gives the same answer faster; every rule still holds for any other bytes."""

from __future__ import annotations

import pytest

from dataserve import HTTPDataClient, _wire
from dataserve._protocol import HTTPError, parse_response_head

STATUS = b"HTTP/1.1 200 OK"
FIELDS = [
    b"Content-Type: application/json",
    b"Content-Length: 7",
    b"Date: Wed, 02 Dec 2026 14:21:56 GMT",
]
PARSED = {
    "content-type": "application/json",
    "content-length": "7",
    "date": "Wed, 02 Dec 2026 14:21:56 GMT",
}


def test_a_head_parsed_again_gives_the_same_result() -> None:
    first = parse_response_head(STATUS, list(FIELDS))
    again = parse_response_head(STATUS, list(FIELDS))
    assert first == again == (1, 200, PARSED)


def test_each_caller_gets_a_headers_dict_of_its_own() -> None:
    _, _, headers = parse_response_head(STATUS, list(FIELDS))
    headers["content-length"] = "999"
    headers["x-added"] = "1"
    assert parse_response_head(STATUS, list(FIELDS))[2] == PARSED


@pytest.mark.parametrize(
    ("status_line", "fields", "detail"),
    [
        (b"HTTP/1.1 200 O\x01K", FIELDS, "malformed status line"),
        (b"HTTP/2 200 OK", FIELDS, "malformed status line"),
        (b"HTTP/1.1 20 OK", FIELDS, "malformed status line"),
        (STATUS, [*FIELDS, b" folded"], "malformed header line"),  # obs-fold
        (STATUS, [*FIELDS, b"X : y"], "malformed header line"),
        (STATUS, [*FIELDS, b"no colon"], "malformed header line"),
        (STATUS, [b"Content-Type: application/js\x00on", *FIELDS[1:]], "control character"),
        (STATUS, [*FIELDS, b"X: a\rb"], "control character"),
        (STATUS, [*FIELDS, b"X: a\nb"], "control character"),
        (STATUS, [*FIELDS, b"Content-Length: 8"], "conflicting Content-Length"),
    ],
)
def test_a_head_one_byte_away_from_a_kept_one_is_still_checked(
    status_line: bytes, fields: list[bytes], detail: str
) -> None:
    parse_response_head(STATUS, list(FIELDS))  # the well-formed head, kept
    with pytest.raises(HTTPError, match=detail) as info:
        parse_response_head(status_line, list(fields))
    assert info.value.status == 400
    with pytest.raises(HTTPError, match=detail):  # and again: a malformed head is never kept
        parse_response_head(status_line, list(fields))
    assert parse_response_head(STATUS, list(FIELDS)) == (1, 200, PARSED)


def test_a_repeated_content_length_of_the_same_value_is_one_field() -> None:
    fields = [*FIELDS, b"Content-Length: 7", b"Via: a", b"Via: b"]
    for _ in range(2):
        _, _, headers = parse_response_head(STATUS, fields)
        assert headers["content-length"] == "7"
        assert headers["via"] == "a, b"


def test_the_kept_heads_are_bounded_in_count_and_size() -> None:
    for number in range(_wire._REPLY_HEAD_LIMIT * 3):
        fields = [b"Content-Length: %d" % number]
        assert parse_response_head(STATUS, fields)[2] == {"content-length": str(number)}
        assert len(_wire._reply_heads) <= _wire._REPLY_HEAD_LIMIT
    big = [b"X-Big: " + b"a" * _wire._CACHEABLE_REPLY_HEAD]
    assert parse_response_head(STATUS, big)[2] == {"x-big": "a" * _wire._CACHEABLE_REPLY_HEAD}
    assert (STATUS, *big) not in _wire._reply_heads


def test_a_real_servers_reply_head_is_kept_and_answers_every_call(
    client: HTTPDataClient,
) -> None:
    _wire._reply_heads.clear()
    for i in range(20):
        assert client.send("/echo", [i % 10]) == [i % 10]
    kept = [key for key in _wire._reply_heads if key[0] == STATUS]
    assert kept  # the server's head, as the client read it
    assert all(b"Content-Type: application/json" in key for key in kept)
