"""Ingest health from stored data: each device's last ping and its officer now, and pings and
dead letters received per hour.

The ingest rate is of live pings, those the MQTT ingester stored. Pings imported from files
(or loaded as history, as `make demo` does) arrive in bulk, all in the hour of the import,
and would read as a burst of live traffic: they are counted apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.dosage.engine import DEVICE_ID
from tracker.dosage.ingest import SOURCE as LIVE_SOURCE
from tracker.dosage.patrols import OFFICER_ID, assignments_frame
from tracker.foundation.clock import instant_us
from tracker.foundation.models import DeadLetter, Device, PingRow


def device_health(session: Session, now: datetime | None = None) -> pd.DataFrame:
    """Return every device with its officer now, first and last ping, and the live pings it
    sent in the last hour (by the time of the fix)."""
    now = now or datetime.now(UTC)
    hour_ago = instant_us(now - timedelta(hours=1))
    recent = dict(
        session.execute(
            select(PingRow.device_id, func.count())
            .where(PingRow.t_us >= hour_ago, PingRow.source == LIVE_SOURCE)
            .group_by(PingRow.device_id)
        ).all()
    )
    assignments = assignments_frame(session)
    now_us = instant_us(now)
    current = assignments[(assignments["starts_us"] <= now_us) & (assignments["ends_us"] > now_us)]
    officer_now = dict(zip(current[DEVICE_ID], current[OFFICER_ID], strict=False))
    rows = []
    for device in session.scalars(select(Device).order_by(Device.id)):
        silent = None if device.last_seen is None else (now - device.last_seen).total_seconds()
        rows.append(
            {
                DEVICE_ID: device.id,
                "label": device.label,
                OFFICER_ID: officer_now.get(device.id, ""),
                "first_seen": device.first_seen,
                "last_seen": device.last_seen,
                "minutes_since_last_ping": None if silent is None else round(silent / 60, 1),
                "pings_last_hour": recent.get(device.id, 0),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            DEVICE_ID,
            "label",
            OFFICER_ID,
            "first_seen",
            "last_seen",
            "minutes_since_last_ping",
            "pings_last_hour",
        ],
    )


def ingest_rates(session: Session, now: datetime | None = None, hours: int = 24) -> pd.DataFrame:
    """Return per hour (UTC) over the last `hours` hours the live pings received, the dead
    letters, and the pings imported (files and loaded history, no part of the live rate)."""
    now = now or datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    frame = pd.DataFrame({"hour": pd.date_range(start, periods=hours + 1, freq="h", tz=UTC)})
    keys = [_hour_key(session, h) for h in frame["hour"]]
    hour = _hour(session, PingRow.received_at)
    live: dict[str, int] = {}
    imported: dict[str, int] = {}
    for key, source, count in session.execute(
        select(hour, PingRow.source, func.count())
        .where(PingRow.received_at >= start)
        .group_by(hour, PingRow.source)
    ):
        counts = live if source == LIVE_SOURCE else imported
        counts[key] = counts.get(key, 0) + count
    letter_hour = _hour(session, DeadLetter.received_at)
    letters = dict(
        session.execute(
            select(letter_hour, func.count())
            .where(DeadLetter.received_at >= start)
            .group_by(letter_hour)
        ).all()
    )
    frame["pings"] = [live.get(k, 0) for k in keys]
    frame["dead_letters"] = [letters.get(k, 0) for k in keys]
    frame["imported_pings"] = [imported.get(k, 0) for k in keys]
    return frame


def _hour(session: Session, column):
    """The hour an instant falls in, counted in SQL on either database."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.substr(column, 1, 13)  # SQLite keeps UTC text "YYYY-MM-DD HH:MM:SS..."


def _hour_key(_session: Session, hour: pd.Timestamp) -> str:
    return hour.strftime("%Y-%m-%d %H")
