"""Writing pings and dead letters, idempotently, and queueing the dosage they affect.

Functions take a Session and never commit: the caller owns the transaction, so pings,
dead letters and queue entries of one batch commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from shapely.geometry import shape
from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tracker.dosage import US_PER_S, DosageParams
from tracker.geofence import HotSpot, HotSpotSet
from tracker.models import (
    DeadLetter,
    Device,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    HotSpotRow,
    PingRow,
)
from tracker.pings import Ping

MAX_DEAD_LETTER_PAYLOAD = 2048


def _insert(session: Session, table: Table):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """Insert rows in one statement; rows that clash with a unique key are dropped."""
    if rows:
        session.execute(_insert(session, table).on_conflict_do_nothing(), list(rows))


def enqueue(session: Session, queue: type[DirtyDeviceDay] | type[DirtyHotSpotDay],
            keys: Iterable[tuple[str, date]]) -> None:
    """Mark keys dirty; an entry already queued has its seq bumped (see DirtyDeviceDay)."""
    table = queue.__table__
    key_column = "device_id" if queue is DirtyDeviceDay else "hotspot_id"
    rows = [{key_column: k, "day": d, "seq": 1} for k, d in sorted(set(keys))]
    if not rows:
        return
    statement = _insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=[key_column, "day"], set_={"seq": table.c.seq + 1}
    )
    session.execute(statement, rows)


def affected_device_days(pings: Iterable[Ping], params: DosageParams) -> set[tuple[str, date]]:
    """Return the device-days whose spans a new ping may change.

    A ping at t starts a span on its own day and may end the span of a predecessor up
    to max_gap_s earlier, which can lie on the previous local day.
    """
    zone = ZoneInfo(params.tz)
    gap_us = int(params.max_gap_s * US_PER_S)
    days: set[tuple[str, date]] = set()
    for ping in pings:
        days.add((ping.device_id, local_date(ping.t_us, zone)))
        days.add((ping.device_id, local_date(ping.t_us - gap_us, zone)))
    return days


def local_date(t_us: int, zone: ZoneInfo) -> date:
    """Return the local date of an instant given in UTC microseconds."""
    return datetime.fromtimestamp(t_us / US_PER_S, tz=zone).date()


def store_pings(session: Session, pings: Sequence[Ping], params: DosageParams,
                source: str = "mqtt") -> None:
    """Store pings (duplicates dropped), note their devices, and queue their device-days."""
    if not pings:
        return
    now = datetime.now(UTC)
    insert_ignoring_duplicates(session, PingRow.__table__, [
        {"device_id": p.device_id, "t_us": p.t_us, "lat": p.lat, "lon": p.lon,
         "accuracy_m": p.accuracy_m, "speed_kmh": p.speed_kmh, "source": source,
         "received_at": now}
        for p in pings
    ])
    seen: dict[str, tuple[int, int]] = {}
    for p in pings:
        low, high = seen.get(p.device_id, (p.t_us, p.t_us))
        seen[p.device_id] = (min(low, p.t_us), max(high, p.t_us))
    _note_devices(session, seen)
    enqueue(session, DirtyDeviceDay, affected_device_days(pings, params))


def _note_devices(session: Session, seen: dict[str, tuple[int, int]]) -> None:
    table = Device.__table__
    rows = [{"id": device, "label": "", "first_seen": _utc(low), "last_seen": _utc(high)}
            for device, (low, high) in sorted(seen.items())]
    statement = _insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "first_seen": _least(session, table.c.first_seen, statement.excluded.first_seen),
            "last_seen": _greatest(session, table.c.last_seen, statement.excluded.last_seen),
        },
    )
    session.execute(statement, rows)


def _least(session: Session, a, b):
    name = "least" if session.get_bind().dialect.name == "postgresql" else "min"
    return getattr(func, name)(func.coalesce(a, b), b)


def _greatest(session: Session, a, b):
    name = "greatest" if session.get_bind().dialect.name == "postgresql" else "max"
    return getattr(func, name)(func.coalesce(a, b), b)


def _utc(t_us: int) -> datetime:
    return datetime.fromtimestamp(t_us / US_PER_S, tz=UTC)


def store_dead_letters(session: Session, source: str,
                       letters: Sequence[tuple[str, str, bytes | str]]) -> None:
    """Store (topic, reason, payload) dead letters; payloads are capped, bytes decoded leniently."""
    if not letters:
        return
    now = datetime.now(UTC)
    rows = []
    for topic, reason, payload in letters:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if len(text) > MAX_DEAD_LETTER_PAYLOAD:
            text = text[:MAX_DEAD_LETTER_PAYLOAD] + f"... [{len(text)} characters in all]"
        rows.append({"received_at": now, "source": source, "topic": topic[:256],
                     "reason": reason, "payload": text.replace("\x00", "\\0")})
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
    return tuple(session.execute(
        select(func.count(), func.max(HotSpotRow.loaded_at)).select_from(HotSpotRow)).one())


def purge_pings(session: Session, retention_days: int, params: DosageParams,
                now: datetime | None = None) -> int:
    """Delete raw pings older than the retention period; aggregates and spans stay.

    Queued device-days inside the purged period are dropped too: rebuilding them from
    what is left would erase the spans that the purged pings had credited.
    """
    if retention_days <= 0:
        return 0
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    cutoff_us = int(cutoff.timestamp() * US_PER_S)
    result = session.execute(delete(PingRow).where(PingRow.t_us < cutoff_us))
    session.execute(delete(DirtyDeviceDay).where(
        DirtyDeviceDay.day < local_date(cutoff_us, ZoneInfo(params.tz))))
    return result.rowcount or 0
