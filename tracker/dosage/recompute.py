"""Incremental dosage: rebuild only the device-days and hot spot-days that new pings touch.

Two queues hold the work (DirtyDeviceDay, DirtyHotSpotDay). A queue entry is written in
the same transaction as the data that made it dirty, and a worker deletes it only if its
`seq` is unchanged since the worker read it; so a change committed while a rebuild runs
always leaves its entry behind for the next pass, and the stored figures converge on a
full recompute. On PostgreSQL, workers claim entries with FOR UPDATE SKIP LOCKED and take
a transaction-scoped advisory lock per hot spot, so several ingesters can share the work.

1. Device-day D of device X: its credited spans are the spans whose first ping falls on
   D; they are rebuilt from X's pings in [start of D, end of D + max_gap_s]. A day with
   no pings left (purged after the retention period) keeps the spans it has.
2. Hot spot-day: rebuilt from stored spans over a window of whole local days, widened
   until no visit can cross its edges (no span within visit_merge_gap_s of an edge), so
   every visit in it is complete and belongs to a day inside it.
"""

from __future__ import annotations

import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from shapely.geometry import mapping
from sqlalchemy import and_, delete, func, or_, select, text
from sqlalchemy.orm import Session

from tracker.dosage.engine import (
    DATE,
    HOTSPOT_ID,
    INTERPOLATE,
    SPAN_COLUMNS,
    DosageParams,
    credited_spans,
    dosage_from_spans,
)
from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.pings import ACCURACY_M, DEVICE_ID, LAT, LON, SPEED_KMH, TIMESTAMP
from tracker.dosage.store import days_between, enqueue
from tracker.foundation.clock import (
    US_PER_HOUR,
    US_PER_S,
    local_date,
    local_days_us,
    local_midnight_us,
)
from tracker.foundation.models import (
    CreditedSpan,
    DailyDosage,
    DeviceDailyDosage,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    HotSpotRow,
    HourlyPresence,
    PingRow,
    Visit,
    utc_now,
)

HELD_ENTRIES_WAIT_S = 30.0
HELD_ENTRIES_POLL_S = 0.05


@dataclass(frozen=True)
class Claim:
    key: str
    day: date
    seq: int


def _claim(session: Session, queue, key_column, limit: int) -> list[Claim]:
    statement = select(key_column, queue.day, queue.seq).order_by(queue.day, key_column)
    statement = statement.limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return [Claim(*row) for row in session.execute(statement)]


def _release(session: Session, queue, key_column, claims: Iterable[Claim]) -> None:
    for claim in claims:
        session.execute(
            delete(queue).where(
                key_column == claim.key, queue.day == claim.day, queue.seq == claim.seq
            )
        )


def _lock(session: Session, name: str) -> None:
    """Serialise work on one hot spot across PostgreSQL sessions (no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(name.encode()) - 2**31}
        )


def span_days(start_us: int, end_us: int, zone: ZoneInfo) -> list[date]:
    """Return the local days a span [start, end] has time on."""
    return days_between(local_date(start_us, zone), local_date(max(start_us, end_us - 1), zone))


def rebuild_device_days(
    session: Session, hot_spots: HotSpotSet, params: DosageParams, limit: int = 500
) -> int:
    """Rebuild the credited spans of up to `limit` queued device-days; return how many."""
    claims = _claim(session, DirtyDeviceDay, DirtyDeviceDay.device_id, limit)
    zone = params.zone
    by_device: dict[str, list[date]] = defaultdict(list)
    for claim in claims:
        by_device[claim.key].append(claim.day)
    touched: set[tuple[str, date]] = set()
    gap_us = int(params.max_gap_s * US_PER_S)
    for device_id, days in by_device.items():
        bounds = [local_days_us(d, d, zone) for d in days]
        # The pings up to max_gap_s either side: a span is kept on the day it starts, and
        # interpolated, a pair begun the day before can start a span on a claimed day.
        low = min(b[0] for b in bounds) - gap_us
        high = max(b[1] for b in bounds) + gap_us
        pings = _pings_frame(session, device_id, low, high)
        # Only the retention purge deletes pings, and what they credited must outlive them:
        # a day without pings of its own keeps its spans, and a day with no ping before it
        # rebuilds only from its first ping on (interpolated, a pair begun on a purged day
        # may have credited the start of the day).
        ping_us = np.sort(pings[TIMESTAMP].to_numpy("datetime64[us]").astype(np.int64))
        bounds = [_rebuildable(ping_us, a, b, gap_us) for a, b in bounds]
        bounds = [(a, b) for a, b in bounds if a < b]
        if not bounds:
            continue
        spans, _ = credited_spans(pings, hot_spots, params)
        in_days = np.zeros(len(spans), dtype=bool)
        start_us = spans["start_us"].to_numpy()
        for day_start, day_end in bounds:
            in_days |= (start_us >= day_start) & (start_us < day_end)
        spans = spans[in_days]
        in_claimed = or_(
            *(and_(CreditedSpan.start_us >= a, CreditedSpan.start_us < b) for a, b in bounds)
        )
        old = session.execute(
            select(CreditedSpan.hotspot_id, CreditedSpan.start_us, CreditedSpan.end_us).where(
                CreditedSpan.device_id == device_id, in_claimed
            )
        ).all()
        session.execute(delete(CreditedSpan).where(CreditedSpan.device_id == device_id, in_claimed))
        rows = spans.to_dict(orient="records")
        if rows:
            session.execute(CreditedSpan.__table__.insert(), rows)
        for hotspot_id, start, end in [
            *old,
            *spans[[HOTSPOT_ID, "start_us", "end_us"]].itertuples(index=False),
        ]:
            touched.update((hotspot_id, d) for d in span_days(int(start), int(end), zone))
    enqueue(session, DirtyHotSpotDay, touched)
    _release(session, DirtyDeviceDay, DirtyDeviceDay.device_id, claims)
    return len(claims)


def _rebuildable(ping_us: np.ndarray, day_start: int, day_end: int, gap_us: int) -> tuple[int, int]:
    """Return the part [from, day_end) of a day whose spans its pings can rebuild: the whole
    day after a ping at most max_gap_s before it, else from the day's first ping (empty
    without one). `ping_us` is sorted."""
    first = np.searchsorted(ping_us, day_start - gap_us)
    if first < len(ping_us) and ping_us[first] < day_start:
        return day_start, day_end
    own = np.searchsorted(ping_us, day_start)
    if own < len(ping_us) and ping_us[own] < day_end:
        return int(ping_us[own]), day_end
    return day_end, day_end


def _pings_frame(session: Session, device_id: str, low_us: int, high_us: int) -> pd.DataFrame:
    rows = session.execute(
        select(
            PingRow.device_id,
            PingRow.t_us,
            PingRow.lat,
            PingRow.lon,
            PingRow.accuracy_m,
            PingRow.speed_kmh,
        ).where(PingRow.device_id == device_id, PingRow.t_us >= low_us, PingRow.t_us <= high_us)
    ).all()
    frame = pd.DataFrame(rows, columns=[DEVICE_ID, "t_us", LAT, LON, ACCURACY_M, SPEED_KMH])
    frame[TIMESTAMP] = pd.to_datetime(frame.pop("t_us").to_numpy(np.int64), unit="us", utc=True)
    for column in (LAT, LON, ACCURACY_M, SPEED_KMH):
        frame[column] = frame[column].astype(float)
    return frame


def rebuild_hot_spot_days(session: Session, params: DosageParams, limit: int = 500) -> int:
    """Rebuild the figures of up to `limit` queued hot spot-days; return how many."""
    claims = _claim(session, DirtyHotSpotDay, DirtyHotSpotDay.hotspot_id, limit)
    by_hot_spot: dict[str, list[date]] = defaultdict(list)
    for claim in claims:
        by_hot_spot[claim.key].append(claim.day)
    for hotspot_id, days in sorted(by_hot_spot.items()):
        _lock(session, f"hotspot:{hotspot_id}")
        # Nearby days share one window; far-apart days get their own.
        for first, last in _day_ranges(sorted(days)):
            _rebuild_window(session, hotspot_id, first, last, params)
    _release(session, DirtyHotSpotDay, DirtyHotSpotDay.hotspot_id, claims)
    return len(claims)


def _day_ranges(days: list[date]) -> list[tuple[date, date]]:
    ranges: list[tuple[date, date]] = []
    for day in days:
        if ranges and (day - ranges[-1][1]).days <= 1:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _rebuild_window(
    session: Session, hotspot_id: str, first: date, last: date, params: DosageParams
) -> None:
    zone = params.zone
    merge_us = int(params.visit_merge_gap_s * US_PER_S)
    in_hot_spot = CreditedSpan.hotspot_id == hotspot_id
    while True:
        start_us, end_us = local_days_us(first, last, zone)
        # A span reaching across (or within the merge gap of) an edge could join a visit
        # across it: widen the window to whole days around such spans and look again.
        earliest = session.scalar(
            select(func.min(CreditedSpan.start_us)).where(
                in_hot_spot,
                CreditedSpan.start_us < start_us,
                CreditedSpan.end_us >= start_us - merge_us,
            )
        )
        latest = session.scalar(
            select(func.max(CreditedSpan.end_us)).where(
                in_hot_spot,
                CreditedSpan.end_us > end_us,
                CreditedSpan.start_us <= end_us + merge_us,
            )
        )
        if earliest is None and latest is None:
            break
        if earliest is not None:
            first = min(first, local_date(earliest, zone))
        if latest is not None:
            last = max(last, local_date(latest, zone))

    rows = session.execute(
        select(
            CreditedSpan.hotspot_id,
            CreditedSpan.device_id,
            CreditedSpan.start_us,
            CreditedSpan.end_us,
        ).where(in_hot_spot, CreditedSpan.start_us < end_us, CreditedSpan.end_us > start_us)
    ).all()
    result = dosage_from_spans(pd.DataFrame(rows, columns=SPAN_COLUMNS), params)
    days_in_window = and_(DailyDosage.day >= first, DailyDosage.day <= last)
    session.execute(delete(DailyDosage).where(DailyDosage.hotspot_id == hotspot_id, days_in_window))
    for model in (DeviceDailyDosage, HourlyPresence):
        session.execute(
            delete(model).where(
                model.hotspot_id == hotspot_id, model.day >= first, model.day <= last
            )
        )
    session.execute(
        delete(Visit).where(
            Visit.hotspot_id == hotspot_id, Visit.start_us >= start_us, Visit.start_us < end_us
        )
    )
    _insert_records(
        session,
        DailyDosage,
        result.daily,
        {
            HOTSPOT_ID: "hotspot_id",
            DATE: "day",
            "presence_us": "presence_us",
            "officer_us": "officer_us",
            "visits": "visits",
        },
    )
    _insert_records(
        session,
        DeviceDailyDosage,
        result.device_daily,
        {
            HOTSPOT_ID: "hotspot_id",
            DEVICE_ID: "device_id",
            DATE: "day",
            "officer_us": "officer_us",
            "visits": "visits",
        },
    )
    _insert_records(
        session,
        HourlyPresence,
        result.hourly,
        {HOTSPOT_ID: "hotspot_id", DATE: "day", "hour": "hour", "presence_us": "presence_us"},
    )
    visit_columns = {
        HOTSPOT_ID: "hotspot_id",
        DATE: "day",
        "start_us": "start_us",
        "end_us": "end_us",
        "presence_us": "presence_us",
    }
    _insert_records(
        session,
        Visit,
        result.visits.assign(device_id=""),
        {**visit_columns, "devices": "devices", DEVICE_ID: "device_id"},
    )
    _insert_records(
        session,
        Visit,
        result.device_visits.assign(devices=1),
        {**visit_columns, "devices": "devices", DEVICE_ID: "device_id"},
    )


def _insert_records(session: Session, model, frame: pd.DataFrame, columns: dict[str, str]) -> None:
    if frame.empty:
        return
    renamed = frame[list(columns)].rename(columns=columns)
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in renamed.to_dict(orient="records")
    ]
    session.execute(model.__table__.insert(), rows)


def bring_up_to_date(
    begin: Callable,
    hot_spots: HotSpotSet,
    params: DosageParams,
    limit: int = 500,
    wait_s: float = HELD_ENTRIES_WAIT_S,
) -> int:
    """Drain both queues, one transaction per claim; return the entries processed.

    `begin` opens a transaction and yields a session (e.g. `factory.begin`). On PostgreSQL
    a claim skips the entries another worker (a running ingester) is rebuilding; they are
    waited for, up to `wait_s`, so that figures read afterwards include their work.
    """
    done = 0
    waiting_since = None
    while True:
        with begin() as session:
            device_days = rebuild_device_days(session, hot_spots, params, limit)
        with begin() as session:
            hot_spot_days = rebuild_hot_spot_days(session, params, limit)
        done += device_days + hot_spot_days
        if device_days or hot_spot_days:
            continue
        with begin() as session:
            held = any(
                session.scalar(select(func.count()).select_from(queue))
                for queue in (DirtyDeviceDay, DirtyHotSpotDay)
            )
        waiting_since = waiting_since or time.monotonic()
        if not held or time.monotonic() - waiting_since >= wait_s:
            return done
        time.sleep(HELD_ENTRIES_POLL_S)


def enqueue_all_device_days(
    session: Session, params: DosageParams, from_day: date | None = None, to_day: date | None = None
) -> int:
    """Queue every device-day that has pings (optionally within local dates); return how many."""
    zone = params.zone
    hour = PingRow.t_us // US_PER_HOUR
    statement = select(PingRow.device_id, hour).distinct()
    if from_day is not None:
        statement = statement.where(PingRow.t_us >= local_midnight_us(from_day, zone))
    if to_day is not None:
        statement = statement.where(
            PingRow.t_us < local_midnight_us(to_day + timedelta(days=1), zone)
        )
    keys: set[tuple[str, date]] = set()
    gap_us = int(params.max_gap_s * US_PER_S)
    interpolate = params.crossing_rule == INTERPOLATE
    for device_id, hour_index in session.execute(statement):
        # Every hour's start and end, and max_gap_s before them, covers all days touched;
        # interpolating, every day up to max_gap_s after them too (affected_device_days).
        for t in (hour_index * US_PER_HOUR, (hour_index + 1) * US_PER_HOUR - 1):
            keys.add((device_id, local_date(t, zone)))
            keys.add((device_id, local_date(t - gap_us, zone)))
            if interpolate:
                last = local_date(t + gap_us, zone)
                keys.update(
                    (device_id, d) for d in days_between(local_date(t - gap_us, zone), last)
                )
    if from_day is not None or to_day is not None:
        keys = {
            (d, day)
            for d, day in keys
            if (from_day is None or day >= from_day) and (to_day is None or day <= to_day)
        }
    enqueue(session, DirtyDeviceDay, keys)
    return len(keys)


def replace_hot_spots(session: Session, hot_spots: HotSpotSet, params: DosageParams) -> int:
    """Make `hot_spots` the stored set, clear all dosage and queue every device-day again."""
    for model in (
        CreditedSpan,
        DailyDosage,
        DeviceDailyDosage,
        HourlyPresence,
        Visit,
        DirtyHotSpotDay,
        HotSpotRow,
    ):
        session.execute(delete(model))
    session.execute(
        HotSpotRow.__table__.insert(),
        [
            {
                "id": h.id,
                "name": h.name,
                "geometry": mapping(h.geometry),
                "properties": dict(h.properties),
                "loaded_at": utc_now(),
            }
            for h in hot_spots
        ],
    )
    return enqueue_all_device_days(session, params)
