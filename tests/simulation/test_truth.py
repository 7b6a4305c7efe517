"""The ground truth of the validity study: exact dosage from hand-made paths, worked by hand;
the pings a device would send along them; and the study's figures against the truth."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
import pytest
from click.testing import CliRunner

from tracker.cli import main
from tracker.dosage.engine import ENDPOINTS, INTERPOLATE, DosageParams, compute_dosage
from tracker.dosage.geofence import load_hot_spots
from tracker.foundation.clock import US_PER_S, instant_us
from tracker.foundation.settings import PROJECT_ROOT
from tracker.simulation.gps import GpsErrorModel, sample_pings
from tracker.simulation.truth import METRES_PER_DEGREE, Path, simulate_paths, true_dosage
from tracker.simulation.validity import StudyDesign, measurements, size_classes, summarise

T0 = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)  # London on GMT: local time = UTC
DEMO = PROJECT_ROOT / "geofences" / "leicestershire_demo.geojson"


def path(*vertices: tuple[float, float, float], device: str = "d1") -> Path:
    """A path from (seconds after T0, lat, lon) vertices."""
    t, lat, lon = (np.array(v, dtype=float) for v in zip(*vertices, strict=True))
    return Path(device, "foot", instant_us(T0) + (t * US_PER_S).astype(np.int64), lon, lat)


def test_true_dosage_of_a_hand_made_path_is_worked_by_hand(spots_a_b_h):
    # A is lon -0.101..-0.099, B -0.100..-0.098 (they overlap in -0.100..-0.099); H is
    # lon -0.201..-0.199 with a hole -0.2005..-0.1995 (all at lat 51.499..51.501).
    # 1. 0-400 s: due east along lat 51.5 from -0.102 to -0.097 (0.005 degrees in 400 s,
    #    80 s per 0.001): in A from 80 to 240 s, in B from 160 to 320 s.
    # 2. 400-700 s: standing still at -0.097 (in neither).
    # 3. 700-1100 s: back west to -0.1005 (0.0035 degrees in 400 s, 800/7 s per 0.001):
    #    enters B at 700 + 800/7 = 814.29 s, A at 700 + 1600/7 = 928.57 s, leaves B at
    #    700 + 2400/7 = 1042.86 s, and is in A until 1100 s.
    # 4. 1100-1400 s: standing still in A (300 s).
    # 5. 1400-1500 s: due north out of A (51.5 to 51.51 in 100 s): in A for 10 s more.
    # 6. Round to the west of H, outside everything, then from 3100 s due east along lat
    #    51.5 from -0.202 to -0.198 (100 s per 0.001): in H's ring from 3200 to 3250 s and
    #    from 3350 to 3400 s, in its hole between.
    walk = path(
        (0, 51.5, -0.102),
        (400, 51.5, -0.097),
        (700, 51.5, -0.097),
        (1100, 51.5, -0.1005),
        (1400, 51.5, -0.1005),
        (1500, 51.51, -0.1005),
        (3000, 51.51, -0.202),
        (3100, 51.5, -0.202),
        (3500, 51.5, -0.198),
    )
    params = DosageParams(visit_merge_gap_s=0, min_visit_s=60)
    daily = true_dosage([walk], spots_a_b_h, params).daily.set_index("hotspot_id")
    # Crossing times are rounded to the microsecond (928.571429 s, 814.285714 s, ...).
    # A: 160 + (1100 - 928.571429) + 300 + 10 = 641.428571 s;
    # B: 160 + (1042.857143 - 814.285714) = 388.571429 s; H: 50 + 50 = 100 s.
    assert daily.loc["A", "presence_us"] == pytest.approx(641_428_571, abs=1)
    assert daily.loc["B", "presence_us"] == pytest.approx(388_571_429, abs=1)
    assert daily.loc["H", "presence_us"] == 100_000_000
    assert (daily["presence_us"] == daily["officer_us"]).all()
    # Visits with no merging and at least 60 s: A 2 (160 s; 928.57-1410 s), B 2, H 0 (two
    # of 50 s).
    assert daily.loc["A", "visits"] == 2 and daily.loc["B", "visits"] == 2
    assert daily.loc["H", "visits"] == 0
    assert (daily["date"] == date(2026, 1, 14)).all()


def test_two_officers_together_are_presence_once_and_officer_time_twice(spot_a):
    # Both stand in A for 10 minutes; the second arrives 5 minutes later and stays 10.
    one = path((0, 51.5, -0.1005), (600, 51.5, -0.1005), device="d1")
    two = path((300, 51.5, -0.1005), (900, 51.5, -0.1005), device="d2")
    daily = true_dosage([one, two], spot_a, DosageParams()).daily
    assert daily[["presence_us", "officer_us", "visits"]].values.tolist() == [
        [900_000_000, 1_200_000_000, 1]
    ]


def test_exact_pings_lie_on_the_path_at_the_interval(spot_a):
    walk = path((0, 51.5, -0.102), (400, 51.5, -0.097))
    pings = sample_pings([walk], spot_a, 10, GpsErrorModel.exact(), seed=3)
    seconds = (pings["timestamp"] - T0).dt.total_seconds().to_numpy()
    assert len(pings) in (39, 40) and np.allclose(np.diff(seconds), 10)
    assert np.allclose(pings["lon"], -0.102 + 0.005 * seconds / 400)
    assert (pings["lat"] == 51.5).all() and pings["accuracy_m"].isna().all()


def test_the_documented_error_model_is_as_documented(spot_a):
    # Six hours outside every hot spot: the normal error is 5 m a side (a mean radial error
    # of 5 x sqrt(pi / 2) = 6.27 m); 1% of fixes are outliers; 2% are missed.
    still = path((0, 51.6, -0.1), (6 * 3600, 51.6, -0.1))
    pings = sample_pings([still], spot_a, 5, GpsErrorModel(), seed=7)
    north = (pings["lat"] - 51.6) * METRES_PER_DEGREE
    east = (pings["lon"] + 0.1) * METRES_PER_DEGREE * math.cos(math.radians(51.6))
    radial = np.hypot(north, east)
    scheduled = 6 * 3600 / 5
    assert 0.85 * scheduled < len(pings) < 0.99 * scheduled  # missed fixes and gaps
    assert np.median(radial) == pytest.approx(5 * math.sqrt(2 * math.log(2)), rel=0.1)
    assert 0.004 < (radial > 45).mean() < 0.02  # the outliers
    flagged = pings["accuracy_m"] > 100
    assert 0 < flagged.sum() < (radial > 45).sum()  # most outliers report a normal accuracy


def test_interpolating_exact_pings_measures_the_truth_and_endpoints_undercounts():
    hot_spots = load_hot_spots(DEMO)
    paths = simulate_paths(hot_spots, 4, 1, T0, seed=5)
    truth = true_dosage(paths, hot_spots, DosageParams()).daily["presence_us"].sum()
    pings = sample_pings(paths, hot_spots, 5, GpsErrorModel.exact(), seed=5)
    measured = {
        rule: compute_dosage(pings, hot_spots, DosageParams(crossing_rule=rule))
        .daily["presence_us"]
        .sum()
        for rule in (INTERPOLATE, ENDPOINTS)
    }
    # 5 s pings on paths that only turn at vertices: interpolation misses only the corners
    # cut between pings; the endpoint rule loses part of every entry and exit.
    assert abs(measured[INTERPOLATE] / truth - 1) < 0.005
    assert measured[ENDPOINTS] / truth - 1 < -0.005


def test_the_study_summarises_every_configuration():
    hot_spots = load_hot_spots(DEMO)
    design = StudyDesign(
        intervals_s=(30, 120), max_gaps_s=(60, 180), seeds=(1,), officers=3, days=1
    )
    rows = measurements(hot_spots, design)
    summary = summarise(rows, size_classes(hot_spots))
    # 120 s pings are never measured with max_gap_s 60; every other combination is, the
    # interpolate rule with each edge tolerance (0 and 30 m), the endpoint rule without.
    keys = ["gps", "interval_s", "crossing_rule", "edge_tolerance_m", "max_gap_s"]
    combos = set(map(tuple, summary[keys].values))
    assert len(combos) == len(design.models) * 3 * 3
    assert {(r, t) for _, _, r, t, _ in combos} == {
        (ENDPOINTS, 0),
        (INTERPOLATE, 0),
        (INTERPOLATE, 30),
    }
    presence = summary[
        (summary["interval_s"] == 30)
        & (summary["max_gap_s"] == 180)
        & (summary["figure"] == "presence")
        & (summary["size"] == "all")
    ].set_index(["gps", "crossing_rule", "edge_tolerance_m"])
    bias = presence["bias_pct"]
    assert bias["exact", INTERPOLATE, 0] > bias["exact", ENDPOINTS, 0]
    # GPS noise near edges cuts interpolated time; the edge tolerance gives much of it back.
    assert bias["noise only", INTERPOLATE, 0] < bias["noise only", INTERPOLATE, 30]
    total = rows[(rows["gps"] == "exact") & (rows["interval_s"] == 30)]
    assert presence.loc[("exact", INTERPOLATE, 0), "true_total"] == pytest.approx(
        total[total["crossing_rule"] == INTERPOLATE]
        .drop_duplicates(["seed", "hotspot_id", "date"])["presence_us"]
        .sum()
        / 60e6,
        abs=0.01,
    )


def test_the_study_command_writes_its_tables_and_charts(tmp_path):
    out = tmp_path / "study"
    result = CliRunner().invoke(
        main,
        [
            "validity",
            "study",
            "--out",
            str(out),
            "--intervals",
            "30",
            "--max-gaps",
            "180",
            "--runs",
            "1",
            "--officers",
            "2",
            "--days",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {
        "measurements.csv",
        "summary.csv",
        "presence_by_interval.png",
        "visits_by_interval.png",
        "presence_by_max_gap.png",
        "presence_by_size.png",
    }
    assert (out / "presence_by_interval.png").read_bytes()[:4] == b"\x89PNG"
    for bad, problem in (("x", "expected numbers"), ("30,-5", "expected positive numbers")):
        result = CliRunner().invoke(
            main, ["validity", "study", "--out", str(out), "--intervals", bad]
        )
        assert result.exit_code == 2 and problem in result.output
    result = CliRunner().invoke(
        main, ["validity", "study", "--out", str(out), "--tolerances", "0,-5"]
    )
    assert result.exit_code == 2 and "expected numbers of 0 or more" in result.output


def test_one_part_of_the_error_model_keeps_the_rest_exact():
    noise = GpsErrorModel.only("noise")
    assert noise.sigma_m == GpsErrorModel().sigma_m and noise.outlier_rate == 0
    assert noise.missed_rate == 0 and math.isinf(noise.gap_every_h)
    gaps = GpsErrorModel.only("gaps")
    assert gaps.sigma_m == 0 and gaps.missed_rate == GpsErrorModel().missed_rate
    outliers = GpsErrorModel.only("outliers")
    assert outliers.outlier_rate == GpsErrorModel().outlier_rate and outliers.sigma_m == 0
    assert replace(outliers, outlier_rate=0, outlier_m=(0.0, 0.0), outlier_hidden=0.0) == (
        GpsErrorModel.exact()
    )
