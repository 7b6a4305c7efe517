"""Database models (SQLAlchemy 2 typed declarative). All instants are stored in UTC.

Dosage is held in microseconds (exact integer sums) and converted to minutes only when
tables are built, so stored figures equal the offline command's to the last digit.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every database; naive values are refused, not guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store UTC-aware datetimes only")
        value = value.astimezone(UTC)
        # SQLite keeps text: store it naive-in-UTC so that string order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


def utc_now() -> datetime:
    return datetime.now(UTC)


class HotSpotRow(Base):
    """A hot spot polygon of the current set (GeoJSON geometry, lon/lat)."""

    __tablename__ = "hot_spots"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    geometry: Mapped[dict[str, Any]]
    properties: Mapped[dict[str, Any]]
    loaded_at: Mapped[datetime] = mapped_column(default=utc_now)


class Device(Base):
    """A radio or phone that publishes positions."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]


class Officer(Base):
    """An officer (by collar or staff number) to whom devices are assigned."""

    __tablename__ = "officers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")


class Assignment(Base):
    """A device carried by an officer from `starts` until `ends` (open when null)."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("officers.id"), index=True)
    starts: Mapped[datetime]
    ends: Mapped[datetime | None]
    __table_args__ = (UniqueConstraint("device_id", "starts"),)


class PingRow(Base):
    """One GPS position as received; unique by (device, timestamp).

    On PostgreSQL the table is partitioned by month of `t_us` (tracker.dosage.partitions),
    and a key of a partitioned table must hold `t_us`: hence the primary key (t_us, id),
    which also serves the retention purge's range of `t_us`. SQLite keeps `id` alone as its
    key (migration 0001), which makes (t_us, id) unique all the same.
    """

    __tablename__ = "pings"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), autoincrement=True
    )
    device_id: Mapped[str] = mapped_column(String(128))
    t_us: Mapped[int] = mapped_column(BigInteger)  # UTC microseconds since the epoch
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    speed_kmh: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), default="mqtt")
    received_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    __table_args__ = (PrimaryKeyConstraint("t_us", "id"), UniqueConstraint("device_id", "t_us"))


class DeadLetter(Base):
    """A message or row that could not be accepted, kept with the reason."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    source: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)


class CreditedSpan(Base):
    """A span [start, end] one device credited to one hot spot (docs/dosage.md, rules 3 and 4)."""

    __tablename__ = "credited_spans"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hotspot_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128))
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        Index("ix_credited_spans_device_start", "device_id", "start_us"),
        # Holding the end and the device, it answers a period's spans of some hot spots
        # without reading the rows (migration 0013).
        Index(
            "ix_credited_spans_hotspot_start_end_device",
            "hotspot_id",
            "start_us",
            "end_us",
            "device_id",
        ),
    )


class DailyDosage(Base):
    """Presence, officer time and visits of one hot spot on one local day."""

    __tablename__ = "daily_dosage"
    hotspot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    presence_us: Mapped[int] = mapped_column(BigInteger)
    officer_us: Mapped[int] = mapped_column(BigInteger)
    visits: Mapped[int] = mapped_column(Integer)


class HourlyPresence(Base):
    """Presence in one hot spot during one local clock hour (for patrol windows and heat maps).

    On the autumn DST change the repeated hour is one row holding both occurrences.
    """

    __tablename__ = "hourly_presence"
    hotspot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    presence_us: Mapped[int] = mapped_column(BigInteger)


class DeviceDailyDosage(Base):
    """One device's officer time and visits in one hot spot on one local day."""

    __tablename__ = "device_daily_dosage"
    hotspot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    officer_us: Mapped[int] = mapped_column(BigInteger)
    visits: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index("ix_device_daily_dosage_device_day", "device_id", "day"),)


class Visit(Base):
    """A counted visit; `device_id` is empty for a hot spot visit, else one device's."""

    __tablename__ = "visits"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hotspot_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(128), default="")
    day: Mapped[date] = mapped_column(Date)
    start_us: Mapped[int] = mapped_column(BigInteger)
    end_us: Mapped[int] = mapped_column(BigInteger)
    presence_us: Mapped[int] = mapped_column(BigInteger)
    devices: Mapped[int] = mapped_column(Integer, default=1)
    __table_args__ = (
        Index("ix_visits_hotspot_start", "hotspot_id", "start_us"),
        Index("ix_visits_device_day", "device_id", "day"),
        Index("ix_visits_hotspot_device_day", "hotspot_id", "device_id", "day"),
    )


class DirtyDeviceDay(Base):
    """Queue: a device-day whose credited spans must be rebuilt from its pings.

    `seq` grows on every enqueue; a worker deletes the row only if `seq` is unchanged,
    so a ping committed while the day was being rebuilt is never forgotten.
    """

    __tablename__ = "dirty_device_days"
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=1)


class DirtyHotSpotDay(Base):
    """Queue: a hot spot-day whose figures must be rebuilt from credited spans."""

    __tablename__ = "dirty_hotspot_days"
    hotspot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=1)


class AuditEvent(Base):
    """Who did what, when: reviews, plans, assignments and views of officers' tracks."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class User(Base):
    """Someone who logs in to the web app: admin, supervisor, assurance lead or officer."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    officer_id: Mapped[str | None] = mapped_column(ForeignKey("officers.id"))
    agency: Mapped[str | None] = mapped_column(String(200))  # a partner's organisation
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_login: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser session; its id is in the session cookie, and it stays valid
    only until it ends (signing out, or the user disabled)."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token an admin issued for a BI tool; only its SHA-256 is stored. Tokens
    issued before scopes existed keep the full rights they had (server default)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_used: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
    # "read": figures only (GET); "full": everything the user's role may do.
    scope: Mapped[str] = mapped_column(String(8), default="read", server_default="full")
    expires_at: Mapped[datetime | None]  # none: until revoked
