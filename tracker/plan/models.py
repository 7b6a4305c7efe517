"""The plan's tables: an operation, its hot spots and the phases of targets (docs/plan.md).

Kept apart from tracker.foundation.models so that this area can grow without touching the
core schema; the Alembic environment imports this module so autogenerate sees its tables.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tracker.foundation.models import Base, utc_now

DEFAULT_MIN_VISIT_MINUTES = 10.0  # Koper: a 10-15 minute visit has the longest residual effect


class Operation(Base):
    """A patrol operation: its name, local dates (inclusive) and time zone."""

    __tablename__ = "operations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    tz: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    __table_args__ = (CheckConstraint("end_date >= start_date", name="dates_ordered"),)


class OperationHotSpot(Base):
    """A hot spot in an operation (a link, not a foreign key: hot spot sets are replaced)."""

    __tablename__ = "operation_hot_spots"
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), primary_key=True)
    hotspot_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class PlanPhase(Base):
    """The targets of one hot spot from `starts` to `ends` (local dates, both inclusive).

    Exactly one of the presence targets is set. `windows` is a list of
    {"weekdays": [0 = Monday ...], "start_hour": 0-23, "end_hour": 1-24}; an end hour at or
    before the start hour runs into the next morning. Null or empty means no windows.
    """

    __tablename__ = "plan_phases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), index=True)
    hotspot_id: Mapped[str] = mapped_column(String(64))
    starts: Mapped[date] = mapped_column(Date)
    ends: Mapped[date] = mapped_column(Date)
    presence_minutes_per_day: Mapped[float | None] = mapped_column(Float)
    presence_minutes_per_week: Mapped[float | None] = mapped_column(Float)
    visits_per_day: Mapped[float | None] = mapped_column(Float)
    min_visit_minutes: Mapped[float] = mapped_column(Float, default=DEFAULT_MIN_VISIT_MINUTES)
    max_presence_minutes_per_day: Mapped[float | None] = mapped_column(Float)
    windows: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    __table_args__ = (
        CheckConstraint("ends >= starts", name="dates_ordered"),
        CheckConstraint(
            "(presence_minutes_per_day IS NULL) <> (presence_minutes_per_week IS NULL)",
            name="one_presence_target",
        ),
    )
