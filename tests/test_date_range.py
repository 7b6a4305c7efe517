"""Every date a user supplies falls in the range the tracker handles, 1970-01-01 to
2099-12-31, and an operation runs at most five years: outside, each is refused with a clear
message naming what is wrong (a plan to 9999-12-31 used to load and then fail every page)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tracker.dosage.devices import AssignmentError, parse_assignments
from tracker.dosage.pings import PingError, parse_timestamp
from tracker.foundation import parsing
from tracker.plan.reader import MAX_OPERATION_DAYS, parse_plan
from tracker.plan.targets import PlanError
from tracker.stops.records import StopValidationError, create_stop

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def plan(start: str, end: str) -> str:
    return (
        f"operation: Op\nstart: {start}\nend: {end}\ntz: Europe/London\n"
        "defaults:\n  presence_minutes_per_day: 30\nhotspots:\n  LE01: {}\n"
    )


@pytest.mark.parametrize(
    ("start", "end", "problem"),
    [
        ("2026-12-01", "9999-12-31", "line 3: end: 9999-12-31 is outside the dates handled"),
        ("1969-12-31", "1970-06-30", "line 2: start: 1969-12-31 is outside the dates handled"),
        ("2026-01-01", "2031-01-02", "line 3: end: the operation would run 1,828 days"),
    ],
)
def test_a_plan_outside_the_dates_or_longer_than_five_years_is_refused(start, end, problem):
    with pytest.raises(PlanError, match=problem):
        parse_plan(plan(start, end), source="plan.yaml")


def test_a_five_year_plan_at_the_edges_of_the_range_loads():
    assert MAX_OPERATION_DAYS == 1827
    parsed = parse_plan(plan("2095-01-01", "2099-12-31"))  # 1,826 days, up to the last date
    assert (parsed.end_date - parsed.start_date).days + 1 == 1826
    assert parse_plan(plan("2026-01-01", "2031-01-01")).end_date.year == 2031  # 1,827 days


def test_a_phase_date_outside_the_range_is_refused():
    text = plan("2026-01-01", "2026-12-31").replace(
        "  LE01: {}\n", "  LE01:\n    phases:\n      - {from: 0001-01-01, to: 2026-06-30}\n"
    )
    with pytest.raises(PlanError, match="0001-01-01 is outside the dates handled"):
        parse_plan(text)


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", 4102444800],
)
def test_a_ping_outside_the_dates_is_refused(value):
    with pytest.raises(PingError, match=r"outside the dates handled|after 2099-12-31"):
        parse_timestamp(value)


def test_the_first_and_last_instants_are_accepted():
    assert parse_timestamp("1970-01-01T00:00:00Z") == 0
    assert parse_timestamp("2099-12-31T23:59:59.999999Z") == 4102444800 * 10**6 - 1
    assert parse_timestamp(4102444799) == 4102444799 * 10**6


def test_an_assignment_outside_the_dates_is_refused():
    text = "device_id,officer_id,officer_name,starts,ends\nr1,PC1,Alice,0001-01-01T00:00:00Z,\n"
    with pytest.raises(AssignmentError, match="outside the dates handled"):
        parse_assignments(text, source="devices.csv")


def test_a_stop_outside_the_dates_is_refused(db):
    values = {
        "type": "Person search",
        "occurred_at": "0001-01-01T00:00:00+00:00",
        "object_of_search": "Controlled drugs",
        "outcome": "Arrest",
    }
    with db.begin() as session, pytest.raises(StopValidationError) as caught:
        create_stop(session, values, actor="pc7", now=NOW)
    assert "outside the dates handled" in caught.value.errors["occurred_at"]


def test_query_dates_use_the_same_range():
    with pytest.raises(ValueError, match="outside the dates handled, 1970-01-01 to 2099-12-31"):
        parsing.parse_day("2100-01-01")
