"""Choosing hot spots by harm on hand-made crimes: spacing, ties, names, edges, a places
file, the capture figures; then the real month, checked against an independent count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from shapely.geometry import box

from tests.harm.test_harm_import import real_month
from tracker.cli import main
from tracker.dosage.geofence import parse_hot_spots
from tracker.harm.crimes import read_crimes
from tracker.harm.identify import (
    IdentificationError,
    grid_cells,
    identify,
    parse_places,
    to_grid,
    to_wgs84,
)
from tracker.harm.weights import HarmWeights, load_weights

WEIGHTS = HarmWeights("test", {"Robbery": 10.0, "Burglary": 1.0, "Anti-social behaviour": 0.0})
X0, Y0 = 450_000, 300_000  # a cell corner of the 150 m grid (both multiples of 150)
CELL = 150


def at_cell(i: int, j: int, crime_type="Robbery", location=None, n=1) -> list[dict]:
    """Crimes at the centre of the cell i columns east and j rows north of (X0, Y0)."""
    lon, lat = to_wgs84(np.array([X0 + CELL * i + 75.0]), np.array([Y0 + CELL * j + 75.0]))
    return [
        {
            "crime_type": crime_type,
            "longitude": float(lon[0]),
            "latitude": float(lat[0]),
            "location": location,
        }
    ] * n


def frame(*groups: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for group in groups for row in group])


def cell_id(i: int, j: int) -> str:
    return f"cell-{X0 + CELL * i}-{Y0 + CELL * j}"


def chosen(result) -> list[str]:
    return [p.id for p in result.places]


# --- spacing and ranking -------------------------------------------------------------------


def hand_made() -> pd.DataFrame:
    # Harm: (0,0) 100, its neighbour (1,0) 90, (2,0) 80 (300 m from the first), (9,3) 10.
    return frame(at_cell(0, 0, n=10), at_cell(1, 0, n=9), at_cell(2, 0, n=8), at_cell(9, 3, n=1))


def test_the_greedy_choice_skips_places_closer_than_the_spacing():
    result = identify(hand_made(), WEIGHTS, count=3, min_spacing_m=300)
    # (1,0) is 150 m from (0,0); (2,0) exactly 300 m away, which is far enough.
    assert chosen(result) == [cell_id(0, 0), cell_id(2, 0), cell_id(9, 3)]
    assert [p.rank for p in result.places] == [1, 2, 3]
    assert [p.harm for p in result.places] == [100.0, 80.0, 10.0]
    assert [p.crimes for p in result.places] == [10, 8, 1]


def test_a_wider_spacing_leaves_fewer_places_than_asked_for():
    result = identify(hand_made(), WEIGHTS, count=3, min_spacing_m=300.01)
    assert chosen(result) == [cell_id(0, 0), cell_id(9, 3)]


def test_without_spacing_the_top_places_are_taken_in_order():
    result = identify(hand_made(), WEIGHTS, count=3, min_spacing_m=0)
    assert chosen(result) == [cell_id(0, 0), cell_id(1, 0), cell_id(2, 0)]


def test_ties_go_to_more_crimes_then_west_then_south():
    crimes = frame(
        at_cell(5, 5, n=1),  # 10 from one robbery
        at_cell(0, 9, "Burglary", n=10),  # 10 from ten burglaries: more crimes, ranks first
        at_cell(3, 0, n=1),  # 10: west of (5, 5)
        at_cell(3, 7, n=1),  # 10: same column as (3, 0), further north
    )
    result = identify(crimes, WEIGHTS, count=4, min_spacing_m=0)
    assert chosen(result) == [cell_id(0, 9), cell_id(3, 0), cell_id(3, 7), cell_id(5, 5)]


def test_places_with_no_harm_are_never_chosen():
    crimes = frame(at_cell(0, 0, n=2), at_cell(4, 4, "Anti-social behaviour", n=50))
    result = identify(crimes, WEIGHTS, count=5, min_spacing_m=0)
    assert chosen(result) == [cell_id(0, 0)]
    assert result.candidates == 1


def test_a_place_is_named_after_its_most_common_location_else_its_id():
    crimes = frame(
        at_cell(0, 0, location="On or near Zed Street", n=2),
        at_cell(0, 0, location="On or near Alpha Road", n=2),
        at_cell(0, 0, location="On or near Beta Lane", n=1),
        at_cell(5, 0, location="On or near \u202eevil", n=3),  # a bidi control: unusable
        at_cell(9, 0, location=None),
    )
    result = identify(crimes, WEIGHTS, count=3, min_spacing_m=0)
    names = {p.id: p.name for p in result.places}
    assert names[cell_id(0, 0)] == "On or near Alpha Road"  # a tie: alphabetical
    assert names[cell_id(5, 0)] == cell_id(5, 0)
    assert names[cell_id(9, 0)] == cell_id(9, 0)


# --- edges ---------------------------------------------------------------------------------


def test_a_point_on_an_edge_is_in_both_cells_and_on_a_corner_in_all_four():
    x = np.array([X0 + 75.0, X0 + 150.0, X0 + 150.0, X0 + 149.999])
    y = np.array([Y0 + 75.0, Y0 + 75.0, Y0 + 150.0, Y0 + 75.0])
    crime, column, row = grid_cells(x, y, CELL)
    cells = {i: sorted(zip(column[crime == i], row[crime == i], strict=True)) for i in range(4)}
    c0, r0 = X0 // CELL, Y0 // CELL
    assert cells[0] == [(c0, r0)]
    assert cells[1] == [(c0, r0), (c0 + 1, r0)]
    assert cells[2] == [(c0, r0), (c0, r0 + 1), (c0 + 1, r0), (c0 + 1, r0 + 1)]
    assert cells[3] == [(c0, r0)]


def test_a_point_just_inside_a_cell_edge_counts_in_that_cell_only():
    lon, lat = to_wgs84(np.array([X0 + 150.05, X0 + 149.95]), np.array([Y0 + 75.0] * 2))
    crimes = pd.DataFrame(
        {"crime_type": ["Robbery", "Burglary"], "longitude": lon, "latitude": lat}
    )
    result = identify(crimes, WEIGHTS, count=2, min_spacing_m=0)
    assert [(p.id, p.harm) for p in result.places] == [(cell_id(1, 0), 10.0), (cell_id(0, 0), 1.0)]


# --- capture figures -----------------------------------------------------------------------


def test_share_of_harm_share_of_area_and_pai_follow_the_bounding_grid():
    crimes = hand_made()
    unlocated = pd.DataFrame([{"crime_type": "Robbery", "longitude": np.nan, "latitude": np.nan}])
    result = identify(pd.concat([crimes, unlocated]), WEIGHTS, count=1, min_spacing_m=0)
    # The located crimes span columns 0-9 and rows 0-3: 40 cells of 150 m.
    assert result.place_count == 40
    assert result.study_area_m2 == pytest.approx(40 * CELL**2)
    assert result.capture.total_harm == 280.0
    assert result.capture.share_of_harm == pytest.approx(100 / 280)
    assert result.share_of_area == pytest.approx(1 / 40)
    assert result.capture.pai == pytest.approx((100 / 280) / (1 / 40))
    assert (result.unlocated, result.unlocated_harm) == (1, 10.0)
    summary = result.summary()
    assert summary["share_of_harm"] == pytest.approx(100 / 280)
    assert summary["pai"] == pytest.approx(14.285714, rel=1e-6)


def test_a_later_period_is_scored_by_the_places_chosen_from_the_first():
    later = frame(at_cell(0, 0, n=3), at_cell(5, 2, n=7), at_cell(40, 40, n=5))
    result = identify(hand_made(), WEIGHTS, count=1, min_spacing_m=0, validation=later)
    # (40, 40) lies outside the study area (the first period's grid): left out.
    assert result.validation.total_harm == 100.0
    assert result.validation.share_of_harm == pytest.approx(0.3)
    assert result.validation.pai == pytest.approx(0.3 / (1 / 40))


def test_the_chosen_places_are_a_hot_spot_file_as_they_are():
    result = identify(hand_made(), WEIGHTS, count=3, min_spacing_m=300, settings={"from": "x"})
    hot_spots = parse_hot_spots(json.dumps(result.to_geojson()))
    first = hot_spots.hot_spots[0]
    assert first.id == cell_id(0, 0)
    assert first.properties == {"harm": 100.0, "crimes": 10, "rank": 1, "from": "x"}
    # The polygon is the 150 m cell, projected back: its area on the grid is 150 m squared.
    metric = shapely.transform(first.geometry, lambda xy: np.column_stack(to_grid(*xy.T)))
    assert metric.area == pytest.approx(CELL**2, rel=1e-4)
    assert metric.centroid.distance(shapely.Point(X0 + 75, Y0 + 75)) < 0.05


@pytest.mark.parametrize(
    ("options", "message"),
    [({"count": 0}, "count"), ({"min_spacing_m": -1}, "spacing"), ({"cell_m": 0}, "1 metre")],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(IdentificationError, match=message):
        identify(hand_made(), WEIGHTS, **options)


def test_no_located_crime_is_an_error_not_an_empty_answer():
    unlocated = pd.DataFrame([{"crime_type": "Robbery", "longitude": np.nan, "latitude": np.nan}])
    with pytest.raises(IdentificationError, match="no located crimes"):
        identify(unlocated, WEIGHTS)


# --- a places file -------------------------------------------------------------------------

WEST = box(-1.140, 52.630, -1.130, 52.640)
EAST = box(-1.130, 52.630, -1.120, 52.640)  # shares WEST's edge at longitude -1.130
RING = shapely.Polygon(
    box(-1.100, 52.630, -1.090, 52.640).exterior.coords,
    [box(-1.097, 52.633, -1.093, 52.637).exterior.coords],
)


def places_file(*features) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": properties,
                "geometry": json.loads(shapely.to_geojson(g)),
            }
            for properties, g in features
        ],
    }


def point(lon: float, lat: float, crime_type="Robbery", location=None) -> dict:
    return {"crime_type": crime_type, "longitude": lon, "latitude": lat, "location": location}


def test_places_count_crimes_on_shared_edges_in_both_and_holes_in_neither():
    places = parse_places(
        places_file(({"id": "W", "name": "West"}, WEST), ({}, EAST), ({"id": 7}, RING))
    )
    crimes = pd.DataFrame(
        [
            point(-1.135, 52.635, location="On or near West Street"),
            point(-1.130, 52.635),  # on the shared edge
            point(-1.125, 52.635, "Burglary"),
            point(-1.095, 52.635),  # in the ring's hole
            point(-1.098, 52.635, "Burglary"),  # in the ring itself
            point(-1.000, 52.700),  # outside every place
        ]
    )
    result = identify(crimes, WEIGHTS, places=places, count=3, min_spacing_m=0)
    harm = {p.id: p.harm for p in result.places}
    assert harm == {"W": 20.0, "place-2": 11.0, "7": 1.0}
    assert [p.id for p in result.places] == ["W", "place-2", "7"]
    # Totals count the edge crime once; what lies outside every place is reported apart.
    assert result.capture.total_harm == 22.0
    assert result.outside_harm == 20.0
    assert result.capture.share_of_harm == 1.0
    # Named after the crimes' locations; the file's own name is kept beside it.
    assert result.places[0].name == "On or near West Street"
    assert result.places[1].name == "place-2"
    features = result.to_geojson()["features"]
    assert features[0]["properties"]["place_name"] == "West"
    assert "place_name" not in features[1]["properties"]
    # Overlapping or not, the chosen area is the union's: here the three places' own.
    assert result.chosen_area_m2 == pytest.approx(result.study_area_m2)
    union = shapely.union_all(
        [
            shapely.transform(g, lambda xy: np.column_stack(to_grid(*xy.T)))
            for g in (WEST, EAST, RING)
        ]
    )
    assert result.study_area_m2 == pytest.approx(union.area)


def test_a_places_file_whose_ids_could_not_be_hot_spots_is_refused():
    with pytest.raises(IdentificationError, match=r"properties\.id: 65 characters"):
        parse_places(places_file(({"id": "x" * 65}, WEST)))
    with pytest.raises(IdentificationError, match="duplicate id"):
        parse_places(places_file(({"id": "a"}, WEST), ({"id": "a"}, EAST)))
    with pytest.raises(IdentificationError, match="FeatureCollection"):
        parse_places({"type": "FeatureCollection", "features": []})


# --- the real month ------------------------------------------------------------------------


def real_crimes() -> pd.DataFrame:
    crimes, _ = read_crimes(real_month())
    return pd.DataFrame(
        {
            "crime_type": [c.crime_type for c in crimes],
            "longitude": [np.nan if c.longitude is None else c.longitude for c in crimes],
            "latitude": [np.nan if c.latitude is None else c.latitude for c in crimes],
            "location": [c.location for c in crimes],
        }
    )


def test_on_the_real_month_the_cells_harm_matches_an_independent_count():
    crimes = real_crimes()
    weights = load_weights()
    result = identify(crimes, weights, count=25, min_spacing_m=300)
    # Independently: pandas over the raw file, cells by floor division on the grid.
    raw = pd.read_csv(real_month()).dropna(subset=["Longitude"])
    x, y = to_grid(raw["Longitude"].to_numpy(), raw["Latitude"].to_numpy())
    raw = raw.assign(
        cell=[
            f"cell-{int(a)}-{int(b)}" for a, b in zip(x // 150 * 150, y // 150 * 150, strict=True)
        ],
        harm=raw["Crime type"].map(weights.weights).fillna(0),
    )
    by_cell = raw.groupby("cell")["harm"].agg(["sum", "size"])
    assert result.capture.total_harm == pytest.approx(raw["harm"].sum())
    for place in result.places:
        assert place.harm == pytest.approx(by_cell.loc[place.id, "sum"])
        assert place.crimes == by_cell.loc[place.id, "size"]
    # The first is the most harmful cell of all; later ones are the most harmful left once
    # cells too near the chosen ones are struck out.
    assert result.places[0].harm == pytest.approx(by_cell["sum"].max())
    centres = np.array([to_grid([p.centre_lon], [p.centre_lat]) for p in result.places])[:, :, 0]
    gaps = np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    assert gaps[~np.eye(25, dtype=bool)].min() >= 300 - 0.01
    assert len(result.places) == 25
    assert result.unlocated == 684
    assert result.curve["share_of_harm"].iloc[-1] == pytest.approx(1.0)
    assert result.curve["share_of_harm"].is_monotonic_increasing


def test_the_command_writes_hot_spots_that_geofences_load_accepts(database_url, tmp_path):
    out = tmp_path / "hot.geojson"

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    imported = run("crimes", "import", real_month(), "--db", database_url)
    assert imported.exit_code == 0, imported.output
    result = run(
        "hotspots", "identify", "--from", "2019-10", "--to", "2019-10", "--count", "5",
        "--out", out, "--format", "json", "--db", database_url,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["places_chosen"] == 5 and summary["unlocated_crimes"] == 684
    assert summary["pai"] == pytest.approx(summary["share_of_harm"] / summary["share_of_area"])
    loaded = run("geofences", "load", out, "--db", database_url)
    assert loaded.exit_code == 0, loaded.output
    assert "loaded 5 hot spots" in loaded.output
    features = json.loads(out.read_text())["features"]
    assert [f["properties"]["rank"] for f in features] == [1, 2, 3, 4, 5]
    assert [f["properties"]["id"] for f in features] == [p["id"] for p in summary["chosen"]]

    empty = run(
        "hotspots", "identify", "--from", "2020-01", "--to", "2020-02", "--out", out,
        "--db", database_url,
    )  # fmt: skip
    assert empty.exit_code == 1
    assert "no recorded crime from 2020-01 to 2020-02" in empty.output
