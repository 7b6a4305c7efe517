"""Hot spot polygons: loading and validating GeoJSON, and classifying points (docs/dosage.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import Point

from tracker.dosage.geofence import GeofenceError, HotSpotSet, load_hot_spots, parse_hot_spots


def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """A closed, counter-clockwise rectangular ring from (x0, y0) to (x1, y1)."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def polygon(*rings: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": list(rings)}


def multipolygon(*polygons: list[list[list[float]]]) -> dict:
    return {"type": "MultiPolygon", "coordinates": list(polygons)}


def feature(hot_spot_id, geometry: dict, name="Hot spot", **properties) -> dict:
    props = {"id": hot_spot_id, "name": name, **properties}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def collection(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


# A ~700 m x 1.1 km cell in Leicester (lon, lat), as real hot spots are.
CELL = polygon(ring(-1.10, 52.60, -1.09, 52.61))


# --- loading ---------------------------------------------------------------------------------


def test_polygon_and_multipolygon_load_with_their_other_properties(tmp_path):
    path = tmp_path / "hot_spots.geojson"
    multi = multipolygon([ring(-1.08, 52.60, -1.07, 52.61)], [ring(-1.06, 52.60, -1.05, 52.61)])
    path.write_text(
        json.dumps(
            collection(
                feature("HS-1", CELL, name="  Clock Tower ", harm_index=412.5, ward="Castle"),
                feature("HS-2", multi, name="Two blocks", tags=["night-time economy"]),
            )
        ),
        encoding="utf-8",
    )

    hot_spots = load_hot_spots(path)

    assert hot_spots.ids == ("HS-1", "HS-2")
    first, second = list(hot_spots)
    assert first.name == "Clock Tower"  # surrounding whitespace trimmed
    assert first.properties == {"harm_index": 412.5, "ward": "Castle"}
    assert first.geometry.geom_type == "Polygon"
    assert second.properties == {"tags": ["night-time economy"]}
    assert second.geometry.geom_type == "MultiPolygon"
    assert len(second.geometry.geoms) == 2
    # Both parts of the MultiPolygon are the hot spot; the gap between them is not.
    point, hot_spot = hot_spots.classify(
        np.array([-1.075, -1.055, -1.065]), np.array([52.605, 52.605, 52.605])
    )
    assert list(zip(point.tolist(), hot_spot.tolist(), strict=True)) == [(0, 1), (1, 1)]


def test_feature_round_trips_through_to_geojson():
    hot_spots = parse_hot_spots(collection(feature("HS-1", CELL, name="Market", beat="A1")))

    again = parse_hot_spots(json.dumps(hot_spots.to_geojson()))

    (hot_spot,) = list(again)
    assert (hot_spot.id, hot_spot.name, dict(hot_spot.properties)) == (
        "HS-1",
        "Market",
        {"beat": "A1"},
    )
    assert hot_spot.geometry.equals(next(iter(hot_spots)).geometry)


def test_integer_ids_become_strings():
    hot_spots = parse_hot_spots(collection(feature(7, CELL), feature(12, CELL)))

    assert hot_spots.ids == ("7", "12")
    assert all(isinstance(h.id, str) for h in hot_spots)


def test_text_and_bytes_are_accepted_as_well_as_mappings():
    data = collection(feature("HS-1", CELL))

    assert parse_hot_spots(json.dumps(data)).ids == ("HS-1",)
    assert parse_hot_spots(json.dumps(data).encode()).ids == ("HS-1",)


def test_swapped_but_in_range_coordinates_load():
    # lat/lon swapped: lon 52.6 and lat -1.1 are both legal positions (in the Indian Ocean),
    # so they cannot be told apart from a real hot spot and must load.
    swapped = polygon(ring(52.60, -1.10, 52.61, -1.09))

    hot_spots = parse_hot_spots(collection(feature("HS-1", swapped)))

    assert hot_spots.ids == ("HS-1",)


def test_json_nested_too_deeply_is_a_geofence_error():
    with pytest.raises(GeofenceError, match=r"hot.geojson: not valid JSON .*nested too deeply"):
        parse_hot_spots("[" * 100_000 + "]" * 100_000, source="hot.geojson")


def test_unreadable_json_names_line_and_column():
    text = '{"type": "FeatureCollection",\n "features": [\n   {"type": "Feature",, }\n]}'

    with pytest.raises(GeofenceError, match=r"not valid JSON") as caught:
        parse_hot_spots(text, source="hot.geojson")

    message = str(caught.value)
    assert "hot.geojson" in message
    assert "line 3" in message  # the double comma is on the third line
    assert "column" in message


def test_missing_file_is_a_geofence_error_naming_the_path(tmp_path):
    path = tmp_path / "nowhere.geojson"

    with pytest.raises(GeofenceError, match=r"nowhere\.geojson"):
        load_hot_spots(path)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"type": "Feature", "properties": {}, "geometry": CELL}, id="a-feature"),
        pytest.param(CELL, id="a-geometry"),
        pytest.param([feature("HS-1", CELL)], id="a-list"),
        pytest.param({"features": [feature("HS-1", CELL)]}, id="no-type"),
    ],
)
def test_anything_but_a_feature_collection_is_rejected(data):
    with pytest.raises(GeofenceError, match="FeatureCollection"):
        parse_hot_spots(json.dumps(data), source="hot.geojson")


@pytest.mark.parametrize("features", [[], None], ids=["empty-list", "null"])
def test_a_collection_without_features_is_rejected(features):
    with pytest.raises(GeofenceError, match=r"no features|no 'features'"):
        parse_hot_spots({"type": "FeatureCollection", "features": features})


@pytest.mark.parametrize(
    "geometry, kind",
    [
        ({"type": "Point", "coordinates": [-1.095, 52.605]}, "Point"),
        ({"type": "LineString", "coordinates": [[-1.10, 52.60], [-1.09, 52.61]]}, "LineString"),
    ],
)
def test_wrong_geometry_type_names_feature_and_type(geometry, kind):
    data = collection(feature("HS-1", CELL), feature("HS-2", geometry))

    with pytest.raises(GeofenceError) as caught:
        parse_hot_spots(data, source="hot.geojson")

    message = str(caught.value)
    assert "hot.geojson: feature 2" in message
    assert "'HS-2'" in message
    assert kind in message
    assert "Polygon or MultiPolygon" in message


def test_self_intersecting_bow_tie_is_invalid():
    # The ring crosses itself at (-1.095, 52.605).
    bow_tie = polygon(
        [[-1.10, 52.60], [-1.09, 52.61], [-1.09, 52.60], [-1.10, 52.61], [-1.10, 52.60]]
    )
    data = collection(feature("HS-1", CELL), feature("HS-2", bow_tie))

    with pytest.raises(GeofenceError) as caught:
        parse_hot_spots(data)

    message = str(caught.value)
    assert "feature 2" in message
    assert "'HS-2'" in message
    assert "invalid" in message
    assert "Self-intersection" in message


@pytest.mark.parametrize(
    "properties",
    [
        {"name": "No id"},
        {"id": None, "name": "Null id"},
        {"id": "   ", "name": "Blank id"},
    ],
    ids=["absent", "null", "blank"],
)
def test_missing_id_names_the_feature_number(properties):
    data = collection(
        feature("HS-1", CELL), {"type": "Feature", "properties": properties, "geometry": CELL}
    )

    with pytest.raises(GeofenceError, match=r"feature 2: missing properties\.id"):
        parse_hot_spots(data)


def test_duplicate_id_names_both_features():
    data = collection(feature("HS-1", CELL), feature("HS-2", CELL), feature("HS-1", CELL))

    with pytest.raises(GeofenceError) as caught:
        parse_hot_spots(data)

    message = str(caught.value)
    assert "feature 3" in message
    assert "feature 1" in message
    assert "duplicate id 'HS-1'" in message


def test_integer_and_string_forms_of_one_id_are_duplicates():
    # 7 and "7" would be the same hot spot id once stored as text.
    with pytest.raises(GeofenceError, match="duplicate id '7'"):
        parse_hot_spots(collection(feature(7, CELL), feature("7", CELL)))


@pytest.mark.parametrize("name", [None, "", "   ", 42], ids=["null", "empty", "blank", "number"])
def test_missing_name_names_the_feature(name):
    data = collection(feature("HS-1", CELL), feature("HS-2", CELL, name=name))

    with pytest.raises(GeofenceError) as caught:
        parse_hot_spots(data)

    message = str(caught.value)
    assert "feature 2 (id 'HS-2')" in message
    assert "properties.name" in message


@pytest.mark.parametrize(
    "bad_position",
    [
        pytest.param([-1.095, 95.0], id="lat-95"),
        pytest.param([-1.095, -90.5], id="lat-minus-90.5"),
        pytest.param([181.0, 52.61], id="lon-181"),
        pytest.param([-180.5, 52.61], id="lon-minus-180.5"),
    ],
)
def test_coordinates_out_of_range_are_rejected(bad_position):
    # A triangle whose third vertex alone is out of range; the message shows that position.
    triangle = [[-1.10, 52.60], [-1.09, 52.60], bad_position, [-1.10, 52.60]]
    data = collection(feature("HS-1", polygon(triangle)))

    with pytest.raises(GeofenceError) as caught:
        parse_hot_spots(data)

    message = str(caught.value)
    assert "feature 1 (id 'HS-1')" in message
    assert "out of range" in message
    assert f"[{bad_position[0]}, {bad_position[1]}]" in message


def test_out_of_range_hole_of_a_multipolygon_is_rejected():
    multi = multipolygon(
        [ring(-1.10, 52.60, -1.09, 52.61)],
        [ring(10.0, 80.0, 11.0, 89.5), ring(10.2, 80.2, 10.8, 90.5)],
    )

    with pytest.raises(GeofenceError, match="out of range"):
        parse_hot_spots(collection(feature("HS-1", multi)))


@pytest.mark.parametrize(
    "coordinates",
    [
        pytest.param(
            [[[-1.10, 52.60], ["-1.09", "52.60"], [-1.09, 52.61], [-1.10, 52.60]]], id="strings"
        ),
        pytest.param([[[-1.10, 52.60], [-1.09, None], [-1.09, 52.61], [-1.10, 52.60]]], id="null"),
        pytest.param([[[-1.10, 52.60], [-1.09, True], [-1.09, 52.61], [-1.10, 52.60]]], id="bool"),
        pytest.param([], id="empty"),
        pytest.param("-1.1,52.6", id="a-string"),
    ],
)
def test_non_numeric_coordinates_are_rejected(coordinates):
    data = collection(feature("HS-1", {"type": "Polygon", "coordinates": coordinates}))

    with pytest.raises(GeofenceError) as caught:
        parse_hot_spots(data)

    message = str(caught.value)
    assert "feature 1 (id 'HS-1')" in message
    assert "coordinates" in message


def test_non_finite_coordinates_are_rejected():
    # Python's json accepts the non-standard NaN literal, so the loader must check.
    text = json.dumps(collection(feature("HS-1", polygon(ring(-1.10, 52.60, -1.09, float("nan"))))))

    with pytest.raises(GeofenceError, match="not a finite number"):
        parse_hot_spots(text)


def test_errors_are_value_errors():
    # The command line and the web layer translate ValueErrors into user-facing errors.
    with pytest.raises(ValueError, match="FeatureCollection"):
        parse_hot_spots("[]")


# --- classifying ------------------------------------------------------------------------------

# Small integer coordinates keep edges and vertices exactly representable.
SQUARE = polygon(ring(0, 0, 2, 2))  # "sq"
OVERLAP = polygon(ring(1, 1, 3, 3))  # "over": overlaps sq in [1, 2]^2
DONUT = polygon(ring(10, 0, 14, 4), ring(11, 1, 13, 3))  # "donut": hole [11, 13]^2
PAIR = multipolygon([ring(20, 0, 21, 1)], [ring(22, 0, 23, 1)])  # "pair"


@pytest.fixture
def hot_spots() -> HotSpotSet:
    return parse_hot_spots(
        collection(
            feature("sq", SQUARE),
            feature("over", OVERLAP),
            feature("donut", DONUT),
            feature("pair", PAIR),
        )
    )


def pairs(hot_spots: HotSpotSet, points: list[tuple[float, float]]) -> list[tuple[int, str]]:
    """Classify (lon, lat) points; return (point index, hot spot id) pairs in result order."""
    lon = np.array([p[0] for p in points], dtype=float)
    lat = np.array([p[1] for p in points], dtype=float)
    point, hot_spot = hot_spots.classify(lon, lat)
    assert len(point) == len(hot_spot)
    return [(int(p), hot_spots.ids[h]) for p, h in zip(point, hot_spot, strict=True)]


@pytest.mark.parametrize(
    "where, point, expected",
    [
        ("interior", (0.5, 0.5), ["sq"]),
        ("edge", (0, 0.5), ["sq"]),
        ("top edge", (0.5, 2), ["sq"]),
        ("vertex", (0, 0), ["sq"]),
        ("far vertex", (3, 3), ["over"]),
        ("just outside", (-1e-9, 0.5), []),
        ("overlap", (1.5, 1.5), ["sq", "over"]),
        ("vertex of one, edge of the other", (2, 1), ["sq", "over"]),
        ("corner shared by both rings", (2, 2), ["sq", "over"]),
        ("donut body", (10.5, 2), ["donut"]),
        ("donut outer edge", (14, 2), ["donut"]),
        ("inside the hole", (12, 2), []),
        ("on the hole's ring", (11, 2), ["donut"]),
        ("on a hole vertex", (13, 3), ["donut"]),
        ("first part of multipolygon", (20.5, 0.5), ["pair"]),
        ("second part of multipolygon, on its edge", (23, 0.5), ["pair"]),
        ("between the parts", (21.5, 0.5), []),
        ("far away", (100, 50), []),
        ("inside the bounding box of all, in none", (5, 3), []),
    ],
)
def test_classify_single_points(hot_spots, where, point, expected):
    assert [h for _, h in pairs(hot_spots, [point])] == expected, where


def test_classify_results_are_sorted_by_point_then_hot_spot(hot_spots):
    points = [(100, 50), (1.5, 1.5), (12, 2), (20.5, 0.5), (2, 2), (0.5, 0.5), (-50, -50)]

    result = pairs(hot_spots, points)

    # Hot spot indexes: sq 0, over 1, donut 2, pair 3.
    assert result == [(1, "sq"), (1, "over"), (3, "pair"), (4, "sq"), (4, "over"), (5, "sq")]


def test_classify_points_far_away_give_nothing(hot_spots):
    point, hot_spot = hot_spots.classify(
        np.array([-179.0, 179.0, 50.0]), np.array([-89.0, 89.0, 0.5])
    )

    assert point.size == 0
    assert hot_spot.size == 0


def test_classify_empty_input(hot_spots):
    point, hot_spot = hot_spots.classify(np.array([]), np.array([]))

    assert point.shape == (0,)
    assert hot_spot.shape == (0,)
    # The result can index arrays directly.
    assert np.arange(5)[point].shape == (0,)


def test_classify_with_no_hot_spots():
    empty = HotSpotSet([])

    point, hot_spot = empty.classify(np.array([0.5, 1.0]), np.array([0.5, 1.0]))

    assert len(empty) == 0
    assert point.size == 0
    assert hot_spot.size == 0


def test_classify_accepts_lists():
    hot_spots = parse_hot_spots(collection(feature("sq", SQUARE)))

    point, hot_spot = hot_spots.classify([0.5, 5.0, 1.0], [0.5, 5.0, 2.0])

    assert point.tolist() == [0, 2]
    assert hot_spot.tolist() == [0, 0]


def test_classify_matches_a_naive_covers_loop(hot_spots):
    rng = np.random.default_rng(20240115)
    # Random points over the whole area, plus a grid with step 0.25 that lands exactly on
    # many edges, vertices and hole rings (boundary cases random points never hit).
    random_lon = rng.uniform(-1, 24, 1500)
    random_lat = rng.uniform(-1, 5, 1500)
    grid_lon, grid_lat = np.meshgrid(np.arange(-0.5, 24, 0.25), np.arange(-0.5, 4.75, 0.25))
    lon = np.concatenate([random_lon, grid_lon.ravel()[::4], [0.0, 11.0, 22.0]])
    lat = np.concatenate([random_lat, grid_lat.ravel()[::4], [0.0, 2.0, 1.0]])
    assert 1900 <= len(lon) <= 2500

    point, hot_spot = hot_spots.classify(lon, lat)

    geometries = [h.geometry for h in hot_spots]
    expected = [
        (i, j)
        for i, (x, y) in enumerate(zip(lon, lat, strict=True))
        for j, geometry in enumerate(geometries)
        if geometry.covers(Point(x, y))
    ]
    actual = list(zip(point.tolist(), hot_spot.tolist(), strict=True))
    assert actual == expected
    # The sample really exercises every hot spot, overlaps and boundaries.
    assert {j for _, j in expected} == {0, 1, 2, 3}
    assert len(expected) > len({i for i, _ in expected})  # some points are in two hot spots
    on_boundary = sum(geometries[j].boundary.covers(Point(lon[i], lat[i])) for i, j in expected)
    assert on_boundary > 20


def _world_spread() -> list[dict]:
    # Small cells continents apart: a grid sized to the cells would be enormous.
    return [
        feature(f"w{i}", polygon(ring(x, y, x + 0.01, y + 0.01)))
        for i, (x, y) in enumerate(
            [(-1.1, 52.6), (151.2, -33.9), (-74.0, 40.7), (-179.99, -89.99), (179.98, 89.98)]
        )
    ]


def _mixed_sizes() -> list[dict]:
    # One big district over many small cells, some of them sharing edges, one with a hole.
    cells = [feature(f"c{i}", polygon(ring(i * 0.5, 0, i * 0.5 + 0.5, 0.5))) for i in range(8)]
    holed = feature("holed", polygon(ring(1, 1, 2, 2), ring(1.25, 1.25, 1.75, 1.75)))
    return [feature("district", polygon(ring(-1, -1, 5, 3))), *cells, holed]


@pytest.mark.parametrize(
    "make_features, lon_range, lat_range",
    [
        pytest.param(_world_spread, (-180, 180), (-90, 90), id="world-spread"),
        pytest.param(_mixed_sizes, (-2, 6), (-2, 4), id="mixed-sizes"),
    ],
)
def test_classify_matches_naive_loop_for_other_layouts(make_features, lon_range, lat_range):
    hot_spots = parse_hot_spots(collection(*make_features()))
    rng = np.random.default_rng(7)
    # Random points, plus points scattered tightly around every vertex (some exactly on it).
    vertices = np.concatenate([np.asarray(h.geometry.exterior.coords) for h in hot_spots])
    near = np.repeat(vertices, 20, axis=0)
    jitter = rng.normal(0, 0.003, near.shape) * (rng.random((len(near), 1)) < 0.8)
    lon = np.concatenate([rng.uniform(*lon_range, 1000), near[:, 0] + jitter[:, 0]])
    lat = np.concatenate([rng.uniform(*lat_range, 1000), near[:, 1] + jitter[:, 1]])
    lon, lat = np.clip(lon, -180, 180), np.clip(lat, -90, 90)

    point, hot_spot = hot_spots.classify(lon, lat)

    expected = [
        (i, j)
        for i, (x, y) in enumerate(zip(lon, lat, strict=True))
        for j, h in enumerate(hot_spots)
        if h.geometry.covers(Point(x, y))
    ]
    assert list(zip(point.tolist(), hot_spot.tolist(), strict=True)) == expected
    assert {j for _, j in expected} == set(range(len(hot_spots)))


# --- near: within a distance outside ------------------------------------------------------------


def test_near_gives_points_outside_within_the_distance_in_metres():
    # The Leicester cell's west edge is lon -1.10; at lat 52.605 a degree of longitude is
    # 111,320 x cos(52.605 deg) = 67,613 m, so 0.0003 degree is 20.3 m and 0.0005 is 33.8 m.
    # Its north edge is lat 52.61: 0.0002 degree north is 22.3 m.
    hot_spots = parse_hot_spots(collection(feature("cell", CELL)))
    lon = np.array([-1.1003, -1.1005, -1.095, -1.095, -1.0997])
    lat = np.array([52.605, 52.605, 52.6102, 52.605, 52.605])

    point, hot_spot = hot_spots.near(lon, lat, 30.0)

    # Inside (points 3, 4) is not near; 33.8 m out is too far.
    assert point.tolist() == [0, 2]
    assert hot_spot.tolist() == [0, 0]
    assert hot_spots.near(lon, lat, 20.0)[0].tolist() == []
    assert hot_spots.near(lon, lat, 34.0)[0].tolist() == [0, 1, 2]


def test_near_counts_a_hole_as_outside_and_each_of_overlapping_hot_spots(hot_spots):
    # The fixture above: "donut" has the hole [11, 13] x [1, 3]; a degree is about 111 km, so any
    # distance in metres under 0.4 degree separates these points.
    lon = np.array([11.0001, 12.0, -0.00001, 2.00001])
    lat = np.array([2.0, 2.0, 0.5, 1.5])

    point, hot_spot = hot_spots.near(lon, lat, 30.0)

    # Just inside the hole's ring is near the donut, its middle is not; just west of "sq";
    # just east of "sq" while inside "over" is near "sq" only.
    assert [(int(p), hot_spots.ids[h]) for p, h in zip(point, hot_spot, strict=True)] == [
        (0, "donut"),
        (2, "sq"),
        (3, "sq"),
    ]
