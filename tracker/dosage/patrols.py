"""Who patrolled where: officers' figures, device tracks and visits, from stored data.

Officers are found through device assignments: a credited span belongs to the officer
assigned to its device at the span's start, so a device handed over mid-shift splits
correctly.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sqlalchemy import Date, Enum, Float, Integer, String, TypeDecorator, select
from sqlalchemy.orm import Session

from tracker.dosage.engine import (
    DEVICE_ID,
    HOTSPOT_ID,
    SPAN_COLUMNS,
    DosageParams,
    device_daily_from_spans,
    rounded_minutes,
)
from tracker.dosage.pings import format_timestamp
from tracker.foundation.clock import US_PER_S, instant_us, local_days_us
from tracker.foundation.models import (
    Assignment,
    CreditedSpan,
    HourlyPresence,
    Officer,
    PingRow,
    Visit,
)

OFFICER_ID = "officer_id"
UNASSIGNED = "(unassigned)"


def assignments_frame(session: Session) -> pd.DataFrame:
    """Return all assignments (device_id, officer_id, officer_name, starts_us, ends_us)."""
    rows = session.execute(
        select(
            Assignment.device_id,
            Assignment.officer_id,
            Officer.name,
            Assignment.starts,
            Assignment.ends,
        ).join(Officer, Officer.id == Assignment.officer_id)
    ).all()
    frame = pd.DataFrame(rows, columns=[DEVICE_ID, OFFICER_ID, "officer_name", "starts", "ends"])
    frame["starts_us"] = [instant_us(t) for t in frame["starts"]]
    frame["ends_us"] = [
        np.iinfo(np.int64).max if pd.isna(t) else instant_us(t) for t in frame["ends"]
    ]
    return frame.drop(columns=["starts", "ends"])


def attribute_officers(spans: pd.DataFrame, assignments: pd.DataFrame) -> pd.Series:
    """Return, for each span, the officer assigned to its device at the span's start."""
    officer = np.full(len(spans), UNASSIGNED, dtype=object)
    if len(spans) and len(assignments):
        # One pass per assignment (a later one wins where two overlap), each over the spans
        # of its own device only.
        codes, devices = pd.factorize(spans[DEVICE_ID].to_numpy(dtype=object))
        by_device = np.argsort(codes, kind="stable")
        ends = np.cumsum(np.bincount(codes, minlength=len(devices)))
        code_of = {d: i for i, d in enumerate(devices)}
        start_us = spans["start_us"].to_numpy(dtype=np.int64)
        for row in assignments.itertuples(index=False):
            code = code_of.get(row.device_id)
            if code is None:
                continue
            members = by_device[(ends[code - 1] if code else 0) : ends[code]]
            at = start_us[members]
            officer[members[(at >= row.starts_us) & (at < row.ends_us)]] = row.officer_id
    return pd.Series(officer, index=spans.index, dtype=object)


def spans_in_period(
    session: Session,
    start_us: int,
    end_us: int,
    hotspot_id: str | None = None,
    device_ids: list[str] | None = None,
    longest_us: int | None = None,
    hotspot_ids: list[str] | None = None,
    with_devices: bool = True,
) -> pd.DataFrame:
    """Return stored credited spans overlapping [start_us, end_us), of one hot spot, of some
    (`hotspot_ids`: the index on hot spot and start then serves them) or of all; without
    the `device_id` column if not `with_devices` (presence alone needs no devices).

    With `longest_us` (no stored span is longer) only spans starting from
    start_us - longest_us are looked at, so the index does not walk every span since the
    first one.
    """
    # With one hot spot, its id is not read back for every span.
    names = [n for n in SPAN_COLUMNS if with_devices or n != DEVICE_ID]
    columns = [getattr(CreditedSpan, n) for n in names if hotspot_id is None or n != HOTSPOT_ID]
    statement = select(*columns).where(
        CreditedSpan.start_us < end_us, CreditedSpan.end_us > start_us
    )
    if hotspot_id is not None:
        statement = statement.where(CreditedSpan.hotspot_id == hotspot_id)
    if hotspot_ids is not None:
        statement = statement.where(CreditedSpan.hotspot_id.in_(hotspot_ids))
    if device_ids is not None:
        statement = statement.where(CreditedSpan.device_id.in_(device_ids))
    if longest_us is not None:
        statement = statement.where(CreditedSpan.start_us >= start_us - longest_us)
    _, values = read_columns(session, statement)
    if not values[0]:
        return pd.DataFrame([], columns=names)
    if hotspot_id is not None:
        values.insert(0, [hotspot_id] * len(values[0]))
    # Column by column, the instants as int64 arrays: no type guessing per value.
    return pd.DataFrame(
        {
            name: np.array(column, dtype=np.int64 if name.endswith("_us") else object)
            for name, column in zip(names, values, strict=True)
        },
        columns=names,
    )


def read_columns(
    session: Session, statement, parameters: dict | None = None
) -> tuple[list[str], list[list]]:
    """Run a Core select; return its column names and its rows as column lists, fetched a
    chunk at a time.

    Holding tens of thousands of row objects at once makes Python's full garbage
    collection run (tens of ms) every other request; a chunk at a time does not. When every
    column is a string, a number or a date, the rows come straight from the driver's cursor,
    without SQLAlchemy's row objects (most of the time of a large read), and dates the
    driver gives as ISO text (SQLite) are parsed here.
    """
    kinds = [_plain_kind(column.type) for column in statement.selected_columns]
    result = session.connection().execute(statement, parameters)
    columns: list[list] = [[] for _ in kinds]
    plain = None not in kinds
    chunks = iter(lambda: result.cursor.fetchmany(1000), []) if plain else result.partitions(1000)
    for rows in chunks:
        for column, values in zip(columns, zip(*rows, strict=True), strict=True):
            column.extend(values)
    result.close()
    for i, kind in enumerate(kinds):
        if kind is Date and columns[i] and isinstance(columns[i][0], str):
            columns[i] = [None if v is None else date.fromisoformat(v) for v in columns[i]]
    return list(result.keys()), columns


def _plain_kind(type_) -> type | None:
    """Return the kind of a column type whose values no dialect converts (Date: parsed from
    ISO text where the driver gives text), or None for any other type."""
    if isinstance(type_, TypeDecorator | Enum):
        return None
    return next((k for k in (String, Integer, Float, Date) if isinstance(type_, k)), None)


def officer_figures(
    session: Session,
    params: DosageParams,
    from_day: date,
    to_day: date,
    hotspot_id: str | None = None,
    officer_id: str | None = None,
) -> pd.DataFrame:
    """Return officer minutes and visits per officer, hot spot and local day.

    Columns: officer_id, officer_name, hotspot_id, date, officer_minutes, visits. Visits
    follow docs/dosage.md rule 7 on the officer's own spans.
    """
    start_us, end_us = local_days_us(from_day, to_day, params.zone)
    assignments = assignments_frame(session)
    devices = None
    if officer_id is not None:
        devices = sorted(set(assignments.loc[assignments[OFFICER_ID] == officer_id, DEVICE_ID]))
    # A credited span joins two pings at most max_gap_s apart (docs/dosage.md rule 3); a day's
    # margin also covers spans stored under an earlier, longer max_gap_s.
    longest_us = int(max(params.max_gap_s, 86_400) * US_PER_S)
    spans = spans_in_period(session, start_us, end_us, hotspot_id, devices, longest_us)
    spans[DEVICE_ID] = attribute_officers(spans, assignments)
    if officer_id is not None:
        spans = spans[spans[DEVICE_ID] == officer_id]
    result = device_daily_from_spans(spans, params).rename(columns={DEVICE_ID: OFFICER_ID})
    result = result[(result["date"] >= from_day) & (result["date"] <= to_day)]
    names = dict(zip(assignments[OFFICER_ID], assignments["officer_name"], strict=False))
    result.insert(1, "officer_name", [names.get(o, "") for o in result[OFFICER_ID]])
    return result[
        [OFFICER_ID, "officer_name", HOTSPOT_ID, "date", "officer_minutes", "visits"]
    ].reset_index(drop=True)


def officer_devices(session: Session, officer_id: str) -> list[str]:
    """Return the devices ever assigned to an officer."""
    return sorted(
        session.scalars(
            select(Assignment.device_id).where(Assignment.officer_id == officer_id).distinct()
        )
    )


def track(session: Session, device_ids: list[str], start_us: int, end_us: int) -> pd.DataFrame:
    """Return the pings of some devices in [start_us, end_us), in time order."""
    rows = session.execute(
        select(PingRow.device_id, PingRow.t_us, PingRow.lat, PingRow.lon, PingRow.accuracy_m)
        .where(PingRow.device_id.in_(device_ids), PingRow.t_us >= start_us, PingRow.t_us < end_us)
        .order_by(PingRow.device_id, PingRow.t_us)
    ).all()
    frame = pd.DataFrame(rows, columns=[DEVICE_ID, "t_us", "lat", "lon", "accuracy_m"])
    frame.insert(1, "time", [format_timestamp(t) for t in frame["t_us"]])
    return frame


def hot_spot_visits(
    session: Session, hotspot_id: str, from_day: date, to_day: date, params: DosageParams
) -> pd.DataFrame:
    """Return a hot spot's counted visits that start on local days in [from_day, to_day]."""
    rows = session.execute(
        select(Visit.day, Visit.start_us, Visit.end_us, Visit.presence_us, Visit.devices)
        .where(
            Visit.hotspot_id == hotspot_id,
            Visit.device_id == "",
            Visit.day >= from_day,
            Visit.day <= to_day,
        )
        .order_by(Visit.start_us)
    ).all()
    return visits_table(rows, params)


def visits_table(rows: list, params: DosageParams) -> pd.DataFrame:
    """Return hot_spot_visits's table of stored hot spot visit rows (day, start_us, end_us,
    presence_us, devices) in start order."""
    names = ["date", "start_us", "end_us", "presence_us", "devices"]
    frame = (
        pd.DataFrame(dict(zip(names, zip(*rows, strict=True), strict=True)), columns=names)
        if rows
        else pd.DataFrame(rows, columns=names)
    )
    zone = params.zone
    return pd.DataFrame(
        {
            "date": frame["date"],
            "start": _local_clock(frame["start_us"], zone),
            "end": _local_clock(frame["end_us"], zone),
            "presence_minutes": rounded_minutes(frame["presence_us"].to_numpy()),
            "devices": frame["devices"].astype("int64"),
        }
    )


def _local_clock(t_us: pd.Series, zone) -> list[str]:
    """Return HH:MM:SS local times of UTC microsecond instants (as datetime.strftime would)."""
    if not len(t_us):
        return []
    local = pd.to_datetime(t_us.to_numpy(dtype=np.int64), unit="us", utc=True).tz_convert(zone)
    return [
        f"{h:02d}:{m:02d}:{s:02d}"
        for h, m, s in zip(
            local.hour.tolist(), local.minute.tolist(), local.second.tolist(), strict=True
        )
    ]


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def hour_by_weekday(
    session: Session, hotspot_id: str, from_day: date, to_day: date
) -> pd.DataFrame:
    """Return presence minutes by local hour (rows 0-23) and weekday (columns Mon-Sun)."""
    rows = session.execute(
        select(HourlyPresence.day, HourlyPresence.hour, HourlyPresence.presence_us).where(
            HourlyPresence.hotspot_id == hotspot_id,
            HourlyPresence.day >= from_day,
            HourlyPresence.day <= to_day,
        )
    ).all()
    grid = np.zeros((24, 7), dtype=np.int64)
    for day, hour, presence_us in rows:
        grid[hour, day.weekday()] += presence_us
    frame = pd.DataFrame(rounded_minutes(grid.ravel()).reshape(24, 7), columns=list(WEEKDAYS))
    frame.insert(0, "hour", [f"{h:02d}:00" for h in range(24)])
    return frame
