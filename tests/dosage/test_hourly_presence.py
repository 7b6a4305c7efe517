"""Presence per local clock hour: sums to the daily figure, and DST days have 23 or 25 hours."""

from datetime import date

import pytest

from tests.builders import BOX_A, IN_A, dosage, hot_spot_set, polygon_feature, track


@pytest.fixture(scope="module")
def spot_a():
    return hot_spot_set(polygon_feature("A", BOX_A))


def hours_of(result, day: str) -> dict[int, float]:
    rows = result.hourly[result.hourly["date"] == date.fromisoformat(day)]
    return {int(h): us / 60e6 for h, us in zip(rows["hour"], rows["presence_us"], strict=True)}


def test_a_span_across_an_hour_boundary_is_split_to_the_second(spot_a):
    # Pings at 10:59:00 and 11:01:00 BST (09:59, 10:01 UTC) in July: 1 minute in each hour.
    result = dosage(track("d1", "2026-07-01T10:59:00+01:00", 120, 2, *IN_A), spot_a)
    assert hours_of(result, "2026-07-01") == {10: 1.0, 11: 1.0}


@pytest.mark.parametrize(
    ("day", "start", "hours", "total_minutes"),
    [
        # 29 March 2026: clocks go forward at 01:00 UTC; local 01:00-02:00 never happens.
        ("2026-03-29", "2026-03-29T00:00:00+00:00", 23, 1380),
        # 25 October 2026: clocks go back at 01:00 UTC; local 01:00-02:00 happens twice.
        ("2026-10-25", "2026-10-25T00:00:00+01:00", 25, 1500),
    ],
)
def test_hours_of_a_dst_day_add_up_to_the_day(spot_a, day, start, hours, total_minutes):
    # One ping a minute from local midnight for the whole local day, and one more at the
    # next midnight, so the day is covered completely.
    result = dosage(track("d1", start, 60, total_minutes + 1, *IN_A), spot_a)
    by_hour = hours_of(result, day)
    assert sum(by_hour.values()) == pytest.approx(total_minutes)
    daily = result.daily[result.daily["date"] == date.fromisoformat(day)]
    assert daily["presence_minutes"].item() == pytest.approx(sum(by_hour.values()))
    if hours == 23:
        assert 1 not in by_hour and len(by_hour) == 23
    else:
        assert by_hour[1] == pytest.approx(120.0)  # both 01:00 hours in one row
        assert len(by_hour) == 24


def test_hourly_is_presence_not_officer_time(spot_a):
    # Two officers together for 10 minutes: 10 presence minutes in the hour, not 20.
    pings = track("d1", "2026-07-01T14:00:00+01:00", 60, 11, *IN_A) + track(
        "d2", "2026-07-01T14:00:00+01:00", 60, 11, *IN_A
    )
    result = dosage(pings, spot_a)
    assert hours_of(result, "2026-07-01") == {14: 10.0}
