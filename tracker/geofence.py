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
        """
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        empty = np.empty(0, dtype=np.intp)
        if not len(self.hot_spots) or not len(lon):
            return empty, empty
        # Points outside the set's bounding box cannot match; skipping them early makes
        # the common case (an officer nowhere near any hot spot) nearly free.
        min_x, min_y, max_x, max_y = self._bounds
        near = np.flatnonzero((lon >= min_x) & (lon <= max_x) & (lat >= min_y) & (lat <= max_y))
        if not len(near):
            return empty, empty
        points = shapely.points(lon[near], lat[near])
        point_idx, hot_spot_idx = self._tree.query(points, predicate="intersects")
        point_idx = near[point_idx]
        order = np.lexsort((hot_spot_idx, point_idx))
        return point_idx[order], hot_spot_idx[order]

    def to_geojson(self) -> dict[str, Any]:
        """Return the set as a GeoJSON FeatureCollection."""
        return {"type": "FeatureCollection", "features": [h.to_feature() for h in self]}


def load_hot_spots(path: str | Path) -> HotSpotSet:
    """Read and validate a GeoJSON FeatureCollection of hot spots from a file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GeofenceError(f"{path}: cannot read the file: {exc}") from exc
    return parse_hot_spots(text, source=str(path))


def parse_hot_spots(data: str | bytes | Mapping[str, Any], source: str = "GeoJSON") -> HotSpotSet:
    """Validate GeoJSON text or a parsed mapping and return its hot spots."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
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
