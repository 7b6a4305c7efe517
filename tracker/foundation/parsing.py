"""Parsing text that comes from outside, so that every malformed input fails as a format error.

Dates asked for by users are bounded here too (parse_day).

The standard library raises something else for two kinds of bad input, which would then
escape the handlers for bad data: `json.loads` raises RecursionError for arrays or objects
nested deeper than the interpreter's recursion limit (about 1,000 levels, so 2 KB of "["
is enough), and the csv module raises csv.Error for a field over its size limit (128 KB)
or a NUL byte. Left to propagate, one such MQTT message would crash the ingester's writer
again on every redelivery, and one such file would end an import with a traceback.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

TOO_DEEP = "arrays or objects nested too deeply"
# The dates a user may ask about: a report or page works a few days either side of the
# dates it is given and would overflow Python's date range (years 1-9999) at its edges.
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(2099, 12, 31)


def read_text(path: str | Path, error: Callable[[str], Exception], label: str = "") -> str:
    """Return a UTF-8 text file's contents (a byte order mark dropped), or raise
    `error("<label><path>: cannot read the file: <why>")`."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label}{path}: cannot read the file: {exc}") from exc


def shortened(value: Any, limit: int = 40) -> str:
    """Return repr(value) cut to about `limit` characters, for an error message that names
    bad input without echoing all of it back."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def json_loads(text: str | bytes) -> Any:
    """json.loads, raising json.JSONDecodeError for nesting too deep to parse."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(TOO_DEEP, text if isinstance(text, str) else "", 0) from None


def parse_day(text: str) -> date:
    """Return a YYYY-MM-DD date between EARLIEST_DAY and LATEST_DAY, or raise ValueError."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, not {text[:20]!r}") from None
    return check_day(day)


def check_day(day: date) -> date:
    """Return a date between EARLIEST_DAY and LATEST_DAY (every date the tracker accepts from
    outside: query dates, plans, stops, pings, assignments), or raise ValueError."""
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(f"{day} is outside the dates handled, {EARLIEST_DAY} to {LATEST_DAY}")
    return day


@contextlib.contextmanager
def csv_errors(reader: Any, source: str, error: type[Exception]) -> Iterator[None]:
    """Turn a csv.Error while reading `reader` into `error`, naming the source and line."""
    try:
        yield
    except csv.Error as exc:
        # A DictReader updates its own line_num only after a row it could read.
        line = getattr(reader, "reader", reader).line_num
        raise error(f"{source}: line {line}: cannot read the CSV: {exc}") from None
