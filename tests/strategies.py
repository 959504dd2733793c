"""Hypothesis strategies for values the JSON codec accepts and round-trips unchanged."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

# JSON numbers: msgspec encodes ints within 64 bits. Floats include NaN and the infinities,
# which travel as Python's json module writes them (NaN, Infinity, -Infinity).
json_floats = st.floats()
"""Every float, NaN (of any sign and payload) and the infinities included."""

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | json_floats
    | st.text()
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=12), children, max_size=8)
    ),
    max_leaves=40,
)
"""Values that travel as application/json and come back equal (lists stay lists; a NaN comes
back as a NaN, compared with `same` in test_properties)."""

payload_bytes = st.one_of(
    st.binary(max_size=2048),
    st.integers(min_value=0, max_value=4 * 1024 * 1024).map(
        lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)
    ),
)
"""Random bytes, small ones byte by byte and large ones (up to 4 MB) by size."""


def same(a: object, b: object) -> bool:
    """The equality these values round-trip under: types kept (True is not 1), 0.0 told from
    -0.0, and a NaN equal to any NaN (``json`` writes every NaN as ``NaN``, sign and payload
    dropped, as 0.1 did)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b
