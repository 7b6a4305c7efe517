"""Writing tables as CSV or JSON, identically for every command, the API and exports."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any, TextIO

import numpy as np
import pandas as pd

FORMATS = ("csv", "json")
MINUTE_COLUMNS_SUFFIX = "minutes"
# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_LONE_CR = re.compile(r"\r(?!\n)")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return rows as JSON-ready dicts: dates and times as ISO-8601, numpy scalars as Python.

    Minute columns are rounded to 2 decimals, as in CSV; other numbers keep their precision.
    """
    return [
        {k: _plain(v, str(k).endswith(MINUTE_COLUMNS_SUFFIX)) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _plain(value: Any, minutes: bool) -> Any:
    if value is pd.NaT:  # a missing time: NaT is a datetime whose isoformat() is "NaT"
        return None
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


def spreadsheet_safe(value: Any) -> Any:
    """Return a CSV text cell so that a spreadsheet opening it shows it, never runs it.

    Following OWASP's advice on CSV injection, text starting with =, +, -, @, a tab or a
    carriage return gets a leading single quote, which spreadsheets show as text. Text that is
    wholly a plain decimal number ("-12", "+3", "-1.5", "-2e3") is left as it is: a
    spreadsheet reads it as that number, so nothing can run, and the figure keeps its value.
    A lone carriage return (one not followed by a line feed) becomes CR LF: the CSV writer
    quotes a cell holding a line feed but not one holding only a CR, which a spreadsheet would
    take as the end of the row, starting a new row (and a new first cell) inside the text.
    Anything that is not text (numbers, dates, None) is returned unchanged.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    if "\r" in value:
        value = _LONE_CR.sub("\r\n", value)
    return value


def _unsafe(value: Any) -> bool:
    return spreadsheet_safe(value) is not value


def _is_text(column: pd.Series) -> bool:
    dtype = column.dtype
    return (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


def write_table(frame: pd.DataFrame, fmt: str, stream: TextIO) -> None:
    """Write a table as CSV (minutes always with 2 decimals) or as a JSON array of objects.

    In CSV every text cell and header goes through `spreadsheet_safe`, so text that would run
    as a formula in a spreadsheet is written with a leading quote; numeric columns (negative
    numbers among them), dates and minute columns are written as numbers, and a table with no
    such text is written byte for byte as without it. JSON is written as the values are.
    """
    if fmt == "json":
        json.dump(records(frame), stream, indent=None)
        stream.write("\n")
    elif fmt == "csv":
        out = frame.copy()
        for column in out.columns:
            if str(column).endswith(MINUTE_COLUMNS_SUFFIX):
                out[column] = out[column].map("{:.2f}".format)
            elif _is_text(out[column]) and any(_unsafe(v) for v in out[column].array):
                out[column] = out[column].map(spreadsheet_safe)
        if any(_unsafe(c) for c in out.columns):
            out.columns = [spreadsheet_safe(c) for c in out.columns]
        out.to_csv(stream, index=False, lineterminator="\n", date_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
