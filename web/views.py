"""What every page and API call shares: the deployment's parameters, today, the dates asked
for, the current operation, and tables as template rows or CSV downloads."""

from __future__ import annotations

import io
import unicodedata
from datetime import date, datetime, timedelta
from urllib.parse import quote

import pandas as pd
import shapely
from flask import Response, abort, current_app, request

from tracker.dosage.engine import DosageParams
from tracker.foundation import parsing
from tracker.foundation.clock import local_today
from tracker.foundation.tables import write_table
from tracker.plan.compliance import RagThresholds
from tracker.plan.storage import find_operation
from tracker.plan.targets import PlanError
from web.database import get_db


def params() -> DosageParams:
    """Return the deployment's dosage parameters (its time zone among them)."""
    return current_app.config["DOSAGE_PARAMS"]


def thresholds() -> RagThresholds:
    """Return the deployment's RAG thresholds."""
    return current_app.config["RAG_THRESHOLDS"]


def local_time(moment: datetime | None) -> str | None:
    """A UTC instant as the operation's local time, to the second, with the zone named."""
    if moment is None or pd.isna(moment):
        return None
    return pd.Timestamp(moment).tz_convert(params().zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def today() -> date:
    """Return today's local date in the operation's time zone."""
    return local_today(params().zone)


def parse_day(name: str, default: date | None) -> date | None:
    """Return a YYYY-MM-DD query argument, or 400 naming the argument."""
    text = request.args.get(name)
    if not text:
        return default
    try:
        return parsing.parse_day(text)
    except ValueError as exc:
        abort(400, f"{name}: {exc}")


def period(last_days: int | None = None) -> tuple[date | None, date | None]:
    """Return the `from` and `to` local dates of the query, or 400 if from is after to.

    Without `last_days` a missing date is None (no bound); with it, `to` defaults to today
    and `from` to `last_days` days up to `to`.
    """
    to_day = parse_day("to", today() if last_days else None)
    from_day = parse_day("from", to_day - timedelta(days=last_days - 1) if last_days else None)
    if from_day and to_day and from_day > to_day:
        abort(400, "from must not be after to")
    return from_day, to_day


def current_operation():
    """Return the operation the dashboards show, or 404 with what to load."""
    try:
        return find_operation(get_db())
    except PlanError as exc:
        abort(404, str(exc))


def csv_response(frame: pd.DataFrame, filename: str) -> Response:
    """Return a table as a CSV download, written exactly as the command line writes it.

    Every download is built here. Its name may hold what users gave (a device, officer or
    hot spot id), so each character that has no place in a file name (CR, LF and the other
    control and format characters, line breaks, path separators) becomes "_", and the header
    is built as Werkzeug's send_file builds it: the name as a parameter (quoted if need be),
    and as an RFC 5987 `filename*` (with an ASCII fallback) unless it is plain ASCII.
    """
    buffer = io.StringIO()
    write_table(frame, "csv", buffer)
    # Unicode's control, format, surrogate, private and unassigned characters, and line breaks
    unfit = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    name = "".join("_" if c in "/\\" or unicodedata.category(c) in unfit else c for c in filename)
    if name.isascii() and '"' not in name:
        names = {"filename": name}
    else:  # a quote too: some clients do not unescape it in a quoted-string
        fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        # safe: RFC 5987 attr-char, as in Werkzeug's send_file
        names = {"filename": fallback, "filename*": f"UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"}
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers.set("Content-Disposition", "attachment", **names)
    return response


def wants_csv() -> bool:
    """Return whether the query asks for a CSV download (?format=csv)."""
    return request.args.get("format") == "csv"


def table_rows(frame: pd.DataFrame) -> list[dict]:
    """Return rows for the table macro: NaN as None, numpy scalars as Python values."""
    return [
        {
            k: (None if isinstance(v, float) and v != v else v.item() if hasattr(v, "item") else v)
            for k, v in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]


def hot_spot_bounds(hot_spots) -> tuple[float, float, float, float]:
    """Return (min lon, min lat, max lon, max lat) around the hot spots."""
    return tuple(shapely.total_bounds([h.geometry for h in hot_spots]))
