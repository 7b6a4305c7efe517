"""Devices and their assignment to officers over time (loaded from CSV by an administrator)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.dosage.pings import PingError, parse_timestamp
from tracker.dosage.store import insert_ignoring_duplicates
from tracker.foundation import parsing
from tracker.foundation.models import Assignment, Device, Officer

ASSIGNMENT_COLUMNS = ("device_id", "officer_id", "officer_name", "starts", "ends")


class AssignmentError(ValueError):
    """A devices file that cannot be loaded; the message lists every bad line."""


@dataclass(frozen=True)
class AssignmentRow:
    line: int
    device_id: str
    officer_id: str
    officer_name: str
    starts: datetime
    ends: datetime | None
    label: str = ""


def _instant(text: str, field: str) -> datetime:
    try:
        t_us = parse_timestamp(text)
    except PingError as exc:
        raise ValueError(str(exc).replace("timestamp", field, 1)) from None
    return datetime.fromtimestamp(t_us / 1_000_000, tz=UTC)


def parse_assignments(text: str, source: str = "devices") -> list[AssignmentRow]:
    """Validate a devices CSV; raise AssignmentError naming every bad line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    with parsing.csv_errors(reader, source, AssignmentError):
        header = [h.strip() for h in reader.fieldnames or []]
        numbered_rows = [(reader.line_num, raw) for raw in reader]
    missing = [c for c in ("device_id", "officer_id", "starts") if c not in header]
    if missing:
        raise AssignmentError(
            f"{source}: line 1: header lacks {', '.join(missing)} "
            f"(expected {','.join(ASSIGNMENT_COLUMNS)}[,label])"
        )
    rows: list[AssignmentRow] = []
    errors: list[str] = []
    for line, raw in numbered_rows:
        values = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        try:
            if not values.get("device_id"):
                raise ValueError("missing device_id")
            if not values.get("officer_id"):
                raise ValueError("missing officer_id")
            starts = _instant(values.get("starts", ""), "starts")
            ends = _instant(values["ends"], "ends") if values.get("ends") else None
            if ends is not None and ends <= starts:
                raise ValueError("ends is not after starts")
            rows.append(
                AssignmentRow(
                    line,
                    values["device_id"],
                    values["officer_id"],
                    values.get("officer_name", ""),
                    starts,
                    ends,
                    values.get("label", ""),
                )
            )
        except ValueError as exc:
            errors.append(f"{source}: line {line}: {exc}")
    by_device: dict[str, list[AssignmentRow]] = defaultdict(list)
    for row in rows:
        by_device[row.device_id].append(row)
    for device_rows in by_device.values():
        device_rows.sort(key=lambda r: r.starts)
        for before, after in pairwise(device_rows):
            if before.ends is None or before.ends > after.starts:
                errors.append(
                    f"{source}: line {after.line}: assignment of {after.device_id} "
                    f"overlaps the one on line {before.line}"
                )
    if errors:
        raise AssignmentError("\n".join(errors))
    if not rows:
        raise AssignmentError(f"{source}: no assignments")
    return rows


def load_assignments(session: Session, rows: list[AssignmentRow], actor: str) -> int:
    """Replace the assignment history of every device in `rows`; audited; return rows stored."""
    insert_ignoring_duplicates(
        session,
        Device.__table__,
        [{"id": d, "label": ""} for d in sorted({r.device_id for r in rows})],
    )
    for row in rows:
        if row.label:
            session.get(Device, row.device_id).label = row.label
    for officer_id, name in sorted({(r.officer_id, r.officer_name) for r in rows}):
        officer = session.get(Officer, officer_id)
        if officer is None:
            session.add(Officer(id=officer_id, name=name))
        elif name:
            officer.name = name
    session.flush()
    for device_id in sorted({r.device_id for r in rows}):
        before = [
            _describe(a)
            for a in session.scalars(
                select(Assignment)
                .where(Assignment.device_id == device_id)
                .order_by(Assignment.starts)
            )
        ]
        session.execute(delete(Assignment).where(Assignment.device_id == device_id))
        new = [r for r in rows if r.device_id == device_id]
        session.add_all(
            Assignment(device_id=r.device_id, officer_id=r.officer_id, starts=r.starts, ends=r.ends)
            for r in new
        )
        after = [
            {
                "officer_id": r.officer_id,
                "starts": r.starts.isoformat(),
                "ends": r.ends.isoformat() if r.ends else None,
            }
            for r in new
        ]
        if before != after:
            record(
                session,
                actor,
                "device.assignments",
                device_id,
                {"assignments": before},
                {"assignments": after},
            )
    return len(rows)


def _describe(assignment: Assignment) -> dict:
    return {
        "officer_id": assignment.officer_id,
        "starts": assignment.starts.isoformat(),
        "ends": assignment.ends.isoformat() if assignment.ends else None,
    }


def device_ids(session: Session) -> list[str]:
    """Every device id in the devices table, sorted (a sharded ingester's subscriptions)."""
    return list(session.scalars(select(Device.id).order_by(Device.id)))
