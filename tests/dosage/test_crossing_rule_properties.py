"""Properties of the crossing rule `interpolate` that hold for any pings.

Pings come from the existing engine property strategy (`ping_lists` of
tests/dosage/test_engine_properties.py: fixed positions in, on the edges of, in the hole of and
outside the test hot spots, over half an hour or three days across midnights and both 2026
clock changes) plus devices walking straight legs at constant speed between waypoints around
each hot spot, so that entries, exits, pass-throughs, corner cuts and hole crossings are common.

Hot spots: A and B (overlapping rectangles) and H (a rectangle with a hole) of tests/builders.py,
plus, for these tests, L (an L-shaped, concave hot spot around lon -0.15) and D (a diamond,
convex with sloping edges, around lon -0.25).

The engine's properties: order and duplicates change nothing, presence <= officer time, no
moment counted twice for a device, and in convex hot spots interpolation credits at least what
the endpoint rule does. The stored path's: pings stored in random batches (often a backlog
across a local midnight arriving late) end with exactly the offline figures.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tests.builders import (
    BOX_A,
    BOX_B,
    BOX_H,
    HOLE_H,
    IN_A,
    IN_A_AND_B,
    IN_H_RING,
    IN_HOLE,
    hot_spot_set,
    polygon_feature,
)
from tests.dosage.test_engine_properties import STARTS, assert_same_tables, ping_lists
from tracker.dosage.engine import (
    ENDPOINTS,
    INTERPOLATE,
    DosageParams,
    compute_dosage,
    credited_spans,
)
from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.pings import Ping, parse_timestamp, pings_frame
from tracker.dosage.recompute import bring_up_to_date, replace_hot_spots
from tracker.dosage.store import store_pings
from tracker.foundation.clock import local_midnight_us
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.foundation.models import (
    CreditedSpan,
    DailyDosage,
    DeviceDailyDosage,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    HourlyPresence,
    PingRow,
    Visit,
)

PROPERTY_SETTINGS = settings(max_examples=75, deadline=None)
STORED_SETTINGS = settings(max_examples=75, deadline=None)


def feature(hot_spot_id: str, ring: list[tuple[float, float]]) -> dict:
    """A Polygon feature through (lon, lat) corners, anticlockwise, closed here."""
    return {
        "type": "Feature",
        "properties": {"id": hot_spot_id, "name": f"Hot spot {hot_spot_id}"},
        "geometry": {"type": "Polygon", "coordinates": [[*map(list, ring), list(ring[0])]]},
    }


# L: lon [-0.151, -0.149] x lat [51.499, 51.501] without its north-east quarter.
L_FEATURE = feature(
    "L",
    [
        (-0.151, 51.499),
        (-0.149, 51.499),
        (-0.149, 51.5),
        (-0.15, 51.5),
        (-0.15, 51.501),
        (-0.151, 51.501),
    ],
)
# D: a diamond with vertices 0.001 degrees from (51.5, -0.25).
D_FEATURE = feature("D", [(-0.25, 51.499), (-0.249, 51.5), (-0.25, 51.501), (-0.251, 51.5)])

ALL_SPOTS = hot_spot_set(
    polygon_feature("A", BOX_A),
    polygon_feature("B", BOX_B),
    polygon_feature("H", BOX_H, holes=(HOLE_H,)),
    L_FEATURE,
    D_FEATURE,
)
CONVEX_SPOTS = hot_spot_set(polygon_feature("A", BOX_A), polygon_feature("B", BOX_B), D_FEATURE)

# Waypoints (lat, lon) around each hot spot: inside, on an edge, and outside on every side.
WAYPOINTS = [
    [  # A and B
        (51.5, -0.103),
        (51.5, -0.096),
        (51.5025, -0.0995),
        (51.4975, -0.1002),
        (51.5012, -0.1012),
        (51.499, -0.1),  # on the south edges of A and B
        (51.5011, -0.1003),  # 11 m north of A and B (within the edge tolerance)
        IN_A,
        IN_A_AND_B,
    ],
    [  # H and its hole
        (51.5, -0.2025),
        (51.5, -0.1975),
        (51.5025, -0.2),
        (51.4975, -0.2003),
        IN_H_RING,
        IN_HOLE,
        (51.4996, -0.2),  # in the hole, 11 m from its ring
    ],
    [  # L: upper arm, lower arm, the notch, outside
        (51.5007, -0.1505),
        (51.4995, -0.1495),
        (51.5007, -0.1493),
        (51.5, -0.1525),
        (51.5025, -0.149),
        (51.4985, -0.1515),
    ],
    [  # D
        (51.5, -0.2525),
        (51.5, -0.2475),
        (51.5025, -0.2502),
        (51.5, -0.25),
        (51.5004, -0.2496),
        (51.4995, -0.25),
        (51.50115, -0.25),  # 17 m beyond the north vertex
    ],
]


def walk(draw, device: str, first_us: int, max_steps: int = 6) -> list[Ping]:
    """One device walking straight legs between waypoints of one hot spot's surroundings at
    a steady speed, pinging at a steady interval from first_us."""
    route = draw(
        st.lists(st.sampled_from(draw(st.sampled_from(WAYPOINTS))), min_size=2, max_size=4)
    )
    every_us = draw(st.sampled_from([30, 60, 90, 180, 181]) | st.integers(1, 400)) * 1_000_000
    position, t_us = route[0], first_us
    pings = [Ping(device, t_us, *position)]
    for target in route[1:]:
        steps = draw(st.integers(1, max_steps))
        for k in range(1, steps + 1):
            t_us += every_us
            lat = round(position[0] + (target[0] - position[0]) * k / steps, 9)
            lon = round(position[1] + (target[1] - position[1]) * k / steps, 9)
            pings.append(Ping(device, t_us, lat, lon))
        position = target
    return pings


@st.composite
def walks(draw) -> list[Ping]:
    """1-3 walks, starting within half an hour of one of STARTS."""
    start_us = parse_timestamp(draw(st.sampled_from(STARTS)))
    pings = []
    for _ in range(draw(st.integers(1, 3))):
        device = draw(st.sampled_from(["d1", "d2", "w1", "w2"]))
        # Most STARTS are 15 minutes before London midnight: often start a walk near it.
        t_s = draw(st.integers(0, 1800) | st.integers(600, 900))
        pings += walk(draw, device, start_us + t_s * 1_000_000)
    return pings


@st.composite
def midnight_walks(draw, midnight_us: int) -> list[Ping]:
    """1-3 short walks begun up to 10 minutes before the instant midnight_us, so that legs,
    entries and exits straddle it."""
    pings = []
    for _ in range(draw(st.integers(1, 3))):
        first_us = midnight_us - draw(st.integers(1, 600)) * 1_000_000
        pings += walk(draw, draw(st.sampled_from(["d1", "m1", "m2"])), first_us, max_steps=3)
    return pings


# Local days starting at the midnight the walks straddle: an ordinary day, the day the clocks
# go forward and the day after it, and the day they go back (2026).
MIDNIGHTS = [date(2026, 1, 15), date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25)]


pings_strategy = st.builds(lambda fixed, walking: fixed + walking, ping_lists(), walks())

# Gaps of up to two days: an interpolated span can then start on a day without pings.
interpolate_params = st.builds(
    DosageParams,
    max_gap_s=st.sampled_from([180, 3600, 12 * 3600, 2 * 86400]),
    visit_merge_gap_s=st.sampled_from([0, 60, 600]),
    min_visit_s=st.sampled_from([0, 120, 900]),
    max_speed_kmh=st.sampled_from([None, 30.0]),
    # London twice: most STARTS and walks are near its midnights.
    tz=st.sampled_from(["Europe/London", "Europe/London", "America/New_York"]),
    crossing_rule=st.just(INTERPOLATE),
    edge_tolerance_m=st.sampled_from([0.0, 30.0, 60.0]),
)


def spans_of(pings: list[Ping], hot_spots: HotSpotSet, params: DosageParams) -> list[tuple]:
    spans, _ = credited_spans(pings_frame(pings), hot_spots, params)
    return sorted(
        (s.hotspot_id, s.device_id, int(s.start_us), int(s.end_us)) for s in spans.itertuples()
    )


# --- the engine -------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(pings=pings_strategy, params=interpolate_params, data=st.data())
def test_the_order_of_the_pings_changes_nothing(pings, params, data):
    frame = pings_frame(pings)
    order = data.draw(st.permutations(range(len(frame))))
    expected = compute_dosage(frame, ALL_SPOTS, params)
    actual = compute_dosage(frame.iloc[list(order)], ALL_SPOTS, params)
    assert_same_tables(actual, expected)
    assert actual.hourly.equals(expected.hourly)
    assert actual.counts == expected.counts


@PROPERTY_SETTINGS
@given(pings=pings_strategy, params=interpolate_params, data=st.data())
def test_every_ping_sent_twice_changes_nothing(pings, params, data):
    twice = pings + pings
    order = data.draw(st.permutations(range(len(twice))))
    expected = compute_dosage(pings_frame(pings), ALL_SPOTS, params)
    actual = compute_dosage(pings_frame([twice[i] for i in order]), ALL_SPOTS, params)
    assert_same_tables(actual, expected)
    assert actual.hourly.equals(expected.hourly)
    assert actual.counts["credited_spans"] == expected.counts["credited_spans"]
    usable = expected.counts["pings"] - expected.counts["unusable"]
    assert actual.counts["duplicates"] == expected.counts["duplicates"] + usable


def local_day_us(day, tz: str) -> int:
    zone = ZoneInfo(tz)
    begin = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return int((end - begin).total_seconds()) * 1_000_000


@PROPERTY_SETTINGS
@given(pings=pings_strategy, params=interpolate_params)
def test_presence_is_at_most_officer_time(pings, params):
    result = compute_dosage(pings_frame(pings), ALL_SPOTS, params)
    daily = result.daily
    assert (daily["presence_us"] <= daily["officer_us"]).all()
    assert (daily["presence_minutes"] <= daily["officer_minutes"]).all()
    assert all(
        p <= local_day_us(d, params.tz)
        for p, d in zip(daily["presence_us"], daily["date"], strict=True)
    )
    # Officer time is the devices' time added up, exactly; presence is its hours added up.
    keys = ["hotspot_id", "date"]
    officer = daily.set_index(keys)["officer_us"].sort_index()
    per_device = result.device_daily.groupby(keys)["officer_us"].sum().sort_index()
    assert officer.to_dict() == per_device.to_dict()
    presence = daily.set_index(keys)["presence_us"]
    per_hour = result.hourly.groupby(keys)["presence_us"].sum()
    assert presence[presence > 0].to_dict() == per_hour.to_dict()


@PROPERTY_SETTINGS
@given(pings=pings_strategy, params=interpolate_params)
def test_one_device_never_counts_the_same_moment_twice_in_a_hot_spot(pings, params):
    # The parts of one path lie in successive, disjoint stretches of time: a device's spans in
    # one hot spot never overlap (they may touch), so its officer time is its own presence.
    spans = spans_of(pings, ALL_SPOTS, params)
    for (hot_spot, device), group in itertools.groupby(spans, key=lambda s: s[:2]):
        group = list(group)
        assert all(start < end for _, _, start, end in group)
        for (_, _, _, end), (_, _, start, _) in itertools.pairwise(group):
            assert end <= start, (hot_spot, device, group)


@PROPERTY_SETTINGS
@given(pings=pings_strategy, params=interpolate_params)
def test_interpolated_presence_covers_the_endpoint_presence_in_convex_hot_spots(pings, params):
    # In a convex hot spot the straight path between two pings inside it stays inside, so
    # every span the endpoint rule credits is credited whole by interpolation too, which
    # may add the parts of entries, exits and pass-throughs.
    endpoints_params = dataclasses.replace(params, crossing_rule=ENDPOINTS)
    interpolated_spans = Counter(spans_of(pings, CONVEX_SPOTS, params))
    endpoint_spans = Counter(spans_of(pings, CONVEX_SPOTS, endpoints_params))
    assert not endpoint_spans - interpolated_spans  # a sub-multiset

    keys = ["hotspot_id", "date"]
    interpolated = compute_dosage(pings_frame(pings), CONVEX_SPOTS, params).daily.set_index(keys)
    endpoints = compute_dosage(pings_frame(pings), CONVEX_SPOTS, endpoints_params).daily
    for row in endpoints.itertuples():
        key = (row.hotspot_id, row.date)
        assert key in interpolated.index, key
        assert interpolated.loc[key, "presence_us"] >= row.presence_us, key
        assert interpolated.loc[key, "officer_us"] >= row.officer_us, key


# --- the stored path --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory):
    """One migrated SQLite database for the module; each example empties it first."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('crossing') / 'tracker.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def stored(db) -> dict[str, list]:
    with db() as session:

        def rows(*columns) -> list[tuple]:
            return sorted(tuple(r) for r in session.execute(select(*columns)))

        return {
            "spans": rows(
                CreditedSpan.hotspot_id,
                CreditedSpan.device_id,
                CreditedSpan.start_us,
                CreditedSpan.end_us,
            ),
            "daily": rows(
                DailyDosage.hotspot_id,
                DailyDosage.day,
                DailyDosage.presence_us,
                DailyDosage.officer_us,
                DailyDosage.visits,
            ),
            "device_daily": rows(
                DeviceDailyDosage.hotspot_id,
                DeviceDailyDosage.device_id,
                DeviceDailyDosage.day,
                DeviceDailyDosage.officer_us,
                DeviceDailyDosage.visits,
            ),
            "hourly": rows(
                HourlyPresence.hotspot_id,
                HourlyPresence.day,
                HourlyPresence.hour,
                HourlyPresence.presence_us,
            ),
            "visits": rows(
                Visit.hotspot_id,
                Visit.device_id,
                Visit.day,
                Visit.start_us,
                Visit.end_us,
                Visit.presence_us,
                Visit.devices,
            ),
        }


def offline(pings: list[Ping], hot_spots: HotSpotSet, params: DosageParams) -> dict[str, list]:
    result = compute_dosage(pings_frame(pings), hot_spots, params)
    visits = [
        (v.hotspot_id, "", v.date, v.start_us, v.end_us, v.presence_us, v.devices)
        for v in result.visits.itertuples()
    ] + [
        (v.hotspot_id, v.device_id, v.date, v.start_us, v.end_us, v.presence_us, 1)
        for v in result.device_visits.itertuples()
    ]
    return {
        "spans": spans_of(pings, hot_spots, params),
        "daily": sorted(
            (r.hotspot_id, r.date, r.presence_us, r.officer_us, r.visits)
            for r in result.daily.itertuples()
        ),
        "device_daily": sorted(
            (r.hotspot_id, r.device_id, r.date, r.officer_us, r.visits)
            for r in result.device_daily.itertuples()
        ),
        "hourly": sorted(
            (r.hotspot_id, r.date, r.hour, r.presence_us) for r in result.hourly.itertuples()
        ),
        "visits": sorted(visits),
    }


@STORED_SETTINGS
@given(fixed=ping_lists(), walking=walks(), params=interpolate_params, data=st.data())
def test_pings_stored_in_random_batches_give_the_offline_figures(
    sqlite_db, fixed, walking, params, data
):
    """The incremental path (store_pings, then the queues worked off by bring_up_to_date at
    random moments) ends with exactly what compute_dosage makes of all the pings."""
    # Only pings the ingest accepts reach store_pings: a position at (0, 0) is a dead letter
    # there (docs/dosage.md rule 1), though the engine is given some by ping_lists. A long
    # stay (up to 1441 pings) is thinned to about 100, to keep the run short.
    fixed = [p for p in fixed if (p.lat, p.lon) != (0.0, 0.0)]
    fixed = fixed[:: max(1, len(fixed) // 100)]
    midnight_us = local_midnight_us(data.draw(st.sampled_from(MIDNIGHTS)), params.zone)
    pings = fixed + walking + data.draw(midnight_walks(midnight_us))
    db = sqlite_db
    with db.begin() as session:
        for model in (PingRow, DirtyDeviceDay, DirtyHotSpotDay):
            session.execute(delete(model))
        replace_hot_spots(session, ALL_SPOTS, params)  # clears every dosage table
    # Arrival in any order; often a backlog: the pings from the walks' midnight on arrive
    # (and are worked off) before the evening before them, so a pair begun before midnight
    # is completed after the day it credits was computed (the hard case of the incremental
    # path), or plainly newest first.
    order = data.draw(st.sampled_from(["backlog"] * 3 + ["newest", "shuffled", "oldest"]))
    if order == "backlog":
        late = [p for p in pings if p.t_us >= midnight_us]
        groups = [late, [p for p in pings if p.t_us < midnight_us]]
    elif order == "shuffled":
        groups = [[pings[i] for i in data.draw(st.permutations(range(len(pings))))]]
    else:
        groups = [sorted(pings, key=lambda p: p.t_us, reverse=order == "newest")]
    # Batches often of a ping or two (at most about 12 batches, to keep the run short), and
    # usually worked off before the next arrives.
    size = data.draw(st.sampled_from([1, 1, 2, 3, 10, len(pings)]))
    size = max(size, -(-len(pings) // 10), 1)
    for group in groups:
        for low in range(0, len(group), size):
            with db.begin() as session:
                store_pings(session, group[low : low + size], params)
            if data.draw(st.sampled_from([True, True, True, False])):
                bring_up_to_date(db.begin, ALL_SPOTS, params)
        bring_up_to_date(db.begin, ALL_SPOTS, params)  # each group worked off in the end

    assert stored(db) == offline(pings, ALL_SPOTS, params)
