"""Plan compliance (docs/plan.md) from crafted stored aggregates, with hand-computed figures.

The operation runs from Monday 2026-12-28 to 2027-03-21, when Europe/London is on GMT, so the
local times below are also UTC.
"""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

from tracker.cli import main
from tracker.foundation.clock import US_PER_MINUTE
from tracker.foundation.models import DailyDosage, HotSpotRow, HourlyPresence, Visit
from tracker.foundation.tables import records, write_table
from tracker.plan.compliance import (
    COMPLIANCE_COLUMNS,
    CUMULATIVE_COLUMNS,
    DAILY_COMPLIANCE_COLUMNS,
    OVERVIEW_COLUMNS,
    PERIODS,
    RagThresholds,
    compliance_table,
    cumulative_series,
    daily_compliance,
    hot_spot_overview,
    rag_status,
)
from tracker.plan.models import Operation
from tracker.plan.reader import parse_plan
from tracker.plan.storage import load_plan
from tracker.plan.targets import PlanError

HEAD = "operation: Test operation\nstart: 2026-12-28\nend: 2027-03-21\ntz: Europe/London\n"


def load_operation(db, hotspots: str) -> Operation:
    """Store hot spots and the plan of HEAD with the given (indented) `hotspots` block."""
    plan = parse_plan(f"{HEAD}hotspots:\n{hotspots}")
    with db.begin() as session:
        session.add_all(
            HotSpotRow(id=h, name=f"Spot {h}", geometry={}, properties={}) for h in plan.hotspot_ids
        )
        session.flush()
        return load_plan(session, plan, actor="test")


def us(minutes: float) -> int:
    return round(minutes * US_PER_MINUTE)


def t_us(local: str) -> int:
    """Microseconds of a local (here also UTC) time "YYYY-MM-DDTHH:MM"."""
    moment = datetime.fromisoformat(local).replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def store(db, daily=(), hourly=(), visits=()) -> None:
    """Insert stored aggregates directly.

    daily: (hotspot, day, presence_minutes, officer_minutes, visits);
    hourly: (hotspot, day, hour, presence_minutes);
    visits: (hotspot, start "YYYY-MM-DDTHH:MM", minutes[, device_id]).
    """
    with db.begin() as session:
        session.add_all(
            DailyDosage(
                hotspot_id=h,
                day=date.fromisoformat(d),
                presence_us=us(p),
                officer_us=us(o),
                visits=v,
            )
            for h, d, p, o, v in daily
        )
        session.add_all(
            HourlyPresence(hotspot_id=h, day=date.fromisoformat(d), hour=hour, presence_us=us(p))
            for h, d, hour, p in hourly
        )
        for h, start, minutes, *device in visits:
            start_us = t_us(start)
            session.add(
                Visit(
                    hotspot_id=h,
                    device_id=device[0] if device else "",
                    day=date.fromisoformat(start[:10]),
                    start_us=start_us,
                    end_us=start_us + us(minutes),
                    presence_us=us(minutes),
                    devices=1,
                )
            )


def rows(table, hotspot_id: str, key: str = "period") -> dict:
    """Return {period or date: row} of one hot spot."""
    mine = table[table["hotspot_id"] == hotspot_id]
    return {r[key]: r for r in mine.to_dict(orient="records")}


def same(actual, expected) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return actual == pytest.approx(expected) if isinstance(expected, float) else actual == expected


def check(row: dict, **expected) -> None:
    wrong = {k: (row[k], v) for k, v in expected.items() if not same(row[k], v)}
    assert not wrong, f"(actual, expected) differ: {wrong}"


# --- periods, RAG, over-max, visits, gaps --------------------------------------------------


def guardian_a(db) -> Operation:
    """Hot spot A: 60 minutes and 2 visits a day, at most 120 minutes a day."""
    operation = load_operation(
        db,
        "  A: {presence_minutes_per_day: 60, visits_per_day: 2, "
        "max_presence_minutes_per_day: 120}\n",
    )
    store(
        db,
        daily=[
            ("A", "2026-12-28", 60, 90, 1),
            ("A", "2027-01-02", 150, 150, 3),  # over the maximum of 120
            ("A", "2027-01-04", 60, 60, 0),
            ("A", "2027-01-05", 30, 30, 0),
            ("A", "2027-01-07", 45, 45, 2),
        ],
        visits=[
            ("A", "2026-12-28T12:00", 20),
            ("A", "2027-01-02T09:00", 30),
            ("A", "2027-01-02T13:00", 30),
            ("A", "2027-01-02T18:00", 30),
            ("A", "2027-01-06T12:00", 30, "radio-1"),  # one device's visit: not a hot spot visit
            ("A", "2027-01-07T10:00", 12),
            ("A", "2027-01-07T15:00", 5),  # shorter than min_visit_minutes (10)
        ],
    )
    return operation


def test_day_week_month_and_operation_to_date(db):
    operation = guardian_a(db)
    with db() as session:
        table = compliance_table(session, operation, date(2027, 1, 7))
    assert list(table.columns) == COMPLIANCE_COLUMNS
    assert list(table["period"]) == list(PERIODS)
    by_period = rows(table, "A")
    check(
        by_period["day"],
        hotspot_name="Spot A",
        period_start=date(2027, 1, 7),
        period_end=date(2027, 1, 7),
        days=1,
        presence_minutes=45.0,
        officer_minutes=45.0,
        visits=2,
        counted_presence_minutes=45.0,
        target_presence_minutes=60.0,
        presence_compliance=0.75,
        presence_status="amber",
        qualifying_visits=1,
        target_visits=2.0,
        visits_compliance=0.5,
        visits_status="red",
        days_over_max=0,
        over_max=False,
        longest_gap_hours=10.0,
    )
    check(
        by_period["week"],
        period_start=date(2027, 1, 4),
        period_end=date(2027, 1, 7),
        days=4,
        counted_presence_minutes=135.0,
        target_presence_minutes=240.0,
        presence_compliance=0.5625,
        presence_status="red",
        qualifying_visits=1,
        target_visits=8.0,
        longest_gap_hours=82.0,
    )
    check(
        by_period["previous_week"],
        period_start=date(2026, 12, 28),
        period_end=date(2027, 1, 3),
        days=7,
        counted_presence_minutes=210.0,
        target_presence_minutes=420.0,
        presence_compliance=0.5,
        presence_status="red",
        qualifying_visits=4,
        days_over_max=1,
        over_max=True,
        longest_gap_hours=round(116 + 40 / 60, 2),
    )
    check(
        by_period["month"],
        period_start=date(2027, 1, 1),
        period_end=date(2027, 1, 7),
        days=7,
        counted_presence_minutes=285.0,
        target_presence_minutes=420.0,
        presence_compliance=0.6786,
        presence_status="amber",
        days_over_max=1,
        longest_gap_hours=111.5,
    )
    check(
        by_period["operation"],
        period_start=date(2026, 12, 28),
        period_end=date(2027, 1, 7),
        days=11,
        presence_minutes=345.0,
        officer_minutes=375.0,
        visits=6,
        counted_presence_minutes=345.0,
        target_presence_minutes=660.0,
        presence_compliance=0.5227,
        presence_status="red",
        qualifying_visits=5,
        target_visits=22.0,
        visits_compliance=0.2273,
        days_over_max=1,
        over_max=True,
        longest_gap_hours=round(116 + 40 / 60, 2),
    )
    # Per hot spot, repeated on every period: a visit today, and 0.5625 against 0.5 is up.
    assert set(table["days_since_last_visit"]) == {0}
    assert set(table["trend"]) == {"up"}


def test_rag_thresholds_are_configurable(db):
    operation = guardian_a(db)
    with db() as session:
        table = compliance_table(
            session, operation, date(2027, 1, 7), RagThresholds(green=0.55, amber=0.5)
        )
    statuses = {p: r["presence_status"] for p, r in rows(table, "A").items()}
    assert statuses == {
        "day": "green",
        "week": "green",
        "previous_week": "amber",
        "month": "green",
        "operation": "amber",
    }


def test_rag_thresholds_come_from_the_settings(database_url, db, monkeypatch):
    """TRACKER_RAG_GREEN / TRACKER_RAG_AMBER reach the command's statuses; a bad pair is an
    error naming the settings."""
    operation = guardian_a(db)
    command = ["plan", "compliance", "--date", "2027-01-07", "--db", database_url]
    command += ["--format", "json"]
    monkeypatch.setenv("TRACKER_RAG_GREEN", "0.55")
    monkeypatch.setenv("TRACKER_RAG_AMBER", "0.5")
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    statuses = {r["period"]: r["presence_status"] for r in json.loads(result.stdout)}
    assert statuses["previous_week"] == "amber" and statuses["operation"] == "amber"
    assert statuses["day"] == statuses["week"] == statuses["month"] == "green"
    with db() as session:  # the library's default is the settings too
        default = compliance_table(session, operation, date(2027, 1, 7))
    assert list(default["presence_status"]) == [statuses[p] for p in PERIODS]
    monkeypatch.setenv("TRACKER_RAG_AMBER", "0.7")
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "configuration: thresholds need 0 <= amber <= green" in result.stderr


def test_rag_status_boundaries():
    thresholds = RagThresholds()
    assert list(rag_status([1.5, 0.9, 0.8999, 0.6, 0.5999, 0.0, np.nan], thresholds)) == [
        "green",
        "green",
        "amber",
        "amber",
        "red",
        "red",
        "none",
    ]
    with pytest.raises(ValueError, match="amber <= green"):
        RagThresholds(green=0.5, amber=0.7)


def test_days_since_the_last_hot_spot_visit(db):
    operation = load_operation(
        db, "  A: {presence_minutes_per_day: 30}\n  B: {presence_minutes_per_day: 30}\n"
    )
    store(
        db,
        visits=[
            ("A", "2026-12-20T10:00", 15),  # before the operation: still the last
            ("A", "2027-01-05T10:00", 15, "radio-1"),
            ("B", "2027-01-08T10:00", 15),
        ],
    )  # after the reference date
    with db() as session:
        table = compliance_table(session, operation, date(2027, 1, 7))
    assert rows(table, "A")["day"]["days_since_last_visit"] == 18
    assert rows(table, "B")["day"]["days_since_last_visit"] is None


@pytest.mark.parametrize(
    ("previous_minutes", "this_minutes", "trend"),
    [
        (60, 60, "flat"),
        (60, 58, "flat"),  # 0.9667 against 1.0: within the 0.05 tolerance
        (60, 56, "down"),  # 0.9333 against 1.0
        (60, 30, "down"),
        (30, 60, "up"),
    ],
)
def test_trend_compares_this_week_with_the_previous_week(db, previous_minutes, this_minutes, trend):
    operation = load_operation(db, "  A: {presence_minutes_per_day: 60}\n")
    days = [date(2027, 1, 4) + timedelta(days=i) for i in range(10)]  # Mon 4th to Wed 13th
    store(
        db,
        daily=[
            ("A", d.isoformat(), previous_minutes if d.day <= 10 else this_minutes, 0, 0)
            for d in days
        ],
    )
    with db() as session:
        table = compliance_table(session, operation, date(2027, 1, 13))
    assert set(table["trend"]) == {trend}


def test_before_the_operation_and_in_its_first_week_nothing_is_compared(db):
    operation = load_operation(db, "  A: {presence_minutes_per_day: 60}\n")
    with db() as session:
        before = compliance_table(session, operation, date(2026, 12, 1))
        first_week = compliance_table(session, operation, date(2026, 12, 30))
    assert list(before["days"]) == [0] * 5
    assert list(before["presence_status"]) == ["none"] * 5
    assert before["presence_compliance"].isna().all()
    assert list(before["trend"]) == [None] * 5
    check(
        rows(first_week, "A")["previous_week"],
        days=0,
        target_presence_minutes=0.0,
        presence_status="none",
    )
    check(rows(first_week, "A")["week"], days=3, presence_compliance=0.0, trend=None)


# --- per-week targets, phases, windows -----------------------------------------------------


def test_per_week_targets_and_phase_changes_mid_period(db):
    operation = load_operation(
        db,
        (
            "  A:\n    phases:\n"
            "      - {from: 2026-12-28, to: 2027-01-06, presence_minutes_per_day: 60}\n"
            "      - {from: 2027-01-07, to: 2027-01-10, presence_minutes_per_week: 210}\n"
            "      - {from: 2027-01-13, to: 2027-03-21, presence_minutes_per_week: 100}\n"
            "  B: {presence_minutes_per_week: 100}\n"
        ),
    )
    days = [date(2027, 1, 4) + timedelta(days=i) for i in range(14)]  # Mon 4th to Sun 17th
    store(db, daily=[(h, d.isoformat(), 30, 30, 1) for d in days for h in "AB"])
    with db() as session:
        daily = daily_compliance(session, operation, date(2027, 1, 17))
        table = compliance_table(session, operation, date(2027, 1, 17))
    assert list(daily.columns) == DAILY_COMPLIANCE_COLUMNS
    by_day = rows(daily, "A", key="date")
    check(
        by_day[date(2027, 1, 5)],
        operation_day=9,
        target_presence_minutes=60.0,
        presence_compliance=0.5,
        presence_status="red",
    )
    check(
        by_day[date(2027, 1, 8)],
        target_presence_minutes=30.0,
        presence_compliance=1.0,
        presence_status="green",
    )
    # No phase covers the 11th and 12th: no target, and nothing counts towards one.
    check(
        by_day[date(2027, 1, 11)],
        presence_minutes=30.0,
        counted_presence_minutes=0.0,
        target_presence_minutes=0.0,
        presence_compliance=float("nan"),
        presence_status="none",
        target_visits=0.0,
        visits_status="none",
    )
    check(
        by_day[date(2027, 1, 13)],
        target_presence_minutes=14.29,
        presence_compliance=round(30 / 14.29, 4),
    )
    a, b = rows(table, "A"), rows(table, "B")
    # Mon-Wed at 60 a day, Thu-Sun at 210 a week (30 a day).
    check(
        a["previous_week"],
        target_presence_minutes=300.0,
        counted_presence_minutes=210.0,
        presence_compliance=0.7,
        presence_status="amber",
    )
    # Five days at 100 a week, the two days without a phase left out.
    check(
        a["week"],
        target_presence_minutes=71.43,
        counted_presence_minutes=150.0,
        presence_compliance=2.1,
        presence_status="green",
    )
    # Seven days of a per-week target add up to exactly that target.
    check(
        b["previous_week"],
        target_presence_minutes=100.0,
        counted_presence_minutes=210.0,
        presence_compliance=2.1,
    )


WINDOWED = '{presence_minutes_per_day: 60, visits_per_day: 1, windows: ["Fri-Sat 18:00-02:00"]}'


def windowed_spots(db) -> Operation:
    """B has Fri-Sat 18:00-02:00 windows throughout; C has them until Saturday 9 January and
    no windows from Sunday 10 January. Both get the same stored figures."""
    operation = load_operation(
        db,
        (
            f"  B: {WINDOWED}\n"
            "  C:\n    phases:\n"
            f"      - {WINDOWED[:-1]}, to: 2027-01-09}}\n"
            "      - {from: 2027-01-10, presence_minutes_per_day: 60, visits_per_day: 1}\n"
        ),
    )
    for spot in "BC":
        store(
            db,
            daily=[
                (spot, "2027-01-07", 30, 30, 0),
                (spot, "2027-01-08", 50, 50, 0),
                (spot, "2027-01-09", 75, 75, 2),
                (spot, "2027-01-10", 65, 65, 1),
            ],
            hourly=[
                (spot, "2027-01-07", 20, 30),  # Thursday: no window
                (spot, "2027-01-08", 17, 30),  # Friday before the window opens
                (spot, "2027-01-08", 19, 20),  # Friday's window
                (spot, "2027-01-09", 1, 25),  # Friday's window, after midnight
                (spot, "2027-01-09", 2, 10),  # after Friday's window closed at 02:00
                (spot, "2027-01-09", 22, 40),  # Saturday's window
                (spot, "2027-01-10", 0, 15),  # Saturday's window, after midnight
                (spot, "2027-01-10", 12, 50),  # Sunday: no window (for B)
            ],
            visits=[
                (spot, "2027-01-04T12:00", 15),  # Monday: outside the windows
                (spot, "2027-01-09T01:10", 15),  # in Friday's window
                (spot, "2027-01-09T22:30", 8),  # in Saturday's window, but too short
                (spot, "2027-01-10T12:00", 15),  # Sunday noon
            ],
        )
    return operation


def test_windows_count_only_presence_and_visits_inside_them(db):
    operation = windowed_spots(db)
    with db() as session:
        daily = daily_compliance(session, operation, date(2027, 1, 10))
        table = compliance_table(session, operation, date(2027, 1, 10))
    b = rows(daily, "B", key="date")
    check(
        b[date(2027, 1, 7)],
        presence_minutes=30.0,
        counted_presence_minutes=0.0,
        target_presence_minutes=0.0,
        presence_status="none",
    )
    # Friday: 20 minutes at 19:00 and 25 after midnight; not the 30 before 18:00.
    check(
        b[date(2027, 1, 8)],
        presence_minutes=50.0,
        counted_presence_minutes=45.0,
        target_presence_minutes=60.0,
        presence_compliance=0.75,
        presence_status="amber",
        qualifying_visits=1,
        target_visits=1.0,
        visits_compliance=1.0,
    )
    # Saturday: 40 at 22:00 and 15 after midnight on Sunday; not 25 + 10 of the early hours.
    check(
        b[date(2027, 1, 9)],
        presence_minutes=75.0,
        counted_presence_minutes=55.0,
        presence_compliance=0.9167,
        presence_status="green",
        qualifying_visits=0,
        visits_compliance=0.0,
    )
    check(
        b[date(2027, 1, 10)],
        counted_presence_minutes=0.0,
        target_presence_minutes=0.0,
        qualifying_visits=0,
        target_visits=0.0,
    )
    check(
        rows(table, "B")["week"],
        presence_minutes=220.0,
        counted_presence_minutes=100.0,
        target_presence_minutes=120.0,
        presence_compliance=0.8333,
        presence_status="amber",
        qualifying_visits=1,
        target_visits=2.0,
    )
    # C from Sunday has no windows: the day's presence less the hour Saturday's window took.
    c = rows(daily, "C", key="date")
    check(
        c[date(2027, 1, 10)],
        presence_minutes=65.0,
        counted_presence_minutes=50.0,
        target_presence_minutes=60.0,
        qualifying_visits=1,
        target_visits=1.0,
    )
    check(
        rows(table, "C")["week"],
        counted_presence_minutes=150.0,
        target_presence_minutes=180.0,
        presence_compliance=0.8333,
    )


def test_longest_gap_counts_only_patrol_window_time(db):
    operation = windowed_spots(db)
    with db() as session:
        b, c = (rows(compliance_table(session, operation, date(2027, 1, 10)), h) for h in "BC")
    # Mon 12:15 to Sat 01:10 is 108.9 h on the clock but only Fri 18:00-Sat 01:10 in windows;
    # Sat 01:25-22:30 is 21.1 h but 35 min + 4.5 h in windows.
    assert b["week"]["longest_gap_hours"] == round(7 + 10 / 60, 2)
    # C's Sunday is a whole patrol day that joins Saturday's window: 22:38 to 12:00.
    assert c["week"]["longest_gap_hours"] == round(13 + 22 / 60, 2)
    # On Sunday no window opens for B (the early hours are Saturday's); C patrols all day.
    assert math.isnan(b["day"]["longest_gap_hours"])
    assert c["day"]["longest_gap_hours"] == 12.0
    assert math.isnan(b["previous_week"]["longest_gap_hours"])


def test_daily_figures_add_up_to_the_period_figures(db):
    operation = windowed_spots(db)
    with db() as session:
        daily = daily_compliance(session, operation, date(2027, 1, 10))
        table = compliance_table(session, operation, date(2027, 1, 10))
    operation_rows = table[table["period"] == "operation"].set_index("hotspot_id")
    sums = daily.groupby("hotspot_id")[
        [
            "counted_presence_minutes",
            "target_presence_minutes",
            "presence_minutes",
            "qualifying_visits",
        ]
    ].sum()
    for column in sums.columns:
        assert list(sums[column]) == pytest.approx(list(operation_rows[column]))


# --- the chart, the overview and the command line ------------------------------------------


def test_cumulative_series_against_the_plan(db):
    operation = load_operation(db, "  A: {presence_minutes_per_day: 60}\n")
    store(
        db,
        daily=[
            ("A", "2026-12-28", 60, 60, 1),
            ("A", "2026-12-29", 30, 30, 1),
            ("A", "2026-12-31", 45, 45, 1),
        ],
    )
    with db() as session:
        series = cumulative_series(session, operation, "A", date(2026, 12, 31))
        with pytest.raises(PlanError, match="not in operation"):
            cumulative_series(session, operation, "Z", date(2026, 12, 31))
    assert list(series.columns) == CUMULATIVE_COLUMNS
    assert list(series["date"]) == [date(2026, 12, 28) + timedelta(days=i) for i in range(4)]
    assert list(series["operation_day"]) == [1, 2, 3, 4]
    assert list(series["cumulative_presence_minutes"]) == [60, 90, 90, 135]
    assert list(series["cumulative_target_presence_minutes"]) == [60, 120, 180, 240]
    assert list(series["cumulative_compliance"]) == [1.0, 0.75, 0.5, 0.5625]


def test_overview_shows_the_figures_of_the_table(db):
    operation = guardian_a(db)
    with db() as session:
        table = compliance_table(session, operation, date(2027, 1, 7))
    overview = hot_spot_overview(table)
    assert list(overview.columns) == OVERVIEW_COLUMNS
    (row,) = overview.to_dict(orient="records")
    check(
        row,
        hotspot_id="A",
        day_presence_compliance=0.75,
        day_presence_status="amber",
        week_presence_compliance=0.5625,
        operation_presence_compliance=0.5227,
        week_over_max=False,
        week_longest_gap_hours=82.0,
        days_since_last_visit=0,
        trend="up",
    )


def test_plan_compliance_command_prints_the_same_table(database_url, db):
    operation = guardian_a(db)
    result = CliRunner().invoke(
        main,
        ["plan", "compliance", "--date", "2027-01-07", "--db", database_url, "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    with db() as session:
        table = compliance_table(session, operation, date(2027, 1, 7))
    assert json.loads(result.stdout) == json.loads(json.dumps(records(table)))
    result = CliRunner().invoke(
        main, ["plan", "compliance", "--date", "2027-01-07", "--db", database_url]
    )
    expected = io.StringIO()
    write_table(table, "csv", expected)
    assert result.stdout == expected.getvalue()
    assert result.stdout.splitlines()[0] == ",".join(COMPLIANCE_COLUMNS)
