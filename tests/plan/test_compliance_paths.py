"""The overview's fast path agrees exactly with the full compliance table, on both databases.

`overview_table` promises to return exactly `hot_spot_overview(compliance_table(...))`,
although it sums the operation-to-date counted presence and targets in SQL over runs of
days (`_operation_presence_sums`) and reads only the visits around this week for the
longest gap. The property test draws valid plans (phases, per-day and per-week targets,
patrol windows crossing midnight, phases with windows next to phases without, operations
spanning the UK clock changes) and stored aggregates made the way the product makes them
(credited spans through the dosage engine), then compares the two tables cell by cell for
a few reference dates. Because the overview shows minutes to 2 decimals only, it also
checks the operation sums behind it to the microsecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from tracker.dosage.engine import SPAN_COLUMNS, DosageParams, dosage_from_spans
from tracker.foundation.models import DailyDosage, HotSpotRow, HourlyPresence, Visit
from tracker.plan.compliance import (
    OVERVIEW_COLUMNS,
    SUMMED,
    _load_days,
    _operation_presence_sums,
    compliance_table,
    hot_spot_overview,
    overview_table,
    period_bounds,
)
from tracker.plan.models import Operation, OperationHotSpot, PlanPhase
from tracker.plan.reader import parse_plan
from tracker.plan.storage import load_plan
from tracker.plan.targets import PlanError

TZ = "Europe/London"
ZONE = ZoneInfo(TZ)
PARAMS = DosageParams(tz=TZ)
US_PER_S = 1_000_000
# Operations are drawn to start up to 40 days before a UK clock change, so most hold one.
CLOCK_CHANGES = [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2027, 10, 31)]
SPOTS = ("A", "B", "C", "D")
OUTSIDER = "Z"  # a stored hot spot with dosage that is in no plan: never shown

# --- plans -------------------------------------------------------------------------------

DAYS = [
    "",
    "Daily ",
    "Mon ",
    "Sun ",
    "Fri-Sat ",
    "Sat-Mon ",
    "Mon,Wed ",
    "Thu-Sat ",
    "Tue,Fri-Sun ",
    "Monday-Friday ",
]
# Windows as docs/plan.md writes them, and ones touching the hour the clocks change (01:00).
NAMED_WINDOWS = [
    "Fri-Sat 22:00-02:00",
    "Daily 18:00-24:00",
    "Daily 22:00-06:00",
    "Sat-Sun 00:00-03:00",
    "Sun 01:00-02:00",
    "Sat 23:00-01:00",
    "Daily 00:00-24:00",
]

# Windows opening every day and running past midnight: whichever day a phase with them
# ends on, its window claims the early hours of the next day.
NIGHT_WINDOWS = ["Daily 20:00-03:00", "23:00-02:00", "Mon-Sun 18:00-01:00"]


@st.composite
def windows(draw) -> str:
    """One patrol window: whole hours, perhaps ending the next morning."""
    if draw(st.booleans()):
        return draw(st.sampled_from(NAMED_WINDOWS))
    start = draw(st.integers(0, 23))
    end = draw(st.integers(1, 24).filter(lambda e: e % 24 != start or (start, e) == (0, 24)))
    return f"{draw(st.sampled_from(DAYS))}{start:02d}:00-{end:02d}:00"


ABSENT = object()
WINDOW_KEY = st.one_of(
    st.just(ABSENT),
    st.just(ABSENT),
    st.just([]),  # clears windows inherited from a layer below
    windows(),  # a single string
    st.lists(windows(), min_size=1, max_size=3),
)
NUMBERS = {
    "presence_minutes_per_day": st.sampled_from([0, 10, 15, 30, 45, 60, 20.5, 100 / 3, 90, 120]),
    "presence_minutes_per_week": st.sampled_from([0, 60, 100, 150, 240, 420, 99.9]),
    "visits_per_day": st.sampled_from([0, 1, 2, 3, 1.5]),
    "min_visit_minutes": st.sampled_from([0, 2, 2.5, 10, 15]),
    "max_presence_minutes_per_day": st.sampled_from([60, 120, 180, 300.5, 1440]),
}


@st.composite
def targets(draw, presence_likely: bool = False) -> dict:
    """The target keys of one layer (defaults, a hot spot or a phase)."""
    layer: dict = {}
    presence = st.sampled_from(["presence_minutes_per_day", "presence_minutes_per_week", None])
    key = draw(presence if not presence_likely else presence.filter(bool) | presence)
    if key:
        layer[key] = draw(NUMBERS[key])
    for key in ("visits_per_day", "min_visit_minutes", "max_presence_minutes_per_day"):
        if draw(st.booleans()):
            layer[key] = draw(NUMBERS[key])
    window = draw(WINDOW_KEY)
    if window is not ABSENT:
        layer["windows"] = window
    return layer


@st.composite
def phases(draw, start: date, n_days: int, many: bool) -> list[dict]:
    """1-4 phases in order (or, if `many`, up to 60 of 1-3 days that only switch windows on
    and off), often back to back so that a day without windows follows one whose window
    runs past midnight into it, sometimes with days between them that no phase covers."""
    chosen: list[dict] = []
    offset = 0
    length = st.integers(1, 3) if many else st.integers(1, n_days)
    for _ in range(draw(st.integers(30, 60) if many else st.integers(1, 4))):
        first = offset + draw(st.sampled_from([0, 0, 0, 0, 1, 6]))
        if first > n_days - 1:
            break
        last = min(first + draw(length) - 1, n_days - 1)
        phase: dict = {}
        # "from" and "to" default to the operation's start and end.
        if first > 0 or draw(st.booleans()):
            phase["from"] = start + timedelta(days=first)
        if last < n_days - 1 or draw(st.booleans()):
            phase["to"] = start + timedelta(days=last)
        had_windows = bool(chosen and chosen[-1].get("windows"))
        if many:  # (other targets could make one of the many phases invalid, and so the plan)
            layer = {"windows": [] if had_windows else [draw(st.sampled_from(NIGHT_WINDOWS))]}
        else:
            layer = draw(targets())
            if draw(st.integers(0, 3)):
                night = st.sampled_from(NIGHT_WINDOWS) | windows()
                layer["windows"] = (
                    [] if had_windows else draw(st.lists(night, min_size=1, max_size=2))
                )
        chosen.append(phase | layer)
        offset = last + 1
    return chosen


@dataclass(frozen=True)
class Case:
    """A plan (YAML), credited spans (hot spot, device, UTC start, seconds), reference days."""

    plan: str
    spans: tuple[tuple[str, str, str, int], ...]
    references: tuple[date, ...]


def local_instant(day: date, hour: int, minute: int, second: int, fold: int) -> str:
    """Return the UTC instant of a local wall time as "YYYY-MM-DDTHH:MM:SSZ" (a time the
    spring change skips, or the autumn change repeats, is resolved by fold)."""
    wall = datetime.combine(day, time(hour, minute, second), tzinfo=ZONE).replace(fold=fold)
    return wall.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def spans(draw, hotspot_id: str, start: date, n_days: int) -> list[tuple[str, str, str, int]]:
    """Credited spans of one hot spot: scattered ones, and daily habits (the same time every
    day or every few days), from the day before the operation to the day after it."""
    device = st.sampled_from(["d1", "d2", "d3"])
    seconds = st.sampled_from([30, 119, 600, 1800, 3600, 3 * 3600, 9 * 3600, 26 * 3600])
    seconds = seconds | st.integers(1, 4 * 3600)
    # Hours around midnight often: those are the hours a window of the day before claims.
    hour = st.sampled_from([23, 0, 0, 1, 2]) | st.integers(0, 23)
    minute = st.sampled_from([0, 0, 30, 59]) | st.integers(0, 59)
    drawn = []
    for _ in range(draw(st.integers(0, 12))):
        day = start + timedelta(days=draw(st.integers(-2, n_days + 1)))
        at = local_instant(
            day, draw(hour), draw(minute), draw(st.integers(0, 59)), draw(st.integers(0, 1))
        )
        drawn.append((hotspot_id, draw(device), at, draw(seconds)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        at_hour, at_minute = draw(hour), draw(minute)
        length = draw(st.sampled_from([1800, 3600, 2 * 3600, 5 * 3600]) | seconds)
        who, every = draw(device), draw(st.sampled_from([1, 1, 2, 3]))
        for offset in range(-1, n_days + 1, every):
            at = local_instant(start + timedelta(days=offset), at_hour, at_minute, 0, 0)
            drawn.append((hotspot_id, who, at, length))
    return drawn


@st.composite
def cases(draw) -> Case:
    """A plan that parse_plan accepts, stored dosage for it, and 1-3 reference dates."""
    start = draw(st.sampled_from(CLOCK_CHANGES)) - timedelta(days=draw(st.integers(0, 40)))
    # Now and then many short phases: over 100 runs of days, so the SQL sums (see
    # _operation_presence_sums) take more than one UNION.
    many = draw(st.sampled_from([False, False, False, False, True]))
    n_days = draw(st.integers(90, 120) if many else st.integers(7, 120))
    end = start + timedelta(days=n_days - 1)
    spots = SPOTS[: draw(st.integers(1, len(SPOTS)))]
    hotspots = {}
    for spot in spots:
        value = draw(targets())
        if many or draw(st.integers(0, 2)):
            value["phases"] = draw(phases(start, n_days, many))
        hotspots[spot] = value
    plan: dict = {"operation": "Property", "start": start, "end": end, "tz": TZ}
    defaults = draw(targets(presence_likely=True))
    if defaults:
        plan["defaults"] = defaults
    plan["hotspots"] = hotspots
    text = yaml.safe_dump(plan, sort_keys=False)
    try:
        parse_plan(text)
    except PlanError:
        reject()  # a target over the windows' hours, a maximum under it, no target at all
    drawn = [s for spot in (*spots, OUTSIDER) for s in draw(spans(spot, start, n_days))]
    offsets = st.integers(0, n_days - 1) | st.sampled_from([-1, n_days - 1, n_days, n_days + 6])
    references = draw(st.lists(offsets, min_size=1, max_size=3, unique=True))
    return Case(text, tuple(drawn), tuple(start + timedelta(days=d) for d in references))


# --- storing -----------------------------------------------------------------------------


def replace_data(db, case: Case) -> Operation:
    """Replace the operation, hot spots and dosage with the case's (the database outlives
    each example): the dosage tables as tracker.dosage.recompute writes them from credited
    spans (but device_daily_dosage, which compliance never reads)."""
    plan = parse_plan(case.plan)
    result = dosage_from_spans(credited(case.spans), PARAMS)
    with db.begin() as session:
        for model in (
            PlanPhase,
            OperationHotSpot,
            Operation,
            Visit,
            HourlyPresence,
            DailyDosage,
            HotSpotRow,
        ):
            session.execute(delete(model))
        session.add_all(
            HotSpotRow(id=h, name=f"Spot {h}", geometry={}, properties={})
            for h in (*plan.hotspot_ids, OUTSIDER)
        )
        session.flush()
        operation = load_plan(session, plan, actor="test")
        insert(session, DailyDosage, result.daily, day="date")
        insert(session, HourlyPresence, result.hourly, day="date")
        insert(session, Visit, result.visits.assign(device_id=""), day="date")
        insert(session, Visit, result.device_visits.assign(devices=1), day="date")
    return operation


def credited(spans) -> pd.DataFrame:
    """Return the spans as SPAN_COLUMNS, overlapping spans of one device in one hot spot
    merged: the product credits a device's time in a hot spot once."""
    merged: list[list] = []
    for h, d, start_us, end_us in sorted(
        (h, d, us, us + seconds * US_PER_S)
        for h, d, at, seconds in spans
        for us in [round(datetime.fromisoformat(at).timestamp()) * US_PER_S]
    ):
        if merged and merged[-1][:2] == [h, d] and start_us <= merged[-1][3]:
            merged[-1][3] = max(merged[-1][3], end_us)
        else:
            merged.append([h, d, start_us, end_us])
    return pd.DataFrame(merged, columns=SPAN_COLUMNS)


def insert(session, model, frame: pd.DataFrame, **renamed: str) -> None:
    """Insert the frame's columns that the model has (`renamed`: column = frame column)."""
    columns = [c.key for c in model.__table__.columns if c.key != "id"]
    source = {c: renamed.get(c, c) for c in columns}
    rows = [
        dict(zip(columns, values, strict=True))
        for values in zip(*(frame[source[c]].tolist() for c in columns), strict=True)
    ]
    if rows:
        session.execute(model.__table__.insert(), rows)


# --- comparing ---------------------------------------------------------------------------


def cells(frame: pd.DataFrame) -> list[list[tuple[str, object]]]:
    """Each cell as (type name, value), NaN as a marker: None, NaN, 1 and 1.0 all differ."""
    return [
        [(type(v).__name__, "NaN" if isinstance(v, float) and math.isnan(v) else v) for v in row]
        for row in frame.itertuples(index=False)
    ]


def assert_same_overview(session, operation: Operation, reference: date) -> None:
    """overview_table equals hot_spot_overview(compliance_table(...)) exactly, and the
    operation sums behind it are the full path's to the microsecond."""
    fast = overview_table(session, operation, reference)
    full = hot_spot_overview(compliance_table(session, operation, reference))
    assert list(fast.columns) == OVERVIEW_COLUMNS
    pd.testing.assert_frame_equal(fast, full, check_exact=True)
    assert cells(fast) == cells(full)

    # The overview rounds to 0.01 minute (600 000 µs), so check the sums themselves too.
    days = _load_days(session, operation, reference)
    first, last = (d.toordinal() for d in period_bounds(operation, reference)["operation"])
    frame = days.frame
    inside = frame[(frame["ordinal"] >= first) & (frame["ordinal"] <= last)]
    n = len(days.grid.hotspot_ids)
    expected = inside.groupby("hotspot")[SUMMED].sum().reindex(range(n), fill_value=0)
    sums = _operation_presence_sums(session, days, first, last)
    for column in ("counted_presence_us", "target_presence_minutes"):
        assert sums[column].tolist() == expected[column].tolist(), column


# --- the tests ---------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_overview_fast_path_equals_the_full_table(db, case):
    operation = replace_data(db, case)
    with db() as session:
        for reference in case.references:
            assert_same_overview(session, operation, reference)


def test_windows_then_no_windows_by_hand(db):
    """C patrols Fri-Sat 18:00-02:00 to Saturday 9 January 2027 and all day from Sunday 10th
    (London is on UTC). Reference Sunday 10th; target days so far: Fri 1st, Sat 2nd, Fri 8th,
    Sat 9th (windows) and Sun 10th, 60 minutes each.

    Fri 8th counts 19:00 (20 min) and Sat 01:00 (25), not Sat 02:00 (10): 45. Sat 9th
    counts 22:00 (40) and Sun 00:00 (15): 55. Sun 10th has 65 minutes less the 15 that
    Saturday's window claimed: 50. Operation 150 / 300, this week 150 / 180, today 50 / 60,
    last week 0 / 120. The longest gap this week is Sun 00:15-12:00 (11.75 h): Saturday's
    window runs into Sunday, which is patrol time all day.
    """
    plan = """\
operation: By hand
start: 2026-12-28
end: 2027-01-31
tz: Europe/London
hotspots:
  C:
    presence_minutes_per_day: 60
    phases:
      - {to: 2027-01-09, windows: ["Fri-Sat 18:00-02:00"]}
      - {from: 2027-01-10}
"""
    visits = [
        ("2027-01-08T19:00:00Z", 20),
        ("2027-01-09T01:00:00Z", 25),
        ("2027-01-09T02:00:00Z", 10),
        ("2027-01-09T22:00:00Z", 40),
        ("2027-01-10T00:00:00Z", 15),
        ("2027-01-10T12:00:00Z", 50),
    ]
    case = Case(plan, tuple(("C", "d1", at, minutes * 60) for at, minutes in visits), ())
    operation = replace_data(db, case)
    with db() as session:
        assert_same_overview(session, operation, date(2027, 1, 10))
        (row,) = overview_table(session, operation, date(2027, 1, 10)).to_dict("records")
    assert row == {
        "hotspot_id": "C",
        "hotspot_name": "Spot C",
        "day_presence_compliance": 0.8333,
        "day_presence_status": "amber",
        "week_presence_compliance": 0.8333,
        "week_presence_status": "amber",
        "operation_presence_compliance": 0.5,
        "operation_presence_status": "red",
        "week_over_max": False,
        "week_longest_gap_hours": 11.75,
        "days_since_last_visit": 0,
        "trend": "up",
    }
