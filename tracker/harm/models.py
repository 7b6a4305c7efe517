"""Recorded crime (docs/harm.md): one row per crime, from police.uk street-level CSVs or a
force's own export.

Kept apart from tracker.foundation.models so that this area can grow without touching the
core schema; the Alembic environment imports this module so autogenerate sees its table.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tracker.foundation.models import Base, utc_now

POLICE_UK = "police.uk"
FORCE = "force"
SOURCES = (POLICE_UK, FORCE)


class RecordedCrime(Base):
    """One recorded crime (or, from police.uk, an anti-social behaviour incident).

    `month` is the first day of the crime's month: police.uk publishes no more; a force
    export also gives the exact date (`occurred_on`). Longitude and latitude are both null
    for a crime published without a location.
    """

    __tablename__ = "recorded_crimes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the Crime ID or force reference, else of the row's values and occurrence.
    import_key: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    crime_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    month: Mapped[date] = mapped_column(Date, index=True)
    occurred_on: Mapped[date | None] = mapped_column(Date)
    crime_type: Mapped[str] = mapped_column(String(200))
    offence_code: Mapped[str | None] = mapped_column(String(32))
    offence: Mapped[str | None] = mapped_column(String(200))
    longitude: Mapped[float | None] = mapped_column(Float)
    latitude: Mapped[float | None] = mapped_column(Float)
    location: Mapped[str | None] = mapped_column(String(200))
    lsoa_code: Mapped[str | None] = mapped_column(String(16))
    lsoa_name: Mapped[str | None] = mapped_column(String(200))
    reported_by: Mapped[str | None] = mapped_column(String(200))
    falls_within: Mapped[str | None] = mapped_column(String(200))
    last_outcome: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[str | None] = mapped_column(Text)
    source_file: Mapped[str | None] = mapped_column(String(255))
    source_line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    __table_args__ = (
        CheckConstraint(
            f"source IN ({', '.join(repr(s) for s in SOURCES)})", name="source_allowed"
        ),
        CheckConstraint("(longitude IS NULL) = (latitude IS NULL)", name="located_or_not"),
    )
