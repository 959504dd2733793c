"""Property tests: values round-trip through a real server unchanged."""

from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataserve import HTTPDataClient

from .strategies import json_values, payload_bytes

SETTINGS = settings(
    max_examples=int(os.environ.get("DATASERVE_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def same(a: object, b: object) -> bool:
    """Equality that also tells 0.0 from -0.0 and keeps types (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)  # type: ignore[arg-type]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[attr-defined]
    return a == b


@SETTINGS
@given(value=json_values)
def test_every_json_value_round_trips_unchanged(client: HTTPDataClient, value: object) -> None:
    if value is None:
        return  # None means "not handled" to an echo handler (404): covered elsewhere
    assert same(client.send("/echo", value), value)


@SETTINGS
@given(data=payload_bytes)
def test_random_bytes_round_trip_byte_for_byte(client: HTTPDataClient, data: bytes) -> None:
    assert client.send("/echo", data) == data


@SETTINGS
@given(text=st.text())
def test_every_string_round_trips_as_text(client: HTTPDataClient, text: str) -> None:
    assert client.send("/echo", text) == text
