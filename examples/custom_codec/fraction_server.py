"""Exact arithmetic served with a custom codec: JSON lists in, Fractions out (and in).

Run it, then ``python fraction_client.py`` in another terminal::

    python fraction_server.py                   # port 5001 (DATASERVE_PORT to change)
"""

import os
from fractions import Fraction

from fraction_codec import FractionCodec

from dataserve import HTTPDataHandler, route, run_http_server
from dataserve.codecs import CodecRegistry

# The server decodes only the media types its registry holds (anything else is 415), so a
# codec must be registered here as well as on the client. plugins=False keeps out the codecs
# of installed plug-ins: this server decodes JSON, text, bytes and fractions, nothing else.
registry = CodecRegistry(plugins=False)
registry.register(FractionCodec())


class ExactMath(HTTPDataHandler):
    """Arithmetic without rounding."""

    @route("/mean")
    def mean(self, payload: list[int]) -> Fraction:  # a JSON list in, a Fraction out
        return Fraction(sum(payload), len(payload))

    @route("/half")
    def half(self, payload: Fraction) -> Fraction:  # a Fraction both ways
        return payload / 2


if __name__ == "__main__":
    run_http_server(int(os.environ.get("DATASERVE_PORT", "5001")), ExactMath, registry=registry)
