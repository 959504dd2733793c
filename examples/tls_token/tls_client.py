"""Calls the server of ``tls_server.py`` over TLS, with the token; then without the right one.

With the server running and the same DATASERVE_TOKEN in the environment::

    python tls_client.py client.pem             # port 5001 (DATASERVE_PORT to change)

``client.pem`` is the certificate of the CA that signed the server's certificate.
"""

import os
import secrets
import ssl
import sys

from dataserve import HTTPDataClient, Unauthorized

cafile = sys.argv[1] if len(sys.argv) > 1 else "client.pem"
token = os.environ.get("DATASERVE_TOKEN")
if not token:
    sys.exit("tls_client.py: set DATASERVE_TOKEN to the server's token")
port = int(os.environ.get("DATASERVE_PORT", "5001"))
url = f"https://localhost:{port}"  # https: the client speaks TLS

# Trust the CA that signed the server's certificate (and the system's CAs, as always with
# create_default_context); the client checks the certificate and the host name.
context = ssl.create_default_context(cafile=cafile)

with HTTPDataClient(url=url, ssl_context=context, auth_token=token) as client:
    client.wait_ready(10)  # waits (at most 10 s) until the server answers
    print(client.send("/greeting", "TLS"))

# A wrong token (here a random one) or none at all: the server answers 401, which the client
# raises as Unauthorized. The message never shows the token.
for label, wrong in [("a wrong token", secrets.token_urlsafe()), ("no token", None)]:
    with HTTPDataClient(url=url, ssl_context=context, auth_token=wrong) as client:
        try:
            client.send("/greeting", "intruder")
        except Unauthorized as exc:
            print(f"{label}: refused ({exc.status}): {exc.detail}")
