"""Tasking, where to patrol now (docs/tasking.md): hand-worked lists on both databases.

Presence is stored the way the product stores it: a radio standing in a hot spot pings
every minute, the pings go through store_pings and the recompute, so a patrol of N minutes
is exactly N minutes of presence from its first ping to its last. Europe/London is on BST
(UTC+1) in June.

The plan: N has 60 minutes a day in "Fri-Sat 18:00-02:00"; S has 30 minutes a day, no
windows (patrol time all day) and a maximum of 60 a day; W has 45 minutes a day in
"Daily 08:00-10:00". 2026-06-05 is a Friday.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.builders import hot_spot_set, ping, square_feature
from tracker.dosage.devices import AssignmentRow, load_assignments
from tracker.dosage.engine import DosageParams
from tracker.dosage.recompute import bring_up_to_date, replace_hot_spots
from tracker.dosage.store import store_pings
from tracker.plan.compliance import daily_compliance
from tracker.plan.reader import parse_plan
from tracker.plan.storage import find_operation, load_plan
from tracker.plan.tasking import (
    NO_PLAN,
    Need,
    distance_text,
    duration_text,
    parse_moment,
    ranked,
    reason,
    tasking,
)

TZ = "Europe/London"
ZONE = ZoneInfo(TZ)
PARAMS = DosageParams(tz=TZ)
CENTRES = {"N": (51.52, -0.10), "S": (51.48, -0.10), "W": (51.50, -0.14)}
HOT_SPOTS = hot_spot_set(*(square_feature(h, lat, lon, 200) for h, (lat, lon) in CENTRES.items()))
PLAN = (
    "operation: Operation Tasking\nstart: 2026-03-02\nend: 2026-12-31\ntz: Europe/London\n"
    "hotspots:\n"
    '  N: {presence_minutes_per_day: 60, windows: ["Fri-Sat 18:00-02:00"]}\n'
    "  S: {presence_minutes_per_day: 30, max_presence_minutes_per_day: 60}\n"
    '  W: {presence_minutes_per_day: 45, windows: ["Daily 08:00-10:00"]}\n'
)
OPERATION_END = "2027-01-01T00:00:00+00:00"  # the end of S's patrol time: no windows


def setup(db, plan: str | None = PLAN) -> None:
    """Store the three hot spots and, unless None, the plan."""
    with db.begin() as session:
        replace_hot_spots(session, HOT_SPOTS, PARAMS)
        if plan:
            load_plan(session, parse_plan(plan), actor="test")


def patrol(db, spot: str, start: str, minutes: int, device: str | None = None) -> None:
    """Store a radio standing in a hot spot, pinging every minute from `start` (ISO 8601 with
    an offset) for `minutes` minutes, and bring the stored figures up to date."""
    first = datetime.fromisoformat(start)
    lat, lon = CENTRES[spot]
    pings = [
        ping(device or f"radio-{spot}", (first + timedelta(minutes=i)).isoformat(), lat, lon)
        for i in range(minutes + 1)
    ]
    with db.begin() as session:
        store_pings(session, pings, PARAMS, source="import")
    bring_up_to_date(db.begin, HOT_SPOTS, PARAMS)


def tasking_at(db, when: str) -> list[dict]:
    """Return the tasking list as the API gives it, at `when` (ISO 8601 with an offset)."""
    with db() as session:
        return tasking(session, PARAMS, parse_moment(when)).to_json()


def by_id(items: list[dict]) -> dict[str, dict]:
    return {item["hotspot_id"]: item for item in items}


def order(items: list[dict]) -> list[str]:
    assert [item["rank"] for item in items] == list(range(1, len(items) + 1))
    return [item["hotspot_id"] for item in items]


# --- window open and closed, never visited, only presence up to `at` ------------------------


def test_window_open_before_closed_then_most_short(db):
    setup(db)
    patrol(db, "N", "2026-06-05T12:00:00+01:00", 30)  # outside N's window: counts nothing
    patrol(db, "N", "2026-06-05T18:30:00+01:00", 20)
    patrol(db, "S", "2026-06-05T09:00:00+01:00", 10)

    items = tasking_at(db, "2026-06-05T20:00:00+01:00")

    # N and S may be patrolled with effect now (N's window is open, S has none: all day);
    # N is further short of its target. W's window (08:00-10:00) is closed.
    assert order(items) == ["N", "S", "W"]
    n, s, w = (by_id(items)[h] for h in "NSW")
    assert n == {
        "hotspot_id": "N",
        "hotspot_name": "Hot spot N",
        "rank": 1,
        "last_presence_end": "2026-06-05T18:50:00+01:00",
        "minutes_since_presence": 70.0,
        "window_open": True,
        "window_end": "2026-06-06T02:00:00+01:00",
        "next_window_start": "2026-06-06T18:00:00+01:00",
        "target_minutes": 60.0,
        "counted_minutes": 20.0,
        "short_minutes": 40.0,
        "over_max": False,
        "reason": "no presence for 1 h 10 min; Fri-Sat 18:00-02:00 window open until "
        "Sat 02:00; 40 min short today",
    }
    assert (s["window_open"], s["window_end"], s["next_window_start"]) == (
        True,
        OPERATION_END,
        None,
    )
    assert (s["counted_minutes"], s["short_minutes"], s["minutes_since_presence"]) == (
        10.0,
        20.0,
        650.0,
    )
    assert s["reason"] == (
        "no presence for 10 h 50 min; no windows: patrol time all day; 20 min short today"
    )
    assert (w["window_open"], w["next_window_start"], w["short_minutes"]) == (
        False,
        "2026-06-06T08:00:00+01:00",
        45.0,
    )
    assert (w["last_presence_end"], w["minutes_since_presence"]) == (None, None)
    assert w["reason"] == "no presence on record; window opens Sat 08:00; 45 min short today"


def test_only_presence_up_to_at_counts(db):
    setup(db)
    patrol(db, "N", "2026-06-05T18:30:00+01:00", 20)

    # Ten minutes into the twenty: the radio is still there.
    n = by_id(tasking_at(db, "2026-06-05T18:40:00+01:00"))["N"]
    assert (n["counted_minutes"], n["short_minutes"]) == (10.0, 50.0)
    assert (n["last_presence_end"], n["minutes_since_presence"]) == (
        "2026-06-05T18:40:00+01:00",
        0.0,
    )
    assert n["reason"].startswith("presence in the last minute; ")
    # Before the patrol: never visited, so far as was known then.
    n = by_id(tasking_at(db, "2026-06-05T18:29:00+01:00"))["N"]
    assert (n["last_presence_end"], n["counted_minutes"], n["short_minutes"]) == (None, 0.0, 60.0)
    # The same moment written in UTC is the same moment.
    assert tasking_at(db, "2026-06-05T17:40:00Z") == tasking_at(db, "2026-06-05T18:40:00+01:00")


def test_presence_on_earlier_days_and_never(db):
    setup(db)
    patrol(db, "S", "2026-06-01T09:00:00+01:00", 15)  # four days before: daily_dosage's row

    s, w = (by_id(tasking_at(db, "2026-06-05T09:15:00+01:00"))[h] for h in "SW")

    assert s["last_presence_end"] == "2026-06-01T09:15:00+01:00"
    assert s["minutes_since_presence"] == 4 * 24 * 60.0
    assert s["reason"].startswith("no presence for 4 days; ")
    assert w["last_presence_end"] is None
    assert w["reason"].startswith("no presence on record; ")


# --- local midnight ---------------------------------------------------------------------------


def test_local_midnight_ends_the_day_but_not_a_window_running_past_it(db):
    setup(db)
    # The same twenty minutes across midnight, Friday 23:50 to Saturday 00:10, in N (whose
    # Friday window runs to 02:00) and in S (no windows: each day is its own).
    patrol(db, "N", "2026-06-05T23:50:00+01:00", 20)
    patrol(db, "S", "2026-06-05T23:50:00+01:00", 20)

    before = by_id(tasking_at(db, "2026-06-05T23:55:00+01:00"))
    assert (before["N"]["counted_minutes"], before["S"]["counted_minutes"]) == (5.0, 5.0)

    after = by_id(tasking_at(db, "2026-06-06T00:20:00+01:00"))
    n, s = after["N"], after["S"]
    # N: Friday's window is still open, so the night is Friday's: all 20 minutes count.
    assert (n["counted_minutes"], n["short_minutes"], n["window_open"]) == (20.0, 40.0, True)
    assert n["reason"].endswith("; 40 min short tonight")
    # S: Saturday began at midnight; only its 10 minutes count towards Saturday's 30.
    assert (s["counted_minutes"], s["short_minutes"]) == (10.0, 20.0)
    assert s["reason"].endswith("; 20 min short today")

    at_midnight = by_id(tasking_at(db, "2026-06-06T00:00:00+01:00"))
    assert at_midnight["S"]["counted_minutes"] == 0.0
    assert at_midnight["N"]["counted_minutes"] == 10.0

    # At 02:00 Friday's window has closed: the day in progress is Saturday, whose window
    # opens at 18:00 and has nothing yet.
    n = by_id(tasking_at(db, "2026-06-06T02:00:00+01:00"))["N"]
    assert (n["window_open"], n["next_window_start"]) == (False, "2026-06-06T18:00:00+01:00")
    assert (n["counted_minutes"], n["short_minutes"]) == (0.0, 60.0)


def test_counted_minutes_agree_with_compliance_at_the_end_of_the_day(db):
    setup(db)
    patrol(db, "N", "2026-06-05T17:50:00+01:00", 30)  # 10 before the window, 20 in it
    patrol(db, "N", "2026-06-06T01:50:00+01:00", 20)  # 10 in Friday's window, 10 after
    patrol(db, "S", "2026-06-05T23:50:00+01:00", 20)

    last_moment = by_id(tasking_at(db, "2026-06-06T01:59:59+01:00"))
    end_of_saturday = by_id(tasking_at(db, "2026-06-06T23:59:59+01:00"))
    with db() as session:
        operation = find_operation(session, now=datetime(2026, 6, 6, tzinfo=ZONE))
        compliance = daily_compliance(session, operation, date(2026, 6, 6), ["N", "S"])
    counted = {(r.hotspot_id, r.date): r.counted_presence_minutes for r in compliance.itertuples()}

    # Up to the last second of Friday's window, 20 + 9 59/60 minutes count for Friday;
    # compliance, with the whole window, counts 20 + 10.
    assert last_moment["N"]["counted_minutes"] == pytest.approx(
        counted[("N", date(2026, 6, 5))] - 1 / 60, abs=0.006
    )
    assert counted[("N", date(2026, 6, 5))] == 30.0
    assert end_of_saturday["S"]["counted_minutes"] == counted[("S", date(2026, 6, 6))] == 10.0


# --- over the maximum: today's and this week's -----------------------------------------------


def test_today_s_maximum_reached_sends_no_one_and_ranks_last(db):
    setup(db)
    patrol(db, "S", "2026-06-03T10:00:00+01:00", 60)  # Wednesday, S's maximum is 60

    before = tasking_at(db, "2026-06-03T10:59:00+01:00")
    # 59 minutes: under the maximum, window (all day) open, target met.
    assert order(before) == ["S", "W", "N"]
    assert by_id(before)["S"]["over_max"] is False

    after = tasking_at(db, "2026-06-03T11:05:00+01:00")
    # 60 minutes: the maximum is reached; S drops from first to last.
    assert order(after) == ["W", "N", "S"]
    s = by_id(after)["S"]
    assert s["over_max"] is True
    assert s["reason"] == (
        "no presence for 5 min; no windows: patrol time all day; target met today (30 min); "
        "today's maximum of 60 min reached: send no one"
    )


def test_this_week_s_maximum_reached_sends_no_one(db):
    setup(db)
    patrol(db, "S", "2026-06-01T09:00:00+01:00", 100)  # Monday: 100 of its 60
    patrol(db, "S", "2026-06-02T09:00:00+01:00", 10)  # Tuesday

    s = by_id(tasking_at(db, "2026-06-02T12:00:00+01:00"))["S"]
    # Monday and Tuesday allow 60 + 60 = 120 minutes; 100 + 10 = 110 so far.
    assert s["over_max"] is False
    assert s["short_minutes"] == 20.0

    patrol(db, "S", "2026-06-02T12:00:00+01:00", 10)
    items = tasking_at(db, "2026-06-02T12:30:00+01:00")
    s = by_id(items)["S"]
    # Tuesday has 20 of its 60, but the week has had 120 of 120.
    assert s["over_max"] is True
    assert s["reason"].endswith(
        "; this week's maximum reached (120 of 120 min since Monday): send no one"
    )
    assert order(items)[-1] == "S"

    # The next Monday starts a new week.
    s = by_id(tasking_at(db, "2026-06-08T09:00:00+01:00"))["S"]
    assert s["over_max"] is False


# --- the 2026 clock changes in Europe/London --------------------------------------------------


def test_spring_forward_window_closes_an_hour_early_in_real_time(db):
    setup(db)
    # Saturday 28 March 2026 (GMT) 22:00 for 20 minutes; then Sunday 00:30 GMT for 60 real
    # minutes, through the jump from 01:00 GMT to 02:00 BST, to 02:30 BST.
    patrol(db, "N", "2026-03-28T22:00:00+00:00", 20)
    patrol(db, "N", "2026-03-29T00:30:00+00:00", 60)

    n = by_id(tasking_at(db, "2026-03-29T00:50:00+00:00"))["N"]
    # Saturday's window (18:00-02:00 by the clock) ends at 02:00 BST, 01:00 UTC.
    assert (n["window_open"], n["window_end"]) == (True, "2026-03-29T02:00:00+01:00")
    assert (n["counted_minutes"], n["short_minutes"]) == (40.0, 20.0)
    assert n["reason"].endswith("; 20 min short tonight")

    n = by_id(tasking_at(db, "2026-03-29T02:10:00+01:00"))["N"]
    # 01:10 UTC: the window has closed, the radio is still there; Sunday has no target.
    assert n["window_open"] is False
    assert n["next_window_start"] == "2026-04-03T18:00:00+01:00"
    assert (n["minutes_since_presence"], n["short_minutes"]) == (0.0, 0.0)
    assert n["reason"] == ("presence in the last minute; window opens Fri 18:00; no target today")


def test_fall_back_the_repeated_hour_counts_both_times(db):
    setup(db)
    # Sunday 25 October 2026: 00:40 UTC is 01:40 BST; 40 minutes later, 01:20 UTC, is 01:20
    # GMT, after the clocks went back from 02:00 BST to 01:00 GMT.
    patrol(db, "N", "2026-10-25T01:40:00+01:00", 40)

    first = by_id(tasking_at(db, "2026-10-25T01:50:00+01:00"))["N"]
    second = by_id(tasking_at(db, "2026-10-25T01:30:00+00:00"))["N"]

    # Both are in Saturday's window (to 02:00 GMT), an hour apart in real time.
    assert first["window_end"] == second["window_end"] == "2026-10-25T02:00:00+00:00"
    assert (first["counted_minutes"], first["short_minutes"]) == (10.0, 50.0)
    assert (second["counted_minutes"], second["short_minutes"]) == (40.0, 20.0)
    assert second["last_presence_end"] == "2026-10-25T01:20:00+00:00"
    assert second["minutes_since_presence"] == 10.0


# --- before any plan ----------------------------------------------------------------------------


def test_without_a_plan_ranked_by_time_since_presence_never_first(db):
    setup(db, plan=None)
    patrol(db, "S", "2026-06-02T09:00:00+01:00", 10)
    patrol(db, "N", "2026-06-05T08:00:00+01:00", 10)

    items = tasking_at(db, "2026-06-05T10:10:00+01:00")

    assert order(items) == ["W", "S", "N"]
    for item in items:
        assert (item["window_open"], item["next_window_start"], item["short_minutes"]) == (
            False,
            None,
            0.0,
        )
        assert item["over_max"] is False
        assert item["reason"].endswith(f"; {NO_PLAN}")
    assert by_id(items)["N"]["reason"] == f"no presence for 2 h; {NO_PLAN}"


# --- the ranking rule and the sentence, by hand -------------------------------------------------

AT_US = 1_780_678_800_000_000  # 2026-06-05T18:00:00+01:00


def need(hotspot_id: str, **figures) -> Need:
    """A need with every figure neutral (plan loaded, nothing short, closed, never visited)."""
    base = Need(
        hotspot_id=hotspot_id,
        hotspot_name=f"Hot spot {hotspot_id}",
        last_presence_end_us=None,
        minutes_since_presence=None,
        window_open=False,
        window_end_us=None,
        next_window_start_us=None,
        window=None,
        plan_day=date(2026, 6, 5),
        target_minutes=60.0,
        counted_minutes=60.0,
        short_minutes=0.0,
        day_max_minutes=None,
        day_presence_minutes=0.0,
        week_max_minutes=None,
        week_presence_minutes=0.0,
        has_plan=True,
    )
    return replace(base, **figures)


def ranked_ids(*needs: Need) -> list[str]:
    return [item.need.hotspot_id for item in ranked(list(needs), ZONE, AT_US)]


def test_over_max_comes_last_whatever_else():
    assert ranked_ids(
        need("A", window_open=True, short_minutes=60.0, day_max_minutes=30.0,
             day_presence_minutes=30.0),
        need("B", minutes_since_presence=5.0),
    ) == ["B", "A"]  # fmt: skip


def test_window_open_comes_before_more_minutes_short():
    assert ranked_ids(
        need("A", short_minutes=60.0), need("B", window_open=True, short_minutes=5.0)
    ) == ["B", "A"]


def test_most_short_then_longest_since_presence_then_never_visited_first():
    assert ranked_ids(
        need("A", short_minutes=10.0, minutes_since_presence=600.0),
        need("B", short_minutes=30.0, minutes_since_presence=5.0),
        need("C", short_minutes=10.0, minutes_since_presence=900.0),
        need("D", short_minutes=10.0),
        need("E", short_minutes=10.0, minutes_since_presence=900.0),
    ) == ["B", "D", "C", "E", "A"]  # C and E tie: by hot spot id


def test_ranks_are_numbered_from_one():
    items = ranked([need("B"), need("A")], ZONE, AT_US)
    assert [(i.rank, i.need.hotspot_id) for i in items] == [(1, "A"), (2, "B")]


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (0.0, "0 min"),
        (59.99, "59 min"),
        (60.0, "1 h"),
        (340.0, "5 h 40 min"),
        (2879.0, "47 h 59 min"),
        (2880.0, "2 days"),
        (4470.0, "3 days 2 h"),
    ],
)
def test_durations_read_in_whole_minutes(minutes, text):
    assert duration_text(minutes) == text


def test_the_reason_names_presence_window_shortfall_and_maximum():
    hour_us = 3_600_000_000
    text = reason(
        need(
            "N",
            minutes_since_presence=340.0,
            window_open=True,
            window_end_us=AT_US + 8 * hour_us,
            window="Fri-Sat 18:00-02:00",
            counted_minutes=18.0,
            short_minutes=41.5,
            plan_day=date(2026, 6, 4),
        ),
        ZONE,
        AT_US,
    )
    assert text == (
        "no presence for 5 h 40 min; Fri-Sat 18:00-02:00 window open until Sat 02:00; "
        "42 min short tonight"
    )
    text = reason(
        need("S", minutes_since_presence=0.5, next_window_start_us=AT_US + 2 * hour_us,
             day_max_minutes=240.0, day_presence_minutes=250.0),
        ZONE,
        AT_US,
    )  # fmt: skip
    assert text == (
        "presence in the last minute; window opens 20:00; target met today (60 min); "
        "today's maximum of 240 min reached: send no one"
    )
    assert reason(need("W", target_minutes=0.0), ZONE, AT_US) == (
        "no presence on record; no window left in the operation; no target today"
    )


# --- the moment asked for -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-10-25T01:30:00+01:00", "2026-10-25T00:30:00+00:00"),
        ("2026-10-25T01:30:00+00:00", "2026-10-25T01:30:00+00:00"),
        ("2026-10-25T01:30:00Z", "2026-10-25T01:30:00+00:00"),
        ("2026-06-05 18:00+01:00", "2026-06-05T17:00:00+00:00"),
    ],
)
def test_a_moment_with_an_offset_is_read(text, utc):
    moment = parse_moment(text)
    assert moment.astimezone(ZoneInfo("UTC")).isoformat() == utc


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-06-05T18:00:00", "has no UTC offset and is ambiguous"),
        ("2026-06-05", "has no UTC offset and is ambiguous"),
        ("yesterday evening", "expected a time as ISO 8601 with a UTC offset"),
        ("", "expected a time as ISO 8601 with a UTC offset"),
        ("1969-12-31T23:00:00-02:00", "outside the dates handled, 1970-01-01 to 2099-12-31"),
        ("2099-12-31T23:30:00-01:00", "outside the dates handled, 1970-01-01 to 2099-12-31"),
        ("2100-01-01T00:00:00+00:00", "outside the dates handled, 1970-01-01 to 2099-12-31"),
    ],
)
def test_a_naive_unreadable_or_far_moment_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_moment(text)


def test_a_naive_moment_is_refused_by_the_list_itself(db):
    setup(db)
    with db() as session, pytest.raises(ValueError, match="naive"):
        tasking(session, PARAMS, datetime(2026, 6, 5, 18))


def test_no_hot_spots_no_items(db):
    with db() as session:
        result = tasking(session, PARAMS, parse_moment("2026-06-05T18:00:00+01:00"))
    assert (result.operation, result.items) == (None, [])
    assert math.isclose(result.at.timestamp(), 1_780_678_800)


# --- an officer's distances ---------------------------------------------------------------------

METRES_PER_DEGREE_LAT = 111_320.0  # as tests.builders.square_feature lays out the squares


def test_an_officer_s_distances_come_from_their_own_latest_usable_ping(db):
    setup(db)
    handover = datetime.fromisoformat("2026-06-05T12:00:00+01:00")
    day_before = handover - timedelta(days=1)
    with db.begin() as session:
        load_assignments(
            session,
            [
                AssignmentRow(2, "radio-7", "PC1", "PC One", day_before, handover),
                AssignmentRow(3, "radio-7", "PC2", "PC Two", handover, None),
            ],
            actor="test",
        )
    w_lat, w_lon = CENTRES["W"]
    # 600 m north of W's centre: 500 m north of its edge (the squares are 200 m across).
    north_of_w = w_lat + 600 / METRES_PER_DEGREE_LAT
    with db.begin() as session:
        store_pings(
            session,
            [
                ping("radio-7", "2026-06-05T10:00:00+01:00", north_of_w, w_lon),
                # Too inaccurate to say where PC1 was (TRACKER_MAX_ACCURACY_M is 100).
                ping("radio-7", "2026-06-05T11:00:00+01:00", *CENTRES["N"], accuracy_m=500),
                ping("radio-7", "2026-06-05T13:00:00+01:00", *CENTRES["N"]),  # PC2's now
            ],
            PARAMS,
        )

    def distances(officer_id: str, when: str) -> dict[str, int] | None:
        with db() as session:
            result = tasking(session, PARAMS, parse_moment(when), officer_id=officer_id)
        items = result.to_json()
        if result.position is None:
            assert all("distance_m" not in item for item in items)
            return None
        assert {item["position_time"] for item in items} == {result.position_local.isoformat()}
        return {item["hotspot_id"]: item["distance_m"] for item in items}

    pc1 = distances("PC1", "2026-06-05T14:00:00+01:00")
    # 500 m on the ground as the squares were laid out; haversine's degree is 111.195 km.
    assert pc1["W"] == round(500 / METRES_PER_DEGREE_LAT * 111_195.08)  # 499
    assert pc1["N"] > 1000 and pc1["S"] > 1000
    assert distances("PC2", "2026-06-05T14:00:00+01:00")["N"] == 0  # inside
    assert distances("PC1", "2026-06-05T09:59:00+01:00") is None  # no ping yet
    assert distances("PC3", "2026-06-05T14:00:00+01:00") is None  # no radio
    # Nobody asked: no distances at all.
    with db() as session:
        plain = tasking(session, PARAMS, parse_moment("2026-06-05T14:00:00+01:00"))
    assert plain.position is None and "distance_m" not in plain.to_json()[0]


@pytest.mark.parametrize(
    ("metres", "text"),
    [(0, "0 m"), (999, "999 m"), (1000, "1.0 km"), (1249, "1.2 km"), (1250, "1.3 km")],
)
def test_distances_read_in_metres_then_tenths_of_a_kilometre(metres, text):
    assert distance_text(metres) == text
