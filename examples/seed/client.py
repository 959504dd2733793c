"""The seed example's client: calls the server of ``server.py`` and prints what it answers.

Start ``python server.py`` first, then::

    python client.py                            # port 5001 (DATASERVE_PORT to change)
"""

import os

from dataserve import HTTPDataClient

port = int(os.environ.get("DATASERVE_PORT", "5001"))

client = HTTPDataClient(port=port)
ret = client.send("/xdata", [4, 5, 6])  # the payload travels as JSON; the reply comes back as JSON
print(ret)  # [1, 2, 3, 4, 5, 6]
ret = client.send("/ydata")  # no payload: JSON null
print(ret)  # 2
client.close()  # or use `with HTTPDataClient(port=port) as client:`, which closes it for you
