"""Codecs: how values become bodies and back.

The built-ins put exactly these media types on the wire: ``str`` as ``text/plain`` (UTF-8),
JSON-able values as ``application/json`` (msgspec), and bytes as ``application/octet-stream``.
`MsgpackCodec` is shipped and opt-in; ``dataserve.codecs.numpy`` holds the opt-in NumPy codec
(``NumpyCodec``, the ``numpy`` extra) and is the only module that imports numpy: importing
``dataserve`` or ``dataserve.codecs`` never does. There is no pickle codec, by design.
"""

from ._base import BytesCodec, Codec, JsonCodec, TextCodec
from ._registry import CodecRegistry, default_registry, register
from .msgpack import MsgpackCodec

__all__ = [
    "BytesCodec",
    "Codec",
    "CodecRegistry",
    "JsonCodec",
    "MsgpackCodec",
    "TextCodec",
    "default_registry",
    "register",
]

for _name in ("BytesCodec", "Codec", "CodecRegistry", "JsonCodec", "MsgpackCodec", "TextCodec"):
    globals()[_name].__module__ = __name__
del _name
