"""A content-addressed file store: uploads streamed to disk, downloads streamed from it.

Neither side holds a file whole, so files of several GB pass through a small process. Run it,
then ``python files_client.py`` in another terminal::

    python files_server.py                      # port 5001 (DATASERVE_PORT to change)

Files go to ``DATASERVE_STORE`` (a new temporary folder if unset, removed on exit).
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from dataserve import HTTPDataHandler, route, run_http_server


class FileStore(HTTPDataHandler):
    """Files named by the SHA-256 of their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @route("/put")
    def put(self, payload: BinaryIO) -> str:
        # A payload annotated BinaryIO is the request body as a stream, not a decoded value:
        # read it a MiB at a time into a temporary file, hashing as it goes.
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as part:
            while chunk := payload.read(1 << 20):
                digest.update(chunk)
                part.write(chunk)
        name = digest.hexdigest()
        os.replace(part.name, self.root / name)  # in place only once it arrived whole
        return name

    @route("/get")
    def get(self, payload: str) -> BinaryIO | None:
        path = self.root / payload
        if not (len(payload) == 64 and payload.isalnum() and path.is_file()):
            return None  # no such file: null, which the client sees as None
        # A returned file is streamed back with its Content-Length (sendfile on plain TCP),
        # then closed by the server, also if the client goes away mid-way.
        return open(path, "rb")

    @route("/list")
    def list_files(self, payload: None) -> dict[str, int]:
        return {path.name: path.stat().st_size for path in sorted(self.root.iterdir())}


if __name__ == "__main__":
    store = os.environ.get("DATASERVE_STORE")
    root = Path(store) if store else Path(tempfile.mkdtemp(prefix="dataserve-store-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"storing files in {root}", flush=True)
    try:
        run_http_server(int(os.environ.get("DATASERVE_PORT", "5001")), FileStore(root))
    finally:
        if not store:
            shutil.rmtree(root, ignore_errors=True)
