"""Calls the server of ``fraction_server.py`` with the custom codec registered on this side too.

Start ``python fraction_server.py`` first, then::

    python fraction_client.py                   # port 5001 (DATASERVE_PORT to change)
"""

import os
from fractions import Fraction

from fraction_codec import FractionCodec

from dataserve import HTTPDataClient, UnsupportedMediaType
from dataserve.codecs import CodecRegistry, MsgpackCodec

port = int(os.environ.get("DATASERVE_PORT", "5001"))

# The same codec as the server's. The client tells the server which media types it decodes
# (the Accept header), so the server may answer a Fraction as application/x-fraction.
registry = CodecRegistry()
registry.register(FractionCodec())

with HTTPDataClient(port=port, registry=registry) as client:
    client.wait_ready(10)  # waits (at most 10 s) until the server answers
    mean = client.send("/mean", [1, 2, 2], type=Fraction)  # exact: 5/3, not 1.666...
    print(f"mean of [1, 2, 2]: {mean}")
    half = client.send("/half", mean, type=Fraction)  # the Fraction is sent with our codec too
    print(f"half of {mean}: {half}")

# A codec registered on one side only. This client also registers MessagePack, which then
# encodes lists and dicts ahead of JSON; the server's registry lacks it, so the server refuses
# the body with 415 and says which media types it does decode.
lopsided = CodecRegistry()
lopsided.register(FractionCodec())
lopsided.register(MsgpackCodec())

with HTTPDataClient(port=port, registry=lopsided) as client:
    try:
        client.send("/mean", [1, 2, 2])
    except UnsupportedMediaType as exc:
        print(f"msgpack to a server without it: refused ({exc.status}): {exc.detail}")
