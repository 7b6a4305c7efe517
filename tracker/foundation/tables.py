"""Writing tables as CSV or JSON, identically for every command, the API and exports."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, TextIO

import numpy as np
import pandas as pd

FORMATS = ("csv", "json")
MINUTE_COLUMNS_SUFFIX = "minutes"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return rows as JSON-ready dicts: dates and times as ISO-8601, numpy scalars as Python.

    Minute columns are rounded to 2 decimals, as in CSV; other numbers keep their precision.
    """
    return [
        {k: _plain(v, str(k).endswith(MINUTE_COLUMNS_SUFFIX)) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _plain(value: Any, minutes: bool) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, np.floating | float):
        value = float(value)
        if value != value:
            return None
        return round(value, 2) if minutes else value
    return value


def write_table(frame: pd.DataFrame, fmt: str, stream: TextIO) -> None:
    """Write a table as CSV (minutes always with 2 decimals) or as a JSON array of objects."""
    if fmt == "json":
        json.dump(records(frame), stream, indent=None)
        stream.write("\n")
    elif fmt == "csv":
        out = frame.copy()
        for column in out.columns:
            if str(column).endswith(MINUTE_COLUMNS_SUFFIX):
                out[column] = out[column].map("{:.2f}".format)
        out.to_csv(stream, index=False, lineterminator="\n", date_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
