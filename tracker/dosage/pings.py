"""GPS pings: validation of one ping, and reading ping files (CSV or JSON lines).

All times are UTC. A ping's timestamp is held as integer microseconds since the Unix
epoch so that the same instant written in different formats ("Z", "+00:00", "+01:00",
epoch seconds) compares equal exactly (docs/dosage.md, rule 2).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple

import gpxpy
import gpxpy.gpx
import numpy as np
import pandas as pd

from tracker.foundation import parsing

DEVICE_ID = "device_id"
TIMESTAMP = "timestamp"
LAT = "lat"
LON = "lon"
ACCURACY_M = "accuracy_m"
SPEED_KMH = "speed_kmh"
REQUIRED_COLUMNS = (DEVICE_ID, TIMESTAMP, LAT, LON)
PING_COLUMNS = (*REQUIRED_COLUMNS, ACCURACY_M, SPEED_KMH)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_MAX_EPOCH_S = 253402300799  # 9999-12-31T23:59:59Z
_END_EPOCH_S = 4102444800  # 2100-01-01T00:00:00Z: after parsing.LATEST_DAY
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
MAX_DEVICE_ID_LENGTH = 128


class PingError(ValueError):
    """A ping that cannot be accepted; the message says which field and why."""


class Ping(NamedTuple):
    """One validated ping; `t_us` is UTC microseconds since the epoch."""

    device_id: str
    t_us: int
    lat: float
    lon: float
    accuracy_m: float | None = None
    speed_kmh: float | None = None


@dataclass(frozen=True)
class BadRow:
    """A row of a ping file that was skipped, with its 1-based line number."""

    line: int
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        return f"{self.unit} {self.line}: {self.reason}"


class BadRows(ValueError):
    """A file with bad rows, imported all-or-nothing: nothing was imported."""

    def __init__(self, source: str, read: int, bad_rows: Sequence[BadRow]):
        self.source, self.read, self.bad_rows = source, read, tuple(bad_rows)
        super().__init__(
            f"{source}: {len(self.bad_rows)} of {read} rows are bad; nothing "
            "imported (fix them, or import the rest skipping invalid rows)"
        )


def parse_timestamp(value: Any) -> int:
    """Return UTC microseconds since the epoch for an ISO-8601 string with offset or epoch seconds.

    A timestamp without an offset is rejected: it could be UTC or local time.
    """
    if isinstance(value, bool) or value is None:
        raise PingError(f"timestamp {value!r} is not a time")
    if isinstance(value, int | float):
        return _epoch_seconds_to_us(Decimal(repr(value)) if isinstance(value, float) else value)
    if not isinstance(value, str):
        raise PingError(f"timestamp {value!r} is not a time")
    text = value.strip()
    if _NUMBER.match(text):
        return _epoch_seconds_to_us(Decimal(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PingError(f"timestamp {value!r} is not ISO-8601 or epoch seconds") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PingError(
            f"timestamp {value!r} has no UTC offset and is ambiguous; add 'Z' or '+01:00'"
        )
    try:
        parsing.check_day(moment.astimezone(UTC).date())
    except ValueError as exc:
        raise PingError(f"timestamp {value!r}: {exc}") from None
    return (moment - _EPOCH) // _ONE_US


def _epoch_seconds_to_us(seconds: Decimal | int) -> int:
    try:
        finite = Decimal(seconds).is_finite()
    except InvalidOperation:
        finite = False
    if not finite or not 0 <= seconds <= _MAX_EPOCH_S:
        raise PingError(
            f"epoch timestamp {seconds} is out of range (expected seconds since 1970, "
            "not milliseconds)"
        )
    if seconds >= _END_EPOCH_S:
        raise PingError(
            f"epoch timestamp {seconds} is after {parsing.LATEST_DAY}, the last date handled"
        )
    return int((Decimal(seconds) * 1_000_000).to_integral_value())


def format_timestamp(t_us: int) -> str:
    """Return an ISO-8601 UTC string ('Z') for microseconds since the epoch."""
    moment = _EPOCH + timedelta(microseconds=int(t_us))
    return moment.isoformat(timespec="seconds" if moment.microsecond == 0 else "microseconds")


def _number(value: Any, field: str, *, optional: bool = False) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise PingError(f"missing {field}")
    if isinstance(value, bool):
        raise PingError(f"{field} {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PingError(f"{field} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise PingError(f"{field} {value!r} is not a finite number")
    return number


def make_ping(
    device_id: Any,
    timestamp: Any,
    lat: Any,
    lon: Any,
    accuracy_m: Any = None,
    speed_kmh: Any = None,
) -> Ping:
    """Validate the fields of one ping and return it, or raise PingError naming the field."""
    if not isinstance(device_id, str | int) or isinstance(device_id, bool):
        raise PingError("missing device_id")
    device = str(device_id).strip()
    if not device:
        raise PingError("missing device_id")
    if len(device) > MAX_DEVICE_ID_LENGTH or any(ord(c) < 32 for c in device):
        raise PingError(f"device_id {device[:40]!r} is too long or has control characters")
    if timestamp is None or (isinstance(timestamp, str) and not timestamp.strip()):
        raise PingError("missing timestamp")
    t_us = parse_timestamp(timestamp)
    lat_f = _number(lat, "lat")
    lon_f = _number(lon, "lon")
    if not -90 <= lat_f <= 90:
        raise PingError(f"lat {lat_f} is out of range [-90, 90]")
    if not -180 <= lon_f <= 180:
        raise PingError(f"lon {lon_f} is out of range [-180, 180]")
    if lat_f == 0 and lon_f == 0:
        raise PingError("position (0, 0) is a GPS fix failure, not a location")
    acc = _number(accuracy_m, "accuracy_m", optional=True)
    if acc is not None and acc < 0:
        raise PingError(f"accuracy_m {acc} is negative")
    speed = _number(speed_kmh, "speed_kmh", optional=True)
    if speed is not None and speed < 0:
        raise PingError(f"speed_kmh {speed} is negative")
    return Ping(device, t_us, lat_f, lon_f, acc, speed)


def pings_frame(pings: Iterable[Ping]) -> pd.DataFrame:
    """Return pings as the frame the dosage engine takes (timestamps as UTC datetimes)."""
    rows = list(pings)
    frame = pd.DataFrame(rows, columns=["device_id", "t_us", LAT, LON, ACCURACY_M, SPEED_KMH])
    frame[TIMESTAMP] = pd.to_datetime(frame.pop("t_us").to_numpy(np.int64), unit="us", utc=True)
    frame[DEVICE_ID] = frame[DEVICE_ID].astype(object)
    for column in (LAT, LON, ACCURACY_M, SPEED_KMH):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame[list(PING_COLUMNS)]


class PingFileError(ValueError):
    """A ping file that cannot be read at all (unreadable, empty, or a wrong header)."""


def read_pings(path: str | Path) -> tuple[pd.DataFrame, list[BadRow]]:
    """Read a CSV or JSON-lines ping file; return the valid pings and the skipped rows."""
    text = parsing.read_text(path, PingFileError)
    return parse_pings_text(text, source=str(path))


def parse_pings_text(text: str, source: str = "pings") -> tuple[pd.DataFrame, list[BadRow]]:
    """Parse ping text (CSV or JSON lines) into the engine's frame and the skipped rows."""
    pings, bad = parse_ping_records(text, source)
    return pings_frame(pings), bad


def parse_ping_records(text: str, source: str = "pings") -> tuple[list[Ping], list[BadRow]]:
    """Parse ping text, sniffing JSON lines from CSV."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise PingFileError(f"{source}: the file is empty")
    records = _json_lines(text) if _looks_like_json_lines(text) else _csv_rows(text, source)
    pings: list[Ping] = []
    bad: list[BadRow] = []
    for line, record in records:
        if isinstance(record, str):
            bad.append(BadRow(line, record))
            continue
        try:
            pings.append(make_ping(**{k: record.get(k) for k in PING_COLUMNS}))
        except PingError as exc:
            bad.append(BadRow(line, str(exc)))
    return pings, bad


def parse_gpx(text: str, device_id: str, source: str = "GPX") -> tuple[list[Ping], list[BadRow]]:
    """Parse GPX track, route and way points (which must carry times) as one device's pings."""
    try:
        gpx = gpxpy.parse(text)
    except gpxpy.gpx.GPXException as exc:
        raise PingFileError(f"{source}: not a readable GPX file ({exc})") from exc
    points = [p for track in gpx.tracks for segment in track.segments for p in segment.points]
    points += [p for route in gpx.routes for p in route.points] + list(gpx.waypoints)
    if not points:
        raise PingFileError(f"{source}: the GPX file has no points")
    pings: list[Ping] = []
    bad: list[BadRow] = []
    for number, point in enumerate(points, start=1):
        try:
            if point.time is None:
                raise PingError("point has no <time>")
            # GPX speed is in m/s; it has no accuracy in metres (hdop is not one).
            speed = None if point.speed is None else point.speed * 3.6
            pings.append(
                make_ping(
                    device_id,
                    point.time.isoformat(),
                    point.latitude,
                    point.longitude,
                    speed_kmh=speed,
                )
            )
        except PingError as exc:
            bad.append(BadRow(number, str(exc), unit="point"))
    return pings, bad


def _looks_like_json_lines(text: str) -> bool:
    """Return whether text is JSON lines: its first line is JSON and not a CSV ping header."""
    first = text.lstrip().split("\n", 1)[0].strip()
    header = next(csv.reader([first]), [])
    if all(name in (h.strip() for h in header) for name in REQUIRED_COLUMNS):
        return False
    try:
        parsing.json_loads(first)
    except json.JSONDecodeError:
        return first.startswith(("{", "["))
    return True


def _csv_rows(text: str, source: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    with parsing.csv_errors(reader, source, PingFileError):
        header = [name.strip() for name in next(reader)]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise PingFileError(
                f"{source}: line 1: the CSV header lacks {', '.join(missing)} (expected "
                f"{','.join(REQUIRED_COLUMNS)} and optionally {ACCURACY_M},{SPEED_KMH})"
            )
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield line, f"expected {len(header)} fields, found {len(row)}"
                continue
            yield line, dict(zip(header, row, strict=True))


def _json_lines(text: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    # Only "\n" ends a line: str.splitlines() would also split at U+2028 and friends,
    # which JSON allows inside strings.
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = parsing.json_loads(raw)
        except json.JSONDecodeError as exc:
            yield line, f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(record, dict):
            yield line, "expected a JSON object"
            continue
        yield line, record
