"""Recorded crime in (docs/harm.md): police.uk street-level CSVs and force exports.

A file is read whole and validated row by row; a bad row is reported with its line, and a
file with any bad row stores nothing unless the caller asks to skip bad rows. Every crime
has an import key, so importing a file again adds nothing: the SHA-256 of its Crime ID (or
force reference), else of its values and its occurrence among identical rows of the file,
so that identical rows without an id stay separate crimes and each matches itself on a
re-import. Functions take a Session and never commit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.dosage.pings import BadRow, BadRows
from tracker.dosage.store import insert_ignoring_duplicates
from tracker.foundation import parsing
from tracker.foundation.models import utc_now
from tracker.harm.models import FORCE, POLICE_UK, RecordedCrime
from tracker.harm.weights import HarmWeights

# The published columns of a police.uk street-level CSV and the field each fills. Context
# came later than the others, so a file may lack it.
POLICE_UK_COLUMNS: Mapping[str, str] = {
    "Crime ID": "crime_ref",
    "Month": "month",
    "Reported by": "reported_by",
    "Falls within": "falls_within",
    "Longitude": "longitude",
    "Latitude": "latitude",
    "Location": "location",
    "LSOA code": "lsoa_code",
    "LSOA name": "lsoa_name",
    "Crime type": "crime_type",
    "Last outcome category": "last_outcome",
    "Context": "context",
}
POLICE_UK_OPTIONAL = frozenset({"Context"})
# A force's own export: its reference, the exact date and the Home Office offence code.
FORCE_COLUMNS: Mapping[str, str] = {
    "Reference": "crime_ref",
    "Date": "occurred_on",
    "Offence code": "offence_code",
    "Offence": "offence",
    "Crime type": "crime_type",
    "Longitude": "longitude",
    "Latitude": "latitude",
    "Location": "location",
    "LSOA code": "lsoa_code",
    "LSOA name": "lsoa_name",
    "Outcome": "last_outcome",
}
FORCE_REQUIRED = frozenset({"Reference", "Date", "Offence code", "Crime type"})
FORMATS: Mapping[str, Mapping[str, str]] = {POLICE_UK: POLICE_UK_COLUMNS, FORCE: FORCE_COLUMNS}
MAX_CONTEXT = 4000
# Control characters but tab and line breaks, which quoted CSV fields may hold.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
IN_CHUNKS = 1000  # keys per IN (...) list: well under every database's parameter limit


class CrimeFileError(ValueError):
    """A crime file that cannot be read at all (unreadable, empty, unknown header)."""


class BadCrimeRows(BadRows):
    """A crime file with bad rows, imported all-or-nothing: nothing was imported."""


@dataclass(frozen=True)
class CrimeRecord:
    """One validated crime, before storage; `line` is its line in the source file."""

    source: str
    month: date
    crime_type: str
    crime_ref: str | None = None
    occurred_on: date | None = None
    offence_code: str | None = None
    offence: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    location: str | None = None
    lsoa_code: str | None = None
    lsoa_name: str | None = None
    reported_by: str | None = None
    falls_within: str | None = None
    last_outcome: str | None = None
    context: str | None = None
    line: int | None = None
    import_key: str | None = None

    @property
    def located(self) -> bool:
        return self.longitude is not None

    def normalised(self) -> str:
        """Return the crime's values as one string (what identifies a row without an id)."""
        return "\x1f".join(
            "" if (value := getattr(self, name)) is None else str(value) for name in STORED_FIELDS
        )


STORED_FIELDS = tuple(f.name for f in fields(CrimeRecord) if f.name not in ("line", "import_key"))


@dataclass(frozen=True)
class CrimeImportReport:
    """What one import did; `unlocated` counts the file's good rows without a location."""

    source: str
    read: int
    imported: int
    already_present: int
    unlocated: int
    bad_rows: tuple[BadRow, ...] = ()

    @property
    def skipped(self) -> int:
        return len(self.bad_rows)

    def line(self) -> str:
        return (
            f"{self.source}: read {self.read}, imported {self.imported}, already present "
            f"{self.already_present}, unlocated {self.unlocated}, skipped {self.skipped}"
        )


# --- validation -------------------------------------------------------------------------


def parse_month(text: str) -> date:
    """Return the first day of a YYYY-MM month between 1970 and 2099, or raise ValueError."""
    value = text.strip() if isinstance(text, str) else ""
    try:
        digits = value[:4] + value[5:]
        if len(value) != 7 or value[4] != "-" or not (digits.isascii() and digits.isdigit()):
            raise ValueError
        month = date(int(value[:4]), int(value[5:]), 1)
    except ValueError:
        raise ValueError(f"expected a month as YYYY-MM, not {parsing.shortened(text)}") from None
    return parsing.check_day(month)


def month_text(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def _blank(value: str) -> bool:
    return not value.strip()


def _text(value: str, label: str, limit: int) -> str | None:
    if _blank(value):
        return None
    text = value.strip()
    if len(text) > limit:
        raise ValueError(f"{label} is {len(text):,} characters, longer than {limit:,}")
    if CONTROL.search(text):
        raise ValueError(f"{label} has control characters")
    return text


def _required(value: str, label: str, limit: int) -> str:
    text = _text(value, label, limit)
    if text is None:
        raise ValueError(f"missing {label}")
    return text


def _coordinate(value: str, label: str, limit: float) -> float | None:
    if _blank(value):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{label} {parsing.shortened(value)} is not a number") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise ValueError(f"{label} {parsing.shortened(value)} is out of range ±{limit:g}")
    return number


def _month(value: str, label: str, today: date) -> date:
    if _blank(value):
        raise ValueError(f"missing {label}")
    try:
        month = parse_month(value)
    except ValueError as exc:
        raise ValueError(f"bad {label}: {exc}") from None
    if month > today:
        raise ValueError(f"bad {label} {value.strip()!r}: it is in the future")
    return month


def _day(value: str, label: str, today: date) -> date:
    if _blank(value):
        raise ValueError(f"missing {label}")
    try:
        day = parsing.parse_day(value)
    except ValueError as exc:
        raise ValueError(f"bad {label}: {exc}") from None
    if day > today:
        raise ValueError(f"bad {label} {value.strip()!r}: it is in the future")
    return day


# Each text field's longest value: its column's length (context: MAX_CONTEXT).
LIMITS: Mapping[str, int] = {
    column.name: getattr(column.type, "length", None) or MAX_CONTEXT
    for column in RecordedCrime.__table__.c
}
LABELS: Mapping[str, Mapping[str, str]] = {
    kind: {name: header for header, name in columns.items()} for kind, columns in FORMATS.items()
}


def validate_row(
    kind: str, values: Mapping[str, str], today: date, line: int | None = None
) -> CrimeRecord:
    """Validate one row of a `kind` file (given by field name); raise ValueError naming
    every problem of the row."""
    labels = LABELS[kind]
    parsed: dict[str, Any] = {}
    errors: list[str] = []
    checked: set[str] = set()

    def check(name: str, parse: Callable[[str, str], Any]) -> None:
        checked.add(name)
        try:
            parsed[name] = parse(values.get(name, ""), labels[name])
        except ValueError as exc:
            errors.append(str(exc))

    check("crime_type", lambda v, label: _required(v, label, LIMITS["crime_type"]))
    if kind == POLICE_UK:
        check("crime_ref", lambda v, label: _text(v, label, LIMITS["crime_ref"]))
        check("month", lambda v, label: _month(v, label, today))
    else:
        check("crime_ref", lambda v, label: _required(v, label, LIMITS["crime_ref"]))
        check("occurred_on", lambda v, label: _day(v, label, today))
        check("offence_code", lambda v, label: _required(v, label, LIMITS["offence_code"]))
        if "occurred_on" in parsed:
            parsed["month"] = parsed["occurred_on"].replace(day=1)
    check("longitude", lambda v, label: _coordinate(v, label, 180))
    check("latitude", lambda v, label: _coordinate(v, label, 90))
    for name in labels:
        if name not in checked and name in values:
            check(name, lambda v, label, name=name: _text(v, label, LIMITS[name]))
    lon, lat = parsed.get("longitude"), parsed.get("latitude")
    if "longitude" in parsed and "latitude" in parsed:
        if (lon is None) != (lat is None):
            errors.append(
                "Latitude without Longitude" if lon is None else "Longitude without Latitude"
            )
        elif lon == 0 and lat == 0:
            errors.append("location (0, 0) is a geocoding failure, not a place")
    if errors:
        raise ValueError("; ".join(errors))
    return CrimeRecord(source=kind, line=line, **parsed)


def import_key(crime: CrimeRecord, occurrence: int) -> str:
    """Return the crime's import key: from its id if it has one, else from its values and
    its occurrence (1-based) among identical rows of its file."""
    if crime.crime_ref is not None:
        basis = f"{crime.source}#id#{crime.crime_ref}"
    else:
        basis = f"{crime.normalised()}#{occurrence}"
    return hashlib.sha256(basis.encode()).hexdigest()


def file_kind(header: Sequence[str], source: str) -> str:
    """Return which format a header is, or raise CrimeFileError saying what is wrong."""
    kind = POLICE_UK if "Crime ID" in header or "Month" in header else FORCE
    columns = FORMATS[kind]
    required = (
        [c for c in columns if c not in POLICE_UK_OPTIONAL]
        if kind == POLICE_UK
        else [c for c in columns if c in FORCE_REQUIRED]
    )
    problems = []
    missing = [name for name in required if name not in header]
    unknown = [name for name in header if name not in columns]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if missing:
        problems.append(f"lacks {', '.join(missing)}")
    if unknown:
        problems.append(f"has unknown columns {', '.join(unknown)}")
    if repeated:
        problems.append(f"repeats {', '.join(repeated)}")
    if problems:
        raise CrimeFileError(
            f"{source}: line 1: the header of a {kind} file {'; '.join(problems)} "
            f"(police.uk: {', '.join(POLICE_UK_COLUMNS)}; force export: "
            f"{', '.join(FORCE_COLUMNS)})"
        )
    return kind


def parse_crimes(
    text: str, source: str = "crimes", *, today: date | None = None
) -> tuple[list[CrimeRecord], list[BadRow]]:
    """Validate crime CSV text (police.uk or force export, told by its header); return the
    good crimes, keyed, and the bad rows with their lines."""
    today = today or datetime.now(UTC).date()
    if not text.strip():
        raise CrimeFileError(f"{source}: the file is empty")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    with parsing.csv_errors(reader, source, CrimeFileError):
        header = [name.strip() for name in next(reader)]
        numbered_rows = [(reader.line_num, row) for row in reader]
    kind = file_kind(header, source)
    fields_by_column = [FORMATS[kind][name] for name in header]
    crimes: list[CrimeRecord] = []
    bad: list[BadRow] = []
    id_lines: dict[str, int] = {}
    for line, row in numbered_rows:
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            bad.append(BadRow(line, f"expected {len(header)} fields, found {len(row)}"))
            continue
        try:
            crime = validate_row(kind, dict(zip(fields_by_column, row, strict=True)), today, line)
        except ValueError as exc:
            bad.append(BadRow(line, str(exc)))
            continue
        if crime.crime_ref is not None:
            if crime.crime_ref in id_lines:
                label = "Crime ID" if kind == POLICE_UK else "Reference"
                bad.append(
                    BadRow(
                        line,
                        f"{label} {crime.crime_ref!r} is also on line {id_lines[crime.crime_ref]}",
                    )
                )
                continue
            id_lines[crime.crime_ref] = line
        crimes.append(crime)
    return key_crimes(crimes), bad


def key_crimes(crimes: Sequence[CrimeRecord]) -> list[CrimeRecord]:
    """Return the crimes with their import keys (identical rows told apart by occurrence)."""
    occurrences: Counter[str] = Counter()
    keyed = []
    for crime in crimes:
        basis = crime.normalised()
        occurrences[basis] += 1
        keyed.append(replace(crime, import_key=import_key(crime, occurrences[basis])))
    return keyed


def read_crimes(path: str | Path, **options: Any) -> tuple[list[CrimeRecord], list[BadRow]]:
    """Read and validate a crime CSV file (see parse_crimes)."""
    return parse_crimes(parsing.read_text(path, CrimeFileError), source=str(path), **options)


# --- storage ----------------------------------------------------------------------------


def stored_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Return which of these import keys are already stored."""
    found: set[str] = set()
    for start in range(0, len(keys), IN_CHUNKS):
        chunk = keys[start : start + IN_CHUNKS]
        found.update(
            session.scalars(
                select(RecordedCrime.import_key).where(RecordedCrime.import_key.in_(chunk))
            )
        )
    return found


def store_crimes(session: Session, crimes: Sequence[CrimeRecord], source_file: str | None) -> int:
    """Insert the crimes not yet stored (by import key); return how many were new."""
    present = stored_keys(session, [c.import_key for c in crimes])
    now = utc_now()
    rows = [
        {
            **{name: getattr(crime, name) for name in STORED_FIELDS},
            "import_key": crime.import_key,
            "source_file": source_file,
            "source_line": crime.line,
            "created_at": now,
        }
        for crime in crimes
        if crime.import_key not in present
    ]
    for start in range(0, len(rows), 5000):
        # Ignoring clashes keeps a concurrent import of the same file from failing.
        insert_ignoring_duplicates(session, RecordedCrime.__table__, rows[start : start + 5000])
    return len(rows)


def import_crimes(
    session: Session,
    crimes: Sequence[CrimeRecord],
    *,
    actor: str,
    source: str = "import",
    bad_rows: Sequence[BadRow] = (),
    skip_invalid: bool = False,
) -> CrimeImportReport:
    """Store parsed crimes idempotently; audited as one import.

    With bad rows and not `skip_invalid`, raise BadCrimeRows and store nothing.
    """
    read = len(crimes) + len(bad_rows)
    if bad_rows and not skip_invalid:
        raise BadCrimeRows(source, read, bad_rows)
    new = store_crimes(session, crimes, source_file=source[-255:])
    report = CrimeImportReport(
        source,
        read,
        new,
        len(crimes) - new,
        sum(not c.located for c in crimes),
        tuple(bad_rows),
    )
    record(
        session,
        actor,
        "crimes.import",
        source[-256:],
        None,
        {
            "read": report.read,
            "imported": report.imported,
            "already_present": report.already_present,
            "unlocated": report.unlocated,
            "skipped": report.skipped,
        },
    )
    return report


# --- reading back -----------------------------------------------------------------------

CRIME_COLUMNS = ("month", "crime_type", "offence_code", "longitude", "latitude", "location")


def _between(statement, from_month: date | None, to_month: date | None):
    if from_month is not None:
        statement = statement.where(RecordedCrime.month >= from_month)
    if to_month is not None:
        statement = statement.where(RecordedCrime.month <= to_month)
    return statement


def crimes_frame(
    session: Session, from_month: date | None = None, to_month: date | None = None
) -> pd.DataFrame:
    """Return the stored crimes of the months (inclusive): CRIME_COLUMNS, month as a date."""
    # The month comes back as text and is turned into dates once per distinct month: the
    # per-row date conversion would take most of the time of a large read.
    columns = [sa.cast(RecordedCrime.month, sa.String(10))]
    columns += [getattr(RecordedCrime, c) for c in CRIME_COLUMNS[1:]]
    rows = session.execute(
        _between(select(*columns), from_month, to_month).order_by(RecordedCrime.id)
    ).all()
    values = list(zip(*rows, strict=True)) if rows else [()] * len(CRIME_COLUMNS)
    months = pd.Series(values[0], dtype=object)
    frame = pd.DataFrame(dict(zip(CRIME_COLUMNS, values, strict=True)))
    frame["month"] = months.map({m: date.fromisoformat(m[:10]) for m in months.unique()})
    frame["longitude"] = pd.to_numeric(frame["longitude"], errors="coerce").astype(float)
    frame["latitude"] = pd.to_numeric(frame["latitude"], errors="coerce").astype(float)
    return frame


def months_with_data(session: Session) -> list[date]:
    """Return every month with at least one stored crime, oldest first."""
    return list(
        session.scalars(select(RecordedCrime.month).distinct().order_by(RecordedCrime.month))
    )


SUMMARY_COLUMNS = ("month", "crime_type", "crimes", "unlocated", "harm")


def crime_summary(
    session: Session,
    weights: HarmWeights,
    from_month: date | None = None,
    to_month: date | None = None,
) -> pd.DataFrame:
    """Return crimes and harm per month and crime type (SUMMARY_COLUMNS), oldest first.

    Counted in the database; each group is weighed by its offence code, else its type.
    """
    statement = _between(
        select(
            RecordedCrime.month,
            RecordedCrime.crime_type,
            RecordedCrime.offence_code,
            func.count(),
            func.count(RecordedCrime.id).filter(RecordedCrime.longitude.is_(None)),
        ),
        from_month,
        to_month,
    ).group_by(RecordedCrime.month, RecordedCrime.crime_type, RecordedCrime.offence_code)
    groups = pd.DataFrame(
        session.execute(statement).all(),
        columns=["month", "crime_type", "offence_code", "crimes", "unlocated"],
    )
    if groups.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    groups["harm"] = groups["crimes"] * weights.weigh(groups["crime_type"], groups["offence_code"])
    summary = (
        groups.groupby(["month", "crime_type"], as_index=False)[["crimes", "unlocated", "harm"]]
        .sum()
        .sort_values(["month", "crime_type"], kind="stable")
    )
    summary["month"] = [month_text(m) for m in summary["month"]]
    summary["harm"] = summary["harm"].round(3)  # sums of weights such as 28.1 carry float noise
    summary["crimes"] = summary["crimes"].astype(int)
    summary["unlocated"] = summary["unlocated"].astype(int)
    return summary[list(SUMMARY_COLUMNS)].reset_index(drop=True)
