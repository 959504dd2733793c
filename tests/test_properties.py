"""Property tests: values round-trip through a real server unchanged."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataserve import HTTPDataClient

from .strategies import json_floats, json_values, payload_bytes, same

SETTINGS = settings(
    max_examples=int(os.environ.get("DATASERVE_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(value=json_values)
def test_every_json_value_round_trips_unchanged(client: HTTPDataClient, value: object) -> None:
    if value is None:
        return  # None means "not handled" to an echo handler (404): covered elsewhere
    assert same(client.send("/echo", value), value)


@SETTINGS
@given(floats=st.lists(json_floats, max_size=20))
def test_floats_nan_and_infinities_round_trip_typed(
    client: HTTPDataClient, floats: list[float]
) -> None:
    assert same(client.send("/echo", floats, type=list[float]), floats)


@SETTINGS
@given(data=payload_bytes)
def test_random_bytes_round_trip_byte_for_byte(client: HTTPDataClient, data: bytes) -> None:
    assert client.send("/echo", data) == data


@SETTINGS
@given(text=st.text())
def test_every_string_round_trips_as_text(client: HTTPDataClient, text: str) -> None:
    assert client.send("/echo", text) == text
