"""The ``FastAPI + uvicorn`` row's app: what a user would write instead of dataserve.

Imported only by that row's server process (it needs fastapi, which only the nox ``bench``
session installs). No ``from __future__ import annotations`` here: FastAPI reads the route's
annotations at run time to inject the ``Request``, and a string annotation naming a local import
would not resolve.

``PUT /echo`` does the floor's msgspec work, and no more: the body is read raw (``await
request.body()``) and the reply is a plain ``Response`` of bytes, so FastAPI's own validation and
JSON encoder are not what is measured. JSON is decoded then encoded with msgspec, text decoded
then encoded, bytes passed through; the reply has the request's content type.
"""

import msgspec
from fastapi import FastAPI, Request, Response

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.put("/echo")
async def echo(request: Request) -> Response:
    """Echo the body the way the floor's handler does."""
    body = await request.body()
    ctype = request.headers.get("content-type", "application/octet-stream")
    if ctype == "application/json":
        out = _encode(_decode(body))
    elif ctype == "text/plain":
        out = body.decode("utf-8").encode("utf-8")
    else:
        out = body
    return Response(content=out, media_type=ctype)
