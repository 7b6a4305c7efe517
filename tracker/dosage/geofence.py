"""Hot spot polygons: loading, validating and classifying points against them.

GeoJSON is (lon, lat); every function here takes longitudes before latitudes, as
GeoJSON and shapely do. Conversion to folium's (lat, lon) happens in the web layer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from tracker.foundation import parsing

POLYGON_TYPES = ("Polygon", "MultiPolygon")


class GeofenceError(ValueError):
    """Hot spot input that cannot be used; the message names the feature and the problem."""


@dataclass(frozen=True)
class HotSpot:
    """One hot spot: its id, name, polygon and any other GeoJSON properties."""

    id: str
    name: str
    geometry: BaseGeometry
    properties: Mapping[str, Any] = field(default_factory=dict)

    def to_feature(self) -> dict[str, Any]:
        """Return this hot spot as a GeoJSON Feature."""
        return {
            "type": "Feature",
            "properties": {**self.properties, "id": self.id, "name": self.name},
            "geometry": mapping(self.geometry),
        }


class HotSpotSet:
    """An indexed, immutable set of hot spots that classifies points in bulk."""

    def __init__(self, hot_spots: Sequence[HotSpot]):
        self.hot_spots: tuple[HotSpot, ...] = tuple(hot_spots)
        self.ids: tuple[str, ...] = tuple(h.id for h in self.hot_spots)
        self._geometries = np.array([h.geometry for h in self.hot_spots], dtype=object)
        shapely.prepare(self._geometries)
        self._tree = shapely.STRtree(self._geometries)
        self._bounds = tuple(shapely.total_bounds(self._geometries)) if len(self) else None

    def __len__(self) -> int:
        return len(self.hot_spots)

    def __iter__(self):
        return iter(self.hot_spots)

    def classify(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (point_index, hot_spot_index) pairs for every point inside a hot spot.

        Boundary-inclusive: a point on an edge (outer ring or hole ring) is inside; a
        point strictly inside a hole is outside. A point in overlapping hot spots
        yields one pair per hot spot. Pairs are sorted by point, then hot spot.

        Few points (a live ping) go through the STRtree. For many points no Point
        objects are built (they cost ~0.5 us each): points are bucketed
        into a grid whose cells are about half a hot spot wide, each point is paired with
        the hot spots whose bounding box overlaps its cell and contains it, and only those
        pairs are tested exactly with `shapely.intersects_xy` on the prepared polygons.
        """
        lon = np.asarray(lon, dtype=float).ravel()
        lat = np.asarray(lat, dtype=float).ravel()
        empty = np.empty(0, dtype=np.intp)
        if not len(self.hot_spots) or not len(lon):
            return empty, empty
        # Points outside the set's bounding box cannot match (NaN fails every comparison).
        min_x, min_y, max_x, max_y = self._bounds
        near = np.flatnonzero((lon >= min_x) & (lon <= max_x) & (lat >= min_y) & (lat <= max_y))
        if not len(near):
            return empty, empty
        x, y = lon[near], lat[near]
        if len(near) <= 1_000 + len(self.hot_spots):
            # For few points the grid below, whose set-up grows with the number of hot
            # spots (~3 ms for 10,000), costs more than it saves: query the tree instead.
            point, hot_spot = self._tree.query(shapely.points(x, y), predicate="intersects")
            order = np.lexsort((hot_spot, point))
            return near[point[order]].astype(np.intp), hot_spot[order].astype(np.intp)

        point, hot_spot = self._grid_pairs(x, y)
        return near[point].astype(np.intp), hot_spot.astype(np.intp)

    def _grid_pairs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (point, hot spot) pairs of points inside hot spots, by bucketing in a grid."""
        min_x, min_y, max_x, max_y = self._bounds
        bounds = shapely.bounds(self._geometries)
        width = max(float(np.median(bounds[:, 2] - bounds[:, 0])) / 2, 1e-9)
        height = max(float(np.median(bounds[:, 3] - bounds[:, 1])) / 2, 1e-9)
        while True:
            # One monotonic mapping (offsets are >= 0, so truncation is floor) places both
            # points and bounding boxes, so a point inside a box lands in one of its cells.
            scale_x, scale_y = 1.0 / width, 1.0 / height
            nx = int((max_x - min_x) * scale_x) + 1
            ny = int((max_y - min_y) * scale_y) + 1
            x0 = ((bounds[:, 0] - min_x) * scale_x).astype(np.int64)
            x1 = ((bounds[:, 2] - min_x) * scale_x).astype(np.int64)
            y0 = ((bounds[:, 1] - min_y) * scale_y).astype(np.int64)
            y1 = ((bounds[:, 3] - min_y) * scale_y).astype(np.int64)
            span_x = x1 - x0 + 1
            per_hot_spot = span_x * (y1 - y0 + 1)
            n_pairs = int(per_hot_spot.sum())
            # Coarsen when the grid or the (cell, hot spot) table would get too big.
            budget = 4 * len(x) + 65_536
            if nx * ny <= budget and n_pairs <= budget:
                break
            width, height = 2 * width, 2 * height

        # (cell, hot spot) pairs for every cell each bounding box overlaps, grouped by cell
        # with hot spots ascending within a cell (stable sort of hot-spot-ordered pairs).
        hot_spot_of = np.repeat(np.arange(len(bounds)), per_hot_spot)
        k = np.arange(n_pairs) - np.repeat(np.cumsum(per_hot_spot) - per_hot_spot, per_hot_spot)
        cell_of = (y0[hot_spot_of] + k // span_x[hot_spot_of]) * nx + (
            x0[hot_spot_of] + k % span_x[hot_spot_of]
        )
        by_cell = np.argsort(cell_of, kind="stable")
        cell_hot_spots = hot_spot_of[by_cell]
        cell_count = np.bincount(cell_of, minlength=nx * ny)
        cell_start = np.cumsum(cell_count) - cell_count

        # Expand each point into its cell's candidates, then filter by bounding box and
        # test exactly. Candidates come out sorted by point, then hot spot.
        column = ((x - min_x) * scale_x).astype(np.int64)
        cell = ((y - min_y) * scale_y).astype(np.int64) * nx + column
        count = cell_count[cell]
        has = np.flatnonzero(count)
        count = count[has]
        first = np.cumsum(count) - count
        slot = np.arange(int(count.sum())) + np.repeat(cell_start[cell[has]] - first, count)
        point = np.repeat(has, count)
        hot_spot = cell_hot_spots[slot]
        px, py = x[point], y[point]
        box = bounds[hot_spot]
        keep = np.flatnonzero(
            (px >= box[:, 0]) & (px <= box[:, 2]) & (py >= box[:, 1]) & (py <= box[:, 3])
        )
        point, hot_spot = point[keep], hot_spot[keep]
        inside = shapely.intersects_xy(self._geometries[hot_spot], px[keep], py[keep])
        return point[inside], hot_spot[inside]

    def to_geojson(self) -> dict[str, Any]:
        """Return the set as a GeoJSON FeatureCollection."""
        return {"type": "FeatureCollection", "features": [h.to_feature() for h in self]}


def load_hot_spots(path: str | Path) -> HotSpotSet:
    """Read and validate a GeoJSON FeatureCollection of hot spots from a file."""
    text = parsing.read_text(path, GeofenceError)
    return parse_hot_spots(text, source=str(path))


def parse_hot_spots(data: str | bytes | Mapping[str, Any], source: str = "GeoJSON") -> HotSpotSet:
    """Validate GeoJSON text or a parsed mapping and return its hot spots."""
    if isinstance(data, str | bytes):
        try:
            data = parsing.json_loads(data)
        except json.JSONDecodeError as exc:
            raise GeofenceError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
    if not isinstance(data, Mapping) or data.get("type") != "FeatureCollection":
        raise GeofenceError(f"{source}: expected a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list):
        raise GeofenceError(f"{source}: the FeatureCollection has no 'features' list")
    if not features:
        raise GeofenceError(f"{source}: the FeatureCollection has no features")

    hot_spots: list[HotSpot] = []
    seen: dict[str, int] = {}
    for number, feature in enumerate(features, start=1):
        hot_spot = _parse_feature(feature, f"{source}: feature {number}")
        if hot_spot.id in seen:
            raise GeofenceError(
                f"{source}: feature {number}: duplicate id {hot_spot.id!r} "
                f"(also feature {seen[hot_spot.id]})"
            )
        seen[hot_spot.id] = number
        hot_spots.append(hot_spot)
    return HotSpotSet(hot_spots)


def _parse_feature(feature: Any, where: str) -> HotSpot:
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise GeofenceError(f"{where}: not a GeoJSON Feature")
    properties = feature.get("properties")
    if not isinstance(properties, Mapping):
        raise GeofenceError(f"{where}: has no 'properties' object")
    raw_id = properties.get("id")
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raise GeofenceError(f"{where}: missing properties.id")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        raise GeofenceError(f"{where}: properties.id must be a string or integer")
    hot_spot_id = str(raw_id).strip()
    where = f"{where} (id {hot_spot_id!r})"
    name = properties.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GeofenceError(f"{where}: missing properties.name")

    geometry = feature.get("geometry")
    if not isinstance(geometry, Mapping):
        raise GeofenceError(f"{where}: has no geometry")
    kind = geometry.get("type")
    if kind not in POLYGON_TYPES:
        raise GeofenceError(f"{where}: geometry type {kind!r} is not Polygon or MultiPolygon")
    _check_coordinates(geometry.get("coordinates"), where)
    try:
        polygon = shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.ShapelyError) as exc:
        raise GeofenceError(f"{where}: malformed {kind} coordinates ({exc})") from exc
    if polygon.is_empty:
        raise GeofenceError(f"{where}: the polygon is empty")
    if not polygon.is_valid:
        reason = shapely.is_valid_reason(polygon)
        raise GeofenceError(f"{where}: invalid polygon: {reason}")
    others = {k: v for k, v in properties.items() if k not in ("id", "name")}
    return HotSpot(id=hot_spot_id, name=name.strip(), geometry=polygon, properties=others)


def _check_coordinates(coordinates: Any, where: str) -> None:
    """Reject positions that are not finite (lon, lat) pairs within range."""
    if not isinstance(coordinates, list) or not coordinates:
        raise GeofenceError(f"{where}: missing or empty coordinates")
    stack = [coordinates]
    while stack:
        item = stack.pop()
        if not isinstance(item, list) or not item:
            raise GeofenceError(f"{where}: malformed coordinates")
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in item):
            if len(item) < 2:
                raise GeofenceError(f"{where}: a position needs a longitude and a latitude")
            lon, lat = item[0], item[1]
            if not (math.isfinite(lon) and math.isfinite(lat)):
                raise GeofenceError(f"{where}: a coordinate is not a finite number")
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise GeofenceError(
                    f"{where}: coordinate [{lon}, {lat}] out of range "
                    "(GeoJSON positions are [longitude, latitude])"
                )
        else:
            stack.extend(item)
