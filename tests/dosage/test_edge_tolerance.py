"""The interpolate rule's edge tolerance (DosageParams.edge_tolerance_m), against hand-worked
figures.

When two pings of a device are inside a hot spot, at most max_gap_s apart, and every ping
between them is outside it but within edge_tolerance_m of its edge (each span between them at
most max_gap_s), every span from the first to the last is credited whole to that hot spot.

Geography (tests/builders.py): hot spot A is lon [-0.101, -0.099] x lat [51.499, 51.501], B is
lon [-0.100, -0.098]. Walks go north from IN_A (51.5, -0.1005) across A's north edge, lat
51.501: 0.0001 degree of latitude is 11.13 m (111,320 m per degree), so lat 51.5011 is 11.1 m
outside A and lat 51.5014 is 44.5 m outside. The day is 2026-01-14 (London on GMT);
parameters are the defaults (max_gap_s 180, tolerance 30 m) unless a test says otherwise.
"""

from __future__ import annotations

import pytest

from tests.builders import BOX_H, HOLE_H, IN_A, IN_A_AND_B, hot_spot_set, polygon_feature
from tests.dosage.test_crossing_rule import T0, daily_rows, run_dosage, spans_s, walk
from tracker.dosage.engine import ENDPOINTS, INTERPOLATE, DosageParams

NEAR = (51.5011, IN_A[1])  # 11.1 m north of A
FAR = (51.5014, IN_A[1])  # 44.5 m north of A
# Out of A at 27.27 s (0.001 of the 0.0011 degrees north), back in at 32.73 s.
EXIT_S = 30 * 0.001 / 0.0011
APPROX = pytest.approx  # interpolated times: the fraction is rounded to the microsecond


def excursion(outside: tuple[float, float]) -> list:
    """Inside A at 0 s, `outside` at 30 s, inside again at 60 s and 180 s."""
    return walk("d1", T0, (0, IN_A), (30, outside), (60, IN_A), (180, IN_A))


def test_a_ping_just_outside_between_two_inside_is_no_exit(spot_a):
    assert spans_s(excursion(NEAR), spot_a) == [
        ("A", "d1", 0, 30),
        ("A", "d1", 30, 60),
        ("A", "d1", 60, 180),
    ]
    # Three whole minutes and one visit.
    rows = daily_rows(run_dosage(excursion(NEAR), spot_a, INTERPOLATE))
    assert [r[2:] for r in rows] == [(3.0, 3.0, 1)]


def test_without_the_tolerance_the_same_pings_credit_only_the_parts_inside(spot_a):
    spans = spans_s(excursion(NEAR), spot_a, edge_tolerance_m=0)
    assert spans == [
        ("A", "d1", 0, APPROX(EXIT_S, abs=1e-6)),
        ("A", "d1", APPROX(60 - EXIT_S, abs=1e-6), 60),
        ("A", "d1", 60, 180),
    ]


def test_a_ping_beyond_the_tolerance_is_an_exit(spot_a):
    # 44.5 m out: the segments leave A at 0.001/0.0014 of the way.
    exit_s = 30 * 0.001 / 0.0014
    assert spans_s(excursion(FAR), spot_a) == [
        ("A", "d1", 0, APPROX(exit_s, abs=1e-6)),
        ("A", "d1", APPROX(60 - exit_s, abs=1e-6), 60),
        ("A", "d1", 60, 180),
    ]
    assert spans_s(excursion(FAR), spot_a, edge_tolerance_m=45) == [
        ("A", "d1", 0, 30),
        ("A", "d1", 30, 60),
        ("A", "d1", 60, 180),
    ]


def test_several_pings_just_outside_bridge_a_stay_of_at_most_max_gap_s(spot_a):
    pings = walk("d1", T0, (0, IN_A), (50, NEAR), (100, (51.5012, -0.1)), (150, IN_A))
    assert spans_s(pings, spot_a) == [
        ("A", "d1", 0, 50),
        ("A", "d1", 50, 100),
        ("A", "d1", 100, 150),
    ]
    # 0 -> 150 s is within max_gap_s 180; with 120 s it is not, and the parts inside remain.
    short = spans_s(pings, spot_a, max_gap_s=120)
    assert [s[2:] for s in short] == [
        (0, APPROX(50 * 0.001 / 0.0011, abs=1e-6)),
        (APPROX(150 - 50 * 0.001 / 0.0012, abs=1e-6), 150),
    ]


def test_a_stay_needs_a_usable_span_between_every_two_pings(spot_a):
    # 200 s from the outside ping back in: that span credits nothing, so neither is bridged.
    pings = walk("d1", T0, (0, IN_A), (30, NEAR), (230, IN_A))
    assert spans_s(pings, spot_a, max_gap_s=600) == [("A", "d1", 0, 30), ("A", "d1", 30, 230)]
    assert spans_s(pings, spot_a) == [("A", "d1", 0, APPROX(EXIT_S, abs=1e-6))]


def test_pings_only_near_a_hot_spot_credit_nothing(spot_a):
    # Along A's north edge, 11 m out, never inside: the tolerance adds nothing.
    pings = walk("d1", T0, (0, NEAR), (60, (51.5011, -0.1)), (120, (51.5011, -0.0995)))
    assert spans_s(pings, spot_a) == []


def test_the_tolerance_applies_to_each_hot_spot_it_holds_for(spots_a_b):
    # In A and B, 11 m north of both, back in both: each is credited the whole minute. A ping in
    # B only (34.6 m east of A) between two in A is an exit from A, not from B's point of view.
    both = walk("d1", T0, (0, IN_A_AND_B), (30, (51.5011, -0.0995)), (60, IN_A_AND_B))
    assert spans_s(both, spots_a_b) == [
        ("A", "d1", 0, 30),
        ("A", "d1", 30, 60),
        ("B", "d1", 0, 30),
        ("B", "d1", 30, 60),
    ]
    b_only = walk("d2", T0, (0, IN_A_AND_B), (30, (51.5, -0.0985)), (60, IN_A_AND_B))
    spans = spans_s(b_only, spots_a_b)
    assert ("B", "d2", 0, 30) in spans and ("B", "d2", 30, 60) in spans
    assert [s for s in spans if s[0] == "A"] == [
        ("A", "d2", 0, APPROX(30 * 0.0005 / 0.001, abs=1e-6)),
        ("A", "d2", APPROX(45, abs=1e-6), 60),
    ]


def test_a_ping_in_a_hole_near_its_ring_is_within_the_tolerance():
    spot_h = hot_spot_set(polygon_feature("H", BOX_H, holes=(HOLE_H,)))
    ring = (HOLE_H[1] - 0.0002, -0.2)  # in H, 22 m south of the hole
    in_hole = (HOLE_H[1] + 0.0001, -0.2)  # 11 m into the hole
    pings = walk("d1", T0, (0, ring), (30, in_hole), (60, ring))
    assert spans_s(pings, spot_h) == [("H", "d1", 0, 30), ("H", "d1", 30, 60)]
    assert spans_s(pings, spot_h, edge_tolerance_m=0) == [
        ("H", "d1", 0, APPROX(20, abs=1e-6)),
        ("H", "d1", APPROX(40, abs=1e-6), 60),
    ]


def test_the_endpoint_rule_has_no_tolerance(spot_a):
    rows = daily_rows(run_dosage(excursion(NEAR), spot_a, ENDPOINTS))
    assert [r[2:] for r in rows] == [(2.0, 2.0, 1)]


def test_a_negative_or_infinite_tolerance_is_refused():
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="edge_tolerance_m"):
            DosageParams(edge_tolerance_m=bad)
