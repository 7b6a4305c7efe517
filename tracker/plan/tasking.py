"""Tasking: where to patrol now (docs/tasking.md).

At one moment `at` (now, or a moment looked back on) each hot spot of the current operation
gets the figures a sergeant needs to choose where the next patrol goes, and a rank:

- when presence there last ended, and how long ago;
- whether presence counts towards the plan now: a patrol window is open (on a day of a
  phase without windows the whole day is patrol time, as for compliance's longest gap),
  when that stretch ends and when the next one opens;
- the presence minutes still needed to meet the target of the plan day in progress,
  counted as tracker.plan.compliance counts them (a window belongs to the day it opens on,
  so at 01:00 inside Friday's 18:00-02:00 window the day in progress is Friday);
- whether today's maximum, or this week's so far, is already reached.

Only presence up to `at` counts. The credited spans from the earliest plan day in progress
(today, or yesterday while a window opened then is open) are cut at `at` and their presence
worked out as the dosage engine does, so their figures are those the stored tables would
hold had the data stopped at `at`; earlier days are read from `daily_dosage`.

Ranking (`ranking_key`): over the maximum last; then window open before closed; then the
most minutes short; then the longest since presence, never first; then the hot spot id.

For an officer the list can also give the distance from their own latest position (the last
usable ping, up to `at`, of a device while assigned to them) to each hot spot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import shapely
from shapely.ops import nearest_points
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from tracker.dosage.engine import (
    DATE,
    HOTSPOT_ID,
    DosageParams,
    great_circle_km,
    presence_from_spans,
    rounded_minutes,
)
from tracker.dosage.patrols import OFFICER_ID, assignments_frame, spans_in_period
from tracker.dosage.store import stored_hot_spots
from tracker.foundation.clock import (
    US_PER_S,
    instant_us,
    local_date,
    local_days_us,
    local_midnight_us,
)
from tracker.foundation.models import DailyDosage, HotSpotRow, PingRow
from tracker.foundation.parsing import check_day, shortened
from tracker.plan.compliance import cached_grid
from tracker.plan.models import Operation
from tracker.plan.storage import find_operation, stored_plan
from tracker.plan.targets import HOURS_AFTER_OPENING, Phase, Plan, PlanError

NO_PLAN = "targets need a plan (none is loaded)"


@dataclass(frozen=True)
class Need:
    """One hot spot's figures at a moment, before ranking; instants in UTC microseconds."""

    hotspot_id: str
    hotspot_name: str
    last_presence_end_us: int | None  # None: no presence on record up to the moment
    minutes_since_presence: float | None
    window_open: bool  # presence counts towards the plan now
    window_end_us: int | None  # when the open stretch of patrol time ends
    next_window_start_us: int | None  # the next stretch after the moment, None if none
    window: str | None  # the plan's window open now ("Fri-Sat 18:00-02:00"); None all day
    plan_day: date  # the day whose target short_minutes is for
    target_minutes: float  # that day's presence target, 0 without one
    counted_minutes: float  # presence counted towards it up to the moment
    short_minutes: float
    day_max_minutes: float | None  # today's maximum (whole local day), None without one
    day_presence_minutes: float
    week_max_minutes: float | None  # the maxima of this week's days so far, added up
    week_presence_minutes: float
    has_plan: bool

    @property
    def over_max_today(self) -> bool:
        return self.day_max_minutes is not None and self.day_presence_minutes >= (
            self.day_max_minutes
        )

    @property
    def over_max_week(self) -> bool:
        return self.week_max_minutes is not None and self.week_presence_minutes >= (
            self.week_max_minutes
        )

    @property
    def over_max(self) -> bool:
        """Today's or this week's maximum is reached: more presence would exceed it."""
        return self.over_max_today or self.over_max_week


@dataclass(frozen=True)
class TaskingItem:
    """A ranked hot spot (rank 1 = most needed) and the sentence that says why."""

    need: Need
    rank: int
    reason: str

    def to_json(self, zone: ZoneInfo) -> dict[str, Any]:
        """Return the item as the API gives it (instants ISO 8601 in the operation's zone)."""
        need = self.need
        return {
            "hotspot_id": need.hotspot_id,
            "hotspot_name": need.hotspot_name,
            "rank": self.rank,
            "last_presence_end": _iso(need.last_presence_end_us, zone),
            "minutes_since_presence": need.minutes_since_presence,
            "window_open": need.window_open,
            "window_end": _iso(need.window_end_us, zone),
            "next_window_start": _iso(need.next_window_start_us, zone),
            "target_minutes": need.target_minutes,
            "counted_minutes": need.counted_minutes,
            "short_minutes": need.short_minutes,
            "over_max": need.over_max,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Position:
    """Where an officer's device last reported, up to a moment (degrees, UTC microseconds)."""

    lat: float
    lon: float
    t_us: int


@dataclass(frozen=True)
class Tasking:
    """The ranked list at one moment, and the operation whose plan it follows."""

    at: datetime  # aware, in the operation's time zone
    operation: str | None  # None before any plan is loaded
    items: list[TaskingItem]
    position: Position | None = None  # the officer's, when asked for one
    distances_m: dict[str, int] | None = None  # from it to each hot spot (0 inside)

    @property
    def position_local(self) -> datetime | None:
        """When the position was reported, in the operation's time zone."""
        if self.position is None:
            return None
        return datetime.fromtimestamp(self.position.t_us / US_PER_S, tz=self.at.tzinfo)

    def to_json(self) -> list[dict[str, Any]]:
        """Return the items as the API gives them; with a position, each also has
        `distance_m` and `position_time` (the ping it is measured from)."""
        zone = self.at.tzinfo
        assert isinstance(zone, ZoneInfo)
        items = [item.to_json(zone) for item in self.items]
        if self.position is not None and self.distances_m is not None:
            for item in items:
                item["distance_m"] = self.distances_m.get(item["hotspot_id"])
                item["position_time"] = _iso(self.position.t_us, zone)
        return items


def parse_moment(text: str) -> datetime:
    """Return an ISO 8601 time with a UTC offset, within 1970-2099, or raise ValueError."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a time as ISO 8601 with a UTC offset, such as "
            f"2026-10-25T01:30:00+01:00, not {shortened(text)}"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{shortened(text)} has no UTC offset and is ambiguous; add 'Z' or '+01:00'"
        )
    check_day(moment.date())
    check_day(moment.astimezone(UTC).date())
    return moment


def ranking_key(need: Need) -> tuple:
    """Sort key, most needed first: over the maximum last; then window open before closed;
    then the most minutes short; then the longest since presence, never visited first."""
    since = math.inf if need.minutes_since_presence is None else need.minutes_since_presence
    return (need.over_max, not need.window_open, -need.short_minutes, -since, need.hotspot_id)


def ranked(needs: list[Need], zone: ZoneInfo, at_us: int) -> list[TaskingItem]:
    """Return the needs in ranking order, numbered from 1, each with its reason."""
    ordered = sorted(needs, key=ranking_key)
    return [
        TaskingItem(need, rank, reason(need, zone, at_us))
        for rank, need in enumerate(ordered, start=1)
    ]


def tasking(
    session: Session,
    params: DosageParams,
    at: datetime | None = None,
    officer_id: str | None = None,
) -> Tasking:
    """Return the ranked tasking list at `at` (default now; aware) for the current operation
    (the one running at `at`, else the latest to start), or for every stored hot spot,
    without targets, before any plan is loaded. With `officer_id`, also the distances from
    that officer's latest position up to `at`, if they have one."""
    moment = at or datetime.now(UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("tasking needs an aware moment, not a naive one")
    at_us = instant_us(moment)
    operation = _operation(session, moment)
    plan = stored_plan(session, operation) if operation else None
    if plan is not None:
        params = replace(params, tz=plan.tz)
        ids = list(plan.hotspot_ids)
    else:
        ids = list(session.scalars(select(HotSpotRow.id).order_by(HotSpotRow.id)))
    zone = params.zone
    today = local_date(at_us, zone)
    names = dict(
        session.execute(select(HotSpotRow.id, HotSpotRow.name).where(HotSpotRow.id.in_(ids))).all()
    )
    hour = datetime.fromtimestamp(at_us / US_PER_S, tz=zone).hour
    plan_days = _plan_days(plan, today, hour) if plan else [today] * len(ids)
    # Spans are read from the earliest plan day in progress (yesterday's while a window
    # opened then is open), and earlier days only for hot spots without presence since.
    first = min(plan_days, default=today)
    recent = _RecentPresence.read(session, ids, first, at_us, params)
    earlier = [h for h in ids if h not in recent.last_end_us]
    last_end = {**_earlier_presence_ends(session, earlier, first, params), **recent.last_end_us}
    monday = today - timedelta(days=today.weekday())
    week = _stored_presence(session, ids, monday, today - timedelta(days=1))
    needs = []
    for row, hotspot_id in enumerate(ids):
        end_us = last_end.get(hotspot_id)
        figures = {
            "hotspot_id": hotspot_id,
            "hotspot_name": names.get(hotspot_id) or hotspot_id,
            "last_presence_end_us": end_us,
            "minutes_since_presence": (
                None if end_us is None else float(rounded_minutes(at_us - end_us))
            ),
            "day_presence_minutes": float(
                rounded_minutes(recent.daily_us.get((hotspot_id, today), 0))
            ),
        }
        if plan is None:
            needs.append(_without_plan(today, figures))
        else:
            needs.append(
                _with_plan(plan, row, plan_days[row], today, at_us, recent, week, figures, zone)
            )
    position = distances = None
    if officer_id is not None:
        position = officer_position(session, officer_id, at_us, params.max_accuracy_m)
    if position is not None:
        distances = hot_spot_distances(session, position, ids)
    return Tasking(
        datetime.fromtimestamp(at_us / US_PER_S, tz=zone),
        operation.name if operation else None,
        ranked(needs, zone, at_us),
        position,
        distances,
    )


def officer_position(
    session: Session, officer_id: str, at_us: int, max_accuracy_m: float
) -> Position | None:
    """Return the officer's latest usable ping up to `at_us`: of a device while it was
    assigned to them (a device handed over reports someone else afterwards); None if none."""
    assignments = assignments_frame(session)
    latest: Position | None = None
    for assignment in assignments[assignments[OFFICER_ID] == officer_id].itertuples():
        found = session.execute(
            select(PingRow.t_us, PingRow.lat, PingRow.lon)
            .where(
                PingRow.device_id == assignment.device_id,
                PingRow.t_us >= assignment.starts_us,
                PingRow.t_us < min(int(assignment.ends_us), at_us + 1),
                or_(PingRow.accuracy_m.is_(None), PingRow.accuracy_m <= max_accuracy_m),
            )
            .order_by(PingRow.t_us.desc())
            .limit(1)
        ).first()
        if found is not None and (latest is None or found.t_us > latest.t_us):
            latest = Position(found.lat, found.lon, found.t_us)
    return latest


def hot_spot_distances(session: Session, position: Position, ids: list[str]) -> dict[str, int]:
    """Return whole metres from a position to the nearest edge of each hot spot (0 inside)."""
    point = shapely.Point(position.lon, position.lat)
    distances = {}
    for hot_spot in stored_hot_spots(session):
        if hot_spot.id not in ids:
            continue
        if hot_spot.geometry.covers(point):
            distances[hot_spot.id] = 0
            continue
        nearest, _ = nearest_points(hot_spot.geometry, point)
        km = great_circle_km(position.lat, position.lon, nearest.y, nearest.x)
        distances[hot_spot.id] = round(float(km) * 1000)
    return distances


def _operation(session: Session, moment: datetime) -> Operation | None:
    try:
        return find_operation(session, now=moment)
    except PlanError:  # no plan loaded yet
        return None


def _longest_span_us(params: DosageParams) -> int:
    # A credited span joins two pings at most max_gap_s apart (docs/dosage.md rule 3); a
    # day's margin also covers spans stored under an earlier, longer max_gap_s.
    return int(max(params.max_gap_s, 86_400) * US_PER_S)


@dataclass(frozen=True)
class _RecentPresence:
    """Presence from a day's local midnight to the moment, spans cut at the moment."""

    last_end_us: dict[str, int]  # per hot spot with presence in those days
    daily_us: dict[tuple[str, date], int]  # (hot spot, local day) -> presence
    hourly_us: dict[tuple[str, date, int], int]  # (hot spot, local day, clock hour) -> presence

    @classmethod
    def read(
        cls, session: Session, ids: list[str], first: date, at_us: int, params: DosageParams
    ) -> _RecentPresence:
        since_us = local_midnight_us(first, params.zone)
        spans = spans_in_period(
            session,
            since_us,
            at_us,
            longest_us=_longest_span_us(params),
            hotspot_ids=ids,
            with_devices=False,
        )
        # Only presence up to the moment counts: a span still running then ends there.
        spans["end_us"] = np.minimum(spans["end_us"].to_numpy(dtype=np.int64), at_us)
        daily, hourly = presence_from_spans(spans, params)
        last_end = spans.groupby(HOTSPOT_ID)["end_us"].max()
        return cls(
            {h: int(t) for h, t in last_end.items()},
            _us_by_key(daily, [HOTSPOT_ID, DATE]),
            _us_by_key(hourly, [HOTSPOT_ID, DATE, "hour"]),
        )


def _us_by_key(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, int]:
    columns = [frame[k].tolist() for k in keys]
    return {
        key: int(us)
        for key, us in zip(zip(*columns, strict=True), frame["presence_us"], strict=True)
    }


def _earlier_presence_ends(
    session: Session, ids: list[str], before: date, params: DosageParams
) -> dict[str, int]:
    """Return when presence last ended on a day before `before`, per hot spot with any: the
    latest such day from `daily_dosage`, then the latest end of its credited spans."""
    if not ids:
        return {}
    latest_days = session.execute(
        select(DailyDosage.hotspot_id, func.max(DailyDosage.day))
        .where(
            DailyDosage.hotspot_id.in_(ids),
            DailyDosage.day < before,
            DailyDosage.presence_us > 0,
        )
        .group_by(DailyDosage.hotspot_id)
    ).all()
    ends = {}
    for hotspot_id, day in latest_days:
        start_us, end_us = local_days_us(day, day, params.zone)
        spans = spans_in_period(
            session, start_us, end_us, hotspot_id, longest_us=_longest_span_us(params)
        )
        if len(spans):
            ends[hotspot_id] = int(spans["end_us"].max())
    return ends


def _stored_presence(
    session: Session, ids: list[str], first: date, last: date
) -> dict[tuple[str, date], int]:
    """Return the stored presence of whole local days first..last, per (hot spot, day)."""
    if last < first:
        return {}
    rows = session.execute(
        select(DailyDosage.hotspot_id, DailyDosage.day, DailyDosage.presence_us).where(
            DailyDosage.hotspot_id.in_(ids), DailyDosage.day.between(first, last)
        )
    ).all()
    return {(h, d): int(us) for h, d, us in rows}


def _without_plan(today: date, figures: dict[str, Any]) -> Need:
    return Need(
        window_open=False,
        window_end_us=None,
        next_window_start_us=None,
        window=None,
        plan_day=today,
        target_minutes=0.0,
        counted_minutes=0.0,
        short_minutes=0.0,
        day_max_minutes=None,
        week_max_minutes=None,
        week_presence_minutes=0.0,
        has_plan=False,
        **figures,
    )


def _phase_on(plan: Plan, hotspot_id: str, day: date) -> Phase | None:
    return next(
        (p for p in plan.phases if p.hotspot_id == hotspot_id and p.starts <= day <= p.ends),
        None,
    )


def _plan_days(plan: Plan, today: date, hour: int) -> list[date]:
    """Return each hot spot's plan day in progress at this clock hour of today: the day
    that owns the hour (a window opened yesterday and still open owns it), else today."""
    grid = cached_grid(plan, plan.hotspot_ids)
    n = len(plan.hotspot_ids)
    owners, _, _ = grid.owner(np.arange(n), np.full(n, today.toordinal()), np.full(n, hour))
    return [date.fromordinal(int(o)) if o >= 0 else today for o in owners]


def _with_plan(
    plan: Plan,
    row: int,
    plan_day: date,
    today: date,
    at_us: int,
    recent: _RecentPresence,
    week: dict[tuple[str, date], int],
    figures: dict[str, Any],
    zone: ZoneInfo,
) -> Need:
    """Return one hot spot's need under the plan (row: its index in plan.hotspot_ids) on
    its plan day in progress."""
    hotspot_id = figures["hotspot_id"]
    grid = cached_grid(plan, plan.hotspot_ids)
    hour = datetime.fromtimestamp(at_us / US_PER_S, tz=zone).hour
    monday = today - timedelta(days=today.weekday())
    phase = _phase_on(plan, hotspot_id, plan_day)
    has_target = phase is not None and plan_day.weekday() in phase.target_weekdays()
    target = round(phase.presence_target_minutes(), 2) if has_target else 0.0
    counted = 0.0
    if has_target:
        # The clock hours from the plan day's midnight, 48 on, that count for it.
        offsets = np.arange(HOURS_AFTER_OPENING)
        days = plan_day.toordinal() + offsets // 24
        hours = offsets % 24
        owners, _, _ = grid.owner(np.full(len(offsets), row), days, hours)
        counted_us = sum(
            recent.hourly_us.get((hotspot_id, date.fromordinal(int(d)), int(h)), 0)
            for d, h, o in zip(days, hours, owners, strict=True)
            if o == plan_day.toordinal()
        )
        counted = float(rounded_minutes(counted_us))

    # Patrol time from yesterday's windows (which may run past midnight) on.
    intervals = grid.patrol_intervals(row, today.toordinal() - 1, grid.last)
    starts, ends = intervals[:, 0], intervals[:, 1]
    k = int(np.searchsorted(starts, at_us, side="right")) - 1
    window_open = k >= 0 and at_us < ends[k]
    window = None
    if window_open and phase is not None:
        offset = (today - plan_day).days * 24 + hour
        window = next(
            (
                w.text()
                for w in phase.windows
                if plan_day.weekday() in w.weekdays and offset in w.offsets()
            ),
            None,
        )

    today_phase = _phase_on(plan, hotspot_id, today)
    day_max = today_phase.max_presence_minutes_per_day if today_phase else None
    week_max: float | None = None
    week_us = 0
    for n in range((today - monday).days + 1):
        day = monday + timedelta(days=n)
        day_phase = _phase_on(plan, hotspot_id, day)
        if day_phase is None or day_phase.max_presence_minutes_per_day is None:
            continue  # a day without a maximum neither adds to the week's nor counts
        week_max = (week_max or 0.0) + day_phase.max_presence_minutes_per_day
        week_us += (recent.daily_us if day == today else week).get((hotspot_id, day), 0)
    return Need(
        window_open=bool(window_open),
        window_end_us=int(ends[k]) if window_open else None,
        next_window_start_us=int(starts[k + 1]) if k + 1 < len(starts) else None,
        window=window,
        plan_day=plan_day,
        target_minutes=target,
        counted_minutes=counted,
        short_minutes=round(max(target - counted, 0.0), 2),
        day_max_minutes=day_max,
        week_max_minutes=week_max,
        week_presence_minutes=float(rounded_minutes(week_us)),
        has_plan=True,
        **figures,
    )


def _iso(t_us: int | None, zone: ZoneInfo) -> str | None:
    if t_us is None:
        return None
    return datetime.fromtimestamp(t_us / US_PER_S, tz=zone).isoformat()


# --- the sentence a person reads ----------------------------------------------------------


def duration_text(minutes: float) -> str:
    """Return whole minutes as "40 min", "5 h 40 min" or "3 days 2 h"."""
    whole = int(minutes)
    if whole < 60:
        return f"{whole} min"
    hours, rest = divmod(whole, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


def distance_text(metres: int) -> str:
    """Return a distance as "850 m" or "1.2 km" (tenths rounded half up, as tasking.js)."""
    if metres < 1000:
        return f"{metres} m"
    tenths = (metres + 50) // 100
    return f"{tenths // 10}.{tenths % 10} km"


def _when(t_us: int, zone: ZoneInfo, at_us: int) -> str:
    """Return a local time as "18:00" today, "Sat 18:00" within a week, else with the date."""
    moment = datetime.fromtimestamp(t_us / US_PER_S, tz=zone)
    today = local_date(at_us, zone)
    if moment.date() == today:
        return moment.strftime("%H:%M")
    if moment.date() - today < timedelta(days=7):
        return moment.strftime("%a %H:%M")
    return moment.strftime("%a %d %b %Y %H:%M")


def _minutes(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def reason(need: Need, zone: ZoneInfo, at_us: int) -> str:
    """Return one sentence on the need, e.g. "no presence for 5 h 40 min; Fri-Sat
    18:00-02:00 window open until 02:00; 42 min short tonight"."""
    if need.minutes_since_presence is None:
        parts = ["no presence on record"]
    elif need.minutes_since_presence < 1:
        parts = ["presence in the last minute"]
    else:
        parts = [f"no presence for {duration_text(need.minutes_since_presence)}"]
    if not need.has_plan:
        parts.append(NO_PLAN)
        return "; ".join(parts)
    if need.window_open and need.window is None:
        parts.append("no windows: patrol time all day")
    elif need.window_open and need.window_end_us is not None:
        parts.append(f"{need.window} window open until {_when(need.window_end_us, zone, at_us)}")
    elif need.next_window_start_us is not None:
        parts.append(f"window opens {_when(need.next_window_start_us, zone, at_us)}")
    else:
        parts.append("no window left in the operation")
    when = "today" if need.plan_day == local_date(at_us, zone) else "tonight"
    if need.target_minutes <= 0:
        parts.append("no target today")
    elif need.short_minutes > 0:
        parts.append(f"{math.ceil(need.short_minutes)} min short {when}")
    else:
        parts.append(f"target met {when} ({_minutes(need.target_minutes)} min)")
    if need.over_max_today:
        parts.append(
            f"today's maximum of {_minutes(need.day_max_minutes or 0)} min reached: send no one"
        )
    elif need.over_max_week:
        parts.append(
            f"this week's maximum reached ({_minutes(need.week_presence_minutes)} of "
            f"{_minutes(need.week_max_minutes or 0)} min since Monday): send no one"
        )
    return "; ".join(parts)
