"""Time: instants as integer microseconds in UTC, days as local dates of one time zone.

Everything is stored in UTC; local time is only for display and for day boundaries, which
follow the operation's time zone (a DST day has 23 or 25 hours).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

US_PER_S = 1_000_000
US_PER_MINUTE = 60 * US_PER_S
US_PER_HOUR = 3600 * US_PER_S
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instant_us(moment: datetime) -> int:
    """Return an aware datetime as integer microseconds since the epoch (UTC)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def local_midnight_us(day: date, zone: ZoneInfo) -> int:
    """Return the UTC instant (microseconds) at which a local day begins."""
    return instant_us(datetime.combine(day, time(0), tzinfo=zone))


def local_days_us(first: date, last: date, zone: ZoneInfo) -> tuple[int, int]:
    """Return the UTC microsecond bounds [start of `first`, end of `last`) of local days."""
    return local_midnight_us(first, zone), local_midnight_us(last + timedelta(days=1), zone)


def local_date(t_us: int, zone: ZoneInfo) -> date:
    """Return the local date of an instant given in UTC microseconds."""
    return datetime.fromtimestamp(t_us / US_PER_S, tz=zone).date()


def local_day(moment: datetime, tz: str | ZoneInfo) -> date:
    """Return the local date of an aware datetime in a time zone (an IANA name or a zone)."""
    return moment.astimezone(tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)).date()


def local_today(tz: str | ZoneInfo, now: datetime | None = None) -> date:
    """Return today's date in a time zone (`now` for a fixed clock)."""
    return local_day(now or datetime.now(UTC), tz)
