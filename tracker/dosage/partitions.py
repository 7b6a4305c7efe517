"""The pings table's monthly partitions on PostgreSQL: making them ahead of time, listing
them, and dropping whole months for the retention purge.

Migration 0012 partitions `pings` by range of `t_us`, one partition per calendar month in
UTC (`pings_YYYY_MM`), and adds a DEFAULT partition (`pings_default`) that takes any row no
month covers, so an insert never fails for want of a partition. Maintenance
(`ensure_partitions`: `tracker init`, `tracker storage maintain`, and every ingester's
writer hourly) creates this month's and the next MONTHS_AHEAD months' partitions, and a
partition for any month whose rows sit in the default partition, moving them into it.
On SQLite there is one table and every function here does nothing.

Functions take a Session and never commit; the DDL is part of the caller's transaction.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from tracker.foundation.models import PingRow

PARENT = PingRow.__tablename__
DEFAULT_PARTITION = f"{PARENT}_default"
COLUMNS = tuple(PingRow.__table__.columns.keys())
MONTHS_AHEAD = 3
# Several ingesters may find a month missing at once: one makes it, the others then see it.
_LOCK_KEY = zlib.crc32(b"partitions:pings") - 2**31
# A range bound as pg_get_expr shows it; MINVALUE and MAXVALUE only in partitions made by hand.
_BOUND = re.compile(r"^FOR VALUES FROM \('?(-?\d+|MINVALUE)'?\) TO \('?(-?\d+|MAXVALUE)'?\)$")
_ENDLESS = {"MINVALUE": -(2**63), "MAXVALUE": 2**63}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Partition:
    """One partition of pings: its range [start_us, end_us) of t_us (None for the default)."""

    name: str
    table: str  # schema-qualified and quoted, for SQL
    start_us: int | None
    end_us: int | None
    rows_estimate: int  # the planner's estimate (pg_class.reltuples), 0 before any ANALYZE
    total_bytes: int  # table, indexes and TOAST

    @property
    def is_default(self) -> bool:
        return self.start_us is None


def month_of(t_us: int) -> date:
    """Return the first day of the UTC month holding the instant (exactly: no float)."""
    moment = _EPOCH + timedelta(microseconds=t_us)
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_bounds_us(month: date) -> tuple[int, int]:
    """Return [start, end) of a UTC month in microseconds since the epoch."""

    def start_us(first: date) -> int:
        return (datetime(first.year, first.month, 1, tzinfo=UTC) - _EPOCH) // timedelta(
            microseconds=1
        )

    return start_us(month), start_us(next_month(month))


def partition_name(month: date) -> str:
    return f"{PARENT}_{month:%Y_%m}"


def _postgresql(session: Session | Connection) -> bool:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.dialect.name == "postgresql"


def is_partitioned(session: Session | Connection) -> bool:
    """Return whether pings is a partitioned table (PostgreSQL after migration 0012)."""
    if not _postgresql(session):
        return False
    # to_regclass: NULL rather than an error if the table is not there.
    return bool(
        session.scalar(
            text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(:parent)"),
            {"parent": PARENT},
        )
    )


def list_partitions(session: Session | Connection) -> list[Partition]:
    """Return the partitions of pings in time order, the default partition last."""
    if not is_partitioned(session):
        return []
    rows = session.execute(
        text(
            "SELECT c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
            "pg_get_expr(c.relpartbound, c.oid), c.reltuples, pg_total_relation_size(c.oid) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    ).all()
    partitions = []
    for name, table, bound, reltuples, total_bytes in rows:
        if bound == "DEFAULT":
            start_us = end_us = None
        else:
            found = _BOUND.match(bound)
            if found is None:
                raise ValueError(f"partition {name} of {PARENT}: unexpected bound {bound}")
            start_us, end_us = (_ENDLESS.get(v) or int(v) for v in (found[1], found[2]))
        partitions.append(
            Partition(name, table, start_us, end_us, max(int(reltuples), 0), total_bytes)
        )
    return sorted(partitions, key=lambda p: (p.is_default, p.start_us or 0))


def partitions_table(session: Session) -> pd.DataFrame:
    """Return the partitions as a table: name, first and last UTC day, estimated rows, bytes."""
    rows = []
    for p in list_partitions(session):
        first = last = None
        if not p.is_default:
            first = _day(p.start_us)
            last = _day(p.end_us - 1)
        rows.append((p.name, first, last, p.rows_estimate, p.total_bytes))
    return pd.DataFrame(
        rows, columns=["partition", "first_day_utc", "last_day_utc", "rows_estimate", "bytes"]
    )


def _day(t_us: int) -> date | None:
    try:
        return datetime.fromtimestamp(t_us / 1_000_000, tz=UTC).date()
    except (OverflowError, ValueError, OSError):  # MINVALUE or MAXVALUE
        return None


def partition_names(session: Session | Connection) -> set[str]:
    """Return the names of the partitions of pings (none on SQLite)."""
    return {p.name for p in list_partitions(session)}


def ensure_partitions(
    session: Session, now: datetime | None = None, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Make the default partition, this month's and the next `months_ahead` months'
    partitions, and one for each month with rows in the default partition (moving those
    rows there); return the names of the partitions made.

    With nothing to do it costs a few catalog queries and a look at the default partition,
    which is normally empty. Creating a month's partition while the default partition holds
    rows of that month would fail, so the partition is made as a table of its own, the rows
    moved into it, and then attached, all in the caller's transaction.
    """
    if not is_partitioned(session):
        return []
    now = now or datetime.now(UTC)
    month = month_of((now - _EPOCH) // timedelta(microseconds=1))
    wanted = set()
    for _ in range(months_ahead + 1):
        wanted.add(month)
        month = next_month(month)
    partitions = list_partitions(session)
    if _default(partitions) and not _uncovered(
        partitions, wanted | _in_default(session, partitions)
    ):
        return []
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    schema = session.scalar(
        text(
            "SELECT quote_ident(n.nspname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    )
    made = []
    partitions = list_partitions(session)  # another process may have made some meanwhile
    if _default(partitions) is None:
        session.execute(
            text(
                f"CREATE TABLE {schema}.{DEFAULT_PARTITION} PARTITION OF {schema}.{PARENT} DEFAULT"
            )
        )
        made.append(DEFAULT_PARTITION)
        partitions = list_partitions(session)
    months = _uncovered(partitions, wanted | _in_default(session, partitions))
    for month in sorted(months):
        made.append(_make_month(session, schema, _default(partitions), month))
    return made


def _default(partitions: list[Partition]) -> Partition | None:
    return next((p for p in partitions if p.is_default), None)


def _in_default(session: Session, partitions: list[Partition]) -> set[date]:
    """Return the UTC months of the rows in the default partition."""
    default = _default(partitions)
    if default is None:
        return set()
    month = "date_trunc('month', to_timestamp(t_us / 1e6) AT TIME ZONE 'UTC')::date"
    return set(session.scalars(text(f"SELECT DISTINCT {month} FROM {default.table}")))  # noqa: S608


def _uncovered(partitions: list[Partition], months: set[date]) -> set[date]:
    """Return the months no month partition overlaps."""
    ranges = [(p.start_us, p.end_us) for p in partitions if not p.is_default]
    uncovered = set()
    for month in months:
        start, end = month_bounds_us(month)
        if not any(low < end and start < high for low, high in ranges):
            uncovered.add(month)
    return uncovered


def _make_month(session: Session, schema: str, default: Partition, month: date) -> str:
    """Make a month's partition, with the rows of that month the default partition holds."""
    name = partition_name(month)
    start, end = month_bounds_us(month)
    table = f"{schema}.{name}"
    columns = ", ".join(COLUMNS)
    session.execute(text(f"CREATE TABLE {table} (LIKE {schema}.{PARENT} INCLUDING DEFAULTS)"))
    moved = f"DELETE FROM {default.table} WHERE t_us >= :a AND t_us < :b RETURNING {columns}"  # noqa: S608
    move = f"WITH moved AS ({moved}) INSERT INTO {table} ({columns}) SELECT {columns} FROM moved"  # noqa: S608
    session.execute(text(move), {"a": start, "b": end})
    # Attaching checks that no row of the default partition belongs here (none is left)
    # and builds the partition's keys and index from the parent's.
    session.execute(
        text(
            f"ALTER TABLE {schema}.{PARENT} ATTACH PARTITION {table} "
            f"FOR VALUES FROM ({start}) TO ({end})"
        )
    )
    return name


def drop_months_before(session: Session, cutoff_us: int) -> int:
    """Drop the month partitions that end at or before `cutoff_us`; return the rows they
    held. (Rows older than the cutoff in later partitions are the caller's to delete.)"""
    dropped = 0
    for partition in list_partitions(session):
        if partition.end_us is not None and partition.end_us <= cutoff_us:
            # Counted exactly, as a DELETE would report them: once a month, and far
            # cheaper than the DELETE it replaces.
            dropped += session.scalar(text(f"SELECT count(*) FROM {partition.table}"))  # noqa: S608
            session.execute(text(f"DROP TABLE {partition.table}"))
    return dropped
