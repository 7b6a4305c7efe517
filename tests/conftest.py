"""Shared fixtures: the hot spot sets of the test geography in tests/builders.py."""

import pytest

from tests.builders import BOX_A, BOX_B, BOX_H, HOLE_H, hot_spot_set, polygon_feature
from tracker.dosage.geofence import HotSpotSet


@pytest.fixture(scope="session")
def spot_a() -> HotSpotSet:
    """One rectangular hot spot, "A"."""
    return hot_spot_set(polygon_feature("A", BOX_A))


@pytest.fixture(scope="session")
def spots_a_b() -> HotSpotSet:
    """Hot spots "A" and "B", which overlap."""
    return hot_spot_set(polygon_feature("A", BOX_A), polygon_feature("B", BOX_B))


@pytest.fixture(scope="session")
def spots_a_b_h() -> HotSpotSet:
    """Hot spots "A", "B" (overlapping A) and "H" (with a hole)."""
    return hot_spot_set(
        polygon_feature("A", BOX_A),
        polygon_feature("B", BOX_B),
        polygon_feature("H", BOX_H, holes=(HOLE_H,)),
    )
