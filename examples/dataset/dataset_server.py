"""A dataset server: reads ``readings.csv`` once, then serves slices, summaries and lookups.

Run it, then ``python dataset_client.py`` in another terminal::

    python dataset_server.py                    # port 5001 (DATASERVE_PORT to change)
    dataserve serve dataset_server:Readings --port 5001   # or let the CLI serve it

The client imports `Reading` and `Span` from this module to get typed results; importing it
starts no server and reads no file (that happens when the server builds the handler).
"""

import csv
import datetime
import os
import statistics
from pathlib import Path
from typing import Any, Literal

import msgspec

from dataserve import HTTPDataHandler, route, run_http_server

CSV_PATH = Path(__file__).with_name("readings.csv")  # 300 daily weather readings, 3 stations

Station = Literal["airport", "harbour", "hill"]  # the stations of readings.csv


class Reading(msgspec.Struct, frozen=True):
    """One row of ``readings.csv``. msgspec Structs travel as JSON objects."""

    id: int
    station: str
    day: datetime.date  # JSON has no date type: msgspec sends "2024-03-01" and parses it back
    temperature_c: float
    rain_mm: float


class Span(msgspec.Struct):
    """The rows ``start <= index < stop``, as in the Python slice ``rows[start:stop]``."""

    start: int
    stop: int


class Summary(msgspec.Struct):
    """A few figures about one station."""

    station: str
    days: int
    mean_temperature_c: float
    total_rain_mm: float


class Readings(HTTPDataHandler):
    """Serves the rows of ``readings.csv``, loaded once when the server starts."""

    def __init__(self) -> None:
        # The server builds its handler once, before it accepts connections: load the data here.
        with CSV_PATH.open(newline="") as f:
            raw = list(csv.DictReader(f))  # every value is a str here
        # msgspec checks each row and converts "12.5" to 12.5, "2024-03-01" to a date, ...
        self.rows = msgspec.convert(raw, list[Reading], strict=False)
        self.by_id = {row.id: row for row in self.rows}
        # Requests are served from several threads at once. The rows are never changed after
        # this point, so reading them needs no lock.

    # Typed routes: the payload is checked against the annotation before the method runs (a
    # mismatch answers 400 with the path of the bad item), and the result against the return
    # annotation on the way out.

    @route("/count")
    def count(self, payload: None) -> int:
        return len(self.rows)

    @route("/slice")
    def slice_rows(self, payload: Span) -> list[Reading]:
        return self.rows[payload.start : payload.stop]

    @route("/summary")
    def summary(self, payload: Station) -> Summary:  # any other name is refused with 400
        rows = [row for row in self.rows if row.station == payload]
        return Summary(
            station=payload,
            days=len(rows),
            mean_temperature_c=round(statistics.fmean(row.temperature_c for row in rows), 2),
            total_rain_mm=round(sum(row.rain_mm for row in rows), 1),
        )

    # Resources no route names arrive here: "/reading/42" looks up the row whose id is 42.
    def handle_request(self, resource: str, payload: Any) -> object:
        prefix, _, key = resource.rpartition("/")
        if prefix == "/reading" and key.isdigit():
            return self.by_id.get(int(key))  # None when there is no such id
        return None  # None means "not handled": the client gets ResourceNotFound (404)


if __name__ == "__main__":  # not when imported, by the client or by `dataserve serve`
    run_http_server(int(os.environ.get("DATASERVE_PORT", "5001")), Readings)
