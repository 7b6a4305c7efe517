"""Hot spot files within bounds (security review, issue 15, item 15): a polygon of a million
vertices made three pages take 10 s, and a 100,000-character name with NUL and U+202E was
stored in a 200-character column. Each is now refused at load time, naming the feature."""

from __future__ import annotations

import math

import pytest

from tests.builders import BOX_A, feature_collection, polygon_feature
from tracker.dosage.geofence import MAX_VERTICES, GeofenceError, parse_hot_spots


def named(hot_spot_id: str = "LE01", name: str = "Market Street") -> dict:
    feature = polygon_feature("A", BOX_A)
    feature["properties"] = {"id": hot_spot_id, "name": name}
    return feature_collection(feature)


def circle(vertices: int) -> dict:
    """A valid polygon with `vertices` distinct positions around a small circle."""
    ring = [
        [
            -0.1 + 0.001 * math.cos(2 * math.pi * k / vertices),
            51.5 + 0.001 * math.sin(2 * math.pi * k / vertices),
        ]
        for k in range(vertices)
    ]
    return feature_collection(
        {
            "type": "Feature",
            "properties": {"id": "C", "name": "Circle"},
            "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        }
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (named(name="x" * 201), "properties.name: 201 characters; at most 200"),
        (named(name="Market\x00Street"), "properties.name: contains the control character U+0000"),
        (named(name="gnp\u202eStreet"), "contains the control character U+202E"),
        (named(name="Line\nbreak"), "contains the control character U+000A"),
        (named(hot_spot_id="L" * 65), "properties.id: 65 characters; at most 64"),
        (named(hot_spot_id="LE\x1b01"), "properties.id: contains the control character U+001B"),
        (circle(MAX_VERTICES + 1), "10,002 vertices; a hot spot may have at most 10,000"),
    ],
)
def test_oversized_or_unprintable_hot_spots_are_refused(data, problem):
    with pytest.raises(GeofenceError, match="feature 1") as caught:
        parse_hot_spots(data, source="hotspots.geojson")
    assert problem in str(caught.value)


def test_hot_spots_at_the_limits_load():
    assert parse_hot_spots(named(hot_spot_id="L" * 64, name="é" * 200)).ids == ("L" * 64,)
    # The closing position repeats the first: MAX_VERTICES - 1 distinct ones.
    assert len(parse_hot_spots(circle(MAX_VERTICES - 1))) == 1
    assert parse_hot_spots(named(name="Zoë's Caf\u00e9 \u2013 King\u2019s Road")).hot_spots[0].name
