"""The seed example's server: three numbers kept in memory, served over HTTP.

Run it, then ``python client.py`` in another terminal::

    python server.py                            # serves on port 5001 (DATASERVE_PORT to change)
    dataserve serve server:MyDataHandler --port 5001   # the same handler, served by the CLI
"""

import os
from typing import Any

from dataserve import HTTPDataHandler, run_http_server

# The data the server keeps loaded. In a real server this is the expensive part: a dataset read
# from disk, a model, a cache. It is built once, when the process starts.
xdata = [1, 2, 3]


class MyDataHandler(HTTPDataHandler):
    # The server calls handle_request for every request, from several threads at once; this
    # handler only reads xdata, so it needs no lock.
    def handle_request(self, resource: str, payload: Any) -> object:
        if resource == "/xdata":
            return xdata + payload
        if resource == "/ydata":
            return 2
        return None  # "not handled": the client gets ResourceNotFound (404)


# Start the server only when this file is run as a program, not when it is imported.
# `dataserve serve server:MyDataHandler --port 5001` imports this file to find MyDataHandler and
# serves it itself: without this guard, the import would start this file's own server instead
# (on DATASERVE_PORT or 5001, whatever --port says) and never return.
if __name__ == "__main__":
    port = int(os.environ.get("DATASERVE_PORT", "5001"))
    run_http_server(port, MyDataHandler)  # blocks; Ctrl-C or SIGTERM stops it cleanly
