"""Sends a 64 MiB file to the store of ``files_server.py``, then gets it back into a file.

Start ``python files_server.py`` first, then::

    python files_client.py                      # port 5001 (DATASERVE_PORT to change)

Its files live in a temporary folder, removed at the end.
"""

import hashlib
import os
import tempfile
from pathlib import Path

from dataserve import HTTPDataClient

port = int(os.environ.get("DATASERVE_PORT", "5001"))
SIZE = 64 << 20

reports: list[tuple[int, int | None]] = []


def progress(done: int, total: int | None) -> None:
    """Called as the body goes out (then as the reply comes in), at most every 64 KiB."""
    reports.append((done, total))


with tempfile.TemporaryDirectory() as folder, HTTPDataClient(port=port) as client:
    client.wait_ready(10)  # waits (at most 10 s) until the server answers
    source, copy = Path(folder) / "weights.bin", Path(folder) / "copy.bin"
    with open(source, "wb") as blank:  # 64 MiB that are not all zeros, a MiB at a time
        for i in range(SIZE >> 20):
            blank.write(hashlib.sha256(str(i).encode()).digest() * (1 << 15))

    # A binary file as payload is streamed: 256 KiB at a time, with its Content-Length.
    with open(source, "rb") as f:
        name = client.send("/put", f, type=str, progress=progress)
    upload = [done for done, total in reports if total == SIZE]  # then the reply's, of 66 B
    print(f"stored {SIZE >> 20} MiB as {name[:16]}... (progress {upload[0]} to {upload[-1]})")

    # out= writes the reply's bytes into a file as they arrive; it returns how many.
    with open(copy, "wb") as out:
        written = client.send("/get", name, out=out)
    same = hashlib.sha256(copy.read_bytes()).hexdigest() == name
    print(
        f"got {written >> 20} MiB back into copy.bin: {'the same bytes' if same else 'DIFFERENT'}"
    )

    print(f"the store holds {client.send('/list', type=dict[str, int])}".replace(name, "<it>"))
    missing = client.send("/get", "0" * 64)  # a route typed X | None answers null for None
    print(f"a file it does not hold: {missing}")
