"""Choosing hot spots by crime harm (docs/harm.md, "Identification").

Places are square cells of a grid on the British National Grid (EPSG:27700, metres), or
the polygons of a places file. A place's harm is the summed weight of the crimes whose
point it covers, edges included: a crime on the edge between two cells counts in both
(totals count each crime once). Places are ranked by harm (ties: more crimes first, then
by id, or for cells west to east and south to north), and the top ones whose centres lie
at least a minimum spacing apart are chosen greedily. Everything is vectorised: a crime is
placed in its cell by arithmetic on projected coordinates, never by a polygon test.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from tracker.dosage.geofence import (
    BIDI_CONTROLS,
    MAX_NAME_LENGTH,
    GeofenceError,
    HotSpotSet,
    parse_hot_spots,
)
from tracker.foundation import parsing
from tracker.harm.weights import HarmWeights

WGS84 = "EPSG:4326"
BRITISH_NATIONAL_GRID = "EPSG:27700"
DEFAULT_CELL_M = 150
DEFAULT_COUNT = 25
DEFAULT_MIN_SPACING_M = 300.0
COORDINATE_DECIMALS = 7  # about a centimetre: GeoJSON stays small and exact enough
CURVE_POINTS = 201


class IdentificationError(ValueError):
    """Identification that cannot run: bad parameters, a bad places file, no crimes."""


@cache
def _transformer(source: str, target: str) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def to_grid(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return British National Grid eastings and northings (metres) of WGS84 points."""
    x, y = _transformer(WGS84, BRITISH_NATIONAL_GRID).transform(
        np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    )
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def to_wgs84(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return WGS84 longitudes and latitudes of British National Grid points."""
    lon, lat = _transformer(BRITISH_NATIONAL_GRID, WGS84).transform(
        np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    )
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def geometry_to_grid(geometry):
    """Return a WGS84 shapely geometry (or array of them) in British National Grid metres."""
    return shapely.transform(geometry, lambda xy: np.column_stack(to_grid(xy[:, 0], xy[:, 1])))


# --- places -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceSet:
    """Candidate places from a file: WGS84 polygons for the point tests, and their centres
    and areas on the British National Grid."""

    hot_spots: HotSpotSet  # the places as polygons, boundary-inclusive point tests
    own_names: tuple[str | None, ...]
    metric: np.ndarray  # the polygons on the British National Grid
    centre_x: np.ndarray
    centre_y: np.ndarray
    area_m2: np.ndarray
    union_area_m2: float

    @property
    def ids(self) -> tuple[str, ...]:
        return self.hot_spots.ids


def load_places(path: str | Path) -> PlaceSet:
    """Read a GeoJSON FeatureCollection of places (Polygon or MultiPolygon features).

    A feature's id is `properties.id`, else the GeoJSON feature id, else its number in the
    file; `properties.name` is optional. Ids and geometries must meet the hot spot limits,
    since the chosen places are written as a hot spot file.
    """
    text = parsing.read_text(path, IdentificationError)
    try:
        data = parsing.json_loads(text)
    except ValueError as exc:
        raise IdentificationError(f"{path}: not valid JSON ({exc})") from exc
    return parse_places(data, source=str(path))


def parse_places(data: Any, source: str = "places") -> PlaceSet:
    """Validate a parsed places FeatureCollection (see load_places)."""
    features = data.get("features") if isinstance(data, Mapping) else None
    if not isinstance(features, list) or not features:
        raise IdentificationError(f"{source}: expected a GeoJSON FeatureCollection of places")
    named = []
    own_names: list[str | None] = []
    for number, feature in enumerate(features, start=1):
        if not isinstance(feature, Mapping):
            raise IdentificationError(f"{source}: feature {number}: not a GeoJSON Feature")
        properties = feature.get("properties")
        properties = dict(properties) if isinstance(properties, Mapping) else {}
        place_id = properties.get("id", feature.get("id"))
        if place_id is None or (isinstance(place_id, str) and not place_id.strip()):
            place_id = f"place-{number}"
        name = properties.get("name")
        own_names.append(name.strip() if isinstance(name, str) and name.strip() else None)
        named.append(
            {**feature, "properties": {**properties, "id": place_id, "name": str(place_id)}}
        )
    try:
        hot_spots = parse_hot_spots({"type": "FeatureCollection", "features": named}, source)
    except GeofenceError as exc:
        raise IdentificationError(str(exc)) from exc
    metric = geometry_to_grid(np.array([h.geometry for h in hot_spots], dtype=object))
    centres = shapely.centroid(metric)
    return PlaceSet(
        hot_spots=hot_spots,
        own_names=tuple(own_names),
        metric=metric,
        centre_x=shapely.get_x(centres),
        centre_y=shapely.get_y(centres),
        area_m2=shapely.area(metric),
        union_area_m2=float(shapely.union_all(metric).area),
    )


# --- memberships: which place covers which crime -------------------------------------------


@dataclass(frozen=True)
class Memberships:
    """(crime, place) pairs for every place covering a crime; places numbered 0..n-1."""

    crime: np.ndarray
    place: np.ndarray
    n_places: int


@dataclass(frozen=True)
class Grid:
    """The cells of `cell_m` metres spanning the period's located crimes (the study area),
    and those of them that hold a crime (`cells`, numbered column * ny + row, ascending)."""

    cell_m: int
    min_ix: int
    min_iy: int
    nx: int
    ny: int
    cells: np.ndarray

    @property
    def n_places(self) -> int:
        return self.nx * self.ny

    @property
    def area_m2(self) -> float:
        return float(self.n_places) * self.cell_m**2

    def corner(self, place: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the south-west corners (easting, northing) of occupied cells by index."""
        column, row = np.divmod(self.cells[np.asarray(place, dtype=np.int64)], self.ny)
        return (self.min_ix + column) * self.cell_m, (self.min_iy + row) * self.cell_m

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.corner(np.arange(len(self.cells)))
        return x + self.cell_m / 2, y + self.cell_m / 2

    def cell_id(self, place: int) -> str:
        x, y = self.corner(np.array([place]))
        return f"cell-{int(x[0])}-{int(y[0])}"

    def polygon(self, place: int):
        """Return the cell as a WGS84 polygon (its corners projected back)."""
        x0, y0 = (float(v[0]) for v in self.corner(np.array([place])))
        xs = np.array([x0, x0 + self.cell_m, x0 + self.cell_m, x0, x0])
        ys = np.array([y0, y0, y0 + self.cell_m, y0 + self.cell_m, y0])
        lon, lat = to_wgs84(xs, ys)
        return shapely.Polygon(
            np.column_stack(
                [np.round(lon, COORDINATE_DECIMALS), np.round(lat, COORDINATE_DECIMALS)]
            )
        )


def _edge_pairs(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return, per coordinate in cell units, the lower and upper cell it lies in: the same
    cell inside one, the two cells either side of an edge it lies on exactly."""
    low = np.floor(f)
    on_edge = f == low
    return np.where(on_edge, low - 1, low).astype(np.int64), low.astype(np.int64)


def grid_cells(x: np.ndarray, y: np.ndarray, cell_m: int) -> tuple[np.ndarray, ...]:
    """Return (crime, column, row) for every cell covering each point, edges included."""
    low_x, high_x = _edge_pairs(x / cell_m)
    low_y, high_y = _edge_pairs(y / cell_m)
    index = np.arange(len(x))
    crimes, columns, rows = [index], [high_x], [high_y]
    for extra, column, row in (
        (low_x != high_x, low_x, high_y),
        (low_y != high_y, high_x, low_y),
        ((low_x != high_x) & (low_y != high_y), low_x, low_y),
    ):
        crimes.append(index[extra])
        columns.append(column[extra])
        rows.append(row[extra])
    return np.concatenate(crimes), np.concatenate(columns), np.concatenate(rows)


def grid_memberships(
    x: np.ndarray, y: np.ndarray, cell_m: int, grid: Grid | None = None
) -> tuple[Grid, Memberships]:
    """Return the grid spanning the points, and which of its occupied cells covers which
    point; with `grid`, only its occupied cells count and other points are left out."""
    crime, column, row = grid_cells(x, y, cell_m)
    if grid is None:
        if not len(column):
            raise IdentificationError("no located crimes in the period")
        min_ix, min_iy = int(column.min()), int(row.min())
        nx, ny = int(column.max()) - min_ix + 1, int(row.max()) - min_iy + 1
        key = (column - min_ix) * ny + (row - min_iy)
        cells, place = np.unique(key, return_inverse=True)
        grid = Grid(cell_m, min_ix, min_iy, nx, ny, cells)
        return grid, Memberships(crime, place.astype(np.int64), len(cells))
    column, row = column - grid.min_ix, row - grid.min_iy
    inside = (column >= 0) & (column < grid.nx) & (row >= 0) & (row < grid.ny)
    key = column[inside] * grid.ny + row[inside]
    place = np.searchsorted(grid.cells, key)
    occupied = place < len(grid.cells)
    occupied[occupied] = grid.cells[place[occupied]] == key[occupied]
    study = Memberships(crime[inside], np.full(len(key), -1, dtype=np.int64), len(grid.cells))
    study.place[occupied] = place[occupied]
    return grid, study


def place_memberships(lon: np.ndarray, lat: np.ndarray, places: PlaceSet) -> Memberships:
    """Return which place covers which point (edges inside, holes outside)."""
    crime, place = places.hot_spots.classify(lon, lat)
    return Memberships(crime, place, len(places.hot_spots))


# --- choosing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChosenPlace:
    """A chosen place: its rank (1 = most harm), figures in the period and WGS84 polygon."""

    rank: int
    id: str
    name: str
    harm: float
    crimes: int
    geometry: Any
    centre_lon: float
    centre_lat: float
    area_m2: float
    place_name: str | None = None  # a places file's own name for it

    def to_feature(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        own = {"place_name": self.place_name} if self.place_name else {}
        return {
            "type": "Feature",
            "properties": {
                "id": self.id,
                "name": self.name,
                "harm": round(self.harm, 6),
                "crimes": self.crimes,
                "rank": self.rank,
                **own,
                **extra,
            },
            # GeoJSON's own text: lists, as a file read back gives (mapping() gives tuples).
            "geometry": json.loads(shapely.to_geojson(self.geometry)),
        }


@dataclass(frozen=True)
class Capture:
    """How much of a period's harm in the study area the chosen places hold."""

    total_harm: float
    captured_harm: float
    crimes: int
    captured_crimes: int
    share_of_area: float

    @property
    def share_of_harm(self) -> float | None:
        return self.captured_harm / self.total_harm if self.total_harm > 0 else None

    @property
    def pai(self) -> float | None:
        """Predictive accuracy index (Chainey et al. 2008), with harm for crimes: the share
        of harm over the share of area."""
        share = self.share_of_harm
        return share / self.share_of_area if share is not None and self.share_of_area else None

    def to_json(self) -> dict[str, Any]:
        return {
            "total_harm": self.total_harm,
            "harm_in_places": self.captured_harm,
            "crimes": self.crimes,
            "crimes_in_places": self.captured_crimes,
            "share_of_harm": self.share_of_harm,
            "pai": self.pai,
        }


@dataclass(frozen=True)
class Identification:
    """The chosen places and what they capture, with the settings that chose them."""

    places: tuple[ChosenPlace, ...]
    capture: Capture
    study_area_m2: float
    chosen_area_m2: float
    candidates: int  # places with harm above 0
    place_count: int  # every place of the study area (cells of the bounding grid)
    unlocated: int
    unlocated_harm: float
    outside_harm: float  # places file: located harm outside every place
    unweighted: Mapping[str, int]  # crime types that weigh 0 because they are not listed
    curve: pd.DataFrame  # concentration: share_of_places, share_of_harm
    settings: Mapping[str, Any] = field(default_factory=dict)
    validation: Capture | None = None

    @property
    def share_of_area(self) -> float:
        return self.capture.share_of_area

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-ready values (docs/harm.md names each)."""
        result = {
            **self.settings,
            "places_chosen": len(self.places),
            "candidates": self.candidates,
            "study_places": self.place_count,
            "total_harm": self.capture.total_harm,
            "harm_in_places": self.capture.captured_harm,
            "share_of_harm": self.capture.share_of_harm,
            "share_of_area": self.share_of_area,
            "pai": self.capture.pai,
            "crimes": self.capture.crimes,
            "crimes_in_places": self.capture.captured_crimes,
            "study_area_km2": self.study_area_m2 / 1e6,
            "chosen_area_km2": self.chosen_area_m2 / 1e6,
            "unlocated_crimes": self.unlocated,
            "unlocated_harm": self.unlocated_harm,
            "outside_harm": self.outside_harm,
            "unweighted_types": dict(self.unweighted),
        }
        if self.validation is not None:
            result["validation"] = self.validation.to_json()
        return result

    def places_table(self) -> pd.DataFrame:
        total = self.capture.total_harm
        return pd.DataFrame(
            [
                {
                    "rank": p.rank,
                    "id": p.id,
                    "name": p.name,
                    "harm": p.harm,
                    "crimes": p.crimes,
                    "share_of_harm": p.harm / total if total > 0 else None,
                    "longitude": p.centre_lon,
                    "latitude": p.centre_lat,
                }
                for p in self.places
            ],
            columns=[
                "rank",
                "id",
                "name",
                "harm",
                "crimes",
                "share_of_harm",
                "longitude",
                "latitude",
            ],
        )

    def to_geojson(self) -> dict[str, Any]:
        """The chosen places as a hot spot file `tracker geofences load` accepts."""
        extra = {k: v for k, v in self.settings.items() if k in ("from", "to", "weights")}
        return {
            "type": "FeatureCollection",
            "features": [p.to_feature(extra) for p in self.places],
        }


def greedy_spaced(
    order: np.ndarray, centre_x: np.ndarray, centre_y: np.ndarray, count: int, spacing_m: float
) -> list[int]:
    """Return up to `count` places from `order` (best first) whose centres are at least
    `spacing_m` apart: each pick strikes out every later candidate too close to it."""
    x, y = centre_x[order], centre_y[order]
    open_ = np.ones(len(order), dtype=bool)
    chosen: list[int] = []
    position = 0
    while len(chosen) < count:
        remaining = np.flatnonzero(open_[position:])
        if not len(remaining):
            break
        position += int(remaining[0])
        chosen.append(int(order[position]))
        open_[position] = False
        if spacing_m > 0:
            near = np.hypot(x[position:] - x[position], y[position:] - y[position]) < spacing_m
            open_[position:][near] = False
    return chosen


def usable_name(text: Any) -> str | None:
    """Return text fit to name a hot spot (tracker/dosage/geofence.py's limits), else None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > MAX_NAME_LENGTH:
        return None
    if any(unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS for c in text):
        return None
    return text


def most_common_locations(
    memberships: Memberships, locations: np.ndarray, places: Sequence[int]
) -> dict[int, str]:
    """Return, per place asked for, the most common usable location of its crimes (ties:
    alphabetical)."""
    wanted = np.isin(memberships.place, np.asarray(places, dtype=np.int64))
    frame = pd.DataFrame(
        {
            "place": memberships.place[wanted],
            "location": [usable_name(v) for v in locations[memberships.crime[wanted]]],
        }
    ).dropna()
    if frame.empty:
        return {}
    counts = frame.groupby(["place", "location"]).size().reset_index(name="n")
    counts = counts.sort_values(["place", "n", "location"], ascending=[True, False, True])
    first = counts.drop_duplicates("place")
    return dict(zip(first["place"].tolist(), first["location"].tolist(), strict=True))


def concentration_curve(harm_by_place: np.ndarray, n_places: int, total_harm: float):
    """Return the concentration curve: the share of harm in the most harmful share of
    places, at shares of places spaced evenly on a log scale from one place to all (harm
    crowds into a tiny share of places, which a linear scale would squeeze into its corner).
    """
    if n_places == 0 or total_harm <= 0:
        shares = np.array([0.0, 1.0])
        return pd.DataFrame({"places": [0, n_places], "share_of_places": shares,
                             "share_of_harm": np.zeros(2)})  # fmt: skip
    taken = np.unique(np.round(np.geomspace(1, n_places, CURVE_POINTS)).astype(np.int64))
    ordered = np.sort(harm_by_place)[::-1]
    cumulative = np.concatenate([[0.0], np.cumsum(ordered)])
    captured = cumulative[np.minimum(taken, len(ordered))]
    return pd.DataFrame(
        {
            "places": np.concatenate([[0], taken]),
            "share_of_places": np.concatenate([[0.0], taken / n_places]),
            "share_of_harm": np.concatenate([[0.0], np.minimum(captured / total_harm, 1.0)]),
        }
    )


def _covered(memberships: Memberships, chosen: Sequence[int]) -> np.ndarray:
    """Return the indexes of crimes covered by any chosen place (each once)."""
    mask = np.isin(memberships.place, np.asarray(chosen, dtype=np.int64))
    return np.unique(memberships.crime[mask])


def _prepared(crimes: pd.DataFrame, weights: HarmWeights) -> pd.DataFrame:
    frame = crimes.reset_index(drop=True)
    offence = frame.get("offence_code")
    return frame.assign(weight=weights.weigh(frame["crime_type"], offence))


def identify(
    crimes: pd.DataFrame,
    weights: HarmWeights,
    *,
    cell_m: int = DEFAULT_CELL_M,
    places: PlaceSet | None = None,
    count: int = DEFAULT_COUNT,
    min_spacing_m: float = DEFAULT_MIN_SPACING_M,
    validation: pd.DataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Identification:
    """Choose the `count` most harmful places at least `min_spacing_m` apart.

    `crimes` (and `validation`, a later period's crimes) have the columns crime_type,
    longitude and latitude (NaN: unlocated), and optionally offence_code and location.
    """
    if count < 1:
        raise IdentificationError("count must be at least 1")
    if min_spacing_m < 0:
        raise IdentificationError("the minimum spacing must be 0 or more metres")
    if places is None and cell_m < 1:
        raise IdentificationError("cells must be at least 1 metre wide")
    frame = _prepared(crimes, weights)
    located = frame["longitude"].notna().to_numpy()
    unweighted_mask = ~weights.is_listed(frame["crime_type"], frame.get("offence_code"))
    unweighted = frame.loc[unweighted_mask, "crime_type"].value_counts().sort_index()
    weight_all = frame["weight"].to_numpy(dtype=float)
    unlocated_harm = float(weight_all[~located].sum())
    points = frame[located].reset_index(drop=True)
    lon = points["longitude"].to_numpy(dtype=float)
    lat = points["latitude"].to_numpy(dtype=float)
    weight = weight_all[located]
    locations = (
        points["location"].to_numpy(dtype=object)
        if "location" in points
        else np.full(len(points), None, dtype=object)
    )

    grid: Grid | None = None
    if places is None:
        if not len(points):
            raise IdentificationError("no located crimes in the period")
        x, y = to_grid(lon, lat)
        grid, memberships = grid_memberships(x, y, cell_m)
        study_area, study_places = grid.area_m2, grid.n_places
        # Occupied cells are numbered column-major: ascending numbers run west to east, and
        # south to north within a column, which breaks ties.
        tie_break = np.arange(memberships.n_places)
        centre_x, centre_y = grid.centres()
        area = np.full(memberships.n_places, float(cell_m) ** 2)
    else:
        memberships = place_memberships(lon, lat, places)
        study_area, study_places = places.union_area_m2, memberships.n_places
        tie_break = np.argsort(np.argsort(np.array(places.ids, dtype=object)))
        centre_x, centre_y, area = places.centre_x, places.centre_y, places.area_m2

    in_study = np.unique(memberships.crime)
    total_harm = float(weight[in_study].sum())
    outside_harm = float(weight.sum()) - total_harm if places is not None else 0.0
    harm = np.bincount(
        memberships.place, weights=weight[memberships.crime], minlength=memberships.n_places
    )
    crime_counts = np.bincount(memberships.place, minlength=memberships.n_places)
    candidates = np.flatnonzero(harm > 0)
    order = candidates[
        np.lexsort((tie_break[candidates], -crime_counts[candidates], -harm[candidates]))
    ]
    chosen = greedy_spaced(order, centre_x, centre_y, count, min_spacing_m)

    captured = _covered(memberships, chosen)
    if places is not None and chosen:
        # Places of a file may overlap: their area is that of their union.
        chosen_area = float(shapely.union_all(places.metric[chosen]).area)
    else:
        chosen_area = float(area[chosen].sum()) if chosen else 0.0
    share_of_area = chosen_area / study_area if study_area > 0 else 0.0
    capture = Capture(
        round(total_harm, 6),
        round(float(weight[captured].sum()), 6),
        len(in_study),
        len(captured),
        share_of_area,
    )
    names = most_common_locations(memberships, locations, chosen)
    chosen_places = []
    centre_lon, centre_lat = to_wgs84(centre_x[chosen], centre_y[chosen])
    for rank, place in enumerate(chosen, start=1):
        own_name = None
        if grid is not None:
            place_id, geometry = grid.cell_id(place), grid.polygon(place)
        else:
            place_id = places.ids[place]
            geometry = places.hot_spots.hot_spots[place].geometry
            own_name = usable_name(places.own_names[place])
        chosen_places.append(
            ChosenPlace(
                rank=rank,
                id=place_id,
                name=names.get(place, place_id),
                harm=round(float(harm[place]), 6),  # sums of weights such as 28.1
                crimes=int(crime_counts[place]),
                geometry=geometry,
                centre_lon=round(float(centre_lon[rank - 1]), COORDINATE_DECIMALS),
                centre_lat=round(float(centre_lat[rank - 1]), COORDINATE_DECIMALS),
                area_m2=float(area[place]),
                place_name=own_name,
            )
        )

    validation_capture = None
    if validation is not None:
        validation_capture = _validate(validation, weights, grid, places, chosen, share_of_area)
    return Identification(
        places=tuple(chosen_places),
        capture=capture,
        study_area_m2=study_area,
        chosen_area_m2=chosen_area,
        candidates=len(candidates),
        place_count=study_places,
        unlocated=int((~located).sum()),
        unlocated_harm=unlocated_harm,
        outside_harm=outside_harm,
        unweighted={str(k): int(v) for k, v in unweighted.items()},
        curve=concentration_curve(harm, study_places, total_harm),
        settings=dict(settings or {}),
        validation=validation_capture,
    )


def _validate(
    crimes: pd.DataFrame,
    weights: HarmWeights,
    grid: Grid | None,
    places: PlaceSet | None,
    chosen: Sequence[int],
    share_of_area: float,
) -> Capture:
    """Return what the chosen places capture of another period's harm in the study area."""
    frame = _prepared(crimes, weights)
    frame = frame[frame["longitude"].notna()].reset_index(drop=True)
    lon = frame["longitude"].to_numpy(dtype=float)
    lat = frame["latitude"].to_numpy(dtype=float)
    weight = frame["weight"].to_numpy(dtype=float)
    if grid is not None:
        x, y = to_grid(lon, lat)
        _, memberships = grid_memberships(x, y, grid.cell_m, grid)
    else:
        memberships = place_memberships(lon, lat, places)
    in_study = np.unique(memberships.crime)
    captured = _covered(memberships, chosen)
    return Capture(
        round(float(weight[in_study].sum()), 6),
        round(float(weight[captured].sum()), 6),
        len(in_study),
        len(captured),
        share_of_area,
    )
