"""Judging an operation by harm: the periods, the relative effect and its interval on
generated histories with a known effect and with none, displacement, months without data,
and the command on both databases."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from tracker.cli import main
from tracker.dosage.geofence import HotSpot, HotSpotSet, load_hot_spots
from tracker.foundation import settings
from tracker.foundation.database import make_engine, session_factory
from tracker.harm.evaluate import (
    EvaluationError,
    add_months,
    evaluate,
    evaluation_periods,
)
from tracker.harm.identify import to_wgs84
from tracker.harm.synthetic import HistorySettings, store_synthetic_history, synthetic_crimes
from tracker.harm.weights import HarmWeights, load_weights

DEMO_GEOJSON = settings.PROJECT_ROOT / "geofences" / "leicestershire_demo.geojson"
WEIGHTS = HarmWeights("test", {"Robbery": 10.0, "Burglary": 1.0})
PERIODS = evaluation_periods(date(2024, 1, 1), date(2024, 12, 31), date(2025, 3, 1), 12)


@pytest.fixture(autouse=True)
def no_tracker_settings(monkeypatch):
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)


def demo_hot_spots() -> HotSpotSet:
    return load_hot_spots(DEMO_GEOJSON)


# --- periods -------------------------------------------------------------------------------


def test_a_whole_month_start_counts_and_the_baseline_is_the_months_before():
    periods = evaluation_periods(date(2024, 1, 1), date(2024, 12, 31), date(2025, 3, 1), 12)
    assert periods.before[0] == date(2023, 1, 1) and periods.before[-1] == date(2023, 12, 1)
    assert periods.during == tuple(add_months(date(2024, 1, 1), n) for n in range(12))
    assert periods.excluded == ()


def test_a_part_month_at_the_start_is_left_out_and_the_end_is_the_last_complete_month():
    periods = evaluation_periods(date(2024, 1, 15), date(2025, 1, 10), date(2024, 6, 30), 3)
    assert periods.before == (date(2023, 10, 1), date(2023, 11, 1), date(2023, 12, 1))
    assert periods.excluded == (date(2024, 1, 1),)
    # Today is 30 June: June has not ended, so May is the last complete month.
    assert periods.during == (
        date(2024, 2, 1),
        date(2024, 3, 1),
        date(2024, 4, 1),
        date(2024, 5, 1),
    )
    ended = evaluation_periods(date(2024, 1, 15), date(2024, 3, 20), date(2025, 1, 1), 3)
    assert ended.during == (date(2024, 2, 1),)  # March ends after the operation does


def test_an_operation_without_a_complete_month_cannot_be_judged_yet():
    with pytest.raises(EvaluationError, match="no complete month yet"):
        evaluation_periods(date(2024, 5, 20), date(2025, 5, 19), date(2024, 6, 10), 12)


# --- a known effect, and none --------------------------------------------------------------


def generated(effect: float, seed: int, **options) -> pd.DataFrame:
    return synthetic_crimes(
        demo_hot_spots(),
        PERIODS.months,
        PERIODS.during,
        HistorySettings(effect=effect, seed=seed, **options),
    )


def test_a_planted_30_percent_fall_is_estimated_and_covered_and_1_is_not():
    result = evaluate(generated(0.7, seed=1), load_weights(), demo_hot_spots(), PERIODS)
    low, high = result.ci95
    assert 0.6 < result.relative_effect < 0.8
    assert low < 0.7 < high
    assert high < 1  # a fall this large is told from no effect
    assert result.areas["hotspots"].change < result.areas["rest"].change
    assert result.missing_months == ()


def test_with_no_effect_the_interval_covers_1():
    result = evaluate(generated(1.0, seed=2), load_weights(), demo_hot_spots(), PERIODS)
    low, high = result.ci95
    assert low < 1 < high
    assert 0.85 < result.relative_effect < 1.15


@pytest.mark.parametrize("effect", [0.7, 1.0])
def test_the_interval_covers_the_true_effect_in_most_of_many_histories(effect):
    """The 95% interval should hold the planted effect about 95 times in 100; with the
    seasonal cycle counted as overdispersion it is a little conservative. 30 histories:
    at least 26 (a binomial 95% lower bound below 0.95 * 30)."""
    hot_spots, weights = demo_hot_spots(), load_weights()
    covered = 0
    for seed in range(30):
        crimes = generated(effect, seed=100 + seed, background_per_month=400, extent_m=5_000)
        low, high = evaluate(crimes, weights, hot_spots, PERIODS).ci95
        covered += low <= effect <= high
    assert covered >= 26


# --- displacement, months without data, per hot spot ----------------------------------------

CENTRE_X, CENTRE_Y = 458_900.0, 304_500.0


def hot_spot_square() -> HotSpotSet:
    lon, lat = to_wgs84(
        np.array([CENTRE_X - 50, CENTRE_X + 50]), np.array([CENTRE_Y - 50, CENTRE_Y + 50])
    )
    return HotSpotSet([HotSpot("HS", "Square", box(lon[0], lat[0], lon[1], lat[1]))])


def crimes_at(x: float, y: float, per_month: dict[date, int], crime_type="Robbery") -> list:
    lon, lat = to_wgs84(np.array([x]), np.array([y]))
    return [
        {"month": m, "crime_type": crime_type, "longitude": lon[0], "latitude": lat[0]}
        for m, n in per_month.items()
        for _ in range(n)
    ]


def per_month(before: int, during: int) -> dict[date, int]:
    return {m: before for m in PERIODS.before} | {m: during for m in PERIODS.during}


def test_a_fall_in_the_buffer_too_is_diffusion_of_benefit():
    crimes = pd.DataFrame(
        crimes_at(CENTRE_X, CENTRE_Y, per_month(10, 5))  # hot spot: harm 100 -> 50 a month
        + crimes_at(CENTRE_X + 150, CENTRE_Y, per_month(2, 1))  # 100 m outside: 20 -> 10
        + crimes_at(CENTRE_X + 5_000, CENTRE_Y, per_month(100, 100))  # rest: 1000 -> 1000
    )
    result = evaluate(crimes, WEIGHTS, hot_spot_square(), PERIODS, buffer_m=200)
    assert (result.areas["hotspots"].before, result.areas["hotspots"].during) == (100.0, 50.0)
    assert result.areas["buffer"].change == pytest.approx(0.5)
    assert result.relative_effect == pytest.approx(0.5)
    # (10/1000 - 20/1000) / (50/1000 - 100/1000): the buffer gained a fifth of the benefit.
    assert result.wdq_success_measure == pytest.approx(-0.05)
    assert result.wdq == pytest.approx(0.2)
    # No month-to-month variation at all: the dispersion is its floor, 1.
    assert result.areas["hotspots"].dispersion == 1.0


def test_a_rise_in_the_buffer_is_displacement_and_no_fall_gives_no_quotient():
    crimes = pd.DataFrame(
        crimes_at(CENTRE_X, CENTRE_Y, per_month(10, 5))
        + crimes_at(CENTRE_X + 150, CENTRE_Y, per_month(2, 4))
        + crimes_at(CENTRE_X + 5_000, CENTRE_Y, per_month(100, 100))
    )
    assert evaluate(crimes, WEIGHTS, hot_spot_square(), PERIODS).wdq == pytest.approx(-0.4)
    no_fall = pd.DataFrame(
        crimes_at(CENTRE_X, CENTRE_Y, per_month(10, 10))
        + crimes_at(CENTRE_X + 5_000, CENTRE_Y, per_month(100, 100))
    )
    result = evaluate(no_fall, WEIGHTS, hot_spot_square(), PERIODS)
    assert result.wdq is None and "did not fall" in result.wdq_note
    assert result.relative_effect == pytest.approx(1.0)


def test_a_month_without_data_is_reported_and_not_taken_as_zero():
    months = per_month(10, 5)
    gap = PERIODS.before[3]
    crimes = pd.DataFrame(
        crimes_at(CENTRE_X, CENTRE_Y, months)
        + crimes_at(CENTRE_X + 5_000, CENTRE_Y, per_month(100, 100))
    )
    crimes = crimes[crimes["month"] != gap]
    result = evaluate(crimes, WEIGHTS, hot_spot_square(), PERIODS)
    assert result.missing_months == (gap,)
    assert result.areas["hotspots"].before == 100.0  # 11 months of 100, not 1100 / 12
    row = result.months.set_index("month").loc[f"{gap.year}-{gap.month:02d}"]
    assert not row["has_data"] and pd.isna(row["hotspots_harm"]) and pd.isna(row["rest_crimes"])
    document = result.to_json()
    assert document["missing_months"] == [f"{gap.year}-{gap.month:02d}"]
    assert document["before"]["months_with_data"] == 11
    json.dumps(document)  # JSON-ready: no NaN or numpy values left


def test_each_hot_spot_gets_its_own_row_and_unlocated_crimes_are_counted_apart():
    crimes = pd.DataFrame(
        crimes_at(CENTRE_X, CENTRE_Y, per_month(10, 5))
        + crimes_at(CENTRE_X + 5_000, CENTRE_Y, per_month(100, 100))
        + [
            {
                "month": PERIODS.during[0],
                "crime_type": "Robbery",
                "longitude": np.nan,
                "latitude": np.nan,
            }
        ]
    )
    result = evaluate(crimes, WEIGHTS, hot_spot_square(), PERIODS)
    assert result.hot_spots.to_dict("records") == [
        {
            "hotspot_id": "HS",
            "name": "Square",
            "harm_before": 100.0,
            "harm_during": 50.0,
            "change": 0.5,
            "crimes_before": 120,
            "crimes_during": 60,
        }
    ]
    assert (result.unlocated_crimes, result.unlocated_harm) == (1, 10.0)


# --- the command, on both databases --------------------------------------------------------


def test_the_command_evaluates_a_stored_operation_over_a_stored_history(database_url, tmp_path):
    def run(*args):
        result = CliRunner().invoke(main, [*map(str, args), "--db", database_url])
        assert result.exit_code == 0, result.output
        return result.stdout

    run("geofences", "load", DEMO_GEOJSON)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "operation: Harm test\nstart: 2024-01-01\nend: 2024-12-31\ntz: Europe/London\n"
        "defaults:\n  presence_minutes_per_day: 30\nhotspots:\n  LE01: {}\n  LE02: {}\n"
    )
    run("plan", "load", plan)
    two = HotSpotSet([h for h in demo_hot_spots() if h.id in ("LE01", "LE02")])
    history = HistorySettings(effect=0.5, background_per_month=300, extent_m=4_000, seed=5)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        stored = store_synthetic_history(
            session,
            two,
            date(2023, 1, 1),
            date(2024, 12, 1),
            date(2024, 1, 1),
            date(2024, 12, 31),
            history,
        )
    with sessions.begin() as session:
        again = store_synthetic_history(
            session,
            two,
            date(2023, 1, 1),
            date(2024, 12, 1),
            date(2024, 1, 1),
            date(2024, 12, 31),
            history,
        )
    engine.dispose()
    assert stored > 5_000 and again == 0

    document = json.loads(run("harm", "evaluate", "--format", "json"))
    expected = evaluate(
        synthetic_crimes(two, PERIODS.months, PERIODS.during, history), load_weights(), two, PERIODS
    )
    assert document["operation"] == "Harm test"
    assert document["hot_spots"] == 2
    assert document["relative_effect"] == pytest.approx(expected.relative_effect)
    assert document["ci95"] == pytest.approx(list(expected.ci95))
    assert document["missing_months"] == []
    assert [row["hotspot_id"] for row in document["per_hotspot"]] == ["LE01", "LE02"]
    summary = run("harm", "evaluate", "--format", "csv")
    assert f"relative_effect,{expected.relative_effect}" in summary.replace('"', "")
    months = run("harm", "evaluate", "--format", "csv", "--table", "months")
    assert months.splitlines()[0].startswith("month,period,has_data,hotspots_harm")
    assert len(months.splitlines()) == 1 + 24
