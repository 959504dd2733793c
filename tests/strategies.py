"""Hypothesis strategies for values the JSON codec accepts and round-trips unchanged."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# JSON numbers: msgspec encodes ints within 64 bits; floats must be finite to stay JSON.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=12), children, max_size=8)
    ),
    max_leaves=40,
)
"""Values that travel as application/json and come back equal (lists stay lists)."""

payload_bytes = st.one_of(
    st.binary(max_size=2048),
    st.integers(min_value=0, max_value=4 * 1024 * 1024).map(
        lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)
    ),
)
"""Random bytes, small ones byte by byte and large ones (up to 4 MB) by size."""
