"""Who patrolled where: officers' figures, device tracks and ingest health, from stored data.

Officers are found through device assignments: a credited span belongs to the officer
assigned to its device at the span's start, so a device handed over mid-shift splits
correctly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.dosage import (
    DEVICE_ID,
    HOTSPOT_ID,
    SPAN_COLUMNS,
    US_PER_S,
    DosageParams,
    dosage_from_spans,
    local_midnight_us,
    rounded_minutes,
)
from tracker.models import (
    Assignment,
    CreditedSpan,
    DeadLetter,
    Device,
    HourlyPresence,
    Officer,
    PingRow,
    Visit,
)
from tracker.pings import format_timestamp

OFFICER_ID = "officer_id"
UNASSIGNED = "(unassigned)"


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * US_PER_S)


def period_bounds_us(from_day: date, to_day: date, params: DosageParams) -> tuple[int, int]:
    """Return the UTC microsecond bounds [start of from_day, end of to_day) in local time."""
    zone = params.zone
    return local_midnight_us(from_day, zone), local_midnight_us(to_day + timedelta(days=1), zone)


def assignments_frame(session: Session) -> pd.DataFrame:
    """Return all assignments (device_id, officer_id, officer_name, starts_us, ends_us)."""
    rows = session.execute(select(Assignment.device_id, Assignment.officer_id, Officer.name,
                                  Assignment.starts, Assignment.ends)
                           .join(Officer, Officer.id == Assignment.officer_id)).all()
    frame = pd.DataFrame(rows, columns=[DEVICE_ID, OFFICER_ID, "officer_name", "starts", "ends"])
    frame["starts_us"] = [_us(t) for t in frame["starts"]]
    frame["ends_us"] = [_us(t) if t is not None else np.iinfo(np.int64).max
                        for t in frame["ends"]]
    return frame.drop(columns=["starts", "ends"])


def attribute_officers(spans: pd.DataFrame, assignments: pd.DataFrame) -> pd.Series:
    """Return, for each span, the officer assigned to its device at the span's start."""
    officer = pd.Series(UNASSIGNED, index=spans.index, dtype=object)
    for row in assignments.itertuples(index=False):  # one pass per assignment, not per span
        hit = ((spans[DEVICE_ID] == row.device_id) & (spans["start_us"] >= row.starts_us)
               & (spans["start_us"] < row.ends_us))
        officer[hit] = row.officer_id
    return officer


def spans_in_period(session: Session, start_us: int, end_us: int,
                    hotspot_id: str | None = None,
                    device_ids: list[str] | None = None) -> pd.DataFrame:
    """Return stored credited spans overlapping [start_us, end_us)."""
    statement = select(CreditedSpan.hotspot_id, CreditedSpan.device_id, CreditedSpan.start_us,
                       CreditedSpan.end_us).where(CreditedSpan.start_us < end_us,
                                                  CreditedSpan.end_us > start_us)
    if hotspot_id is not None:
        statement = statement.where(CreditedSpan.hotspot_id == hotspot_id)
    if device_ids is not None:
        statement = statement.where(CreditedSpan.device_id.in_(device_ids))
    return pd.DataFrame(session.execute(statement).all(), columns=SPAN_COLUMNS)


def officer_figures(session: Session, params: DosageParams, from_day: date, to_day: date,
                    hotspot_id: str | None = None,
                    officer_id: str | None = None) -> pd.DataFrame:
    """Return officer minutes and visits per officer, hot spot and local day.

    Columns: officer_id, officer_name, hotspot_id, date, officer_minutes, visits. Visits
    follow DESIGN 5 rule 6 on the officer's own spans.
    """
    start_us, end_us = period_bounds_us(from_day, to_day, params)
    assignments = assignments_frame(session)
    devices = None
    if officer_id is not None:
        devices = sorted(set(assignments.loc[assignments[OFFICER_ID] == officer_id, DEVICE_ID]))
    spans = spans_in_period(session, start_us, end_us, hotspot_id, devices)
    spans[DEVICE_ID] = attribute_officers(spans, assignments)
    if officer_id is not None:
        spans = spans[spans[DEVICE_ID] == officer_id]
    result = dosage_from_spans(spans, params).device_daily.rename(columns={DEVICE_ID: OFFICER_ID})
    result = result[(result["date"] >= from_day) & (result["date"] <= to_day)]
    names = dict(zip(assignments[OFFICER_ID], assignments["officer_name"], strict=False))
    result.insert(1, "officer_name", [names.get(o, "") for o in result[OFFICER_ID]])
    return result[[OFFICER_ID, "officer_name", HOTSPOT_ID, "date", "officer_minutes",
                   "visits"]].reset_index(drop=True)


def officer_devices(session: Session, officer_id: str) -> list[str]:
    """Return the devices ever assigned to an officer."""
    return sorted(session.scalars(select(Assignment.device_id).where(
        Assignment.officer_id == officer_id).distinct()))


def track(session: Session, device_ids: list[str], start_us: int, end_us: int) -> pd.DataFrame:
    """Return the pings of some devices in [start_us, end_us), in time order."""
    rows = session.execute(
        select(PingRow.device_id, PingRow.t_us, PingRow.lat, PingRow.lon, PingRow.accuracy_m)
        .where(PingRow.device_id.in_(device_ids), PingRow.t_us >= start_us,
               PingRow.t_us < end_us)
        .order_by(PingRow.device_id, PingRow.t_us)).all()
    frame = pd.DataFrame(rows, columns=[DEVICE_ID, "t_us", "lat", "lon", "accuracy_m"])
    frame.insert(1, "time", [format_timestamp(t) for t in frame["t_us"]])
    return frame


def device_health(session: Session, now: datetime | None = None) -> pd.DataFrame:
    """Return every device with its officer now, first and last ping, and pings in the last hour."""
    now = now or datetime.now(UTC)
    hour_ago = _us(now - timedelta(hours=1))
    recent = dict(session.execute(select(PingRow.device_id, func.count())
                                  .where(PingRow.t_us >= hour_ago)
                                  .group_by(PingRow.device_id)).all())
    assignments = assignments_frame(session)
    now_us = _us(now)
    current = assignments[(assignments["starts_us"] <= now_us) & (assignments["ends_us"] > now_us)]
    officer_now = dict(zip(current[DEVICE_ID], current[OFFICER_ID], strict=False))
    rows = []
    for device in session.scalars(select(Device).order_by(Device.id)):
        silent = None if device.last_seen is None else (now - device.last_seen).total_seconds()
        rows.append({
            DEVICE_ID: device.id, "label": device.label,
            OFFICER_ID: officer_now.get(device.id, ""),
            "first_seen": device.first_seen, "last_seen": device.last_seen,
            "minutes_since_last_ping": None if silent is None else round(silent / 60, 1),
            "pings_last_hour": recent.get(device.id, 0),
        })
    return pd.DataFrame(rows, columns=[DEVICE_ID, "label", OFFICER_ID, "first_seen", "last_seen",
                                       "minutes_since_last_ping", "pings_last_hour"])


def ingest_rates(session: Session, now: datetime | None = None, hours: int = 24) -> pd.DataFrame:
    """Return pings received and dead letters per hour over the last `hours` hours (UTC)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=hours)
    received = session.execute(select(PingRow.received_at).where(PingRow.received_at >= since))
    letters = session.execute(select(DeadLetter.received_at)
                              .where(DeadLetter.received_at >= since))
    frame = pd.DataFrame({
        "hour": pd.date_range(since.replace(minute=0, second=0, microsecond=0), periods=hours + 1,
                              freq="h", tz=UTC)})
    for name, result in (("pings", received), ("dead_letters", letters)):
        times = pd.to_datetime(pd.Series([r[0] for r in result], dtype=object), utc=True)
        counts = times.dt.floor("h").value_counts()
        frame[name] = frame["hour"].map(counts).fillna(0).astype(int)
    return frame



def hot_spot_visits(session: Session, hotspot_id: str, from_day: date, to_day: date,
                    params: DosageParams) -> pd.DataFrame:
    """Return a hot spot's counted visits that start on local days in [from_day, to_day]."""
    rows = session.execute(
        select(Visit.day, Visit.start_us, Visit.end_us, Visit.presence_us, Visit.devices)
        .where(Visit.hotspot_id == hotspot_id, Visit.device_id == "", Visit.day >= from_day,
               Visit.day <= to_day).order_by(Visit.start_us)).all()
    frame = pd.DataFrame(rows, columns=["date", "start_us", "end_us", "presence_us", "devices"])
    zone = params.zone
    local = [datetime.fromtimestamp(t / US_PER_S, tz=zone) for t in frame["start_us"]]
    ends = [datetime.fromtimestamp(t / US_PER_S, tz=zone) for t in frame["end_us"]]
    return pd.DataFrame({
        "date": frame["date"],
        "start": [t.strftime("%H:%M:%S") for t in local],
        "end": [t.strftime("%H:%M:%S") for t in ends],
        "presence_minutes": rounded_minutes(frame["presence_us"].to_numpy()),
        "devices": frame["devices"].astype("int64"),
    })


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def hour_by_weekday(session: Session, hotspot_id: str, from_day: date,
                    to_day: date) -> pd.DataFrame:
    """Return presence minutes by local hour (rows 0-23) and weekday (columns Mon-Sun)."""
    rows = session.execute(
        select(HourlyPresence.day, HourlyPresence.hour, HourlyPresence.presence_us)
        .where(HourlyPresence.hotspot_id == hotspot_id, HourlyPresence.day >= from_day,
               HourlyPresence.day <= to_day)).all()
    grid = np.zeros((24, 7), dtype=np.int64)
    for day, hour, presence_us in rows:
        grid[hour, day.weekday()] += presence_us
    frame = pd.DataFrame(rounded_minutes(grid.ravel()).reshape(24, 7), columns=list(WEEKDAYS))
    frame.insert(0, "hour", [f"{h:02d}:00" for h in range(24)])
    return frame
