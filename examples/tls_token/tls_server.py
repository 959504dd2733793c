"""A server that speaks only TLS and answers only callers that hold its bearer token.

For a try on this machine, make a throwaway CA and a certificate for localhost with trustme,
and a random token (the token comes from the environment: never write one in code)::

    pip install trustme && python -m trustme    # writes server.pem, server.key and client.pem
    export DATASERVE_TOKEN="$(python -c 'import secrets; print(secrets.token_urlsafe())')"
    python tls_server.py server.pem server.key  # port 5001 (DATASERVE_PORT to change)

Then ``python tls_client.py client.pem`` in another terminal, with the same DATASERVE_TOKEN.
"""

import os
import ssl
import sys

from dataserve import HTTPDataHandler, route, run_http_server


class Greeter(HTTPDataHandler):
    """Says hello: what it serves matters less here than who may call it."""

    @route("/greeting")
    def greeting(self, payload: str) -> str:
        return f"hello, {payload}"


if __name__ == "__main__":
    # The certificate and its private key, as `python -m trustme` names them by default.
    certfile, keyfile = sys.argv[1:3] if len(sys.argv) == 3 else ("server.pem", "server.key")
    token = os.environ.get("DATASERVE_TOKEN")
    if not token:
        sys.exit("tls_server.py: set DATASERVE_TOKEN to the token clients must send")

    # A server-side TLS context: Purpose.CLIENT_AUTH is the one for the side that is connected
    # to. The key file stays on this machine; clients only need the CA's certificate.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)

    port = int(os.environ.get("DATASERVE_PORT", "5001"))
    # Every request must carry "Authorization: Bearer <token>" (401 otherwise); HEAD, the
    # liveness check, needs none. This still binds 127.0.0.1: to serve other machines, add
    # host="0.0.0.0", which is what the TLS and the token are for.
    run_http_server(port, Greeter, auth_token=token, ssl_context=context)
