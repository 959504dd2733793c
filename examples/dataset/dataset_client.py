"""Calls the server of ``dataset_server.py``: typed slices, a summary and lookups.

Start ``python dataset_server.py`` first, then::

    python dataset_client.py                    # port 5001 (DATASERVE_PORT to change)
"""

import os

from dataset_server import Reading, Span  # only the types: importing starts no server

from dataserve import BadRequest, HTTPDataClient, ResourceNotFound

port = int(os.environ.get("DATASERVE_PORT", "5001"))

with HTTPDataClient(port=port) as client:
    client.wait_ready(10)  # waits (at most 10 s) until the server answers

    count = client.send("/count", type=int)
    print(f"{count} readings")

    # type=list[Reading] decodes the JSON reply into Reading objects (and mypy knows it): a
    # reply of another shape raises DecodeError instead of handing back wrong data.
    week = client.send("/slice", Span(start=0, stop=21), type=list[Reading])
    print(f"first week: {len(week)} readings, {week[0].day} to {week[-1].day}")
    warmest = max(week, key=lambda row: row.temperature_c)
    print(f"warmest: {warmest.temperature_c} °C at {warmest.station} on {warmest.day}")

    hill = client.send("/summary", "hill")  # untyped: a dict, as the JSON arrived
    print(f"hill: mean {hill['mean_temperature_c']} °C, rain {hill['total_rain_mm']} mm")

    reading = client.send("/reading/42", type=Reading)
    print(f"reading 42: {reading}")

    # A handler that returns None answers 404, which the client raises as ResourceNotFound.
    try:
        client.send("/reading/100000", type=Reading)
    except ResourceNotFound as exc:
        print(f"reading 100000: not found ({exc.status})")

    # A payload that does not fit the route's annotation never reaches the method: 400.
    try:
        client.send("/summary", "moon")
    except BadRequest as exc:
        print(f"summary of 'moon': refused ({exc.status}): {exc.detail}")
