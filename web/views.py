"""What every page and API call shares: the deployment's parameters, today, the dates asked
for, the current operation, and tables as template rows or CSV downloads."""

from __future__ import annotations

import ast
import io
import re
import unicodedata
from datetime import date, datetime, timedelta
from urllib.parse import quote

import numpy as np
import pandas as pd
import shapely
from flask import Response, abort, current_app, request
from markupsafe import Markup, escape

from tracker.dosage.engine import DosageParams
from tracker.foundation import parsing
from tracker.foundation.clock import local_today
from tracker.foundation.tables import write_table
from tracker.plan.compliance import RagThresholds
from tracker.plan.models import Operation
from tracker.plan.storage import find_operation
from tracker.plan.targets import PlanError
from tracker.stops.records import LABELS
from web.assurance_labels import GOWISELY_LABELS, OUTCOME_LABELS, STATUS_LABELS
from web.database import get_db


def params() -> DosageParams:
    """Return the deployment's dosage parameters (its time zone among them)."""
    return current_app.config["DOSAGE_PARAMS"]


def thresholds() -> RagThresholds:
    """Return the deployment's RAG thresholds."""
    return current_app.config["RAG_THRESHOLDS"]


def local_time(moment: datetime | str | None) -> str | None:
    """A UTC instant as the operation's local time, to the second, with the zone named
    ("2026-12-07 17:42:58 GMT"). A naive time or ISO text without an offset is UTC, as
    the database keeps it."""
    if moment is None or (not isinstance(moment, str) and pd.isna(moment)):
        return None
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.tz_convert(params().zone).strftime("%Y-%m-%d %H:%M:%S %Z")


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


def operation_or_none():
    """Return the operation the dashboards show, or None before any plan is loaded."""
    try:
        return find_operation(get_db())
    except PlanError:
        return None


def csv_response(frame: pd.DataFrame, filename: str) -> Response:
    """Return a table as a CSV download, written exactly as the command line writes it."""
    buffer = io.StringIO()
    write_table(frame, "csv", buffer)
    return download_response(buffer.getvalue(), filename, "text/csv")


def download_response(body: str | bytes, filename: str, mimetype: str) -> Response:
    """Return a download. Every download is built here.

    Its name may hold what users gave (a device, officer or hot spot id), so each character
    that has no place in a file name (CR, LF and the other control and format characters,
    line breaks, path separators) becomes "_", and the header is built as Werkzeug's
    send_file builds it: the name as a parameter (quoted if need be), and as an RFC 5987
    `filename*` (with an ASCII fallback) unless it is plain ASCII.
    """
    # Unicode's control, format, surrogate, private and unassigned characters, and line breaks
    unfit = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    name = "".join("_" if c in "/\\" or unicodedata.category(c) in unfit else c for c in filename)
    if name.isascii() and '"' not in name:
        names = {"filename": name}
    else:  # a quote too: some clients do not unescape it in a quoted-string
        fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        # safe: RFC 5987 attr-char, as in Werkzeug's send_file
        names = {"filename": fallback, "filename*": f"UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"}
    response = Response(body, mimetype=mimetype)
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


# --- what a page shows for a value ------------------------------------------------------

MISSING = "–"
# Each status a figure can have, as words and a sign, so that it reads without its colour.
STATUS_WORDS = {
    "green": ("GREEN", "✓"),
    "amber": ("AMBER", "!"),
    "red": ("RED", "✗"),
    "over": ("OVER MAX", "▲"),
    "none": ("NO TARGET", "–"),
}
# Field names of stored records as the pages call them (the stop fields have their own).
FIELD_LABELS = {
    **LABELS,
    **GOWISELY_LABELS,
    "status": "Status",
    "outcome": "Outcome",
    "rag": "RAG rating",
    "no_footage_reason": "Why there is no footage",
    "sampled": "Sampled for review",
    "hotspot_id": "Hot spot",
    "operation_id": "Operation",
    "role": "Role",
    "presence_minutes_per_day": "Minutes a day",
    "presence_minutes_per_week": "Minutes a week",
    "visits_per_day": "Visits a day",
    "min_visit_minutes": "Visit length (min)",
    "max_presence_minutes_per_day": "Max minutes a day",
}
VALUE_LABELS = {
    **STATUS_LABELS,
    **OUTCOME_LABELS,
    "not_sampled": "Not sampled",
    "not sampled": "Not sampled",
    "overdue": "Overdue",
}
ACTION_LABELS = {
    "login": "Signed in",
    "logout": "Signed out",
    "login failed": "Sign-in failed",
    "login locked out": "Sign-in locked out",
    "plan.load": "Plan loaded",
    "track.view": "Track viewed",
    "user.create": "User created",
    "token.issue": "API token issued",
    "token.revoke": "API token revoked",
    "device.assignments": "Device assignments loaded",
    "stop.create": "Stop and search recorded",
    "stops.import": "Stop and search records imported",
    "bwv_review.update": "BWV review saved",
    "bwv_review.acknowledge": "BWV review acknowledged",
    "bwv_review.second": "BWV review second-sampled",
    "review_action.add": "Review action added",
    "review_action.update": "Review action updated",
}
_CODED = re.compile(r"^[a-z]+(?:_[a-z]+)+$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:?\d{2}|Z)?$")


def status_badge(status: str, none_text: str | None = None) -> Markup:
    """Return a status as the pages show it: a sign and a word in the status's colour
    (`none_text` instead of "NO TARGET" where a page says more, such as "NO TARGET TODAY")."""
    word, sign = STATUS_WORDS.get(status, (str(status).upper(), ""))
    if status == "none" and none_text:
        word = none_text
    return Markup(  # noqa: S704 (every text in it is escaped)
        f'<span class="status status-{escape(status)}"><span class="status-sign" '
        f'aria-hidden="true">{escape(sign)}</span> {escape(word)}</span>'
    )


def words(name: object) -> str:
    """Return an identifier as words: its label if it has one, else with spaces for
    underscores and a capital ("reviewed_at" -> "Reviewed at")."""
    text = str(name)
    label = FIELD_LABELS.get(text) or VALUE_LABELS.get(text) or ACTION_LABELS.get(text)
    return label or text.replace("_", " ").replace(".", " ").strip().capitalize()


def cell_text(value: object, kind: str | None = None) -> str:
    """Return a value as a table cell shows it.

    Missing values (None, NaN, NaT) are a dash; booleans Yes or No; instants the
    operation's local time to the second with the zone named; `kind` says more:
    "count" (a whole number), "coord" (5 decimals, about 1 m), "percent", "minutes" (a
    duration as hours and minutes), "number" (as few decimals as it needs, at most 2),
    "words" (an identifier as words), "value" (a stored value: ISO times local, coded
    values as words, numbers to at most 5 decimals), "audit" (an audit entry's details,
    see audit_text); other floats show 2 decimals.
    """
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "Yes" if value else "No"
    if isinstance(value, datetime):  # pandas Timestamps too
        return local_time(value) or MISSING
    if kind == "words":
        return words(value)
    if kind == "audit":
        return audit_text(value)
    if isinstance(value, str):
        if kind == "value":
            return local_time(value) if _ISO_TIME.match(value) else coded_value(value)
        return value
    if kind == "number":
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if kind == "value" and isinstance(value, float):  # a coordinate among them: to 1 m
        return f"{value:.5f}".rstrip("0").rstrip(".")
    if kind == "count":
        return f"{round(value):,}"
    if kind == "coord":
        return f"{value:.5f}"
    if kind == "percent":
        return f"{value:.0f}%"
    if kind == "minutes":
        return duration_text(value)
    if isinstance(value, float | np.floating):
        return f"{value:,.2f}"
    return str(value)


def operation_name(operation_id: int | None) -> str:
    """Return an operation's name for a page (its id only if it has gone)."""
    if operation_id is None:
        return MISSING
    operation = get_db().get(Operation, operation_id)
    return operation.name if operation is not None else f"operation {operation_id}"


def duration_text(minutes: float) -> str:
    """Return a duration in minutes as hours and minutes: "under a minute", "40 min",
    "5 h 40 min", "2 days 5 h 40 min"."""
    whole = int(minutes)
    if whole < 1:
        return "under a minute"
    days, rest = divmod(whole, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{mins} min")
    return " ".join(parts)


_AUDIT_PARTS = re.compile(r"; (?=[A-Za-z_][\w.]*=)")


def audit_text(text: object) -> str:
    """Return an audit entry's "name=value; ..." details with names and values as words,
    times local and flags Yes or No (the audit page's before and after columns)."""
    if text is None or text == "":
        return MISSING
    parts = []
    # A value may hold "; " itself (a plan's windows): a part starts only at "; name=".
    for part in _AUDIT_PARTS.split(str(text)):
        name, sep, value = part.partition("=")
        if sep:
            parts.append(f"{words(name)}: {_audit_value(value)}")
        else:
            parts.append(part)
    return "; ".join(parts)


def _audit_value(value: str) -> str:
    """Return one stored value of an audit entry as words; lists and mappings (written as
    Python literals) item by item."""
    if value.startswith(("[", "{")):
        try:
            return _audit_item(ast.literal_eval(value))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return value
    return _audit_item(value)


def _audit_item(value: object) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{words(k)}: {_audit_item(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list | tuple):
        return ", ".join(_audit_item(v) for v in value) if value else "none"
    if value is None or value in ("None", ""):
        return MISSING
    if isinstance(value, bool) or value in ("True", "False"):
        return "Yes" if value in (True, "True") else "No"
    if isinstance(value, str) and _ISO_TIME.match(value):
        return local_time(value) or value
    if isinstance(value, float):
        return f"{value:,.5f}".rstrip("0").rstrip(".")
    return coded_value(value) if isinstance(value, str) else str(value)


def coded_value(value: str) -> str:
    """Return a stored value as words: its label, or a coded value ("stopped_early") with
    spaces for underscores and a capital; any other text as it is."""
    if value in VALUE_LABELS:
        return VALUE_LABELS[value]
    return words(value) if _CODED.match(value) else value
