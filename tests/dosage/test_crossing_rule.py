"""The crossing rule `interpolate` (DosageParams.crossing_rule), against hand-worked figures.

Between two consecutive usable pings a -> b of one device (0 < dt <= max_gap_s) the device
is taken to move in a straight line at constant speed in lon/lat coordinates; each hot spot
is credited [a.t + rint(f0 * dt), a.t + rint(f1 * dt)] for every part f0..f1 of that segment
inside it (edges inside, holes outside). The old rule, `endpoints`, credits [a.t, b.t] only to
hot spots containing both a and b. Every test below works its figures by hand in comments and,
where it is cheap, runs the same pings through the endpoint rule too.

Unless a test says otherwise the parameters are the defaults (max_gap_s 180, visit_merge_gap_s
60, min_visit_s 120, no speed rule, Europe/London) and the day is 2026-01-14, when London is
on GMT (local time = UTC).

Geography:
- the project's test hot spots (tests/builders.py): A is lon [-0.101, -0.099] x lat
  [51.499, 51.501], B is lon [-0.100, -0.098] (overlapping A in [-0.100, -0.099]), H is lon
  [-0.201, -0.199] with a hole lon [-0.2005, -0.1995] x lat [51.4995, 51.5005]. Walks there
  run due east along lat 51.5, so the fraction of a segment is the fraction of its longitude.
- a grid near the equator in units U = 2**-10 degree (about 109 m), whose coordinates are
  exact in binary: point (x, y) is lon 10 + x*U, lat 1 + y*U. S is the square [0, 8] x [0, 8];
  L is the L-shaped hot spot (0,0)-(8,0)-(8,4)-(4,4)-(4,8)-(0,8), i.e. that square without
  its top-right quarter (the "notch" [4, 8] x [4, 8]).

The last two tests are regressions for stored-path bugs these tests found (a span on a day
without pings; a span begun by a purged ping).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from tests.builders import (
    BOX_A,
    BOX_B,
    BOX_H,
    HOLE_H,
    IN_A,
    IN_H_RING,
    IN_HOLE,
    ON_HOLE_EDGE,
    at,
    feature_collection,
    hot_spot_set,
    ping,
    polygon_feature,
)
from tests.dosage.test_crossing_rule_properties import offline, stored
from tracker.cli import main
from tracker.dosage.engine import (
    DAILY_COLUMNS,
    ENDPOINTS,
    INTERPOLATE,
    VISIT_COLUMNS,
    DosageParams,
    compute_dosage,
    configured_params,
    credited_spans,
)
from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.pings import Ping, format_timestamp, parse_timestamp, pings_frame
from tracker.dosage.recompute import bring_up_to_date, replace_hot_spots
from tracker.dosage.store import purge_pings, store_pings
from tracker.foundation import settings
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.tables import write_table

T0 = "2026-01-14T12:00:00+00:00"
T0_US = parse_timestamp(T0)
DAY = date(2026, 1, 14)
LAT = 51.5  # every walk in the project geography runs due east along this latitude

# The grid near the equator (see the module docstring).
U = 2.0**-10
GRID_LON, GRID_LAT = 10.0, 1.0


def grid(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of grid point (x, y)."""
    return (GRID_LAT + y * U, GRID_LON + x * U)


def grid_feature(hot_spot_id: str, corners: list[tuple[float, float]]) -> dict:
    """A Polygon feature through grid corners (x, y), anticlockwise, closed here."""
    ring = [[GRID_LON + x * U, GRID_LAT + y * U] for x, y in [*corners, corners[0]]]
    return {
        "type": "Feature",
        "properties": {"id": hot_spot_id, "name": f"Hot spot {hot_spot_id}"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


SQUARE = hot_spot_set(grid_feature("S", [(0, 0), (8, 0), (8, 8), (0, 8)]))
L_SHAPE = hot_spot_set(grid_feature("L", [(0, 0), (8, 0), (8, 4), (4, 4), (4, 8), (0, 8)]))


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_tracker_settings(monkeypatch):
    """Run on the defaults, whatever TRACKER_ settings the shell has."""
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)


def run_dosage(pings: list[Ping], hot_spots: HotSpotSet, rule: str, **params):
    return compute_dosage(pings_frame(pings), hot_spots, DosageParams(crossing_rule=rule, **params))


def daily_rows(result) -> list[tuple]:
    return list(result.daily[DAILY_COLUMNS].itertuples(index=False, name=None))


def both_rules(pings: list[Ping], hot_spots: HotSpotSet, **params) -> tuple[list, list]:
    """Daily rows under (interpolate, endpoints) for the same pings and parameters."""
    return (
        daily_rows(run_dosage(pings, hot_spots, INTERPOLATE, **params)),
        daily_rows(run_dosage(pings, hot_spots, ENDPOINTS, **params)),
    )


def spans_s(
    pings: list[Ping], hot_spots: HotSpotSet, since_us: int = T0_US, **params
) -> list[tuple]:
    """Interpolated spans as (hot spot, device, start, end), in seconds after `since_us`.

    Times are exact microseconds divided by 10**6: a span 1 us off does not compare equal.
    """
    spans, _ = credited_spans(
        pings_frame(pings), hot_spots, DosageParams(crossing_rule=INTERPOLATE, **params)
    )
    return sorted(
        (r.hotspot_id, r.device_id, (r.start_us - since_us) / 1e6, (r.end_us - since_us) / 1e6)
        for r in spans.itertuples()
    )


def walk(device: str, start: str, *stops: tuple[float, float | tuple]) -> list[Ping]:
    """Pings at (seconds after start, position); a position is a lon on lat 51.5 or (lat, lon)."""
    pings = []
    for seconds, where in stops:
        lat, lon = where if isinstance(where, tuple) else (LAT, where)
        pings.append(ping(device, at(start, seconds), lat, lon))
    return pings


# Many pings make classify and segment_candidates switch from the STRtree to their grid
# path: the geometry tests run once more among 2000 segments of a bystander that credit
# nothing (their bounding boxes overlap the hot spots', the segments themselves miss them).
FEW_OR_MANY = pytest.mark.parametrize("n_bystanders", [0, 2000], ids=["few", "many"])


def grid_bystanders(n: int) -> list[Ping]:
    """Zig-zag between grid points (7.75, 9) and (9, 7.75): on x + y = 16.75, outside S and L
    (x + y <= 16 there), though each segment's box [7.75, 9]^2 overlaps theirs."""
    return [
        ping("bystander", at(T0, i), *(grid(7.75, 9) if i % 2 else grid(9, 7.75)))
        for i in range(n + 1 if n else 0)
    ]


def project_bystanders(n: int) -> list[Ping]:
    """Zig-zag in the box of A, B and H but far from each (around lon -0.15)."""
    return [
        ping("bystander", at(T0, i), *((51.5, -0.15) if i % 2 else (51.5005, -0.1495)))
        for i in range(n + 1 if n else 0)
    ]


# --- entry, exit, pass-through -----------------------------------------------------------------


def test_an_entry_is_credited_from_the_moment_the_path_crosses_the_edge(spot_a):
    # a at lon -0.103 (outside A) at 0 s, b at -0.100 (inside) at 60 s: the path crosses A's
    # west edge -0.101 after 0.002 of 0.003 degrees, f = 2/3: 2/3 * 60 s = 40 s.
    # Credited [40, 60] = 20 s; then b -> c -> d inside: 60 + 60 s.
    # Interpolate: 20 + 120 = 140 s = 2.33 min, one visit (140 >= 120).
    # Endpoints: a -> b has an end outside, nothing; 120 s = 2.00 min, one visit.
    pings = walk("d1", T0, (0, -0.103), (60, -0.100), (120, -0.100), (180, -0.100))

    assert spans_s(pings, spot_a) == [
        ("A", "d1", 40.0, 60.0),
        ("A", "d1", 60.0, 120.0),
        ("A", "d1", 120.0, 180.0),
    ]
    interpolated, endpoints = both_rules(pings, spot_a)
    assert interpolated == [("A", DAY, 2.33, 2.33, 1)]
    assert endpoints == [("A", DAY, 2.0, 2.0, 1)]
    visit = run_dosage(pings, spot_a, INTERPOLATE).visits.iloc[0]
    assert visit["start"] == pd.Timestamp(at(T0, 40))


def test_an_exit_is_credited_up_to_the_moment_the_path_crosses_the_edge(spot_a):
    # Inside at -0.100 at -120, -60 and 0 s; then b outside at -0.097 at 90 s. The path
    # from -0.100 to -0.097 leaves A at its east edge -0.099 after 0.001 of 0.003 degrees,
    # f = 1/3: 30 s. Credited [0, 30]. Interpolate: 120 + 30 = 150 s = 2.50 min, one visit.
    # Endpoints: 120 s = 2.00 min, one visit.
    pings = walk("d1", T0, (-120, -0.100), (-60, -0.100), (0, -0.100), (90, -0.097))

    assert spans_s(pings, spot_a) == [
        ("A", "d1", -120.0, -60.0),
        ("A", "d1", -60.0, 0.0),
        ("A", "d1", 0.0, 30.0),
    ]
    interpolated, endpoints = both_rules(pings, spot_a)
    assert interpolated == [("A", DAY, 2.5, 2.5, 1)]
    assert endpoints == [("A", DAY, 2.0, 2.0, 1)]
    visit = run_dosage(pings, spot_a, INTERPOLATE).visits.iloc[0]
    assert visit["end"] == pd.Timestamp(at(T0, 30))


def test_a_pass_through_between_two_outside_pings_is_credited(spot_a):
    # a at -0.103 at 0 s, b at -0.097 at 120 s: 0.006 degrees in 120 s. A's west edge -0.101
    # is at f = 0.002/0.006 = 1/3 (40 s), its east edge -0.099 at f = 4/6 = 2/3 (80 s).
    # Credited [40, 80] = 40 s = 0.67 min; with min_visit_s 30 that is one visit.
    # Endpoints: both ends outside, nothing at all.
    pings = walk("d1", T0, (0, -0.103), (120, -0.097))

    assert spans_s(pings, spot_a) == [("A", "d1", 40.0, 80.0)]
    interpolated, endpoints = both_rules(pings, spot_a, min_visit_s=30)
    assert interpolated == [("A", DAY, 0.67, 0.67, 1)]
    assert endpoints == []


def test_overlapping_hot_spots_are_each_credited_their_own_part(spots_a_b):
    # The same pass-through, -0.103 -> -0.097 in 120 s (0.006 degrees, 20 s per 0.001):
    # A [-0.101, -0.099] is f 1/3..2/3: [40, 80]; B [-0.100, -0.098] is f 1/2..5/6: [60, 100].
    # Each 40 s = 0.67 min (no visit: 40 < 120). Endpoints: nothing.
    pings = walk("d1", T0, (0, -0.103), (120, -0.097))

    assert spans_s(pings, spots_a_b) == [("A", "d1", 40.0, 80.0), ("B", "d1", 60.0, 100.0)]
    interpolated, endpoints = both_rules(pings, spots_a_b)
    assert interpolated == [("A", DAY, 0.67, 0.67, 0), ("B", DAY, 0.67, 0.67, 0)]
    assert endpoints == []


# --- holes, corners, vertices, concave hot spots ----------------------------------------------


@FEW_OR_MANY
def test_the_time_in_a_hole_is_not_credited(spots_a_b_h, n_bystanders):
    # H's ring at lat 51.5 is lon [-0.201, -0.2005] and [-0.1995, -0.199]; the hole is between.
    # a at -0.2008 (in the ring) at 0 s, b at -0.1992 (in the ring) at 80 s: 0.0016 degrees,
    # 5 s per 0.0001. Inside: -0.2008..-0.2005 (0.0003: [0, 15]) and -0.1995..-0.1992
    # (0.0003: [65, 80]); the 50 s in the hole are not credited. 30 s = 0.50 min.
    # Endpoints: both ends in H, the whole 80 s = 1.33 min.
    pings = walk("d1", T0, (0, -0.2008), (80, -0.1992))
    pings += project_bystanders(n_bystanders)

    assert spans_s(pings, spots_a_b_h) == [("H", "d1", 0.0, 15.0), ("H", "d1", 65.0, 80.0)]
    interpolated, endpoints = both_rules(pings, spots_a_b_h)
    assert interpolated == [("H", DAY, 0.5, 0.5, 0)]
    assert endpoints == [("H", DAY, 1.33, 1.33, 0)]


@FEW_OR_MANY
def test_a_segment_cutting_a_corner_is_credited_its_part_inside(n_bystanders):
    # From grid (4, 9) to (13, 3) in 180 s: (x, y) = (4 + 9f, 9 - 6f). It enters S through the
    # top edge y = 8 at f = 1/6 (x = 5.5) and leaves through the east edge x = 8 at f = 4/9
    # (y = 6.33). Credited [180/6, 180*4/9] = [30, 80] = 50 s = 0.83 min.
    # Endpoints: both ends outside S, nothing.
    pings = walk("d1", T0, (0, grid(4, 9)), (180, grid(13, 3))) + grid_bystanders(n_bystanders)

    assert spans_s(pings, SQUARE) == [("S", "d1", 30.0, 80.0)]
    interpolated, endpoints = both_rules(pings, SQUARE)
    assert interpolated == [("S", DAY, 0.83, 0.83, 0)]
    assert endpoints == []


@FEW_OR_MANY
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # On x + y = 16, which meets S only at its vertex (8, 8): a point of contact.
        pytest.param((6, 10), (10, 6), [], id="touching-the-vertex"),
        # Leaving S from its vertex (8, 8) (a is on the boundary, so inside) to (10, 10):
        # the segment meets S only in a.
        pytest.param((8, 8), (10, 10), [], id="leaving-from-the-vertex"),
        # Control: half a unit lower, on x + y = 15.5, the segment cuts the corner: (6 + 4f,
        # 9.5 - 4f) enters at y = 8 (f = 3/8, 60 s of 160) and leaves at x = 8 (f = 1/2, 80 s).
        pytest.param((6, 9.5), (10, 5.5), [("S", "d1", 60.0, 80.0)], id="control-cutting"),
    ],
)
def test_a_segment_only_touching_a_vertex_credits_nothing(a, b, expected, n_bystanders):
    # a at 0 s, b at 160 s. Endpoints: b is outside S every time, so nothing either way.
    pings = walk("d1", T0, (0, grid(*a)), (160, grid(*b))) + grid_bystanders(n_bystanders)

    assert spans_s(pings, SQUARE) == expected
    interpolated, endpoints = both_rules(pings, SQUARE, min_visit_s=0)
    assert interpolated == ([("S", DAY, 0.33, 0.33, 1)] if expected else [])
    assert endpoints == []


def test_a_segment_along_an_edge_is_inside():
    # Along S's east edge x = 8 from (8, -2) to (8, 10) in 120 s: y = -2 + 12f. The edge
    # (y 0..8) counts as inside: f 2/12..10/12, i.e. [20, 100] = 80 s = 1.33 min.
    pings = walk("d1", T0, (0, grid(8, -2)), (120, grid(8, 10)))

    assert spans_s(pings, SQUARE) == [("S", "d1", 20.0, 100.0)]
    assert both_rules(pings, SQUARE) == ([("S", DAY, 1.33, 1.33, 0)], [])


@FEW_OR_MANY
def test_a_path_leaving_and_reentering_a_concave_hot_spot_is_credited_two_parts(n_bystanders):
    # Both pings in L: a at (2, 7) (upper arm) at 0 s, b at (7, 2) (lower arm) at 100 s, on
    # x + y = 9: (2 + 5f, 7 - 5f). It leaves L across the notch's west side x = 4 at f = 2/5
    # (y = 5) and re-enters across the notch's bottom y = 4 at f = 3/5 (x = 5). Credited
    # [0, 40] and [60, 100] = 80 s = 1.33 min; the 20 s break is within visit_merge_gap_s, so
    # with min_visit_s 60 one visit 0..100 s of 80 s presence.
    # Endpoints: both ends in L, the whole 100 s = 1.67 min, one visit.
    pings = walk("d1", T0, (0, grid(2, 7)), (100, grid(7, 2))) + grid_bystanders(n_bystanders)

    assert spans_s(pings, L_SHAPE) == [("L", "d1", 0.0, 40.0), ("L", "d1", 60.0, 100.0)]
    interpolated, endpoints = both_rules(pings, L_SHAPE, min_visit_s=60)
    assert interpolated == [("L", DAY, 1.33, 1.33, 1)]
    assert endpoints == [("L", DAY, 1.67, 1.67, 1)]
    visits = run_dosage(pings, L_SHAPE, INTERPOLATE, min_visit_s=60).visits
    assert list(visits[VISIT_COLUMNS].itertuples(index=False, name=None)) == [
        ("L", pd.Timestamp(T0), pd.Timestamp(at(T0, 100)), DAY, 1.33, 1)
    ]


@pytest.mark.parametrize(
    ("hot_spots", "where", "expected"),
    [
        # Three pings 60 s apart at one position: 120 s = 2.00 min and one visit, or nothing.
        pytest.param(L_SHAPE, grid(2, 6), [("L", DAY, 2.0, 2.0, 1)], id="inside-concave"),
        pytest.param(L_SHAPE, grid(4, 4), [("L", DAY, 2.0, 2.0, 1)], id="on-reflex-vertex"),
        pytest.param(L_SHAPE, grid(0, 6), [("L", DAY, 2.0, 2.0, 1)], id="on-outer-edge"),
        pytest.param(L_SHAPE, grid(6, 6), [], id="in-the-notch"),
        pytest.param("spots_a_b_h", IN_H_RING, [("H", DAY, 2.0, 2.0, 1)], id="in-ring"),
        pytest.param("spots_a_b_h", ON_HOLE_EDGE, [("H", DAY, 2.0, 2.0, 1)], id="on-hole-edge"),
        pytest.param("spots_a_b_h", IN_HOLE, [], id="in-the-hole"),
        pytest.param(SQUARE, grid(3, 3), [("S", DAY, 2.0, 2.0, 1)], id="inside-convex"),
    ],
)
def test_a_device_standing_still_is_credited_where_it_stands(request, hot_spots, where, expected):
    # a, b and c at the same position: each pair is a zero-length segment, credited whole
    # ([a.t, b.t]) if the position is inside (edges inside, holes outside), as the endpoint
    # rule does.
    if isinstance(hot_spots, str):
        hot_spots = request.getfixturevalue(hot_spots)
    pings = walk("d1", T0, (0, where), (60, where), (120, where))

    interpolated, endpoints = both_rules(pings, hot_spots)
    assert interpolated == expected
    assert endpoints == expected


# --- gaps and speed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_gap_s", "interpolated", "endpoints"),
    [
        # 240 s > 180 s: neither pair credits anything, under either rule.
        pytest.param(180, [], [], id="default-gap"),
        # 240 s is 1 us more than 239.999999 s: still nothing.
        pytest.param(239.999999, [], [], id="one-microsecond-short"),
        # Both pairs count. d1's pass-through [80, 160] (f 1/3..2/3 of 240 s) lies inside d2's
        # [0, 240]: presence 240 s = 4.00, officer 80 + 240 = 320 s = 5.33, one visit.
        # Endpoints: only d2 (both ends in A): 4.00, 4.00, one visit.
        pytest.param(240, [("A", DAY, 4.0, 5.33, 1)], [("A", DAY, 4.0, 4.0, 1)], id="gap-allowed"),
    ],
)
def test_a_gap_longer_than_max_gap_s_credits_nothing(spot_a, max_gap_s, interpolated, endpoints):
    # d1 passes through A (-0.103 -> -0.097) and d2 stands in A, each with pings 240 s apart.
    pings = walk("d1", T0, (0, -0.103), (240, -0.097)) + walk("d2", T0, (0, IN_A), (240, IN_A))

    assert both_rules(pings, spot_a, max_gap_s=max_gap_s) == (interpolated, endpoints)


@pytest.mark.parametrize(
    ("max_speed_kmh", "expected"),
    [
        # d1 covers 0.006 degrees of longitude at lat 51.5 in 120 s: haversine
        # 2 * 6371.0088 * asin(cos(51.5 deg) * sin(0.003 deg)) = 0.415323 km, i.e.
        # 0.415323 / (120 / 3600) = 12.4597 km/h. d2 stands still in A from 0 to 120 s.
        # Refused: only d2's 120 s: 2.00, 2.00, one visit.
        pytest.param(12.45, [("A", DAY, 2.0, 2.0, 1)], id="too-fast"),
        # Allowed: d1's [40, 80] lies within d2's [0, 120]: presence 2.00, officer 160 s = 2.67.
        pytest.param(12.46, [("A", DAY, 2.0, 2.67, 1)], id="slow-enough"),
        pytest.param(None, [("A", DAY, 2.0, 2.67, 1)], id="no-limit"),
    ],
)
def test_max_speed_kmh_still_refuses_a_too_fast_pair(spot_a, max_speed_kmh, expected):
    pings = walk("d1", T0, (0, -0.103), (120, -0.097)) + walk("d2", T0, (0, IN_A), (120, IN_A))

    result = run_dosage(pings, spot_a, INTERPOLATE, max_speed_kmh=max_speed_kmh)
    assert daily_rows(result) == expected


# --- local midnight -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_time", "first_day"),
    [
        # GMT: local midnight is 00:00 UTC.
        pytest.param("2026-01-14T23:59:00+00:00", date(2026, 1, 14), id="winter"),
        # BST: local midnight is 23:00 UTC (the pings are 22:59 and 23:01 UTC, one UTC day).
        pytest.param("2026-06-30T23:59:00+01:00", date(2026, 6, 30), id="summer"),
    ],
)
def test_a_credited_part_straddling_midnight_is_split_there(spot_a, a_time, first_day):
    # Pass-through of A, -0.103 at 23:59:00 -> -0.097 at 00:01:00 local (120 s): credited
    # [23:59:40, 00:00:20], 20 s on each local day = 0.33 min each. With min_visit_s 30 the
    # 40 s make one visit, which belongs to the day it starts: the first.
    pings = walk("d1", a_time, (0, -0.103), (120, -0.097))

    result = run_dosage(pings, spot_a, INTERPOLATE, min_visit_s=30)
    second_day = date.fromordinal(first_day.toordinal() + 1)
    assert daily_rows(result) == [
        ("A", first_day, 0.33, 0.33, 1),
        ("A", second_day, 0.33, 0.33, 0),
    ]
    assert list(result.visits[VISIT_COLUMNS].itertuples(index=False, name=None)) == [
        ("A", pd.Timestamp(at(a_time, 40)), pd.Timestamp(at(a_time, 80)), first_day, 0.67, 1)
    ]
    assert daily_rows(run_dosage(pings, spot_a, ENDPOINTS, min_visit_s=30)) == []


def test_a_span_entered_after_midnight_belongs_to_the_next_day(spot_a):
    # BST. a at 23:59:30 (-0.103, outside), b at 00:01:00 (-0.1005, inside), 90 s apart: the
    # path crosses -0.101 at f = 0.002/0.0025 = 0.8, 72 s after a: 00:00:42. Then inside at
    # 00:02 and 00:03. The pair a -> b begins on 30 June but its span [00:00:42, 00:01:00]
    # lies on 1 July: 18 + 60 + 60 = 138 s = 2.30 min on 1 July, one visit; nothing on 30 June.
    # Endpoints: 120 s = 2.00 min, one visit.
    start = "2026-06-30T23:59:30+01:00"
    pings = walk("d1", start, (0, -0.103), (90, -0.1005), (150, -0.1005), (210, -0.1005))

    assert spans_s(pings, spot_a, since_us=parse_timestamp(start)) == [
        ("A", "d1", 72.0, 90.0),
        ("A", "d1", 90.0, 150.0),
        ("A", "d1", 150.0, 210.0),
    ]
    interpolated, endpoints = both_rules(pings, spot_a)
    assert interpolated == [("A", date(2026, 7, 1), 2.3, 2.3, 1)]
    assert endpoints == [("A", date(2026, 7, 1), 2.0, 2.0, 1)]


# --- the bias the rule removes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_lon",
    [
        # k-th ping at first_lon + 0.0004 k, every 60 s. A is 0.002 degrees wide: 5 intervals.
        # -0.1025: the path crosses -0.101 at k = 3.75 (t = 225 s) and -0.099 at k = 8.75
        # (525 s): 300 s inside. Pings 4..8 are inside: endpoints credit 4 -> 8 = 240 s.
        pytest.param(-0.1025, id="entering-three-quarters-into-an-interval"),
        # -0.10235: crosses at k = 3.375 (202.5 s) and 8.375 (502.5 s): again 300 and 240 s.
        pytest.param(-0.10235, id="entering-three-eighths-into-an-interval"),
    ],
)
def test_interpolation_adds_back_about_one_ping_interval_per_visit(spot_a, first_lon):
    # Walking due east through A at a steady 0.0004 degrees a minute, pinging every 60 s,
    # the device really spends 0.002 / 0.0004 = 5 minutes in A. The endpoint rule loses the
    # part of the entry interval and of the exit interval spent inside: together exactly one
    # interval here (the width is a whole number of intervals), so 4 minutes.
    pings = [ping("d1", at(T0, 60 * k), LAT, round(first_lon + 0.0004 * k, 7)) for k in range(12)]

    interpolated = run_dosage(pings, spot_a, INTERPOLATE)
    endpoints = run_dosage(pings, spot_a, ENDPOINTS)
    assert daily_rows(interpolated) == [("A", DAY, 5.0, 5.0, 1)]
    assert daily_rows(endpoints) == [("A", DAY, 4.0, 4.0, 1)]
    presence_us = [r.daily["presence_us"].iloc[0] for r in (interpolated, endpoints)]
    assert presence_us == [300_000_000, 240_000_000]
    assert presence_us[0] - presence_us[1] == 60_000_000  # one ping interval, to the us


# --- the offline command and the setting ---------------------------------------------------------

# Every device of the stored-path tests, in Europe/London summer time (BST, UTC+1).
# d-midnight: the entry of test_a_span_entered_after_midnight_belongs_to_the_next_day:
#   A 2026-07-01: [00:00:42, 00:03:00] = 138 s, one visit; nothing on 30 June.
# d-pass: the pass-through of A and B at 12:00 (-0.103 -> -0.097 in 120 s):
#   A [12:00:40, 12:01:20] = 40 s; B [12:01:00, 12:01:40] = 40 s.
# d-hole: across H's hole at 13:00 (-0.2008 -> -0.1992 in 80 s): H 15 + 15 = 30 s.
# d-straddle: the same pass-through at 23:59:00 -> 00:01:00 (2 July): A [23:59:40, 00:00:20]
#   = 20 s on 1 July and 20 s on 2 July; B [00:00:00, 00:00:40] = 40 s, all on 2 July (a span
#   starting exactly at midnight belongs wholly to the later day).
# Totals: A 1 July 138 + 40 + 20 = 198 s = 3.30 min, one visit (d-midnight's 138 s; the others
# are shorter than 120 s); A 2 July 20 s = 0.33; B 1 July 40 s = 0.67; B 2 July 0.67; H 1 July
# 30 s = 0.50.
STORED_PINGS = [
    *walk(
        "d-midnight",
        "2026-06-30T23:59:30+01:00",
        (0, -0.103),
        (90, -0.1005),
        (150, -0.1005),
        (210, -0.1005),
    ),
    *walk("d-pass", "2026-07-01T12:00:00+01:00", (0, -0.103), (120, -0.097)),
    *walk("d-hole", "2026-07-01T13:00:00+01:00", (0, -0.2008), (80, -0.1992)),
    *walk("d-straddle", "2026-07-01T23:59:00+01:00", (0, -0.103), (120, -0.097)),
]
INTERPOLATED_CSV = """hotspot_id,date,presence_minutes,officer_minutes,visits
A,2026-07-01,3.30,3.30,1
A,2026-07-02,0.33,0.33,0
B,2026-07-01,0.67,0.67,0
B,2026-07-02,0.67,0.67,0
H,2026-07-01,0.50,0.50,0
"""
# Endpoints: d-midnight 00:01 -> 00:03 = 120 s (one visit); d-hole both ends in H: 80 s; the
# pass-throughs nothing.
ENDPOINTS_CSV = """hotspot_id,date,presence_minutes,officer_minutes,visits
A,2026-07-01,2.00,2.00,1
H,2026-07-01,1.33,1.33,0
"""


def project_geojson() -> dict:
    return feature_collection(
        polygon_feature("A", BOX_A),
        polygon_feature("B", BOX_B),
        polygon_feature("H", BOX_H, holes=(HOLE_H,)),
    )


def write_pings_csv(path: Path, pings: list[Ping]) -> Path:
    lines = ["device_id,timestamp,lat,lon"]
    lines += [f"{p.device_id},{format_timestamp(p.t_us)},{p.lat!r},{p.lon!r}" for p in pings]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """The project geography as GeoJSON, and STORED_PINGS as CSV: all, and in two batches
    (each device's first ping, then the rest)."""
    geojson = tmp_path / "hot_spots.geojson"
    geojson.write_text(json.dumps(project_geojson()), encoding="utf-8")
    firsts = {p.device_id: p for p in reversed(STORED_PINGS)}
    first_batch = [p for p in STORED_PINGS if firsts[p.device_id] is p]
    rest = [p for p in STORED_PINGS if firsts[p.device_id] is not p]
    return {
        "geojson": geojson,
        "all": write_pings_csv(tmp_path / "all.csv", STORED_PINGS),
        "firsts": write_pings_csv(tmp_path / "firsts.csv", first_batch),
        "rest": write_pings_csv(tmp_path / "rest.csv", rest),
    }


def invoke(*args) -> Result:
    """Run a command in-process; any exception but click's own exit is a traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def ok(*args) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def offline_csv(pings: list[Ping], rule: str) -> str:
    """compute_dosage's daily table for the pings with default parameters, as CSV."""
    hot_spots = hot_spot_set(*project_geojson()["features"])
    out = io.StringIO()
    write_table(run_dosage(pings, hot_spots, rule).daily[DAILY_COLUMNS], "csv", out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("rule", "expected"), [(INTERPOLATE, INTERPOLATED_CSV), (ENDPOINTS, ENDPOINTS_CSV)]
)
def test_the_offline_command_applies_the_crossing_rule(files, rule, expected):
    result = ok(
        "dosage",
        "--pings",
        files["all"],
        "--geofences",
        files["geojson"],
        "--crossing-rule",
        rule,
    )

    assert result.stdout == expected
    assert result.stdout == offline_csv(STORED_PINGS, rule)


def test_the_defaults_of_the_engine_the_setting_and_the_command_agree(files):
    # Whichever rule is the default, it is the same everywhere (and one of the two).
    default = DosageParams().crossing_rule
    assert default in (ENDPOINTS, INTERPOLATE)
    assert configured_params().crossing_rule == default
    result = ok("dosage", "--pings", files["all"], "--geofences", files["geojson"])
    assert result.stdout == (INTERPOLATED_CSV if default == INTERPOLATE else ENDPOINTS_CSV)


def test_an_unknown_crossing_rule_is_a_usage_error(files):
    result = invoke(
        "dosage",
        "--pings",
        files["all"],
        "--geofences",
        files["geojson"],
        "--crossing-rule",
        "bogus",
    )

    assert result.exit_code == 2  # click's usage error
    assert "--crossing-rule" in result.stderr
    assert "'bogus'" in result.stderr
    assert "endpoints" in result.stderr and "interpolate" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_the_crossing_rule_setting_is_read_and_checked(monkeypatch):
    for rule in (INTERPOLATE, ENDPOINTS, INTERPOLATE):
        monkeypatch.setenv("TRACKER_CROSSING_RULE", rule)
        assert configured_params().crossing_rule == rule

    monkeypatch.setenv("TRACKER_CROSSING_RULE", "bogus")
    with pytest.raises(settings.SettingsError) as raised:
        configured_params()
    message = str(raised.value)
    assert "crossing_rule" in message.lower()  # the parameter (TRACKER_CROSSING_RULE)
    assert "'bogus'" in message
    assert "endpoints" in message and "interpolate" in message


def test_a_bad_crossing_rule_setting_stops_a_database_command(monkeypatch, database_url):
    monkeypatch.setenv("TRACKER_CROSSING_RULE", "bogus")

    result = invoke("report", "--db", database_url)

    assert result.exit_code == 1
    assert "'bogus'" in result.stderr
    assert "Traceback" not in result.output


# --- the stored path ------------------------------------------------------------------------------


def stored_exact(database_url: str) -> dict[str, list]:
    """The stored spans and figures, to the microsecond (the property tests' `stored`)."""
    engine = make_engine(database_url)
    try:
        return stored(session_factory(engine))
    finally:
        engine.dispose()


# What compute_dosage makes of the pings, in the shapes of `stored_exact`.
offline_exact = offline


@pytest.mark.parametrize("first", ["firsts", "rest"], ids=["first-pings-first", "rest-first"])
def test_stored_figures_with_interpolation_equal_the_offline_figures(
    monkeypatch, database_url, files, first
):
    # Two imports, each followed by the incremental catch-up: the pairs a -> b are complete
    # only after both. When the rest comes first, d-midnight's b, c, d (1 July) are stored and
    # computed before its a (30 June 23:59:30) arrives; a must then re-credit 1 July, from a
    # pair that begins on 30 June.
    monkeypatch.setenv("TRACKER_CROSSING_RULE", "interpolate")
    second = "rest" if first == "firsts" else "firsts"
    ok("geofences", "load", files["geojson"], "--db", database_url)
    ok("pings", "import", files[first], "--db", database_url)
    ok("pings", "import", files[second], "--db", database_url)

    report = ok("report", "--db", database_url).stdout
    offline_interpolated = ok(
        "dosage",
        "--pings",
        files["all"],
        "--geofences",
        files["geojson"],
        "--crossing-rule",
        "interpolate",
    )

    assert report == INTERPOLATED_CSV
    assert report == offline_interpolated.stdout
    hot_spots = hot_spot_set(*project_geojson()["features"])
    expected = offline_exact(STORED_PINGS, hot_spots, DosageParams(crossing_rule=INTERPOLATE))
    stored = stored_exact(database_url)
    assert stored == expected
    # d-midnight's entry is stored under 1 July, the day its span starts.
    entry_us = parse_timestamp("2026-07-01T00:00:42+01:00")
    assert ("A", "d-midnight", entry_us, entry_us + 18_000_000) in stored["spans"]


def test_stored_figures_follow_a_changed_crossing_rule_after_recompute(
    monkeypatch, database_url, files
):
    monkeypatch.setenv("TRACKER_CROSSING_RULE", "endpoints")
    ok("geofences", "load", files["geojson"], "--db", database_url)
    ok("pings", "import", files["all"], "--db", database_url)
    assert ok("report", "--db", database_url).stdout == ENDPOINTS_CSV

    monkeypatch.setenv("TRACKER_CROSSING_RULE", "interpolate")
    ok("recompute", "--db", database_url)

    assert ok("report", "--db", database_url).stdout == INTERPOLATED_CSV
    hot_spots = hot_spot_set(*project_geojson()["features"])
    params = DosageParams(crossing_rule=INTERPOLATE)
    assert stored_exact(database_url) == offline_exact(STORED_PINGS, hot_spots, params)


def store_and_catch_up(db, hot_spots: HotSpotSet, pings: list[Ping], params: DosageParams):
    with db.begin() as session:
        store_pings(session, pings, params)
    bring_up_to_date(db.begin, hot_spots, params)


def test_a_span_on_a_day_without_pings_of_its_own_is_stored(database_url, db, spot_a):
    """With max_gap_s of more than a day, an interpolated span can start on a local day on
    which the device has no ping at all. That day must be queued and rebuilt too (it once was
    not: the stored figures lacked what `tracker dosage` reports)."""
    # max_gap_s 3 days. a at -0.103 on 14 Jan 23:00, b at -0.097 on 16 Jan 01:00 (26 h =
    # 93,600 s apart): A is crossed at f 1/3..2/3, [14 Jan 23:00 + 31,200 s, + 62,400 s] =
    # 15 Jan 07:40 to 16:20, 8 h 40 min = 520.00 min, all on 15 January (one visit).
    params = DosageParams(crossing_rule=INTERPOLATE, max_gap_s=3 * 86400)
    start = "2026-01-14T23:00:00+00:00"
    pings = walk("d1", start, (0, -0.103), (26 * 3600, -0.097))
    expected = offline_exact(pings, spot_a, params)
    assert expected["daily"] == [("A", date(2026, 1, 15), 31_200_000_000, 31_200_000_000, 1)]
    with db.begin() as session:
        replace_hot_spots(session, spot_a, params)

    store_and_catch_up(db, spot_a, pings, params)

    assert stored_exact(database_url) == expected


def test_purging_a_day_keeps_the_interpolated_spans_it_began(database_url, db, spot_a):
    """docs/dosage.md: purged days keep what their pings credited. Interpolating, a pair whose
    first ping is on a purged day can credit a span that starts on the first kept day; when
    that kept day is rebuilt (here because a late ping arrives for it) the span must survive,
    though the ping before it is gone (it once was dropped). Under the endpoint rule a span
    starts at its first ping, on the purged day, which is never rebuilt."""
    # GMT. a at -0.103 on 14 Jan 23:59:30, then inside at -0.100 at 00:01:00, 00:02:00 and
    # 00:03:00 on 15 Jan. a -> b crosses -0.101 at f = 2/3 of 90 s: [00:00:30, 00:01:00].
    # 15 Jan: 30 + 60 + 60 = 150 s. Retention 1 day at noon on 16 Jan purges 14 Jan (a only).
    # A late ping inside at 00:04:00 on 15 Jan adds 60 s: 210 s = 3.50 min, one visit.
    params = DosageParams(crossing_rule=INTERPOLATE)
    start = "2026-01-14T23:59:30+00:00"
    pings = walk("d1", start, (0, -0.103), (90, -0.100), (150, -0.100), (210, -0.100))
    late = walk("d1", start, (270, -0.100))
    with db.begin() as session:
        replace_hot_spots(session, spot_a, params)
    store_and_catch_up(db, spot_a, pings, params)
    assert stored_exact(database_url)["daily"] == [
        ("A", date(2026, 1, 15), 150_000_000, 150_000_000, 1)
    ]
    with db.begin() as session:
        purged = purge_pings(session, 1, params, now=datetime(2026, 1, 16, 12, tzinfo=UTC))
    assert purged == 1

    store_and_catch_up(db, spot_a, late, params)

    assert stored_exact(database_url) == offline_exact(pings + late, spot_a, params)
    assert stored_exact(database_url)["daily"] == [
        ("A", date(2026, 1, 15), 210_000_000, 210_000_000, 1)
    ]
