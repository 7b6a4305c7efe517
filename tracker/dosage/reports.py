"""Stored dosage as tables: the same columns and figures as the offline `dosage` command."""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.dosage.engine import (
    DAILY_COLUMNS,
    DATE,
    HOTSPOT_ID,
    OFFICER_MINUTES,
    PRESENCE_MINUTES,
    VISITS,
    rounded_minutes,
)
from tracker.foundation.models import DailyDosage, DeadLetter


def daily_report(
    session: Session,
    from_day: date | None = None,
    to_day: date | None = None,
    hotspot_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Return stored daily dosage (DAILY_COLUMNS) sorted by hot spot then date."""
    statement = select(
        DailyDosage.hotspot_id,
        DailyDosage.day,
        DailyDosage.presence_us,
        DailyDosage.officer_us,
        DailyDosage.visits,
    )
    if from_day is not None:
        statement = statement.where(DailyDosage.day >= from_day)
    if to_day is not None:
        statement = statement.where(DailyDosage.day <= to_day)
    if hotspot_ids is not None:
        statement = statement.where(DailyDosage.hotspot_id.in_(hotspot_ids))
    rows = session.execute(statement.order_by(DailyDosage.hotspot_id, DailyDosage.day)).all()
    frame = pd.DataFrame(rows, columns=[HOTSPOT_ID, DATE, "presence_us", "officer_us", VISITS])
    return pd.DataFrame(
        {
            HOTSPOT_ID: frame[HOTSPOT_ID].astype(object),
            DATE: frame[DATE].astype(object),
            PRESENCE_MINUTES: rounded_minutes(frame["presence_us"].to_numpy()),
            OFFICER_MINUTES: rounded_minutes(frame["officer_us"].to_numpy()),
            VISITS: frame[VISITS].astype("int64"),
        },
        columns=DAILY_COLUMNS,
    )


DEAD_LETTER_COLUMNS = ["received_at", "source", "topic", "reason", "payload"]
SHORT_PAYLOAD = 120


def dead_letter_report(session: Session, limit: int | None = None) -> pd.DataFrame:
    """Return dead letters, newest first, with payloads shortened for display."""
    statement = select(
        DeadLetter.received_at,
        DeadLetter.source,
        DeadLetter.topic,
        DeadLetter.reason,
        DeadLetter.payload,
    ).order_by(DeadLetter.id.desc())
    if limit is not None:
        statement = statement.limit(limit)
    rows = session.execute(statement).all()
    frame = pd.DataFrame(rows, columns=DEAD_LETTER_COLUMNS)
    frame["payload"] = [
        p if len(p) <= SHORT_PAYLOAD else p[:SHORT_PAYLOAD] + "…" for p in frame["payload"]
    ]
    return frame
