"""Hot spot polygons: loading, validating and classifying points against them.

GeoJSON is (lon, lat); every function here takes longitudes before latitudes, as
GeoJSON and shapely do. Conversion to folium's (lat, lon) happens in the web layer.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from tracker.foundation import parsing

POLYGON_TYPES = ("Polygon", "MultiPolygon")
MAX_ID_LENGTH = 64  # the hot_spots table's columns
MAX_NAME_LENGTH = 200
MAX_VERTICES = 10_000  # a hot spot is a few streets; more makes every map and page slow
METRES_PER_DEGREE = 111_320.0  # of latitude; of longitude, times cos(latitude)
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


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


@dataclass(frozen=True)
class _Grid:
    """Cells over a hot spot set's bounding box and the hot spots overlapping each cell."""

    min_x: float
    min_y: float
    scale_x: float
    scale_y: float
    nx: int
    cell_hot_spots: np.ndarray  # hot spot indexes, grouped by cell
    cell_count: np.ndarray
    cell_start: np.ndarray
    bounds: np.ndarray  # (min_x, min_y, max_x, max_y) of each hot spot

    def column(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.min_x) * self.scale_x).astype(np.int64)

    def row(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.min_y) * self.scale_y).astype(np.int64)

    def cell(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.row(y) * self.nx + self.column(x)

    def candidates(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (index into `cells`, hot spot) for every hot spot of each cell."""
        count = self.cell_count[cells]
        has = np.flatnonzero(count)
        count = count[has]
        first = np.cumsum(count) - count
        slot = np.arange(int(count.sum())) + np.repeat(self.cell_start[cells[has]] - first, count)
        return np.repeat(has, count), self.cell_hot_spots[slot]


class HotSpotSet:
    """An indexed, immutable set of hot spots that classifies points in bulk."""

    def __init__(self, hot_spots: Sequence[HotSpot]):
        self.hot_spots: tuple[HotSpot, ...] = tuple(hot_spots)
        self.ids: tuple[str, ...] = tuple(h.id for h in self.hot_spots)
        self._geometries = np.array([h.geometry for h in self.hot_spots], dtype=object)
        shapely.prepare(self._geometries)
        self._tree = shapely.STRtree(self._geometries)
        self._bounds = tuple(shapely.total_bounds(self._geometries)) if len(self) else None
        # A straight segment between two points of a convex hot spot lies inside it, and
        # a segment is clipped to one by arithmetic on its edges (_clip_convex).
        self.convex = np.array(
            [
                h.geometry.geom_type == "Polygon"
                and not h.geometry.interiors
                and h.geometry.equals(h.geometry.convex_hull)
                for h in self.hot_spots
            ],
            dtype=bool,
        )
        self._edge_x, self._edge_y, self._normal_x, self._normal_y = _convex_edges(
            self.hot_spots, self.convex
        )
        self._widened: dict[float, HotSpotSet] = {}  # near(): the hot spots grown by metres

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

    def near(
        self, lon: np.ndarray, lat: np.ndarray, metres: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (point_index, hot_spot_index) pairs for every point outside a hot spot but
        within `metres` of it, sorted like classify. Distances are measured on a local flat
        projection of each hot spot (its latitude's scale), exact to well under a metre at
        a hot spot's size."""
        lon = np.asarray(lon, dtype=float).ravel()
        lat = np.asarray(lat, dtype=float).ravel()
        widened = self._widened.get(metres)
        if widened is None:
            widened = self._widened[metres] = HotSpotSet(
                [replace(h, geometry=_buffered(h.geometry, metres)) for h in self.hot_spots]
            )
        point, hot_spot = widened.classify(lon, lat)
        outside = ~shapely.intersects_xy(self._geometries[hot_spot], lon[point], lat[point])
        return point[outside], hot_spot[outside]

    def _grid(self, cells_needed: Callable[[float, float], int], budget: int) -> _Grid:
        """Return a grid over the set's bounding box, with the hot spots whose bounding box
        overlaps each cell. Cells start at half the median hot spot's size and are coarsened
        until the grid, the (cell, hot spot) table and `cells_needed(scale_x, scale_y)` (the
        caller's own cell lookups) all fit within `budget`."""
        min_x, min_y, max_x, max_y = self._bounds
        bounds = shapely.bounds(self._geometries)
        width = max(float(np.median(bounds[:, 2] - bounds[:, 0])) / 2, 1e-9)
        height = max(float(np.median(bounds[:, 3] - bounds[:, 1])) / 2, 1e-9)
        while True:
            # One monotonic mapping (offsets are >= 0, so truncation is floor) places
            # points and bounding boxes alike, so a point inside a box lands in its cells.
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
            if nx * ny <= budget and n_pairs <= budget and cells_needed(scale_x, scale_y) <= budget:
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
        cell_count = np.bincount(cell_of, minlength=nx * ny)
        return _Grid(
            min_x,
            min_y,
            scale_x,
            scale_y,
            nx,
            hot_spot_of[by_cell],
            cell_count,
            np.cumsum(cell_count) - cell_count,
            bounds,
        )

    def _grid_pairs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (point, hot spot) pairs of points inside hot spots, by bucketing in a grid."""
        grid = self._grid(lambda _sx, _sy: 0, 4 * len(x) + 65_536)
        # Expand each point into its cell's candidates, then filter by bounding box and
        # test exactly. Candidates come out sorted by point, then hot spot.
        point, hot_spot = grid.candidates(grid.cell(x, y))
        px, py = x[point], y[point]
        box = grid.bounds[hot_spot]
        keep = np.flatnonzero(
            (px >= box[:, 0]) & (px <= box[:, 2]) & (py >= box[:, 1]) & (py <= box[:, 3])
        )
        point, hot_spot = point[keep], hot_spot[keep]
        inside = shapely.intersects_xy(self._geometries[hot_spot], px[keep], py[keep])
        return point[inside], hot_spot[inside]

    def segment_candidates(
        self, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (segment, hot spot) pairs whose bounding boxes overlap, in no particular
        order: every pair in which the straight segment (x0, y0)-(x1, y1) could meet the
        hot spot. No geometry is built for many segments (see classify)."""
        empty = np.empty(0, dtype=np.intp)
        if not len(self.hot_spots) or not len(x0):
            return empty, empty
        lo_x, hi_x = np.minimum(x0, x1), np.maximum(x0, x1)
        lo_y, hi_y = np.minimum(y0, y1), np.maximum(y0, y1)
        min_x, min_y, max_x, max_y = self._bounds
        near = np.flatnonzero((hi_x >= min_x) & (lo_x <= max_x) & (hi_y >= min_y) & (lo_y <= max_y))
        if not len(near):
            return empty, empty
        if len(near) <= 1_000 + len(self.hot_spots):  # as in classify: the tree is cheaper
            boxes = shapely.box(lo_x[near], lo_y[near], hi_x[near], hi_y[near])
            segment, hot_spot = self._tree.query(boxes)  # bounding boxes that overlap
            return near[segment].astype(np.intp), hot_spot.astype(np.intp)
        # Clip to the set's box so that every segment's cells lie on the grid.
        lo_x, hi_x = np.maximum(lo_x[near], min_x), np.minimum(hi_x[near], max_x)
        lo_y, hi_y = np.maximum(lo_y[near], min_y), np.minimum(hi_y[near], max_y)

        def cells_needed(scale_x: float, scale_y: float) -> int:
            columns = ((hi_x - min_x) * scale_x).astype(np.int64) - (
                (lo_x - min_x) * scale_x
            ).astype(np.int64)
            rows = ((hi_y - min_y) * scale_y).astype(np.int64) - ((lo_y - min_y) * scale_y).astype(
                np.int64
            )
            return int(((columns + 1) * (rows + 1)).sum())

        grid = self._grid(cells_needed, 4 * len(near) + 65_536)
        c0, r0 = grid.column(lo_x), grid.row(lo_y)
        span_c = grid.column(hi_x) - c0 + 1
        per_segment = span_c * (grid.row(hi_y) - r0 + 1)
        segment = np.repeat(np.arange(len(near)), per_segment)
        k = np.arange(int(per_segment.sum())) - np.repeat(
            np.cumsum(per_segment) - per_segment, per_segment
        )
        cell = (r0[segment] + k // span_c[segment]) * grid.nx + c0[segment] + k % span_c[segment]
        row, hot_spot = grid.candidates(cell)
        segment = segment[row]
        box = grid.bounds[hot_spot]
        keep = (
            (hi_x[segment] >= box[:, 0])
            & (lo_x[segment] <= box[:, 2])
            & (hi_y[segment] >= box[:, 1])
            & (lo_y[segment] <= box[:, 3])
        )
        n = len(self.hot_spots)
        key = segment[keep].astype(np.int64) * n + hot_spot[keep]
        # A segment over several cells meets a hot spot in every cell they share: keep
        # each of its pairs once (most segments lie in one cell and need no sorting).
        several = per_segment[segment[keep]] > 1
        key = np.concatenate([key[~several], np.unique(key[several])])
        return near[key // n].astype(np.intp), (key % n).astype(np.intp)

    def inside_fractions(
        self,
        x0: np.ndarray,
        y0: np.ndarray,
        x1: np.ndarray,
        y1: np.ndarray,
        hot_spot: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the parts of straight segments that lie in hot spots (edges inside, holes
        outside), as (row, start, end): row indexes the inputs, and start < end are
        fractions of the way from (x0, y0) to (x1, y1). A segment may have several parts
        (a concave hot spot, a hole) or none; a point of contact is not a part.

        Convex hot spots are clipped in bulk with arithmetic (Cyrus-Beck); the others
        through GEOS, for the segments that meet them.
        """
        convex = self.convex[hot_spot]
        rows, starts, ends = [], [], []
        for chosen, clip in ((convex, self._clip_convex), (~convex, self._clip_geometry)):
            index = np.flatnonzero(chosen)
            row, start, end = clip(x0[index], y0[index], x1[index], y1[index], hot_spot[index])
            rows.append(index[row])
            starts.append(start)
            ends.append(end)
        return np.concatenate(rows).astype(np.intp), np.concatenate(starts), np.concatenate(ends)

    def _clip_convex(self, x0, y0, x1, y1, hot_spot):
        """inside_fractions for convex hot spots: the segment is inside every edge's inner
        half-plane (edge included) from t_lo to t_hi of the way, if t_lo < t_hi."""
        start_x, start_y = self._edge_x[hot_spot], self._edge_y[hot_spot]
        normal_x, normal_y = self._normal_x[hot_spot], self._normal_y[hot_spot]
        # Inside edge k where num + t * den >= 0; padding edges have a zero normal.
        num = (x0[:, None] - start_x) * normal_x + (y0[:, None] - start_y) * normal_y
        den = (x1 - x0)[:, None] * normal_x + (y1 - y0)[:, None] * normal_y
        never = ((den == 0) & (num < 0)).any(axis=1)  # parallel to an edge, beyond it
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -num / den
        t_lo = np.maximum(np.where(den > 0, t, -np.inf).max(axis=1, initial=-np.inf), 0.0)
        t_hi = np.minimum(np.where(den < 0, t, np.inf).min(axis=1, initial=np.inf), 1.0)
        row = np.flatnonzero(~never & (t_hi > t_lo))
        return row, t_lo[row], t_hi[row]

    def _clip_geometry(self, x0, y0, x1, y1, hot_spot):
        """inside_fractions through GEOS: any polygon, holes and multipolygons included."""
        lines = shapely.linestrings(
            np.stack([np.stack([x0, y0], axis=1), np.stack([x1, y1], axis=1)], axis=1)
        )
        geometries = self._geometries[hot_spot]
        # Prepared predicates are cheap; intersections are not, so they are made only for
        # segments that meet the boundary. A segment wholly inside is one part, 0 to 1.
        whole = shapely.contains_properly(geometries, lines)
        meets = np.flatnonzero(~whole & shapely.intersects(lines, geometries))
        pieces = shapely.intersection(lines[meets], geometries[meets])
        parts, row = shapely.get_parts(pieces, return_index=True)
        row = meets[row]
        lines_only = shapely.get_type_id(parts) == 1  # LineString; drop points of contact
        parts, row = parts[lines_only], row[lines_only]
        coords, part = shapely.get_coordinates(parts, return_index=True)
        # Each part is collinear with its segment: its extent is the least and greatest
        # position of its vertices along the segment.
        dx, dy = (x1 - x0)[row], (y1 - y0)[row]
        length2 = dx * dx + dy * dy
        along = (
            (coords[:, 0] - x0[row][part]) * dx[part] + (coords[:, 1] - y0[row][part]) * dy[part]
        ) / length2[part]
        along = np.clip(along, 0.0, 1.0)
        start = np.full(len(parts), np.inf)
        end = np.full(len(parts), -np.inf)
        np.minimum.at(start, part, along)
        np.maximum.at(end, part, along)
        positive = end > start
        inside = np.flatnonzero(whole)
        return (
            np.concatenate([inside, row[positive]]),
            np.concatenate([np.zeros(len(inside)), start[positive]]),
            np.concatenate([np.ones(len(inside)), end[positive]]),
        )

    def to_geojson(self) -> dict[str, Any]:
        """Return the set as a GeoJSON FeatureCollection."""
        return {"type": "FeatureCollection", "features": [h.to_feature() for h in self]}


def _buffered(geometry, metres: float):
    """Return the geometry grown by `metres`, on a flat projection at its own latitude."""
    scale = METRES_PER_DEGREE * math.cos(math.radians(geometry.centroid.y))

    def to_metres(xy):
        return xy * [scale, METRES_PER_DEGREE]

    def to_degrees(xy):
        return xy / [scale, METRES_PER_DEGREE]

    grown = shapely.transform(geometry, to_metres).buffer(metres)
    return shapely.transform(grown, to_degrees)


def _convex_edges(hot_spots: Sequence[HotSpot], convex: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return, per hot spot and edge (padded to the most edges), the edge's start and its
    inward normal; zero normals for padding and for hot spots that are not convex."""
    rings = [
        np.asarray(h.geometry.exterior.coords) if is_convex else np.zeros((1, 2))
        for h, is_convex in zip(hot_spots, convex, strict=True)
    ]
    edges = max((len(r) - 1 for r in rings), default=0) or 1
    shape = (len(rings), edges)
    start_x, start_y, normal_x, normal_y = (np.zeros(shape) for _ in range(4))
    for i, ring in enumerate(rings):
        if len(ring) < 2:
            continue
        dx, dy = np.diff(ring[:, 0]), np.diff(ring[:, 1])
        # Inward is to the left of a counter-clockwise ring, to the right of a clockwise one.
        turn = 1.0 if shapely.is_ccw(shapely.linearrings(ring)) else -1.0
        n = len(dx)
        start_x[i, :n], start_y[i, :n] = ring[:-1, 0], ring[:-1, 1]
        normal_x[i, :n], normal_y[i, :n] = -dy * turn, dx * turn
    return start_x, start_y, normal_x, normal_y


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
    hot_spot_id = _checked_text(str(raw_id).strip(), MAX_ID_LENGTH, f"{where}: properties.id")
    where = f"{where} (id {hot_spot_id!r})"
    name = properties.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GeofenceError(f"{where}: missing properties.name")
    name = _checked_text(name.strip(), MAX_NAME_LENGTH, f"{where}: properties.name")

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
    vertices = shapely.get_num_coordinates(polygon)
    if vertices > MAX_VERTICES:
        raise GeofenceError(
            f"{where}: {vertices:,} vertices; a hot spot may have at most {MAX_VERTICES:,} "
            "(simplify the polygon)"
        )
    if not polygon.is_valid:
        reason = shapely.is_valid_reason(polygon)
        raise GeofenceError(f"{where}: invalid polygon: {reason}")
    others = {k: v for k, v in properties.items() if k not in ("id", "name")}
    return HotSpot(id=hot_spot_id, name=name, geometry=polygon, properties=others)


def _checked_text(text: str, max_length: int, where: str) -> str:
    """Return a hot spot's id or name if it fits its column and holds no control character
    (nor a bidirectional override, which can make a name read as another), else raise."""
    if len(text) > max_length:
        raise GeofenceError(f"{where}: {len(text):,} characters; at most {max_length}")
    bad = next((c for c in text if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS), None)
    if bad is not None:
        raise GeofenceError(f"{where}: contains the control character U+{ord(bad):04X}")
    return text


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
