"""Writing pings and dead letters, idempotently, and queueing the dosage they affect.

Functions take a Session and never commit: the caller owns the transaction, so pings,
dead letters and queue entries of one batch commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from shapely.geometry import shape
from sqlalchemy import Table, and_, delete, func, literal_column, not_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tracker.dosage.engine import INTERPOLATE, DosageParams
from tracker.dosage.geofence import HotSpot, HotSpotSet
from tracker.dosage.partitions import drop_months_before
from tracker.dosage.pings import Ping
from tracker.foundation.clock import (
    US_PER_MINUTE,
    US_PER_S,
    local_date,
    local_day,
    local_midnight_us,
)
from tracker.foundation.models import (
    DeadLetter,
    Device,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    HotSpotRow,
    PingRow,
)

MAX_DEAD_LETTER_PAYLOAD = 2048


def _insert(session: Session, table: Table):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """Insert rows in one statement; rows that clash with a unique key are dropped."""
    if rows:
        session.execute(_insert(session, table).on_conflict_do_nothing(), list(rows))


@dataclass(frozen=True)
class _DriverStatement:
    sql: str
    order: tuple[str, ...] | None  # parameter names in driver order; None: named paramstyle
    processors: dict[str, Callable | None]  # each column's bind processor for the dialect


# (statement name, dialect name, paramstyle) -> the compiled statement
_DRIVER_STATEMENTS: dict[tuple[str, str, str], _DriverStatement] = {}


def _execute_many(
    session: Session,
    name: str,
    table: Table,
    build: Callable,
    columns: dict[str, list],
    constants: dict[str, object],
) -> None:
    """Execute an INSERT once per row, handing the driver plain tuples.

    The same as `session.execute(build(session), rows)` with one dict per row, but
    SQLAlchemy's executemany builds and type-processes a parameter dict per row, which
    costs about as much as the database's own work; here the statement is compiled once
    per dialect (`name` identifies it), each column's bind processor is applied to its
    values (a constant's, once) and the DBAPI's executemany gets tuples. `columns` maps
    column names of `table` to equal-length lists of values; every bound parameter of the
    statement must be one of `columns` or `constants`.
    """
    connection = session.connection()
    dialect = connection.dialect
    names = [*columns, *constants]
    key = (name, dialect.name, dialect.paramstyle)
    statement = _DRIVER_STATEMENTS.get(key)
    if statement is None:
        compiled = build(session).compile(dialect=dialect, column_keys=names)
        unknown = set(compiled.binds) - set(names)
        if unknown:
            raise ValueError(f"statement {name} has parameters {sorted(unknown)} without values")
        statement = _DriverStatement(
            sql=compiled.string,
            order=tuple(compiled.positiontup) if compiled.positional else None,
            processors={
                c: table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in names
            },
        )
        _DRIVER_STATEMENTS[key] = statement
    n = len(next(iter(columns.values())))
    if not n:
        return
    values: dict[str, list] = {}
    for column, column_values in columns.items():
        process = statement.processors[column]
        values[column] = list(map(process, column_values)) if process else column_values
    for column, value in constants.items():
        process = statement.processors[column]
        values[column] = [process(value) if process else value] * n
    if statement.order is None:
        rows = [
            dict(zip(names, row, strict=True))
            for row in zip(*(values[c] for c in names), strict=True)
        ]
    else:
        rows = list(zip(*(values[c] for c in statement.order), strict=True))
    connection.exec_driver_sql(statement.sql, rows)


def enqueue(
    session: Session,
    queue: type[DirtyDeviceDay] | type[DirtyHotSpotDay],
    keys: Iterable[tuple[str, date]],
) -> None:
    """Mark keys dirty; an entry already queued has its seq bumped (see DirtyDeviceDay)."""
    table = queue.__table__
    key_column = "device_id" if queue is DirtyDeviceDay else "hotspot_id"
    rows = sorted(set(keys))
    if not rows:
        return

    def build(session: Session):
        statement = _insert(session, table)
        # "+ 1" as SQL text rather than a bound parameter; the statement is the same.
        return statement.on_conflict_do_update(
            index_elements=[key_column, "day"], set_={"seq": table.c.seq + literal_column("1")}
        )

    _execute_many(
        session,
        f"enqueue {table.name}",
        table,
        build,
        {key_column: [k for k, _ in rows], "day": [d for _, d in rows]},
        {"seq": 1},
    )


def affected_device_days(pings: Iterable[Ping], params: DosageParams) -> set[tuple[str, date]]:
    """Return the device-days whose spans a new ping may change.

    A ping at t starts a span on its own day and may end the span of a predecessor up
    to max_gap_s earlier, which can lie on the previous local day. Interpolating, a span
    starts where the path enters a hot spot, anywhere up to max_gap_s after its first
    ping: every day from t - max_gap_s to t + max_gap_s can change.
    """
    day_of = _LocalDates(ZoneInfo(params.tz))
    gap_us = int(params.max_gap_s * US_PER_S)
    days: set[tuple[str, date]] = set()
    add = days.add
    interpolate = params.crossing_rule == INTERPOLATE
    for ping in pings:
        device, t_us = ping.device_id, ping.t_us
        add((device, day_of(t_us)))
        add((device, day_of(t_us - gap_us)))
        if interpolate:
            days.update(
                (device, d) for d in days_between(day_of(t_us - gap_us), day_of(t_us + gap_us))
            )
    return days


def days_between(first: date, last: date) -> list[date]:
    """Return the local dates from `first` to `last` inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class _LocalDates:
    """local_date(t_us, zone) for many instants, working it out once per UTC minute.

    A minute is answered from its first microsecond when its first and last microsecond
    have the same local date and the same UTC offset: then no time zone transition falls
    inside it (transitions are never within a minute of each other), so local time runs
    on steadily through the minute and every instant of it has that date. Any other
    minute (one with local midnight or a transition in it) is worked out per instant.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.minutes: dict[int, date | None] = {}

    def __call__(self, t_us: int) -> date:
        minute = t_us // US_PER_MINUTE
        try:
            day = self.minutes[minute]
        except KeyError:
            first = datetime.fromtimestamp(minute * US_PER_MINUTE / US_PER_S, tz=self.zone)
            last = datetime.fromtimestamp(
                ((minute + 1) * US_PER_MINUTE - 1) / US_PER_S, tz=self.zone
            )
            steady = first.date() == last.date() and first.utcoffset() == last.utcoffset()
            day = self.minutes[minute] = first.date() if steady else None
        return day if day is not None else local_date(t_us, self.zone)


def _insert_pings(session: Session, max_accuracy_m: float):
    """INSERT pings; on a clash of (device, timestamp) keep the ping the engine would keep.

    docs/dosage.md rule 2 counts equal (device, timestamp) once; the engine keeps a usable ping
    over an unusable one, then the lowest (lat, lon). Storing by the same rule, rather than
    first come first kept, makes stored dosage independent of arrival order even for
    conflicting duplicates. (Redeliveries are identical and change nothing.)
    """
    table = PingRow.__table__
    statement = _insert(session, table)
    new, old = statement.excluded, table.c
    limit = literal_column(repr(float(max_accuracy_m)))
    new_usable = or_(new.accuracy_m.is_(None), new.accuracy_m <= limit)
    old_usable = or_(old.accuracy_m.is_(None), old.accuracy_m <= limit)
    lower = or_(new.lat < old.lat, and_(new.lat == old.lat, new.lon < old.lon))
    better = or_(and_(new_usable, not_(old_usable)), and_(new_usable == old_usable, lower))
    return statement.on_conflict_do_update(
        index_elements=["device_id", "t_us"],
        set_={
            name: new[name]
            for name in ("lat", "lon", "accuracy_m", "speed_kmh", "source", "received_at")
        },
        where=better,
    )


def store_pings(
    session: Session, pings: Sequence[Ping], params: DosageParams, source: str = "mqtt"
) -> None:
    """Store pings (duplicates dropped), note their devices, and queue their device-days."""
    if not pings:
        return
    now = datetime.now(UTC)
    devices = [p.device_id for p in pings]
    times = [p.t_us for p in pings]
    # One statement; a row that clashes with the unique (device, t_us) replaces the stored
    # one only if the engine would prefer it (see _insert_pings).
    max_accuracy_m = params.max_accuracy_m
    _execute_many(
        session,
        f"store_pings:{max_accuracy_m!r}",
        PingRow.__table__,
        lambda s: _insert_pings(s, max_accuracy_m),
        {
            "device_id": devices,
            "t_us": times,
            "lat": [p.lat for p in pings],
            "lon": [p.lon for p in pings],
            "accuracy_m": [p.accuracy_m for p in pings],
            "speed_kmh": [p.speed_kmh for p in pings],
        },
        {"source": source, "received_at": now},
    )
    seen: dict[str, list[int]] = {}
    for device, t_us in zip(devices, times, strict=True):
        bounds = seen.get(device)
        if bounds is None:
            seen[device] = [t_us, t_us]
        elif t_us < bounds[0]:
            bounds[0] = t_us
        elif t_us > bounds[1]:
            bounds[1] = t_us
    _note_devices(session, seen)
    enqueue(session, DirtyDeviceDay, affected_device_days(pings, params))


def _upsert_devices(session: Session):
    table = Device.__table__
    statement = _insert(session, table)
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "first_seen": _least(session, table.c.first_seen, statement.excluded.first_seen),
            "last_seen": _greatest(session, table.c.last_seen, statement.excluded.last_seen),
        },
    )


def _note_devices(session: Session, seen: dict[str, Sequence[int]]) -> None:
    """Insert devices not seen before; widen first_seen/last_seen to (low, high) µs."""
    devices = sorted(seen)
    _execute_many(
        session,
        "note_devices",
        Device.__table__,
        _upsert_devices,
        {
            "id": devices,
            "first_seen": [_utc(seen[d][0]) for d in devices],
            "last_seen": [_utc(seen[d][1]) for d in devices],
        },
        {"label": ""},
    )


def _least(session: Session, a, b):
    name = "least" if session.get_bind().dialect.name == "postgresql" else "min"
    return getattr(func, name)(func.coalesce(a, b), b)


def _greatest(session: Session, a, b):
    name = "greatest" if session.get_bind().dialect.name == "postgresql" else "max"
    return getattr(func, name)(func.coalesce(a, b), b)


def _utc(t_us: int) -> datetime:
    return datetime.fromtimestamp(t_us / US_PER_S, tz=UTC)


def store_dead_letters(
    session: Session, source: str, letters: Sequence[tuple[str, str, bytes | str]]
) -> None:
    """Store (topic, reason, payload) dead letters; payloads are capped, bytes decoded leniently."""
    if not letters:
        return
    now = datetime.now(UTC)
    rows = []
    for topic, reason, payload in letters:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if len(text) > MAX_DEAD_LETTER_PAYLOAD:
            text = text[:MAX_DEAD_LETTER_PAYLOAD] + f"... [{len(text)} characters in all]"
        # PostgreSQL text cannot hold NUL, and a reason may quote the input it rejects.
        rows.append(
            {
                "received_at": now,
                "source": source,
                "topic": topic.replace("\x00", "\\0")[:256],
                "reason": reason[:MAX_DEAD_LETTER_PAYLOAD].replace("\x00", "\\0"),
                "payload": text.replace("\x00", "\\0"),
            }
        )
    session.execute(DeadLetter.__table__.insert(), rows)


def dead_letter_count(session: Session) -> int:
    """Return how many dead letters are stored."""
    return session.scalar(select(func.count()).select_from(DeadLetter)) or 0


def stored_hot_spots(session: Session) -> HotSpotSet:
    """Return the stored hot spot set (empty if none has been loaded)."""
    rows = session.scalars(select(HotSpotRow).order_by(HotSpotRow.id)).all()
    return HotSpotSet([HotSpot(r.id, r.name, shape(r.geometry), r.properties) for r in rows])


def hot_spot_fingerprint(session: Session) -> tuple:
    """Return a value that changes whenever the stored hot spot set is replaced."""
    return tuple(
        session.execute(
            select(func.count(), func.max(HotSpotRow.loaded_at)).select_from(HotSpotRow)
        ).one()
    )


def purge_pings(
    session: Session, retention_days: int, params: DosageParams, now: datetime | None = None
) -> int:
    """Delete raw pings older than the retention period, and the dead letters received
    before it (they hold positions too); aggregates and spans stay. Returns the number of
    pings deleted.

    On PostgreSQL the month partitions wholly before the period are dropped, and only the
    older rows of the month it starts in (and of the default partition) are deleted one by
    one (tracker.dosage.partitions).

    Queued device-days inside the purged period are dropped too: rebuilding them from
    what is left would erase the spans that the purged pings had credited.
    """
    if retention_days <= 0:
        return 0
    zone = ZoneInfo(params.tz)
    now = now or datetime.now(UTC)
    # Whole local days only: a day keeps all of its pings or none, so a later rebuild of
    # a day never works from half of them (see tracker.dosage.recompute).
    first_kept = local_day(now, zone) - timedelta(days=retention_days)
    cutoff_us = local_midnight_us(first_kept, zone)
    dropped = drop_months_before(session, cutoff_us)
    result = session.execute(delete(PingRow).where(PingRow.t_us < cutoff_us))
    session.execute(delete(DirtyDeviceDay).where(DirtyDeviceDay.day < first_kept))
    cutoff = datetime.fromtimestamp(cutoff_us / US_PER_S, tz=UTC)
    session.execute(delete(DeadLetter).where(DeadLetter.received_at < cutoff))
    return dropped + (result.rowcount or 0)
