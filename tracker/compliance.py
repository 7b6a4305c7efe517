"""Plan compliance from the stored aggregates (DESIGN section 6; section 5, rule 7).

Reads `daily_dosage`, `hourly_presence` and the hot spot rows of `visits` (device_id ''),
never pings. The rules, per hot spot and local day D of the operation up to the reference
date (see tracker.plan for the layering of targets and the meaning of windows):

- Presence counted towards the target: without windows, the day's presence (less any hour
  a window of D-1 claimed after midnight); with windows, the presence of the hours of the
  windows that open on D, including those after midnight (from `hourly_presence`). An hour
  is counted once: a window still open from the day before has it first.
- Qualifying visits: hot spot visits of at least the phase's `min_visit_minutes`, on the
  day they start, or, with windows, on the day of the window they start in.
- Targets: the phase's presence target on each day that has one; visits_per_day likewise.
  Days no phase covers have no target, and nothing counts towards one on them.
- Over-max: the day's whole presence exceeds the phase's max_presence_minutes_per_day.
- Compliance is actual / target of the figures as shown (minutes to 2 decimals), to
  4 decimals, so anyone dividing the shown columns gets the shown ratio; NaN without target.

Every table the web pages, exports and API show comes from the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.dosage import HOTSPOT_ID, US_PER_MINUTE, US_PER_S, rounded_minutes
from tracker.models import DailyDosage, HotSpotRow, HourlyPresence, Visit
from tracker.plan import HOURS_AFTER_OPENING, Plan, PlanError, local_today, stored_plan
from tracker.plan_models import Operation

US_PER_HOUR = 3600 * US_PER_S
GREEN, AMBER, RED, NO_TARGET = "green", "amber", "red", "none"
UP, DOWN, FLAT = "up", "down", "flat"
PERIODS = ("day", "week", "previous_week", "month", "operation")

# Figures shared by the daily and the period tables, in this order.
FIGURE_COLUMNS = [
    "presence_minutes",  # all presence (DESIGN 5), whole local days
    "officer_minutes",
    "visits",  # visits of DESIGN 5 (at least min_visit_s)
    "counted_presence_minutes",  # presence that counts towards the target (windows applied)
    "target_presence_minutes",
    "presence_compliance",  # counted / target, NaN without a target
    "presence_status",  # green, amber, red, or none without a target
    "qualifying_visits",  # visits of at least min_visit_minutes (in the windows, if any)
    "target_visits",
    "visits_compliance",
    "visits_status",
]
DAILY_COMPLIANCE_COLUMNS = [HOTSPOT_ID, "hotspot_name", "date", "operation_day",
                            *FIGURE_COLUMNS, "max_presence_minutes_per_day", "over_max"]
COMPLIANCE_COLUMNS = [
    HOTSPOT_ID, "hotspot_name", "period", "period_start", "period_end",
    "days",  # days of the period in the operation, up to the reference date
    *FIGURE_COLUMNS,
    "days_over_max", "over_max",  # days whose presence exceeded the phase's maximum
    "longest_gap_hours",  # longest patrol time between consecutive visits in the period
    "days_since_last_visit",  # per hot spot (repeated on each period's row)
    "trend",  # per hot spot: this week's presence compliance against last week's
]
CUMULATIVE_COLUMNS = ["date", "operation_day", "counted_presence_minutes",
                      "target_presence_minutes", "cumulative_presence_minutes",
                      "cumulative_target_presence_minutes", "cumulative_compliance"]
OVERVIEW_PERIODS = ("day", "week", "operation")
OVERVIEW_COLUMNS = [HOTSPOT_ID, "hotspot_name",
                    *(f"{p}_{c}" for p in OVERVIEW_PERIODS
                      for c in ("presence_compliance", "presence_status")),
                    "week_over_max", "week_longest_gap_hours", "days_since_last_visit", "trend"]


@dataclass(frozen=True)
class RagThresholds:
    """Compliance at or above `green` is green, at or above `amber` amber, else red."""

    green: float = 0.9
    amber: float = 0.6
    trend_tolerance: float = 0.05  # a change of compliance within this is "flat"

    def __post_init__(self) -> None:
        if not 0 <= self.amber <= self.green:
            raise ValueError(f"thresholds need 0 <= amber <= green, not amber {self.amber} "
                             f"and green {self.green}")
        if self.trend_tolerance < 0:
            raise ValueError(f"trend_tolerance must be >= 0, not {self.trend_tolerance}")


def rag_status(compliance, thresholds: RagThresholds) -> np.ndarray:
    """Return green/amber/red per compliance value, and none where it is NaN."""
    ratio = np.asarray(compliance, dtype=float)
    status = np.where(ratio >= thresholds.green, GREEN,
                      np.where(ratio >= thresholds.amber, AMBER, RED)).astype(object)
    status[np.isnan(ratio)] = NO_TARGET
    return status


def compliance_ratio(actual, target) -> np.ndarray:
    """Return actual / target to 4 decimals, NaN where the target is 0."""
    actual = np.asarray(actual, dtype=float)
    target = np.asarray(target, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(target > 0, np.round(actual / target, 4), np.nan)


def _weekday(ordinal):
    return (ordinal + 6) % 7  # date.fromordinal(1) is a Monday


class _Grid:
    """The plan laid out per hot spot and day, with each phase's figures as arrays.

    Phase index -1 (no phase) selects the last row of each array: no hours, no target.
    """

    def __init__(self, plan: Plan, hotspot_ids: list[str]) -> None:
        self.zone = ZoneInfo(plan.tz)
        self.hotspot_ids = hotspot_ids
        self.first = plan.start_date.toordinal()
        self.last = plan.end_date.toordinal()
        self.lo = self.first - 1  # room for the day before and after the operation
        width = self.last - self.first + 3
        row = {h: i for i, h in enumerate(hotspot_ids)}
        phases = [p for p in plan.phases if p.hotspot_id in row]
        self.phase_at = np.full((len(hotspot_ids), width), -1, dtype=np.int64)
        for index, phase in enumerate(phases):
            self.phase_at[row[phase.hotspot_id],
                          phase.starts.toordinal() - self.lo:phase.ends.toordinal() - self.lo + 1
                          ] = index
        none = np.zeros((1, 7, HOURS_AFTER_OPENING), dtype=bool)
        self.hours = np.concatenate([*(p.window_hours()[None] for p in phases), none])
        self.target_weekday = np.zeros((len(phases) + 1, 7), dtype=bool)
        for index, phase in enumerate(phases):
            self.target_weekday[index, list(phase.target_weekdays())] = True
        self.has_windows = np.array([bool(p.windows) for p in phases] + [False])
        self.target_minutes = np.array([p.presence_target_minutes() for p in phases] + [0.0])
        self.visits_per_day = np.array(
            [np.nan if p.visits_per_day is None else p.visits_per_day for p in phases]
            + [np.nan])
        self.min_visit_us = np.array([round(p.min_visit_minutes * US_PER_MINUTE)
                                      for p in phases] + [0], dtype=np.int64)
        self.max_minutes = np.array(
            [np.nan if p.max_presence_minutes_per_day is None
             else p.max_presence_minutes_per_day for p in phases] + [np.nan])
        self.runs = [[_runs(self.hours[p, weekday]) for weekday in range(7)]
                     for p in range(len(phases) + 1)]
        self._patrol: dict[int, np.ndarray] = {}

    def phase(self, hotspot: np.ndarray, ordinal: np.ndarray) -> np.ndarray:
        column = ordinal - self.lo
        inside = (column >= 0) & (column < self.phase_at.shape[1])
        return np.where(inside, self.phase_at[hotspot, np.where(inside, column, 0)], -1)

    def owner(self, hotspot: np.ndarray, ordinal: np.ndarray,
              hour: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return, per local clock hour, the day it counts for, that day's phase, and
        whether a window of the day before claimed it (day -1 when nothing claims it)."""
        before = self.phase(hotspot, ordinal - 1)
        own = self.phase(hotspot, ordinal)
        by_before = self.hours[before, _weekday(ordinal - 1), hour + 24]
        by_own = self.hours[own, _weekday(ordinal), hour]
        day = np.where(by_before, ordinal - 1, np.where(by_own, ordinal, -1))
        phase = np.where(by_before, before, np.where(by_own, own, -1))
        return day, phase, by_before

    def patrol_intervals(self, hotspot: int, first: int, last: int) -> np.ndarray:
        """Return merged [start_us, end_us) rows of the patrol time of days first..last:
        the windows opening on those days, or the whole day in a phase without windows."""
        by_day = self._patrol_by_day(hotspot)
        chosen = by_day[(by_day[:, 0] >= first) & (by_day[:, 0] <= last), 1:]
        return _merged(chosen)

    def _patrol_by_day(self, hotspot: int) -> np.ndarray:
        """Return [day ordinal, start_us, end_us) rows of every day of the operation."""
        if hotspot not in self._patrol:
            bounds = [(ordinal, _local_us(ordinal, start, self.zone),
                       _local_us(ordinal, end, self.zone))
                      for ordinal in range(self.first, self.last + 1)
                      for start, end in self.runs[self.phase_at[hotspot, ordinal - self.lo]][
                          _weekday(ordinal)]]
            self._patrol[hotspot] = np.array(bounds, dtype=np.int64).reshape(-1, 3)
        return self._patrol[hotspot]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


@lru_cache(maxsize=100_000)
def _local_us(ordinal: int, hour_after_midnight: int, zone: ZoneInfo) -> int:
    """Return the UTC instant of a local clock hour counted from a day's midnight."""
    day = date.fromordinal(ordinal + hour_after_midnight // 24)
    moment = datetime.combine(day, time(hour_after_midnight % 24), tzinfo=zone)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1)


def _merged(intervals: np.ndarray) -> np.ndarray:
    if not len(intervals):
        return intervals
    intervals = intervals[np.argsort(intervals[:, 0], kind="stable")]
    reach = np.maximum.accumulate(intervals[:, 1])
    new = np.concatenate([[True], intervals[1:, 0] > reach[:-1]])
    starts = intervals[new, 0]
    ends = np.maximum.reduceat(intervals[:, 1], np.flatnonzero(new))
    return np.column_stack([starts, ends])


def _time_before(t_us: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Return the length of the intervals (merged, sorted) before each instant."""
    if not len(intervals):
        return np.zeros(len(t_us), dtype=np.int64)
    starts, ends = intervals[:, 0], intervals[:, 1]
    done = np.concatenate([[0], np.cumsum(ends - starts)])
    k = np.searchsorted(starts, t_us, side="right") - 1
    inside = np.clip(t_us - starts[np.maximum(k, 0)], 0, (ends - starts)[np.maximum(k, 0)])
    return np.where(k < 0, 0, done[np.maximum(k, 0)] + inside)


@dataclass
class _Days:
    """Per hot spot and day of the operation up to the reference date, exact sums in µs."""

    grid: _Grid
    frame: pd.DataFrame  # hotspot (row of grid), ordinal and the _us / target columns
    visits: pd.DataFrame  # hot spot visits up to the reference date: hotspot, start_us, end_us
    names: dict[str, str]


@dataclass(frozen=True)
class _Cells:
    """Flat (hot spot row, day) cells of the days first..last, for summing into arrays."""

    first: int
    last: int
    n_hotspots: int

    @property
    def n_days(self) -> int:
        return max(self.last - self.first + 1, 0)

    def dates(self, low: int, high: int) -> tuple[date, date]:
        return date.fromordinal(low), date.fromordinal(high)

    def sum(self, row: np.ndarray, ordinal: np.ndarray, values) -> np.ndarray:
        """Return the values summed per cell; those outside first..last are left out."""
        total = np.zeros(self.n_hotspots * self.n_days, dtype=np.int64)
        inside = (ordinal >= self.first) & (ordinal <= self.last)
        np.add.at(total, row[inside] * self.n_days + ordinal[inside] - self.first,
                  np.broadcast_to(values, row.shape)[inside])
        return total


def _load_days(session: Session, operation: Operation, reference: date,
               hotspot_ids: list[str] | None = None) -> _Days:
    plan = stored_plan(session, operation)
    ids = [h for h in plan.hotspot_ids if hotspot_ids is None or h in hotspot_ids]
    grid = _Grid(plan, ids)
    cells = _Cells(grid.first, min(reference.toordinal(), grid.last), len(ids))
    row_of = {h: i for i, h in enumerate(ids)}
    hotspot = np.repeat(np.arange(len(ids)), cells.n_days)
    ordinal = np.tile(np.arange(cells.first, cells.first + cells.n_days), len(ids))

    daily = _frame(session, select(
        DailyDosage.hotspot_id, DailyDosage.day, DailyDosage.presence_us,
        DailyDosage.officer_us, DailyDosage.visits,
    ).where(DailyDosage.hotspot_id.in_(ids),
            DailyDosage.day.between(*cells.dates(cells.first, cells.last))))
    d_row = daily["hotspot_id"].map(row_of).to_numpy(dtype=np.int64)
    d_day = _ordinals(daily["day"])
    presence_us, officer_us, visit_count = (
        cells.sum(d_row, d_day, daily[c].to_numpy(dtype=np.int64))
        for c in ("presence_us", "officer_us", "visits"))

    # Only windows make an hour count for another day, or not at all.
    windowed = sorted({p.hotspot_id for p in plan.phases if p.windows and p.hotspot_id in row_of})
    hourly = _frame(session, select(
        HourlyPresence.hotspot_id, HourlyPresence.day, HourlyPresence.hour,
        HourlyPresence.presence_us,
    ).where(HourlyPresence.hotspot_id.in_(windowed),
            HourlyPresence.day.between(*cells.dates(cells.first, cells.last + 1))))
    h_row = hourly["hotspot_id"].map(row_of).to_numpy(dtype=np.int64)
    h_day = _ordinals(hourly["day"])
    h_presence = hourly["presence_us"].to_numpy(dtype=np.int64)
    owner, _, by_before = grid.owner(h_row, h_day, hourly["hour"].to_numpy(dtype=np.int64))
    owned_us = cells.sum(h_row, owner, h_presence)
    claimed_us = cells.sum(h_row[by_before], h_day[by_before], h_presence[by_before])

    stored_visits = _frame(session, select(
        Visit.hotspot_id, Visit.start_us, Visit.end_us, Visit.presence_us,
    ).where(Visit.device_id == "", Visit.hotspot_id.in_(ids),
            Visit.day.between(*cells.dates(cells.first - 1, cells.last + 1))))
    v_row = stored_visits["hotspot_id"].map(row_of).to_numpy(dtype=np.int64)
    v_start = stored_visits["start_us"].to_numpy(dtype=np.int64)
    local = pd.to_datetime(v_start, unit="us", utc=True).tz_convert(grid.zone)
    v_day = np.array([d.toordinal() for d in local.date], dtype=np.int64)
    owner, v_phase, _ = grid.owner(v_row, v_day, np.asarray(local.hour, dtype=np.int64))
    qualifies = (v_phase >= 0) & grid.target_weekday[v_phase, _weekday(owner)] & (
        stored_visits["presence_us"].to_numpy(dtype=np.int64) >= grid.min_visit_us[v_phase])
    qualifying = cells.sum(v_row[qualifies], owner[qualifies], 1)
    known = v_day <= reference.toordinal()
    visits = pd.DataFrame({
        "hotspot": v_row[known], "start_us": v_start[known],
        "end_us": stored_visits["end_us"].to_numpy(dtype=np.int64)[known],
    }).sort_values(["hotspot", "start_us"], kind="stable")

    phase = grid.phase(hotspot, ordinal)
    target_day = grid.target_weekday[phase, _weekday(ordinal)]
    counted_us = np.where(grid.has_windows[phase], owned_us,
                          np.maximum(presence_us - claimed_us, 0))
    max_minutes = grid.max_minutes[phase]
    frame = pd.DataFrame({
        "hotspot": hotspot,
        "ordinal": ordinal,
        "presence_us": presence_us,
        "officer_us": officer_us,
        "visits": visit_count,
        "counted_presence_us": np.where(target_day, counted_us, 0),
        "target_presence_minutes": np.where(target_day, grid.target_minutes[phase], 0.0),
        "qualifying_visits": qualifying,
        "target_visits": np.where(target_day, np.nan_to_num(grid.visits_per_day[phase]), 0.0),
        "max_presence_minutes_per_day": max_minutes,
        "over_max": presence_us > np.nan_to_num(max_minutes, nan=np.inf) * US_PER_MINUTE,
    })
    names = dict(session.execute(select(HotSpotRow.id, HotSpotRow.name)
                                 .where(HotSpotRow.id.in_(ids))).all())
    return _Days(grid, frame, visits, names)


def _frame(session: Session, statement) -> pd.DataFrame:
    """Return the rows of a Core select as columns (a year of hourly rows is ~200 000)."""
    result = session.connection().execute(statement)
    names = list(result.keys())
    columns = list(zip(*result.all(), strict=True)) or [()] * len(names)
    return pd.DataFrame(dict(zip(names, columns, strict=True)))


def _ordinals(days: pd.Series) -> np.ndarray:
    return np.array([d.toordinal() for d in days], dtype=np.int64)


def _figures(frame: pd.DataFrame, thresholds: RagThresholds) -> pd.DataFrame:
    """Turn summed _us columns into FIGURE_COLUMNS (minutes to 2 decimals, ratios, RAG)."""
    counted = rounded_minutes(frame["counted_presence_us"].to_numpy())
    target = np.round(frame["target_presence_minutes"].to_numpy(dtype=float), 2)
    target_visits = np.round(frame["target_visits"].to_numpy(dtype=float), 2)
    presence_compliance = compliance_ratio(counted, target)
    visits_compliance = compliance_ratio(frame["qualifying_visits"], target_visits)
    return pd.DataFrame({
        "presence_minutes": rounded_minutes(frame["presence_us"].to_numpy()),
        "officer_minutes": rounded_minutes(frame["officer_us"].to_numpy()),
        "visits": frame["visits"].to_numpy(dtype=np.int64),
        "counted_presence_minutes": counted,
        "target_presence_minutes": target,
        "presence_compliance": presence_compliance,
        "presence_status": rag_status(presence_compliance, thresholds),
        "qualifying_visits": frame["qualifying_visits"].to_numpy(dtype=np.int64),
        "target_visits": target_visits,
        "visits_compliance": visits_compliance,
        "visits_status": rag_status(visits_compliance, thresholds),
    }, index=frame.index, columns=FIGURE_COLUMNS)


def daily_compliance(session: Session, operation: Operation, reference_date: date | None = None,
                     hotspot_ids: list[str] | None = None,
                     thresholds: RagThresholds | None = None) -> pd.DataFrame:
    """Return DAILY_COMPLIANCE_COLUMNS per hot spot and day from the start to the reference
    date (default: today in the operation's time zone), sorted by hot spot then date."""
    days = _load_days(session, operation, reference_date or local_today(operation), hotspot_ids)
    frame = days.frame
    ids = np.array(days.grid.hotspot_ids, dtype=object)
    dates = [date.fromordinal(int(o)) for o in frame["ordinal"]]
    hotspot_ids = ids[frame["hotspot"].to_numpy()]
    table = pd.DataFrame({
        HOTSPOT_ID: hotspot_ids,
        "hotspot_name": [days.names.get(h, "") for h in hotspot_ids],
        "date": pd.Series(dates, dtype=object),
        "operation_day": frame["ordinal"].to_numpy() - days.grid.first + 1,
    })
    figures = _figures(frame, thresholds or RagThresholds())
    table = pd.concat([table, figures], axis=1)
    table["max_presence_minutes_per_day"] = frame["max_presence_minutes_per_day"]
    table["over_max"] = frame["over_max"].astype(bool)
    return table[DAILY_COMPLIANCE_COLUMNS].reset_index(drop=True)


def period_bounds(operation: Operation, reference: date) -> dict[str, tuple[date, date]]:
    """Return each period's first and last day: within the operation, up to the reference."""
    monday = reference - timedelta(days=reference.weekday())
    next_month = (reference.replace(day=1) + timedelta(days=32)).replace(day=1)
    calendar = {
        "day": (reference, reference),
        "week": (monday, monday + timedelta(days=6)),
        "previous_week": (monday - timedelta(days=7), monday - timedelta(days=1)),
        "month": (reference.replace(day=1), next_month - timedelta(days=1)),
        "operation": (operation.start_date, operation.end_date),
    }
    return {name: (max(first, operation.start_date), min(last, operation.end_date, reference))
            for name, (first, last) in calendar.items()}


SUMMED = ["presence_us", "officer_us", "visits", "counted_presence_us",
          "target_presence_minutes", "qualifying_visits", "target_visits", "over_max"]


def compliance_table(session: Session, operation: Operation, reference_date: date | None = None,
                     thresholds: RagThresholds | None = None) -> pd.DataFrame:
    """Return COMPLIANCE_COLUMNS per hot spot and period (PERIODS, in that order), for the
    reference date (default: today in the operation's time zone)."""
    thresholds = thresholds or RagThresholds()
    reference = reference_date or local_today(operation)
    days = _load_days(session, operation, reference)
    grid, frame = days.grid, days.frame
    n = len(grid.hotspot_ids)
    last_visit = _last_visit_days(session, grid.hotspot_ids, reference)
    parts = []
    for period, (first, last) in period_bounds(operation, reference).items():
        low, high = first.toordinal(), last.toordinal()
        inside = frame[(frame["ordinal"] >= low) & (frame["ordinal"] <= high)]
        sums = inside.groupby("hotspot")[SUMMED].sum().reindex(range(n), fill_value=0)
        part = pd.DataFrame({
            HOTSPOT_ID: grid.hotspot_ids,
            "hotspot_name": [days.names.get(h, "") for h in grid.hotspot_ids],
            "period": period,
            "period_start": pd.Series([first] * n, dtype=object),
            "period_end": pd.Series([last] * n, dtype=object),
            "days": max(high - low + 1, 0),
        })
        part = pd.concat([part, _figures(sums.reset_index(drop=True), thresholds)], axis=1)
        part["days_over_max"] = sums["over_max"].to_numpy(dtype=np.int64)
        part["over_max"] = part["days_over_max"] > 0
        part["longest_gap_hours"] = [_longest_gap_hours(days, h, low, high) for h in range(n)]
        part["days_since_last_visit"] = pd.Series(
            [(reference - last_visit[h]).days if h in last_visit else None
             for h in grid.hotspot_ids], dtype=object)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=COMPLIANCE_COLUMNS)
    table["trend"] = _trends(table, thresholds)
    order = {p: i for i, p in enumerate(PERIODS)}
    table = table.sort_values([HOTSPOT_ID, "period"], key=lambda c: c.map(order)
                              if c.name == "period" else c, kind="stable")
    return table[COMPLIANCE_COLUMNS].reset_index(drop=True)


def _last_visit_days(session: Session, hotspot_ids: list[str], reference: date) -> dict:
    if not hotspot_ids:
        return {}
    return dict(session.execute(
        select(Visit.hotspot_id, func.max(Visit.day))
        .where(Visit.device_id == "", Visit.hotspot_id.in_(hotspot_ids), Visit.day <= reference)
        .group_by(Visit.hotspot_id)).all())


def _longest_gap_hours(days: _Days, hotspot: int, first: int, last: int) -> float:
    """Return the most patrol time of days first..last between two consecutive visits.

    Patrol time is the windows of those days (a window belongs to the day it opens on), or
    whole days in a phase without windows; days without a phase add none. NaN when no
    pair of consecutive visits has patrol time of the period between them.
    """
    if last < first:
        return np.nan
    visits = days.visits[days.visits["hotspot"] == hotspot]
    if len(visits) < 2:
        return np.nan
    intervals = days.grid.patrol_intervals(hotspot, first, last)
    gap_start = visits["end_us"].to_numpy()[:-1]
    gap_end = np.maximum(visits["start_us"].to_numpy()[1:], gap_start)
    gaps = _time_before(gap_end, intervals) - _time_before(gap_start, intervals)
    longest = gaps.max(initial=0)
    return round(longest / US_PER_HOUR, 2) if longest > 0 else np.nan


def _trends(table: pd.DataFrame, thresholds: RagThresholds) -> list[str | None]:
    by_spot = table.set_index([HOTSPOT_ID, "period"])["presence_compliance"]
    trends = {}
    for hotspot_id in table[HOTSPOT_ID].unique():
        change = by_spot.get((hotspot_id, "week"), np.nan) - by_spot.get(
            (hotspot_id, "previous_week"), np.nan)
        trends[hotspot_id] = None if np.isnan(change) else (
            FLAT if abs(change) <= thresholds.trend_tolerance else UP if change > 0 else DOWN)
    return [trends[h] for h in table[HOTSPOT_ID]]


def hot_spot_overview(table: pd.DataFrame) -> pd.DataFrame:
    """Return OVERVIEW_COLUMNS, one row per hot spot, from a compliance_table (the dashboard)."""
    rows = []
    for hotspot_id, group in table.groupby(HOTSPOT_ID, sort=True):
        by_period = group.set_index("period")
        row = {HOTSPOT_ID: hotspot_id, "hotspot_name": by_period["hotspot_name"].iloc[0]}
        for period in OVERVIEW_PERIODS:
            row[f"{period}_presence_compliance"] = by_period.at[period, "presence_compliance"]
            row[f"{period}_presence_status"] = by_period.at[period, "presence_status"]
        row["week_over_max"] = bool(by_period.at["week", "over_max"])
        row["week_longest_gap_hours"] = by_period.at["week", "longest_gap_hours"]
        row["days_since_last_visit"] = by_period.at["week", "days_since_last_visit"]
        row["trend"] = by_period.at["week", "trend"]
        rows.append(row)
    return pd.DataFrame(rows, columns=OVERVIEW_COLUMNS)


def cumulative_series(session: Session, operation: Operation, hotspot_id: str,
                      reference_date: date | None = None) -> pd.DataFrame:
    """Return CUMULATIVE_COLUMNS for one hot spot, per day from the start to the reference
    date: counted presence against the plan, each day and summed so far (for the chart)."""
    days = _load_days(session, operation, reference_date or local_today(operation),
                      [hotspot_id])
    if hotspot_id not in days.grid.hotspot_ids:
        raise PlanError(f"hot spot {hotspot_id!r} is not in operation {operation.name!r}")
    frame = days.frame
    counted_us = frame["counted_presence_us"].to_numpy()
    target = frame["target_presence_minutes"].to_numpy(dtype=float)
    cumulative = rounded_minutes(np.cumsum(counted_us))
    cumulative_target = np.round(np.cumsum(target), 2)
    return pd.DataFrame({
        "date": pd.Series([date.fromordinal(int(o)) for o in frame["ordinal"]], dtype=object),
        "operation_day": frame["ordinal"].to_numpy() - days.grid.first + 1,
        "counted_presence_minutes": rounded_minutes(counted_us),
        "target_presence_minutes": np.round(target, 2),
        "cumulative_presence_minutes": cumulative,
        "cumulative_target_presence_minutes": cumulative_target,
        "cumulative_compliance": compliance_ratio(cumulative, cumulative_target),
    }, columns=CUMULATIVE_COLUMNS)
