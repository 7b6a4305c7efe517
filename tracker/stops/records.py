"""Stop and search records (docs/stops.md): validation, import, linking.

Records come in as CSV (the columns of the public police.uk stop-and-search data, plus the
force's own) or one at a time from a form or the API; both go through one validator. Each
new record is linked to the hot spot it fell in and the operation whose dates contain it,
and gets a BWV review with a due date (the workflow is in tracker.stops.review, the figures
for assurance leads in tracker.stops.figures). Functions take a Session and never commit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.pings import BadRow, BadRows
from tracker.dosage.store import insert_ignoring_duplicates, stored_hot_spots
from tracker.foundation import parsing, settings
from tracker.foundation.clock import local_day
from tracker.foundation.models import Officer, utc_now
from tracker.stops.models import (
    BwvReview,
    StopSearch,
)

# The published headers of police.uk stop-and-search CSVs, in order, and the field each fills.
PUBLIC_COLUMNS: Mapping[str, str] = {
    "Type": "type",
    "Date": "occurred_at",
    "Part of a policing operation": "part_of_policing_operation",
    "Policing operation": "policing_operation",
    "Latitude": "latitude",
    "Longitude": "longitude",
    "Gender": "gender",
    "Age range": "age_range",
    "Self-defined ethnicity": "self_defined_ethnicity",
    "Officer-defined ethnicity": "officer_defined_ethnicity",
    "Legislation": "legislation",
    "Object of search": "object_of_search",
    "Outcome": "outcome",
    "Outcome linked to object of search": "outcome_linked_to_object",
    "Removal of more than just outer clothing": "removal_of_more_than_outer_clothing",
}
# What a force records but does not publish; optional in a CSV.
EXTENDED_COLUMNS: Mapping[str, str] = {
    "Reference": "reference",
    "Officer": "officer_id",
    "Grounds": "grounds",
    "BWV recorded": "bwv_recorded",
    "BWV reference": "bwv_reference",
}
COLUMNS: Mapping[str, str] = {**PUBLIC_COLUMNS, **EXTENDED_COLUMNS}
LABELS: Mapping[str, str] = {name: header for header, name in COLUMNS.items()}
STOP_FIELDS: tuple[str, ...] = tuple(COLUMNS.values())
BOOLEAN_FIELDS = frozenset(
    {
        "part_of_policing_operation",
        "outcome_linked_to_object",
        "removal_of_more_than_outer_clothing",
        "bwv_recorded",
    }
)
TEXT_FIELDS = tuple(
    f
    for f in STOP_FIELDS
    if f not in BOOLEAN_FIELDS | {"type", "occurred_at", "latitude", "longitude"}
)
SEARCH_TYPES = ("Person search", "Person and Vehicle search", "Vehicle search")
ARREST = "Arrest"
WHITE_PREFIX = "White"
MAX_FUTURE = timedelta(minutes=5)
MAX_FREE_TEXT = 4000  # grounds, findings, a reason for no footage: a few paragraphs
DEFAULT_REVIEW_DUE_DAYS = 28
DEFAULT_TZ = "Europe/London"

# Labels for groups whose key is blank in a breakdown.
NOT_RECORDED = "(not recorded)"
OUTSIDE_HOT_SPOTS = "(outside hot spots)"


class StopFileError(ValueError):
    """A stop-and-search file that cannot be read at all (unreadable, empty, wrong header)."""


class BadStopRows(BadRows):
    """A stop-and-search file with bad rows, imported all-or-nothing: nothing was imported."""


class StopValidationError(ValueError):
    """A form or API record that cannot be accepted; `errors` maps each field to its problem."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


class ReviewError(ValueError):
    """A BWV review change that is not allowed; `errors` maps each field to its problem."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


class StopNotFound(LookupError):
    """No stop and search has the id asked for."""


@dataclass(frozen=True)
class ReviewPolicy:
    """When BWV reviews fall due, which stops are sampled for review, and the local time zone.

    `sample_rate` 1 reviews every stop; below 1, a stop is sampled when its import key, read
    as a fraction of the hash space, falls below the rate: the same stop is always sampled
    (or not) whenever and however often it is imported.
    """

    due_days: int = DEFAULT_REVIEW_DUE_DAYS
    sample_rate: float = 1.0
    tz: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        if self.due_days < 0:
            raise ValueError(f"review due days {self.due_days} must be 0 or more")
        if not 0 <= self.sample_rate <= 1:
            raise ValueError(f"review sample rate {self.sample_rate} must be between 0 and 1")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc


@dataclass(frozen=True)
class StopRecord:
    """One validated stop and search, before storage; `line` is its line in the source file."""

    type: str
    occurred_at: datetime
    part_of_policing_operation: bool | None = None
    policing_operation: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    gender: str | None = None
    age_range: str | None = None
    self_defined_ethnicity: str | None = None
    officer_defined_ethnicity: str | None = None
    legislation: str | None = None
    object_of_search: str | None = None
    outcome: str | None = None
    outcome_linked_to_object: bool | None = None
    removal_of_more_than_outer_clothing: bool | None = None
    reference: str | None = None
    officer_id: str | None = None
    grounds: str | None = None
    bwv_recorded: bool | None = None
    bwv_reference: str | None = None
    line: int | None = None
    import_key: str = field(default="", compare=False)

    def normalised(self) -> str:
        """Return the record's values as canonical JSON (the basis of its import key)."""
        values = {name: getattr(self, name) for name in STOP_FIELDS}
        values["occurred_at"] = self.occurred_at.astimezone(UTC).isoformat()
        return json.dumps(values, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows read, stops added, stops already stored, bad rows skipped."""

    source: str
    read: int
    imported: int
    already_present: int
    bad_rows: tuple[BadRow, ...] = ()

    @property
    def skipped(self) -> int:
        return len(self.bad_rows)


# --- validation -------------------------------------------------------------------------


def is_blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    )


def _boolean(value: Any, label: str) -> bool | None:
    if is_blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{label} {parsing.shortened(value)} must be True, False or blank")


def clean_text(value: Any, label: str, max_length: int | None) -> str | None:
    """Return text from outside, stripped, or raise ValueError: at most `max_length`
    characters (free text without a column limit: MAX_FREE_TEXT), no control characters."""
    if is_blank(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # an API client may send a collar number as a number
    if not isinstance(value, str):
        raise ValueError(f"{label} {parsing.shortened(value)} is not text")
    text = value.strip()
    limit = max_length or MAX_FREE_TEXT
    if len(text) > limit:
        raise ValueError(f"{label} is {len(text):,} characters, longer than {limit:,}")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        raise ValueError(f"{label} has control characters")
    return text


def _coordinate(value: Any, label: str, limit: float) -> float | None:
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{label} {parsing.shortened(value)} is not a number")
    shown = parsing.shortened(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} {shown} is not a number") from None
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ValueError(f"{label} {shown} is out of range [-{limit:g}, {limit:g}]")
    return number


def _occurred_at(value: Any, naive_tz: str | None, now: datetime) -> datetime:
    label = LABELS["occurred_at"]
    if is_blank(value):
        raise ValueError(f"missing {label}")
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"bad {label} {parsing.shortened(value)}: "
                "expected ISO-8601 such as 2019-06-01T14:30:00+01:00"
            ) from None
    else:
        raise ValueError(f"bad {label} {parsing.shortened(value)}: not a date and time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        if naive_tz is None:
            raise ValueError(
                f"bad {label} {parsing.shortened(value)}: "
                "no UTC offset, so it is ambiguous; add 'Z' or '+01:00'"
            )
        moment = moment.replace(tzinfo=ZoneInfo(naive_tz))
    moment = moment.astimezone(UTC)
    if moment > now + MAX_FUTURE:
        raise ValueError(f"bad {label} {parsing.shortened(value)}: it is in the future")
    try:
        parsing.check_day(moment.date())
    except ValueError as exc:
        raise ValueError(f"bad {label} {parsing.shortened(value)}: {exc}") from None
    return moment


def _max_length(name: str) -> int | None:
    return getattr(StopSearch.__table__.c[name].type, "length", None)


def validate_stop(
    values: Mapping[str, Any], *, naive_tz: str | None = None, now: datetime | None = None
) -> tuple[StopRecord | None, dict[str, str]]:
    """Validate one record given by field name; return it, or None and each field's problem.

    A date without a UTC offset is read as local time in `naive_tz` (a form's local time);
    without `naive_tz` it is refused as ambiguous.
    """
    now = now or utc_now()
    errors: dict[str, str] = {}
    unknown = sorted(set(values) - set(STOP_FIELDS))
    for name in unknown:
        errors[name] = f"unknown field {parsing.shortened(name)}"
    parsed: dict[str, Any] = {}

    def check(name: str, parse) -> None:
        try:
            parsed[name] = parse(values.get(name))
        except ValueError as exc:
            errors[name] = str(exc)

    check("type", _search_type)
    check("occurred_at", lambda v: _occurred_at(v, naive_tz, now))
    check("latitude", lambda v: _coordinate(v, LABELS["latitude"], 90))
    check("longitude", lambda v: _coordinate(v, LABELS["longitude"], 180))
    for name in sorted(BOOLEAN_FIELDS):
        check(name, lambda v, name=name: _boolean(v, LABELS[name]))
    for name in TEXT_FIELDS:
        check(name, lambda v, name=name: clean_text(v, LABELS[name], _max_length(name)))
    if "latitude" not in errors and "longitude" not in errors:
        lat, lon = parsed["latitude"], parsed["longitude"]
        if (lat is None) != (lon is None):
            which = "latitude without longitude" if lon is None else "longitude without latitude"
            errors["latitude" if lon is None else "longitude"] = which
        elif lat == 0 and lon == 0:
            errors["latitude"] = "location (0, 0) is a geocoding failure, not a place"
    if errors:
        return None, errors
    return StopRecord(**parsed), {}


def _search_type(value: Any) -> str:
    if is_blank(value):
        raise ValueError("missing Type")
    text = str(value).strip()
    if text not in SEARCH_TYPES:
        raise ValueError(
            f"unknown Type {parsing.shortened(text)} (expected {', '.join(SEARCH_TYPES)})"
        )
    return text


def import_key(record: StopRecord, occurrence: int) -> str:
    """Return the SHA-256 identifying the `occurrence`-th (1-based) row with these values."""
    return hashlib.sha256(f"{record.normalised()}#{occurrence}".encode()).hexdigest()


def parse_stops(
    text: str, source: str = "stops", *, naive_tz: str | None = None, now: datetime | None = None
) -> tuple[list[StopRecord], list[BadRow]]:
    """Validate stop-and-search CSV text; return the good records (keyed) and the bad rows.

    The header must hold every published column, by its published name, and may add the
    extended ones. Rows with identical values are all kept, told apart by their occurrence
    number in the file, so re-importing a file matches each row to itself.
    """
    now = now or utc_now()
    if not text.strip():
        raise StopFileError(f"{source}: the file is empty")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    with parsing.csv_errors(reader, source, StopFileError):
        header = [name.strip() for name in next(reader)]
        numbered_rows = [(reader.line_num, row) for row in reader]
    missing = [name for name in PUBLIC_COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    repeated = sorted({name for name in header if header.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"lacks {', '.join(missing)}")
    if unknown:
        problems.append(
            f"has unknown columns {', '.join(unknown)} (optional columns are "
            f"{', '.join(EXTENDED_COLUMNS)})"
        )
    if repeated:
        problems.append(f"repeats {', '.join(repeated)}")
    if problems:
        raise StopFileError(f"{source}: line 1: the header {'; '.join(problems)}")

    records: list[StopRecord] = []
    bad: list[BadRow] = []
    reference_lines: dict[str, int] = {}
    for line, row in numbered_rows:
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            bad.append(BadRow(line, f"expected {len(header)} fields, found {len(row)}"))
            continue
        values = {COLUMNS[name]: cell for name, cell in zip(header, row, strict=True)}
        stop, errors = validate_stop(values, naive_tz=naive_tz, now=now)
        if stop is None:
            bad.append(BadRow(line, "; ".join(errors.values())))
            continue
        if stop.reference is not None:
            if stop.reference in reference_lines:
                bad.append(
                    BadRow(
                        line,
                        f"Reference {stop.reference!r} is also on line "
                        f"{reference_lines[stop.reference]}",
                    )
                )
                continue
            reference_lines[stop.reference] = line
        records.append(replace(stop, line=line))
    occurrences: Counter[str] = Counter()
    keyed = []
    for stop in records:
        basis = stop.normalised()
        occurrences[basis] += 1
        keyed.append(replace(stop, import_key=import_key(stop, occurrences[basis])))
    return keyed, bad


def read_stops(path: str | Path, **options: Any) -> tuple[list[StopRecord], list[BadRow]]:
    """Read and validate a stop-and-search CSV file (see parse_stops)."""
    text = parsing.read_text(path, StopFileError)
    return parse_stops(text, source=str(path), **options)


# --- storage ----------------------------------------------------------------------------


def is_sampled(key: str, sample_rate: float) -> bool:
    """Return whether the stop with this import key is selected for BWV review."""
    if sample_rate >= 1:
        return True
    # The first 52 bits of a SHA-256 are uniform, and exact as a float fraction.
    return int(key[:13], 16) / 16**13 < sample_rate


def hot_spot_ids(
    hot_spots: HotSpotSet,
    longitude: Sequence[float | None],
    latitude: Sequence[float | None],
    buffer_m: float | None = None,
) -> list[str | None]:
    """Return, per point, the id of the hot spot it falls in (first by id), else of one it
    lies within `buffer_m` metres of (first by id; default TRACKER_STOP_BUFFER_M), or None.

    The buffer is for published points, which police.uk moves to a nearby map point.
    """
    if buffer_m is None:
        buffer_m = settings.get("TRACKER_STOP_BUFFER_M")
    lon = np.array([np.nan if v is None else v for v in longitude], dtype=float)
    lat = np.array([np.nan if v is None else v for v in latitude], dtype=float)
    result = np.full(len(lon), None, dtype=object)
    ids = np.array(hot_spots.ids, dtype=object)
    pairs = [hot_spots.classify(lon, lat)]
    if buffer_m > 0:
        pairs.append(hot_spots.near(lon, lat, buffer_m))
    for point, hot_spot in pairs:
        unset = np.array([result[p] is None for p in point], dtype=bool)
        point, hot_spot = point[unset], hot_spot[unset]
        if len(point):
            # Order each point's hot spots by id, then keep the first of each point.
            order = np.lexsort((ids[hot_spot].astype(str), point))
            point, hot_spot = point[order], hot_spot[order]
            first = np.unique(point, return_index=True)[1]
            result[point[first]] = ids[hot_spot[first]]
    return result.tolist()


OPERATIONS = sa.table(
    "operations",
    sa.column("id", sa.Integer),
    sa.column("start_date", sa.Date),
    sa.column("end_date", sa.Date),
    sa.column("tz", sa.String),
)


def operation_ids(
    session: Session, occurred_at: Sequence[datetime], default_tz: str = DEFAULT_TZ
) -> list[int | None]:
    """Return, per instant, the id of the operation whose local dates contain it, or None.

    Where operations overlap, the lowest id wins.
    """
    result = np.full(len(occurred_at), None, dtype=object)
    if not len(result):
        return result.tolist()
    operations = session.execute(select(OPERATIONS).order_by(OPERATIONS.c.id.desc())).all()
    instants = pd.DatetimeIndex(pd.to_datetime(list(occurred_at), utc=True))
    for operation_id, start, end, tz in operations:
        local_days = instants.tz_convert(tz or default_tz).tz_localize(None).normalize()
        # Descending ids, so a lower id overwrites a higher one.
        result[(local_days >= pd.Timestamp(start)) & (local_days <= pd.Timestamp(end))] = int(
            operation_id
        )
    return result.tolist()


def _store(
    session: Session, stops: Sequence[StopRecord], policy: ReviewPolicy, source_file: str | None
) -> list[int]:
    """Insert stops not yet stored, each with a pending review; return the new stops' ids."""
    if not stops:
        return []
    officers = sorted({s.officer_id for s in stops if s.officer_id is not None})
    # An officer named on a stop need not carry a tracked device; add them so the link holds.
    insert_ignoring_duplicates(
        session, Officer.__table__, [{"id": officer, "name": ""} for officer in officers]
    )
    hot_spots = hot_spot_ids(
        stored_hot_spots(session), [s.longitude for s in stops], [s.latitude for s in stops]
    )
    operations = operation_ids(session, [s.occurred_at for s in stops], policy.tz)
    now = utc_now()
    rows = []
    for stop, hotspot_id, operation_id in zip(stops, hot_spots, operations, strict=True):
        row = {name: getattr(stop, name) for name in STOP_FIELDS}
        row.update(
            hotspot_id=hotspot_id,
            operation_id=operation_id,
            import_key=stop.import_key,
            source_file=source_file,
            source_line=stop.line,
            created_at=now,
        )
        rows.append(row)
    insert_ignoring_duplicates(session, StopSearch.__table__, rows)
    # Every stored stop gets its review in the transaction that inserts it, so the stops of
    # this batch without one are exactly those the insert above added (the unique import
    # key, not a read beforehand, decides what is new).
    new: list[tuple[int, str, datetime]] = []
    keys = [s.import_key for s in stops]
    for start in range(0, len(keys), 1000):
        new += session.execute(
            select(StopSearch.id, StopSearch.import_key, StopSearch.occurred_at)
            .outerjoin(BwvReview, BwvReview.stop_id == StopSearch.id)
            .where(StopSearch.import_key.in_(keys[start : start + 1000]), BwvReview.id.is_(None))
        ).all()
    insert_ignoring_duplicates(
        session,
        BwvReview.__table__,
        [
            {
                "stop_id": stop_id,
                "status": "pending",
                "due_date": local_day(occurred_at, policy.tz) + timedelta(days=policy.due_days),
                "sampled": is_sampled(key, policy.sample_rate),
            }
            for stop_id, key, occurred_at in new
        ],
    )
    return sorted(stop_id for stop_id, _, _ in new)


def import_stops(
    session: Session,
    stops: Sequence[StopRecord],
    *,
    actor: str,
    source: str = "import",
    policy: ReviewPolicy | None = None,
    bad_rows: Sequence[BadRow] = (),
    skip_invalid: bool = False,
) -> ImportReport:
    """Store parsed stops idempotently, with their reviews; audited as one import.

    With bad rows and not `skip_invalid`, raise BadStopRows and store nothing.
    """
    read = len(stops) + len(bad_rows)
    if bad_rows and not skip_invalid:
        raise BadStopRows(source, read, bad_rows)
    policy = policy or ReviewPolicy()
    new = _store(session, stops, policy, source_file=source[-255:])
    report = ImportReport(source, read, len(new), len(stops) - len(new), tuple(bad_rows))
    record(
        session,
        actor,
        "stops.import",
        source[-256:],
        None,
        {
            "read": report.read,
            "imported": report.imported,
            "already_present": report.already_present,
            "skipped": report.skipped,
        },
    )
    return report


def create_stop(
    session: Session,
    values: Mapping[str, Any],
    *,
    actor: str,
    policy: ReviewPolicy | None = None,
    naive_tz: str | None = None,
    source: str = "form",
    now: datetime | None = None,
) -> StopSearch:
    """Validate and store one stop from a form or the API (fields by name); return it.

    Raise StopValidationError naming each bad field, or a reference already recorded.
    """
    stop, errors = validate_stop(values, naive_tz=naive_tz, now=now)
    if stop is None:
        raise StopValidationError(errors)
    if (
        stop.reference is not None
        and session.scalar(select(StopSearch.id).where(StopSearch.reference == stop.reference))
        is not None
    ):
        raise StopValidationError(
            {"reference": f"Reference {stop.reference!r} is already recorded"}
        )
    # Two identical form entries are two searches: a random part keeps their keys apart.
    key = hashlib.sha256(f"{stop.normalised()}#{source}#{uuid.uuid4().hex}".encode()).hexdigest()
    (stop_id,) = _store(
        session, [replace(stop, import_key=key)], policy or ReviewPolicy(), source_file=source
    )
    created = session.get(StopSearch, stop_id)
    record(
        session,
        actor,
        "stop.create",
        stop_subject(stop_id),
        None,
        plain_values(
            {name: getattr(created, name) for name in (*STOP_FIELDS, "hotspot_id", "operation_id")}
        ),
    )
    return created


def relink_stops(session: Session, tz: str = DEFAULT_TZ) -> int:
    """Re-link every stop to the current hot spots and operations; return how many changed."""
    rows = session.execute(
        select(
            StopSearch.id,
            StopSearch.longitude,
            StopSearch.latitude,
            StopSearch.occurred_at,
            StopSearch.hotspot_id,
            StopSearch.operation_id,
        ).order_by(StopSearch.id)
    ).all()
    if not rows:
        return 0
    ids, lons, lats, times, old_spots, old_operations = zip(*rows, strict=True)
    spots = hot_spot_ids(stored_hot_spots(session), lons, lats)
    operations = operation_ids(session, times, tz)
    changes = [
        {"id": stop_id, "hotspot_id": spot, "operation_id": operation}
        for stop_id, spot, operation, old_spot, old_operation in zip(
            ids, spots, operations, old_spots, old_operations, strict=True
        )
        if (spot, operation) != (old_spot, old_operation)
    ]
    if changes:
        session.execute(sa.update(StopSearch), changes)
    return len(changes)


def plain_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return values JSON-ready for the audit log (dates and times as ISO-8601)."""
    return {
        name: value.isoformat() if isinstance(value, date | datetime) else value
        for name, value in values.items()
    }


def stop_subject(stop_id: int) -> str:
    """Return the audit log subject of a stop and its review."""
    return f"stop {stop_id}"


def stops_with_reviews(
    session: Session,
    tz: str,
    from_day: date | None = None,
    to_day: date | None = None,
    officer_id: str | None = None,
) -> list[tuple[StopSearch, BwvReview | None]]:
    """Return stops and their reviews between local dates (inclusive), oldest first."""
    zone = ZoneInfo(tz)
    statement = (
        select(StopSearch, BwvReview)
        .outerjoin(BwvReview, BwvReview.stop_id == StopSearch.id)
        .order_by(StopSearch.occurred_at, StopSearch.id)
    )
    if from_day is not None:
        statement = statement.where(
            StopSearch.occurred_at >= datetime.combine(from_day, time(), zone)
        )
    if to_day is not None:
        statement = statement.where(
            StopSearch.occurred_at < datetime.combine(to_day + timedelta(days=1), time(), zone)
        )
    if officer_id is not None:
        statement = statement.where(StopSearch.officer_id == officer_id)
    return [tuple(row) for row in session.execute(statement).all()]
