"""A codec of your own: `fractions.Fraction` as ``application/x-fraction`` ("5/3" as text).

JSON has no exact fractions (5/3 would arrive as 1.6666666666666667), so this codec sends a
Fraction as its text, and parses it back. A codec is any object with these four members; it
need not inherit from anything (`dataserve.codecs.Codec` is the Protocol mypy checks it
against when you register it).
"""

from collections.abc import Mapping
from fractions import Fraction


class FractionCodec:
    """``Fraction`` as ``application/x-fraction``: the text ``str(value)``, e.g. ``b"5/3"``."""

    media_type = "application/x-fraction"  # sent in Content-Type; picks this codec to decode
    types = (Fraction,)  # the Python types it encodes

    def encode(self, value: Fraction) -> bytes:
        return str(value).encode("ascii")

    def decode(self, data: bytes, params: Mapping[str, str], type: object = None) -> Fraction:
        # Raise ValueError for a body that is not a fraction: a server answers it with 400, a
        # client raises DecodeError. (Any other exception would be a 500: a bug on the server.)
        try:
            return Fraction(data.decode("ascii"))  # ValueError for b"five" or non-ASCII bytes
        except ZeroDivisionError:  # b"1/0"
            raise ValueError("a fraction's denominator cannot be zero") from None
