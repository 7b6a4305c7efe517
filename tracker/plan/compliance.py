"""Plan compliance from the stored aggregates (docs/plan.md).

Reads `daily_dosage`, `hourly_presence` and the hot spot rows of `visits` (device_id ''),
never pings. The rules, per hot spot and local day D of the operation up to the reference
date (see tracker.plan.targets for the layering of targets and the meaning of windows):

- Presence counted towards the target: without windows, the day's presence (less any hour
  a window of D-1 claimed after midnight); with windows, the presence of the hours of the
  windows that open on D, including those after midnight (from `hourly_presence`). An hour
  is counted once: a window still open from the day before has it first.
- Qualifying visits: hot spot visits of at least the phase's `min_visit_minutes`, on the
  day they start, or, with windows, on the day of the window they start in.
- Targets: the phase's presence target on each day that has one; visits_per_day likewise.
  Days no phase covers have no target, and nothing counts towards one on them.
- Over-max: the day's whole presence exceeds the phase's max_presence_minutes_per_day.
- Status: OVER when the presence of the row's days that have a maximum exceeds the sum of
  those maxima (for one day: the day is over its maximum), whatever the compliance;
  otherwise green, amber or red by compliance, or none without a target.
- Compliance is actual / target of the figures as shown (minutes to 2 decimals), to
  4 decimals, so anyone dividing the shown columns gets the shown ratio; NaN without target.

Every table the web pages, exports and API show comes from the functions here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import (
    bindparam,
    case,
    extract,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from tracker.dosage.engine import HOTSPOT_ID, DosageParams, rounded_minutes
from tracker.dosage.patrols import read_columns, visits_table
from tracker.foundation import settings
from tracker.foundation.clock import US_PER_HOUR, US_PER_MINUTE, US_PER_S, local_today
from tracker.foundation.models import (
    CreditedSpan,
    DailyDosage,
    HotSpotRow,
    HourlyPresence,
    Visit,
)
from tracker.plan.models import Operation
from tracker.plan.storage import stored_plan
from tracker.plan.targets import HOURS_AFTER_OPENING, Plan, PlanError

GREEN, AMBER, RED, OVER, NO_TARGET = "green", "amber", "red", "over", "none"
UP, DOWN, FLAT = "up", "down", "flat"
PERIODS = ("day", "week", "previous_week", "month", "operation")

# Figures shared by the daily and the period tables, in this order.
FIGURE_COLUMNS = [
    "presence_minutes",  # all presence (docs/dosage.md), whole local days
    "officer_minutes",
    "visits",  # visits of docs/dosage.md (at least min_visit_s)
    "counted_presence_minutes",  # presence that counts towards the target (windows applied)
    "target_presence_minutes",
    "presence_compliance",  # counted / target, NaN without a target
    "presence_status",  # over (above the maximum), green, amber, red, or none without a target
    "qualifying_visits",  # visits of at least min_visit_minutes (in the windows, if any)
    "target_visits",
    "visits_compliance",
    "visits_status",
]
DAILY_COMPLIANCE_COLUMNS = [
    HOTSPOT_ID,
    "hotspot_name",
    "date",
    "operation_day",
    *FIGURE_COLUMNS,
    "max_presence_minutes_per_day",
    "over_max",
]
COMPLIANCE_COLUMNS = [
    HOTSPOT_ID,
    "hotspot_name",
    "period",
    "period_start",
    "period_end",
    "days",  # days of the period in the operation, up to the reference date
    *FIGURE_COLUMNS,
    "days_over_max",
    "over_max",  # days whose presence exceeded the phase's maximum
    "longest_gap_hours",  # longest patrol time between consecutive visits in the period
    "days_since_last_visit",  # per hot spot (repeated on each period's row)
    "trend",  # per hot spot: this week's presence compliance against last week's
]
CUMULATIVE_COLUMNS = [
    "date",
    "operation_day",
    "counted_presence_minutes",
    "target_presence_minutes",
    "cumulative_presence_minutes",
    "cumulative_target_presence_minutes",
    "cumulative_compliance",
]
OVERVIEW_PERIODS = ("day", "week", "operation")
LAST_7_DAYS = "last_7_days"  # the reference date and the six days before it
# The periods whose whole presence figures the overview page shows besides the overview.
OVERVIEW_PAGE_PERIODS = ("day", "week", LAST_7_DAYS, "previous_week")
PERIOD_FIGURE_COLUMNS = [
    HOTSPOT_ID,
    "period",
    "period_start",
    "period_end",
    "days",
    "presence_minutes",
    "counted_presence_minutes",
    "target_presence_minutes",
    "presence_compliance",
    "presence_status",
    "days_over_max",
]
OVERVIEW_COLUMNS = [
    HOTSPOT_ID,
    "hotspot_name",
    *(f"{p}_{c}" for p in OVERVIEW_PERIODS for c in ("presence_compliance", "presence_status")),
    "week_over_max",
    "week_longest_gap_hours",
    "days_since_last_visit",
    "trend",
]


@dataclass(frozen=True)
class RagThresholds:
    """Compliance at or above `green` is green, at or above `amber` amber, else red."""

    green: float = 0.9
    amber: float = 0.6
    trend_tolerance: float = 0.05  # a change of compliance within this is "flat"

    def __post_init__(self) -> None:
        if not 0 <= self.amber <= self.green:
            raise ValueError(
                f"thresholds need 0 <= amber <= green, not amber {self.amber} "
                f"and green {self.green}"
            )
        if self.trend_tolerance < 0:
            raise ValueError(f"trend_tolerance must be >= 0, not {self.trend_tolerance}")


def configured_thresholds() -> RagThresholds:
    """Return the deployment's RAG thresholds (TRACKER_RAG_GREEN, TRACKER_RAG_AMBER), or
    SettingsError when they do not make a valid pair."""
    try:
        return RagThresholds(
            green=settings.get("TRACKER_RAG_GREEN"), amber=settings.get("TRACKER_RAG_AMBER")
        )
    except ValueError as exc:  # SettingsError is one too
        raise settings.SettingsError(f"configuration: {exc}") from exc


def rag_status(compliance, thresholds: RagThresholds, over=None) -> np.ndarray:
    """Return green/amber/red per compliance value, and none where it is NaN; OVER wherever
    `over` (presence above the maximum) is true, whatever the compliance."""
    ratio = np.asarray(compliance, dtype=float)
    status = np.where(
        ratio >= thresholds.green, GREEN, np.where(ratio >= thresholds.amber, AMBER, RED)
    ).astype(object)
    status[np.isnan(ratio)] = NO_TARGET
    if over is not None:
        status[np.asarray(over, dtype=bool)] = OVER
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
            self.phase_at[
                row[phase.hotspot_id],
                phase.starts.toordinal() - self.lo : phase.ends.toordinal() - self.lo + 1,
            ] = index
        none = np.zeros((1, 7, HOURS_AFTER_OPENING), dtype=bool)
        self.hours = np.concatenate([*(p.window_hours()[None] for p in phases), none])
        self.target_weekday = np.zeros((len(phases) + 1, 7), dtype=bool)
        for index, phase in enumerate(phases):
            self.target_weekday[index, list(phase.target_weekdays())] = True
        self.has_windows = np.array([bool(p.windows) for p in phases] + [False])
        self.target_minutes = np.array([p.presence_target_minutes() for p in phases] + [0.0])
        self.visits_per_day = np.array(
            [np.nan if p.visits_per_day is None else p.visits_per_day for p in phases] + [np.nan]
        )
        self.min_visit_us = np.array(
            [round(p.min_visit_minutes * US_PER_MINUTE) for p in phases] + [0], dtype=np.int64
        )
        self.max_minutes = np.array(
            [
                np.nan if p.max_presence_minutes_per_day is None else p.max_presence_minutes_per_day
                for p in phases
            ]
            + [np.nan]
        )
        # The maximum in whole µs, floored: an integer presence exceeds the maximum exactly
        # when it exceeds this, and sums of it are exact in any order.
        self.has_max = ~np.isnan(self.max_minutes)
        self.max_us = np.array(
            [math.floor(m * US_PER_MINUTE) if m == m else 0 for m in self.max_minutes],
            dtype=np.int64,
        )
        self.runs = [
            [_runs(self.hours[p, weekday]) for weekday in range(7)] for p in range(len(phases) + 1)
        ]
        self._patrol: dict[int, np.ndarray] = {}
        self._cache: dict[tuple, object] = {}

    def cached(self, key: tuple, make):
        """Return make() computed once per key (a grid lives on between requests)."""
        value = self._cache.get(key)
        if value is None:
            value = make()
            if len(self._cache) >= 256:
                self._cache.clear()
            self._cache[key] = value
        return value

    def segments(self, first: int, last: int) -> dict[str, np.ndarray]:
        """Return the runs of days first..last + 1 of each hot spot over which the phase of
        the day and of the day before, and whether each is in first..last, do not change.

        Arrays: row (hot spot), first and last day, p_prev and p_cur (phases), in_prev and
        in_cur.
        """
        return self.cached(("segments", first, last), lambda: self._make_segments(first, last))

    def _make_segments(self, first: int, last: int) -> dict[str, np.ndarray]:
        n = len(self.hotspot_ids)
        ordinal = np.arange(first, last + 2)
        rows, starts, ends, p_prev, p_cur, in_prev, in_cur = [], [], [], [], [], [], []
        for row in range(n):
            spot = np.full(len(ordinal), row)
            before, own = self.phase(spot, ordinal - 1), self.phase(spot, ordinal)
            flags = np.column_stack([before, own, ordinal - 1 >= first, ordinal <= last])
            change = np.concatenate([[True], (flags[1:] != flags[:-1]).any(axis=1)])
            start = np.flatnonzero(change)
            end = np.concatenate([start[1:], [len(ordinal)]]) - 1
            rows.append(np.full(len(start), row))
            starts.append(ordinal[start])
            ends.append(ordinal[end])
            p_prev.append(before[start])
            p_cur.append(own[start])
            in_prev.append(flags[start, 2].astype(bool))
            in_cur.append(flags[start, 3].astype(bool))

        def join(parts: list, kind) -> np.ndarray:
            return np.concatenate(parts).astype(kind) if parts else np.zeros(0, dtype=kind)

        return {
            "row": join(rows, np.int64),
            "first": join(starts, np.int64),
            "last": join(ends, np.int64),
            "p_prev": join(p_prev, np.int64),
            "p_cur": join(p_cur, np.int64),
            "in_prev": join(in_prev, bool),
            "in_cur": join(in_cur, bool),
        }

    def target_sums(self, first: int, last: int) -> np.ndarray:
        """Return target_presence_minutes summed per hot spot over days first..last, exactly
        as _load_days's frame sums it (the same values, in the same order, the same sum)."""
        return self._target_frame(first, last)["target_presence_minutes"]

    def target_visit_sums(self, first: int, last: int) -> np.ndarray:
        """Return target_visits summed per hot spot over days first..last, likewise."""
        return self._target_frame(first, last)["target_visits"]

    def _target_frame(self, first: int, last: int) -> dict[str, np.ndarray]:
        return self.cached(
            ("target_sums", first, last), lambda: self._make_target_sums(first, last)
        )

    def _make_target_sums(self, first: int, last: int) -> dict[str, np.ndarray]:
        n = len(self.hotspot_ids)
        n_days = max(last - first + 1, 0)
        hotspot = np.repeat(np.arange(n), n_days)
        ordinal = np.tile(np.arange(first, first + n_days), n)
        phase = self.phase(hotspot, ordinal)
        target_day = self.target_weekday[phase, _weekday(ordinal)]
        targets = ["target_presence_minutes", "target_visits"]
        frame = pd.DataFrame(
            {
                "hotspot": hotspot,
                "target_presence_minutes": np.where(target_day, self.target_minutes[phase], 0.0),
                "target_visits": np.where(
                    target_day, np.nan_to_num(self.visits_per_day[phase]), 0.0
                ),
            }
        )
        sums = frame.groupby("hotspot")[targets].sum().reindex(range(n), fill_value=0)
        return {column: sums[column].to_numpy() for column in targets}

    def max_sums(self, first: int, last: int) -> np.ndarray:
        """Return max_presence_us summed per hot spot over days first..last (0 for days
        without a maximum), as _load_days's frame sums it."""
        return self.cached(("max_sums", first, last), lambda: self._make_max_sums(first, last))

    def _make_max_sums(self, first: int, last: int) -> np.ndarray:
        n = len(self.hotspot_ids)
        n_days = max(last - first + 1, 0)
        hotspot = np.repeat(np.arange(n), n_days)
        ordinal = np.tile(np.arange(first, first + n_days), n)
        return _sum_by(hotspot, self.max_us[self.phase(hotspot, ordinal)], n)

    def phase(self, hotspot: np.ndarray, ordinal: np.ndarray) -> np.ndarray:
        column = ordinal - self.lo
        inside = (column >= 0) & (column < self.phase_at.shape[1])
        return np.where(inside, self.phase_at[hotspot, np.where(inside, column, 0)], -1)

    def owner(
        self, hotspot: np.ndarray, ordinal: np.ndarray, hour: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
            bounds = [
                (ordinal, _local_us(ordinal, start, self.zone), _local_us(ordinal, end, self.zone))
                for ordinal in range(self.first, self.last + 1)
                for start, end in self.runs[self.phase_at[hotspot, ordinal - self.lo]][
                    _weekday(ordinal)
                ]
            ]
            self._patrol[hotspot] = np.array(bounds, dtype=np.int64).reshape(-1, 3)
        return self._patrol[hotspot]


@lru_cache(maxsize=32)
def cached_grid(plan: Plan, hotspot_ids: tuple[str, ...]) -> _Grid:
    """Return the grid of a plan, shared between requests (keyed by the plan's own content,
    so a changed plan gets a new grid; its patrol intervals are then computed only once)."""
    return _Grid(plan, list(hotspot_ids))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


@lru_cache(maxsize=100_000)
def _local_us(ordinal: int, hour_after_midnight: int, zone: ZoneInfo) -> int:
    """Return the UTC instant of a local clock hour counted from a day's midnight."""
    day = date.fromordinal(ordinal + hour_after_midnight // 24)
    moment = datetime.combine(day, time(hour_after_midnight % 24), tzinfo=zone)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


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
    _by_hotspot: tuple | None = field(default=None, repr=False)

    def visits_of(self, hotspot: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the start_us and end_us of one hot spot's visits (sorted by start)."""
        if self._by_hotspot is None:
            self._by_hotspot = (
                np.searchsorted(
                    self.visits["hotspot"].to_numpy(dtype=np.int64),
                    np.arange(len(self.grid.hotspot_ids) + 1),
                    side="left",
                ),
                self.visits["start_us"].to_numpy(),
                self.visits["end_us"].to_numpy(),
            )
        bounds, start_us, end_us = self._by_hotspot
        low, high = bounds[hotspot], bounds[hotspot + 1]
        return start_us[low:high], end_us[low:high]


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
        np.add.at(
            total,
            row[inside] * self.n_days + ordinal[inside] - self.first,
            np.broadcast_to(values, row.shape)[inside],
        )
        return total


def _load_days(
    session: Session,
    operation: Operation,
    reference: date,
    hotspot_ids: list[str] | None = None,
    gap_days: tuple[int, int] | None = None,
    since: int | None = None,
    visit_rows: list | None = None,
) -> _Days:
    """Load the days of the operation up to the reference date.

    With `since` (a day ordinal) the frame holds only the days from then on (each day's
    figures are the same as in the whole frame). With `gap_days` (first and last day
    ordinal of one period) only the visits that can bound a gap with patrol time in those
    days are read (see _gap_visits): the result then serves _longest_gap_hours of that
    period only, and qualifying_visits are left at 0. `visit_rows` (hotspot_id, day,
    start_us, end_us, presence_us) are hot spot visits already read, over at least the days
    the visits are read for; they are used instead of reading them again.
    """
    plan = stored_plan(session, operation)
    ids = [h for h in plan.hotspot_ids if hotspot_ids is None or h in hotspot_ids]
    grid = cached_grid(plan, tuple(ids))
    cells = _Cells(
        max(grid.first, since or grid.first), min(reference.toordinal(), grid.last), len(ids)
    )
    # Visits are read from the day before the operation, whatever `since` is.
    visit_days = (grid.first - 1, cells.last + 1)
    row_of = {h: i for i, h in enumerate(ids)}
    hotspot = np.repeat(np.arange(len(ids)), cells.n_days)
    ordinal = np.tile(np.arange(cells.first, cells.first + cells.n_days), len(ids))

    daily = _frame(
        session,
        select(
            DailyDosage.hotspot_id,
            DailyDosage.day,
            DailyDosage.presence_us,
            DailyDosage.officer_us,
            DailyDosage.visits,
        ).where(
            DailyDosage.hotspot_id.in_(ids),
            DailyDosage.day.between(*cells.dates(cells.first, cells.last)),
        ),
    )
    d_row = daily["hotspot_id"].map(row_of).to_numpy(dtype=np.int64)
    d_day = _ordinals(daily["day"])
    presence_us, officer_us, visit_count = (
        cells.sum(d_row, d_day, daily[c].to_numpy(dtype=np.int64))
        for c in ("presence_us", "officer_us", "visits")
    )

    # Only windows make an hour count for another day, or not at all.
    windowed = sorted({p.hotspot_id for p in plan.phases if p.windows and p.hotspot_id in row_of})
    hourly = _frame(
        session,
        select(
            HourlyPresence.hotspot_id,
            HourlyPresence.day,
            HourlyPresence.hour,
            HourlyPresence.presence_us,
        ).where(
            HourlyPresence.hotspot_id.in_(windowed),
            HourlyPresence.day.between(*cells.dates(cells.first, cells.last + 1)),
        ),
    )
    h_row = hourly["hotspot_id"].map(row_of).to_numpy(dtype=np.int64)
    h_day = _ordinals(hourly["day"])
    h_presence = hourly["presence_us"].to_numpy(dtype=np.int64)
    owner, _, by_before = grid.owner(h_row, h_day, hourly["hour"].to_numpy(dtype=np.int64))
    owned_us = cells.sum(h_row, owner, h_presence)
    claimed_us = cells.sum(h_row[by_before], h_day[by_before], h_presence[by_before])

    stored_visits = None
    if gap_days is not None:
        stored_visits = _gap_visits(session, grid, ids, visit_days, gap_days, reference)
    if stored_visits is None and visit_rows is not None:
        low, high = date.fromordinal(visit_days[0]), date.fromordinal(visit_days[1])
        chosen = [(h, s, e, p) for h, d, s, e, p in visit_rows if h in row_of and low <= d <= high]
        stored_visits = pd.DataFrame(
            dict(
                zip(
                    ("hotspot_id", "start_us", "end_us", "presence_us"),
                    zip(*chosen, strict=True) if chosen else ([], [], [], []),
                    strict=True,
                )
            )
        )
    if stored_visits is None:
        gap_days = None
        stored_visits = _frame(
            session,
            select(
                Visit.hotspot_id,
                Visit.start_us,
                Visit.end_us,
                Visit.presence_us,
            ).where(
                Visit.device_id == "",
                Visit.hotspot_id.in_(ids),
                Visit.day.between(*cells.dates(*visit_days)),
            ),
        )
    v_row = stored_visits["hotspot_id"].map(row_of).to_numpy(dtype=np.int64)
    v_start = stored_visits["start_us"].to_numpy(dtype=np.int64)
    v_day, v_hour = _local_day_hour(v_start, grid.zone)
    owner, v_phase, _ = grid.owner(v_row, v_day, v_hour)
    qualifies = (
        (v_phase >= 0)
        & grid.target_weekday[v_phase, _weekday(owner)]
        & (stored_visits["presence_us"].to_numpy(dtype=np.int64) >= grid.min_visit_us[v_phase])
    )
    qualifying = cells.sum(v_row[qualifies], owner[qualifies], 1)
    if gap_days is not None:
        qualifying[:] = 0  # only some visits were read: nothing is counted from them
    known = v_day <= reference.toordinal()
    visits = pd.DataFrame(
        {
            "hotspot": v_row[known],
            "start_us": v_start[known],
            "end_us": stored_visits["end_us"].to_numpy(dtype=np.int64)[known],
        }
    ).sort_values(["hotspot", "start_us"], kind="stable")

    phase = grid.phase(hotspot, ordinal)
    target_day = grid.target_weekday[phase, _weekday(ordinal)]
    counted_us = np.where(
        grid.has_windows[phase], owned_us, np.maximum(presence_us - claimed_us, 0)
    )
    max_minutes = grid.max_minutes[phase]
    has_max = grid.has_max[phase]
    frame = pd.DataFrame(
        {
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
            # For the OVER status of a period: its days' maxima and their presence, summed.
            "max_presence_us": grid.max_us[phase],
            "presence_with_max_us": np.where(has_max, presence_us, 0),
        }
    )
    names = dict(
        session.execute(select(HotSpotRow.id, HotSpotRow.name).where(HotSpotRow.id.in_(ids))).all()
    )
    return _Days(grid, frame, visits, names)


def _local_day_hour(t_us: np.ndarray, zone: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """Return the local day ordinal and clock hour of UTC microsecond instants."""
    local = pd.to_datetime(t_us, unit="us", utc=True).tz_convert(zone).tz_localize(None)
    wall = local.to_numpy().astype("datetime64[us]").astype(np.int64)
    day = np.floor_divide(wall, 86_400 * US_PER_S)
    hour = np.floor_divide(wall - day * 86_400 * US_PER_S, US_PER_HOUR)
    return day + _EPOCH_ORDINAL, hour


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_UNION_CHUNK = 100  # SQLite allows 500 terms in a compound select


def _gap_visits(
    session: Session,
    grid: _Grid,
    ids: list[str],
    visit_days: tuple[int, int],
    gap_days: tuple[int, int],
    reference: date,
) -> pd.DataFrame | None:
    """Return, of the visits _load_days reads, those that bound every gap between
    consecutive visits with patrol time in days low..high (gap_days).

    That patrol time lies at or after `since`, the local midnight that starts day `low`.
    A hot spot's visits never overlap (docs/dosage.md rule 7: they are maximal runs of its
    presence), so such a gap ends after `since` and its later visit starts at or after
    `since` or is the first to: the visits starting at or after `since`, and the last one
    before it, hold every such gap. Returns None (read them all) when that last one is not a
    visit of a day up to the reference date.
    """
    low, _ = gap_days
    since = _local_us(low, 0, grid.zone)
    first_day, last_day = visit_days
    columns = (Visit.hotspot_id, Visit.start_us, Visit.end_us, Visit.presence_us)
    # A visit's stored day is the local day of its start in some time zone, so at most 2 days
    # before its day in the operation's zone (3 to be safe): a bound the (device_id, day) index
    # can use.
    recent_day = max(first_day, low - 3)
    after = _frame(
        session,
        select(*columns).where(
            Visit.device_id == "",
            Visit.hotspot_id.in_(ids),
            Visit.start_us >= since,
            Visit.day.between(date.fromordinal(recent_day), date.fromordinal(last_day)),
        ),
    )
    before = _union_frame(
        session,
        _visit_before_statements(tuple(ids)),
        [c.key for c in columns],
        {
            "first_day": date.fromordinal(first_day),
            "last_day": date.fromordinal(last_day),
            "since": since,
        },
    )
    if len(before):
        before_day, _ = _local_day_hour(before["start_us"].to_numpy(dtype=np.int64), grid.zone)
        if (before_day > reference.toordinal()).any():
            return None
    return pd.concat([before, after], ignore_index=True) if len(before) else after


def _unions(statements: list) -> list:
    """Return UNION ALLs (of up to _UNION_CHUNK terms) of selects with their own ORDER BY
    and LIMIT."""
    return [
        union_all(*(select(s.subquery()) for s in statements[i : i + _UNION_CHUNK]))
        for i in range(0, len(statements), _UNION_CHUNK)
    ]


@lru_cache(maxsize=32)
def _visit_before_statements(hotspot_ids: tuple[str, ...]) -> list:
    """The last hot spot visit starting before :since, per hot spot (built once: building
    a statement of 25 selects costs more than running it)."""
    return _unions(
        [
            select(Visit.hotspot_id, Visit.start_us, Visit.end_us, Visit.presence_us)
            .where(
                Visit.device_id == "",
                Visit.day.between(bindparam("first_day"), bindparam("last_day")),
                Visit.hotspot_id == h,
                Visit.start_us < bindparam("since"),
            )
            .order_by(Visit.start_us.desc())
            .limit(1)
            for h in hotspot_ids
        ]
    )


@lru_cache(maxsize=32)
def _last_visit_statements(hotspot_ids: tuple[str, ...]) -> list:
    """The latest day with a hot spot visit up to :reference, per hot spot."""
    return _unions(
        [
            select(Visit.hotspot_id, Visit.day)
            .where(
                Visit.device_id == "", Visit.hotspot_id == h, Visit.day <= bindparam("reference")
            )
            .order_by(Visit.day.desc())
            .limit(1)
            for h in hotspot_ids
        ]
    )


def _union_frame(
    session: Session, statements: list, names: list[str], parameters: dict
) -> pd.DataFrame:
    """Return the rows of the statements (as from _unions) run with these parameters."""
    frames = [_frame(session, statement, parameters) for statement in statements]
    frames = [f.set_axis(names, axis=1) for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    return pd.concat(frames, ignore_index=True)


def _frame(session: Session, statement, parameters: dict | None = None) -> pd.DataFrame:
    """Return the rows of a Core select as columns (a year of hourly rows is ~200 000)."""
    names, columns = read_columns(session, statement, parameters)
    if not columns[0]:
        columns = [()] * len(names)
    return pd.DataFrame(dict(zip(names, columns, strict=True)))


def _ordinals(days: pd.Series) -> np.ndarray:
    return np.array([d.toordinal() for d in days], dtype=np.int64)


def _figures(frame: pd.DataFrame, thresholds: RagThresholds) -> pd.DataFrame:
    """Turn summed _us columns into FIGURE_COLUMNS (minutes to 2 decimals, ratios, RAG)."""
    return pd.DataFrame(
        _figure_columns(frame, thresholds), index=frame.index, columns=FIGURE_COLUMNS
    )


def _figure_columns(frame, thresholds: RagThresholds) -> dict[str, np.ndarray]:
    """Return FIGURE_COLUMNS as arrays, in order (see _figures), from summed columns (a frame,
    or a mapping of arrays)."""
    counted = rounded_minutes(np.asarray(frame["counted_presence_us"]))
    target = np.round(np.asarray(frame["target_presence_minutes"], dtype=float), 2)
    target_visits = np.round(np.asarray(frame["target_visits"], dtype=float), 2)
    presence_compliance = compliance_ratio(counted, target)
    visits_compliance = compliance_ratio(frame["qualifying_visits"], target_visits)
    return {
        "presence_minutes": rounded_minutes(np.asarray(frame["presence_us"])),
        "officer_minutes": rounded_minutes(np.asarray(frame["officer_us"])),
        "visits": np.asarray(frame["visits"], dtype=np.int64),
        "counted_presence_minutes": counted,
        "target_presence_minutes": target,
        "presence_compliance": presence_compliance,
        "presence_status": rag_status(
            presence_compliance,
            thresholds,
            over=np.asarray(frame["presence_with_max_us"]) > np.asarray(frame["max_presence_us"]),
        ),
        "qualifying_visits": np.asarray(frame["qualifying_visits"], dtype=np.int64),
        "target_visits": target_visits,
        "visits_compliance": visits_compliance,
        "visits_status": rag_status(visits_compliance, thresholds),
    }


def daily_compliance(
    session: Session,
    operation: Operation,
    reference_date: date | None = None,
    hotspot_ids: list[str] | None = None,
    thresholds: RagThresholds | None = None,
) -> pd.DataFrame:
    """Return DAILY_COMPLIANCE_COLUMNS per hot spot and day from the start to the reference
    date (default: today in the operation's time zone), sorted by hot spot then date."""
    days = _load_days(session, operation, reference_date or local_today(operation.tz), hotspot_ids)
    return _daily_table(days, thresholds or configured_thresholds())


def _daily_table(days: _Days, thresholds: RagThresholds) -> pd.DataFrame:
    frame = days.frame
    ids = np.array(days.grid.hotspot_ids, dtype=object)
    dates = [date.fromordinal(int(o)) for o in frame["ordinal"]]
    hotspot_ids = ids[frame["hotspot"].to_numpy()]
    table = pd.DataFrame(
        {
            HOTSPOT_ID: hotspot_ids,
            "hotspot_name": [days.names.get(h, "") for h in hotspot_ids],
            "date": pd.Series(dates, dtype=object),
            "operation_day": frame["ordinal"].to_numpy() - days.grid.first + 1,
        }
    )
    figures = _figures(frame, thresholds)
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
    return {
        name: (max(first, operation.start_date), min(last, operation.end_date, reference))
        for name, (first, last) in calendar.items()
    }


SUMMED = [
    "presence_us",
    "officer_us",
    "visits",
    "counted_presence_us",
    "target_presence_minutes",
    "qualifying_visits",
    "target_visits",
    "over_max",
    "max_presence_us",
    "presence_with_max_us",
]


def compliance_table(
    session: Session,
    operation: Operation,
    reference_date: date | None = None,
    thresholds: RagThresholds | None = None,
) -> pd.DataFrame:
    """Return COMPLIANCE_COLUMNS per hot spot and period (PERIODS, in that order), for the
    reference date (default: today in the operation's time zone)."""
    thresholds = thresholds or configured_thresholds()
    reference = reference_date or local_today(operation.tz)
    days = _load_days(session, operation, reference)
    last_visit = _last_visit_days(session, days.grid.hotspot_ids, reference)
    parts = [
        _period_part(days, period, first, last, reference, last_visit, thresholds)
        for period, (first, last) in period_bounds(operation, reference).items()
    ]
    table = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COMPLIANCE_COLUMNS)
    )
    table["trend"] = _trends(table, thresholds)
    order = {p: i for i, p in enumerate(PERIODS)}
    table = table.sort_values(
        [HOTSPOT_ID, "period"],
        key=lambda c: c.map(order) if c.name == "period" else c,
        kind="stable",
    )
    return table[COMPLIANCE_COLUMNS].reset_index(drop=True)


def _period_part(
    days: _Days,
    period: str,
    first: date,
    last: date,
    reference: date,
    last_visit: dict,
    thresholds: RagThresholds,
    gaps: bool = True,
    sums: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Return the rows of one period of compliance_table (without the trend); without
    `gaps`, longest_gap_hours is left NaN. `sums` (SUMMED per hot spot) replaces the sums
    of the frame's days."""
    grid = days.grid
    n = len(grid.hotspot_ids)
    low, high = first.toordinal(), last.toordinal()
    if sums is None:
        sums = _summed_days(days, low, high)
    days_over_max = np.asarray(sums["over_max"], dtype=np.int64)
    return pd.DataFrame(
        {  # one constructor: several times faster than adding columns
            HOTSPOT_ID: grid.hotspot_ids,
            "hotspot_name": [days.names.get(h, "") for h in grid.hotspot_ids],
            "period": period,
            "period_start": pd.Series([first] * n, dtype=object),
            "period_end": pd.Series([last] * n, dtype=object),
            "days": max(high - low + 1, 0),
            **_figure_columns(sums, thresholds),
            "days_over_max": days_over_max,
            "over_max": days_over_max > 0,
            "longest_gap_hours": [
                _longest_gap_hours(days, h, low, high) if gaps else np.nan for h in range(n)
            ],
            "days_since_last_visit": pd.Series(
                [
                    (reference - last_visit[h]).days if h in last_visit else None
                    for h in grid.hotspot_ids
                ],
                dtype=object,
            ),
        }
    )


def _summed_days(days: _Days, low: int, high: int) -> dict[str, np.ndarray]:
    """Return SUMMED per hot spot over the frame's days low..high, as
    `frame[inside].groupby("hotspot")[SUMMED].sum()` gives them, at less cost per call.

    The frame holds each hot spot's days in order, hot spot by hot spot, so a period is a
    block of columns once it is laid out as (hot spot, day): whole numbers are summed there,
    exactly. The targets, which depend on the plan alone, are the grid's sums over the same
    days: the same values, in the same order, by the same pandas sum (and kept between
    requests).
    """
    frame, grid = days.frame, days.grid
    n = len(grid.hotspot_ids)
    n_days = len(frame) // n if n else 0
    first = int(frame["ordinal"].iat[0]) if n_days else low
    low, high = max(low, first), min(high, first + n_days - 1)
    sums = {
        "target_presence_minutes": grid.target_sums(low, high),
        "target_visits": grid.target_visit_sums(low, high),
    }
    for column in SUMMED:
        if column not in sums:
            values = frame[column].to_numpy().reshape(n, n_days)[:, low - first : high - first + 1]
            sums[column] = values.sum(axis=1, dtype=np.int64)
    return sums


def _operation_presence_sums(session: Session, days: _Days, first: int, last: int) -> pd.DataFrame:
    """Return SUMMED per hot spot for days first..last (the operation up to the reference),
    with counted_presence_us, target_presence_minutes and the two columns of the OVER status
    (max_presence_us, presence_with_max_us) exactly as the sums of _load_days's frame would
    be, and the other columns 0 (the overview does not show them).

    Targets depend on the plan alone. Counted presence is summed by the database over runs
    of days ("segments") whose own and previous day's phases are the same, so that which
    hours count, and for which day, depends only on the weekday and the hour:

    - a day in a phase with windows counts the hours its windows own (hourly_presence, per
      segment, weekday and hour, for the hot spots with windows);
    - a day in a phase without windows counts its presence, less the hours a window of the
      day before claimed, but not below 0: only the first day after a phase with windows can
      have such hours; it is a segment of its own, so that is done per day.

    The presence of the days that have a maximum is the daily presence of the segments whose
    phase has one.
    """
    grid = days.grid
    n = len(grid.hotspot_ids)
    counted = np.zeros(n, dtype=np.int64)
    with_max = np.zeros(n, dtype=np.int64)
    if last >= first and n:
        segments = grid.segments(first, last)
        no_windows = (
            segments["in_cur"] & (segments["p_cur"] >= 0) & ~grid.has_windows[segments["p_cur"]]
        )
        capped = segments["in_cur"] & grid.has_max[segments["p_cur"]]
        claims = no_windows & grid.has_windows[segments["p_prev"]]
        presence, positive = _segment_sums(
            session, DailyDosage, grid, segments, np.flatnonzero(no_windows | capped), first, last
        )
        with_max = _sum_by(segments["row"][capped], presence[capped], n)
        plain = no_windows & ~claims
        counted += _sum_by(segments["row"][plain], positive[plain], n)
        windowed = np.flatnonzero(
            grid.has_windows[segments["p_cur"]] | grid.has_windows[segments["p_prev"]]
        )
        hours = _segment_hours(session, grid, segments, windowed, first, last + 1)
        if len(hours["segment"]):
            seg = hours["segment"]
            p_prev, p_cur = segments["p_prev"][seg], segments["p_cur"][seg]
            weekday = (hours["dow"] + 6) % 7  # SQL: 0 = Sunday
            before = (weekday + 6) % 7
            by_before = grid.hours[p_prev, before, hours["hour"] + 24]
            by_own = ~by_before & grid.hours[p_cur, weekday, hours["hour"]]
            owned = (
                by_before
                & segments["in_prev"][seg]
                & grid.has_windows[p_prev]
                & grid.target_weekday[p_prev, before]
            ) | (
                by_own
                & segments["in_cur"][seg]
                & grid.has_windows[p_cur]
                & grid.target_weekday[p_cur, weekday]
            )
            counted += _sum_by(segments["row"][seg[owned]], hours["presence_us"][owned], n)
            claimed = np.zeros(len(segments["row"]), dtype=np.int64)
            np.add.at(claimed, seg[by_before], hours["presence_us"][by_before])
        else:
            claimed = np.zeros(len(segments["row"]), dtype=np.int64)
        one_day = np.flatnonzero(claims)
        counted += _sum_by(
            segments["row"][one_day], np.maximum(presence[one_day] - claimed[one_day], 0), n
        )
    sums = pd.DataFrame({c: np.zeros(n, dtype=np.int64) for c in SUMMED})
    sums["counted_presence_us"] = counted
    sums["target_presence_minutes"] = grid.target_sums(first, last)
    sums["max_presence_us"] = grid.max_sums(first, last)
    sums["presence_with_max_us"] = with_max
    sums["target_visits"] = 0.0
    return sums


def _sum_by(row: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Return exact int64 sums of values per row 0..n-1."""
    total = np.zeros(n, dtype=np.int64)
    np.add.at(total, row, np.asarray(values, dtype=np.int64))
    return total


def _segment_statements(grid: _Grid, segments: dict, chosen: np.ndarray, make) -> list:
    """Return UNION ALLs (of up to _UNION_CHUNK terms) of make(segment index, hot spot id,
    first day, last day) for the chosen segments: each term reads one indexed range."""
    terms = [
        make(
            literal_column(str(int(k))).label("segment"),
            grid.hotspot_ids[segments["row"][k]],
            date.fromordinal(int(segments["first"][k])),
            date.fromordinal(int(segments["last"][k])),
        )
        for k in chosen
    ]
    return [union_all(*terms[i : i + _UNION_CHUNK]) for i in range(0, len(terms), _UNION_CHUNK)]


def _segment_sums(
    session: Session, model, grid: _Grid, segments: dict, chosen: np.ndarray, first: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return per segment the sum of daily presence, and of its positive values."""
    size = len(segments["row"])
    presence = np.zeros(size, dtype=np.int64)
    positive = np.zeros(size, dtype=np.int64)
    if not len(chosen):
        return presence, positive

    def term(segment, hotspot_id, low, high):
        return select(
            segment,
            func.sum(model.presence_us),
            func.sum(case((model.presence_us > 0, model.presence_us), else_=0)),
        ).where(model.hotspot_id == hotspot_id, model.day.between(low, high))

    statements = grid.cached(
        ("daily sums", first, last), lambda: _segment_statements(grid, segments, chosen, term)
    )
    for statement in statements:
        for segment, total, above in session.connection().execute(statement):
            presence[int(segment)] = int(total or 0)
            positive[int(segment)] = int(above or 0)
    return presence, positive


def _segment_hours(
    session: Session, grid: _Grid, segments: dict, chosen: np.ndarray, first: int, last: int
) -> dict[str, np.ndarray]:
    """Return hourly presence summed per chosen segment, weekday (SQL's: 0 = Sunday) and hour."""
    model = HourlyPresence
    dow = extract("dow", model.day)

    def term(segment, hotspot_id, low, high):
        return (
            select(segment, dow.label("dow"), model.hour, func.sum(model.presence_us))
            .where(model.hotspot_id == hotspot_id, model.day.between(low, high))
            .group_by(dow, model.hour)
        )

    rows = []
    if len(chosen):
        statements = grid.cached(
            ("hourly sums", first, last), lambda: _segment_statements(grid, segments, chosen, term)
        )
        for statement in statements:
            rows += session.connection().execute(statement).all()
    columns = list(zip(*rows, strict=True)) or [(), (), (), ()]
    return {
        name: np.array([int(v) for v in values], dtype=np.int64)
        for name, values in zip(("segment", "dow", "hour", "presence_us"), columns, strict=True)
    }


def _last_visit_days(session: Session, hotspot_ids: list[str], reference: date) -> dict:
    """Return the latest day with a hot spot visit up to the reference, per hot spot that
    has one (one indexed look-up each, rather than a scan of every visit)."""
    if not hotspot_ids:
        return {}
    latest = _union_frame(
        session,
        _last_visit_statements(tuple(hotspot_ids)),
        ["hotspot_id", "day"],
        {"reference": reference},
    )
    return dict(zip(latest["hotspot_id"], latest["day"], strict=True))


def _longest_gap_hours(days: _Days, hotspot: int, first: int, last: int) -> float:
    """Return the most patrol time of days first..last between two consecutive visits.

    Patrol time is the windows of those days (a window belongs to the day it opens on), or
    whole days in a phase without windows; days without a phase add none. NaN when no
    pair of consecutive visits has patrol time of the period between them.
    """
    if last < first:
        return np.nan
    start_us, end_us = days.visits_of(hotspot)
    if len(start_us) < 2:
        return np.nan
    intervals = days.grid.patrol_intervals(hotspot, first, last)
    gap_start = end_us[:-1]
    gap_end = np.maximum(start_us[1:], gap_start)
    gaps = _time_before(gap_end, intervals) - _time_before(gap_start, intervals)
    longest = gaps.max(initial=0)
    return round(longest / US_PER_HOUR, 2) if longest > 0 else np.nan


def _trends(table: pd.DataFrame, thresholds: RagThresholds) -> list[str | None]:
    hotspot_ids = table[HOTSPOT_ID].tolist()
    # (hot spot, period) -> presence compliance; a plain dict: indexing pandas 50 times a
    # request cost more than the rest of this function.
    by_spot = dict(
        zip(
            zip(hotspot_ids, table["period"].tolist(), strict=True),
            table["presence_compliance"].tolist(),
            strict=True,
        )
    )
    trends = {}
    for hotspot_id in dict.fromkeys(hotspot_ids):
        change = by_spot.get((hotspot_id, "week"), np.nan) - by_spot.get(
            (hotspot_id, "previous_week"), np.nan
        )
        trends[hotspot_id] = (
            None
            if np.isnan(change)
            else (FLAT if abs(change) <= thresholds.trend_tolerance else UP if change > 0 else DOWN)
        )
    return [trends[h] for h in hotspot_ids]


def hot_spot_overview(table: pd.DataFrame) -> pd.DataFrame:
    """Return OVERVIEW_COLUMNS, one row per hot spot, from a compliance_table (the dashboard)."""
    hotspot_ids = table[HOTSPOT_ID].tolist()
    at: dict[tuple, int] = {}  # (hot spot, period) -> row
    for index, key in enumerate(zip(hotspot_ids, table["period"].tolist(), strict=True)):
        at.setdefault(key, index)
    first: dict[str, int] = {}
    for index, hotspot_id in enumerate(hotspot_ids):
        first.setdefault(hotspot_id, index)
    column = {
        c: table[c].tolist()
        for c in (
            "hotspot_name",
            "presence_compliance",
            "presence_status",
            "over_max",
            "longest_gap_hours",
            "days_since_last_visit",
            "trend",
        )
    }
    rows = []
    for hotspot_id in sorted(first):
        row = {HOTSPOT_ID: hotspot_id, "hotspot_name": column["hotspot_name"][first[hotspot_id]]}
        for period in OVERVIEW_PERIODS:
            index = at[(hotspot_id, period)]
            row[f"{period}_presence_compliance"] = column["presence_compliance"][index]
            row[f"{period}_presence_status"] = column["presence_status"][index]
        week = at[(hotspot_id, "week")]
        row["week_over_max"] = bool(column["over_max"][week])
        row["week_longest_gap_hours"] = column["longest_gap_hours"][week]
        row["days_since_last_visit"] = column["days_since_last_visit"][week]
        row["trend"] = column["trend"][week]
        rows.append(row)
    return pd.DataFrame(rows, columns=OVERVIEW_COLUMNS)


def overview_table(
    session: Session,
    operation: Operation,
    reference_date: date | None = None,
    thresholds: RagThresholds | None = None,
) -> pd.DataFrame:
    """Return hot_spot_overview(compliance_table(...)), computing only what it shows.

    That is the periods day, week, previous week (for the trend) and operation, and the
    longest gap of this week only, so of the visits only those around this week are read.
    """
    thresholds = thresholds or configured_thresholds()
    reference = reference_date or local_today(operation.tz)
    return hot_spot_overview(_overview_periods(session, operation, reference, thresholds, ()))


def overview_with_periods(
    session: Session,
    operation: Operation,
    reference_date: date | None = None,
    thresholds: RagThresholds | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return overview_table(...) and PERIOD_FIGURE_COLUMNS per hot spot and period of
    OVERVIEW_PAGE_PERIODS: the day, the week, the last 7 days and the previous week.

    The last 7 days are the reference date and the six days before it, within the
    operation (its figures are summed exactly as compliance_table sums a period's); the
    other rows are compliance_table's. All come from the days the overview reads anyway.
    """
    thresholds = thresholds or configured_thresholds()
    reference = reference_date or local_today(operation.tz)
    table = _overview_periods(session, operation, reference, thresholds, (LAST_7_DAYS,))
    chosen = table[table["period"].isin(OVERVIEW_PAGE_PERIODS)]
    return hot_spot_overview(table), chosen[PERIOD_FIGURE_COLUMNS].reset_index(drop=True)


def _overview_periods(
    session: Session,
    operation: Operation,
    reference: date,
    thresholds: RagThresholds,
    extra: tuple[str, ...],
) -> pd.DataFrame:
    """Return compliance_table's rows of the periods day, week, previous week and operation
    (and those of `extra`), with only the figures the overview shows filled in for the
    operation: the figures of hot_spot_overview are exact, the operation's other sums 0."""
    bounds = period_bounds(operation, reference)
    if LAST_7_DAYS in extra:
        bounds[LAST_7_DAYS] = last_days_bounds(operation, reference, 7)
    week_first, week_last = bounds["week"]
    recent = ("day", "week", "previous_week", *extra)
    # Each day of this and last week from the stored figures; the operation's sums from sums
    # the database makes (only its presence compliance is shown).
    days = _load_days(
        session,
        operation,
        reference,
        gap_days=(week_first.toordinal(), week_last.toordinal()),
        since=min(bounds[p][0] for p in recent).toordinal(),
    )
    last_visit = _last_visit_days(session, days.grid.hotspot_ids, reference)
    parts = []
    for period, (first, last) in bounds.items():
        if period in recent:
            parts.append(
                _period_part(
                    days,
                    period,
                    first,
                    last,
                    reference,
                    last_visit,
                    thresholds,
                    gaps=period == "week",
                )
            )
        elif period == "operation":
            sums = _operation_presence_sums(session, days, first.toordinal(), last.toordinal())
            parts.append(
                _period_part(
                    days,
                    period,
                    first,
                    last,
                    reference,
                    last_visit,
                    thresholds,
                    gaps=False,
                    sums=sums,
                )
            )
    table = pd.concat(parts, ignore_index=True)
    table["trend"] = _trends(table, thresholds)
    return table


def last_days_bounds(operation: Operation, reference: date, n: int) -> tuple[date, date]:
    """Return the first and last day of the `n` days ending on the reference date, within
    the operation (the first after the last before the operation starts)."""
    first = max(reference - timedelta(days=n - 1), operation.start_date)
    return first, min(reference, operation.end_date)


def last_presence_ends(
    session: Session, hotspot_ids: list[str], at_us: int, longest_us: int
) -> dict[str, int]:
    """Return when presence last ended at or before `at_us`, per hot spot with any: the
    latest end of its stored credited spans starting by then, cut at `at_us`.

    No stored span is longer than `longest_us`, so only the spans starting up to that long
    before the latest start are read (one indexed range per hot spot, in one statement).
    """
    ends = {}
    for statement in _last_presence_statements(tuple(hotspot_ids)) if hotspot_ids else []:
        parameters = {"at": at_us, "longest": longest_us}
        for hotspot_id, end_us in session.connection().execute(statement, parameters):
            if end_us is not None:  # no span starts by then
                ends[hotspot_id] = min(int(end_us), at_us)
    return ends


@lru_cache(maxsize=32)
def _last_presence_statements(hotspot_ids: tuple[str, ...]) -> list:
    """The latest end of a credited span starting by :at, per hot spot."""

    def latest(h: str):
        started = (CreditedSpan.hotspot_id == h, CreditedSpan.start_us <= bindparam("at"))
        last_start = (
            select(CreditedSpan.start_us)
            .where(*started)
            .order_by(CreditedSpan.start_us.desc())
            .limit(1)
            .scalar_subquery()
        )
        return select(literal(h).label("hotspot_id"), func.max(CreditedSpan.end_us)).where(
            *started, CreditedSpan.start_us >= last_start - bindparam("longest")
        )

    statements = [latest(h) for h in hotspot_ids]
    return [
        union_all(*statements[i : i + _UNION_CHUNK])
        for i in range(0, len(statements), _UNION_CHUNK)
    ]


def cumulative_series(
    session: Session, operation: Operation, hotspot_id: str, reference_date: date | None = None
) -> pd.DataFrame:
    """Return CUMULATIVE_COLUMNS for one hot spot, per day from the start to the reference
    date: counted presence against the plan, each day and summed so far (for the chart)."""
    days = _load_days(session, operation, reference_date or local_today(operation.tz), [hotspot_id])
    return _cumulative_table(days, operation, hotspot_id)


def hot_spot_tables(
    session: Session,
    operation: Operation,
    hotspot_id: str,
    params: DosageParams,
    reference_date: date | None = None,
    thresholds: RagThresholds | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return daily_compliance(..., [hotspot_id]), cumulative_series(..., hotspot_id) and
    patrols.hot_spot_visits(session, hotspot_id, operation.start_date, reference, params),
    reading the stored figures and visits once (the hot spot page shows all three)."""
    reference = reference_date or local_today(operation.tz)
    # The visits both read: from the day before the operation to the day after its last
    # day up to the reference, or to the reference.
    low = operation.start_date - timedelta(days=1)
    high = max(min(reference, operation.end_date) + timedelta(days=1), reference)
    _, columns = read_columns(
        session,
        select(Visit.day, Visit.start_us, Visit.end_us, Visit.presence_us, Visit.devices)
        .where(Visit.hotspot_id == hotspot_id, Visit.device_id == "", Visit.day.between(low, high))
        .order_by(Visit.start_us),
    )
    rows = list(zip(*columns, strict=True))
    days = _load_days(
        session,
        operation,
        reference,
        [hotspot_id],
        visit_rows=[(hotspot_id, r[0], r[1], r[2], r[3]) for r in rows],
    )
    daily = _daily_table(days, thresholds or configured_thresholds())
    cumulative = _cumulative_table(days, operation, hotspot_id)
    visits = visits_table([r for r in rows if operation.start_date <= r[0] <= reference], params)
    return daily, cumulative, visits


def _cumulative_table(days: _Days, operation: Operation, hotspot_id: str) -> pd.DataFrame:
    if hotspot_id not in days.grid.hotspot_ids:
        raise PlanError(f"hot spot {hotspot_id!r} is not in operation {operation.name!r}")
    frame = days.frame
    counted_us = frame["counted_presence_us"].to_numpy()
    target = frame["target_presence_minutes"].to_numpy(dtype=float)
    cumulative = rounded_minutes(np.cumsum(counted_us))
    cumulative_target = np.round(np.cumsum(target), 2)
    return pd.DataFrame(
        {
            "date": pd.Series([date.fromordinal(int(o)) for o in frame["ordinal"]], dtype=object),
            "operation_day": frame["ordinal"].to_numpy() - days.grid.first + 1,
            "counted_presence_minutes": rounded_minutes(counted_us),
            "target_presence_minutes": np.round(target, 2),
            "cumulative_presence_minutes": cumulative,
            "cumulative_target_presence_minutes": cumulative_target,
            "cumulative_compliance": compliance_ratio(cumulative, cumulative_target),
        },
        columns=CUMULATIVE_COLUMNS,
    )
