"""The demonstration hot spot set shipped in geofences/."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import LinearRing, Polygon

from tracker.dosage.geofence import HotSpot, HotSpotSet, load_hot_spots

DEMO_PATH = Path(__file__).resolve().parent.parent / "geofences" / "leicestershire_demo.geojson"

EARTH_RADIUS_M = 6_371_008.8
CELL_AREA_M2 = 150 * 150
KINDS = {"cell", "block", "corridor"}
AREAS = {
    "Leicester",
    "Loughborough",
    "Hinckley",
    "Coalville",
    "Melton Mowbray",
    "Market Harborough",
    "Wigston",
    "Oadby",
    "Shepshed",
    "Lutterworth",
    "Ashby-de-la-Zouch",
}
# Leicestershire with a margin: (min_lon, min_lat, max_lon, max_lat).
LEICESTERSHIRE_BOUNDS = (-1.62, 52.35, -0.65, 52.98)


@pytest.fixture(scope="module")
def demo_set() -> HotSpotSet:
    return load_hot_spots(DEMO_PATH)


@pytest.fixture(scope="module")
def demo_json() -> dict:
    return json.loads(DEMO_PATH.read_text(encoding="utf-8"))


def in_metres(polygon: Polygon) -> Polygon:
    """Return the polygon in metres east and north of its centroid (local equirectangular)."""
    lon0, lat0 = polygon.centroid.x, polygon.centroid.y
    metres_per_degree = EARTH_RADIUS_M * math.pi / 180
    scale = np.array([metres_per_degree * math.cos(math.radians(lat0)), metres_per_degree])
    return shapely.transform(polygon, lambda xy: (xy - (lon0, lat0)) * scale)


def of_kind(demo_set: HotSpotSet, kind: str) -> list[HotSpot]:
    return [h for h in demo_set if h.properties["kind"] == kind]


def test_demo_set_has_25_hot_spots_with_unique_ids(demo_set):
    assert len(demo_set) == 25
    assert len(set(demo_set.ids)) == 25
    assert len({h.name for h in demo_set}) == 25


def test_every_hot_spot_has_demo_properties(demo_set):
    for hot_spot in demo_set:
        props = hot_spot.properties
        harm_score = props.get("harm_score")
        assert isinstance(harm_score, int) and not isinstance(harm_score, bool), hot_spot.id
        assert harm_score > 0, hot_spot.id
        assert props.get("kind") in KINDS, hot_spot.id
        assert props.get("area") in AREAS, hot_spot.id
        assert props.get("demo") is True, hot_spot.id


def test_file_is_labelled_as_demonstration_data(demo_json):
    assert demo_json["name"] == "Leicestershire demo hot spots"
    assert demo_json["description"].startswith("DEMONSTRATION DATA")


def test_rings_are_closed_and_wound_as_rfc_7946_asks(demo_json):
    for feature in demo_json["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        exterior, *holes = feature["geometry"]["coordinates"]
        for ring in (exterior, *holes):
            assert ring[0] == ring[-1], feature["properties"]["id"]
        assert LinearRing(exterior).is_ccw, feature["properties"]["id"]
        for hole in holes:
            assert not LinearRing(hole).is_ccw, feature["properties"]["id"]


def test_exactly_two_corridors_and_one_polygon_with_a_hole(demo_set):
    corridors = of_kind(demo_set, "corridor")
    assert len(corridors) == 2
    holed = [h for h in demo_set if len(h.geometry.interiors) > 0]
    assert len(holed) == 1
    # Most hot spots are grid cells; several are street blocks.
    assert len(of_kind(demo_set, "cell")) > len(demo_set) / 2
    assert len(of_kind(demo_set, "block")) >= 3


def test_corridors_are_long_and_thin(demo_set):
    for corridor in of_kind(demo_set, "corridor"):
        strip = in_metres(corridor.geometry)
        # For a long thin strip, half the perimeter is about its length.
        length_m = strip.length / 2
        assert 400 <= length_m <= 800, corridor.id
        assert 20 <= strip.area / length_m <= 30, corridor.id


def test_cells_are_about_150_m_across(demo_set):
    cells = of_kind(demo_set, "cell")
    assert cells
    for cell in cells:
        square = in_metres(cell.geometry)
        assert square.area == pytest.approx(CELL_AREA_M2, rel=0.15), cell.id
        min_x, min_y, max_x, max_y = square.bounds
        assert max_x - min_x == pytest.approx(150, rel=0.1), cell.id
        assert max_y - min_y == pytest.approx(150, rel=0.1), cell.id


def test_all_hot_spots_are_in_leicestershire(demo_set):
    min_lon, min_lat, max_lon, max_lat = LEICESTERSHIRE_BOUNDS
    for hot_spot in demo_set:
        lon_lo, lat_lo, lon_hi, lat_hi = hot_spot.geometry.bounds
        assert min_lon <= lon_lo and lon_hi <= max_lon, hot_spot.id
        assert min_lat <= lat_lo and lat_hi <= max_lat, hot_spot.id


def test_at_least_one_pair_of_hot_spots_overlaps(demo_set):
    overlapping = [
        (a.id, b.id)
        for a, b in itertools.combinations(demo_set, 2)
        if a.geometry.intersection(b.geometry).area > 0
    ]
    assert overlapping


def test_hole_is_outside_its_hot_spot_but_the_ring_around_it_is_inside(demo_set):
    (index,) = [i for i, h in enumerate(demo_set) if h.geometry.interiors]
    polygon = demo_set.hot_spots[index].geometry
    hole_centre = Polygon(polygon.interiors[0]).representative_point()
    in_ring = polygon.representative_point()
    assert Polygon(polygon.exterior).contains(hole_centre)
    assert polygon.contains(in_ring)

    point_idx, hot_spot_idx = demo_set.classify(
        np.array([hole_centre.x, in_ring.x]), np.array([hole_centre.y, in_ring.y])
    )
    holed_hits = set(point_idx[hot_spot_idx == index].tolist())
    assert holed_hits == {1}
