"""The figures partners see (docs/partners.md, "What partners see"): small numbers
suppressed in stop and search and crime harm (a count under 5, a count that subtraction
would give away, a month's second cell, and every rate from a hidden count), and presence
and visits per hot spot and week."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tests.builders import square_feature
from tracker.foundation.models import DailyDosage, HotSpotRow
from tracker.harm.models import RecordedCrime
from tracker.harm.weights import load_weights
from tracker.partnership.figures import (
    FEWER,
    NO_CRIME_DATA,
    SUPPRESSED,
    harm_trend,
    partner_stop_tables,
    protect,
    protect_harm,
    weekly_dosage,
)
from tracker.plan.models import Operation, OperationHotSpot
from tracker.stops.models import StopSearch

US_PER_MINUTE = 60_000_000


def counts(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell", "searches", "positive_outcomes", "arrests"])


def test_a_count_under_5_is_fewer_than_5_and_its_rates_are_suppressed():
    shown = protect(counts(("a", 0, 0, 0), ("b", 4, 1, 0), ("c", 30, 12, 6), ("d", 5, 0, 0)))

    assert shown["searches"].tolist() == [FEWER, FEWER, 30, 5]
    assert shown["positive_outcomes"].tolist() == [FEWER, FEWER, 12, FEWER]
    assert shown["arrests"].tolist() == [FEWER, FEWER, 6, FEWER]
    assert shown["positive_outcome_rate"].tolist() == [SUPPRESSED, SUPPRESSED, 40.0, SUPPRESSED]
    assert shown["arrest_rate"].tolist() == [SUPPRESSED, SUPPRESSED, 20.0, SUPPRESSED]


def test_an_outcome_count_that_subtraction_would_give_away_is_suppressed():
    # 20 searches and 17 positive outcomes would tell that 3 had none: both are hidden.
    shown = protect(counts(("a", 20, 17, 5), ("b", 20, 15, 15)))

    assert shown["searches"].tolist() == [20, 20]
    assert shown["positive_outcomes"].tolist() == [SUPPRESSED, 15]
    assert shown["positive_outcome_rate"].tolist() == [SUPPRESSED, 75.0]
    assert shown["arrests"].tolist() == [5, 15]
    assert shown["arrest_rate"].tolist() == [25.0, 75.0]


def test_a_month_with_one_hidden_cell_hides_its_smallest_other_so_the_total_tells_nothing():
    frame = pd.DataFrame(
        {
            "month": ["2026-01"] * 3 + ["2026-02"] * 3,
            "cell": ["a", "b", "c"] * 2,
            "searches": [3, 9, 40, 2, 1, 40],
            "positive_outcomes": [0, 0, 0, 0, 0, 0],
            "arrests": [0, 0, 0, 0, 0, 0],
        }
    )
    shown = protect(frame, group="month")
    total = frame.groupby("month")["searches"].sum()

    # January: 3 is hidden, so 9 is too (52 - 40 would be 12 = 3 + 9, not 3). February has
    # two hidden already.
    assert shown["searches"].tolist() == [FEWER, SUPPRESSED, 40, FEWER, FEWER, 40]
    assert total.tolist() == [52, 43]
    for month, rows in shown.groupby("month"):
        hidden = [s for s in rows["searches"] if isinstance(s, str)]
        assert len(hidden) != 1, month


@pytest.fixture
def operation(db):
    """Operation O over hot spots A and B, 2 to 22 March 2026 (Monday to Sunday)."""
    with db.begin() as session:
        for hotspot_id in ("A", "B"):
            session.add(
                HotSpotRow(id=hotspot_id, name=f"Spot {hotspot_id}", geometry={}, properties={})
            )
        operation = Operation(
            name="O", start_date=date(2026, 3, 2), end_date=date(2026, 3, 22), tz="Europe/London"
        )
        session.add(operation)
        session.flush()
        for hotspot_id in ("A", "B"):
            session.add(OperationHotSpot(operation_id=operation.id, hotspot_id=hotspot_id))
        # A: 10 minutes and 1 visit a day on the first eight days; B: nothing; C is not ours.
        for n in range(8):
            for hotspot_id in ("A", "C"):
                session.add(
                    DailyDosage(
                        hotspot_id=hotspot_id,
                        day=date(2026, 3, 2) + timedelta(days=n),
                        presence_us=10 * US_PER_MINUTE,
                        officer_us=25 * US_PER_MINUTE,
                        visits=1,
                    )
                )
    return db


def test_presence_and_visits_per_week_list_every_week_of_every_hot_spot(operation):
    with operation() as session:
        op = session.query(Operation).one()
        weekly = weekly_dosage(session, op, date(2026, 3, 4), date(2026, 3, 17))

    assert weekly.to_dict("records") == [
        {
            "hotspot_id": h,
            "hotspot_name": f"Spot {h}",
            "week_start": start,
            "week_end": end,
            "days": days,
            "presence_minutes": minutes if h == "A" else 0.0,
            "visits": visits if h == "A" else 0,
        }
        for h in ("A", "B")
        for start, end, days, minutes, visits in [
            (date(2026, 3, 4), date(2026, 3, 8), 5, 50.0, 5),  # the first week, cut
            (date(2026, 3, 9), date(2026, 3, 15), 7, 10.0, 1),
            (date(2026, 3, 16), date(2026, 3, 17), 2, 0.0, 0),
        ]
    ]
    assert "officer_minutes" not in weekly


def test_stop_and_search_per_hot_spot_and_month_is_suppressed_for_partners(operation):
    """A: 12 searches in March, 6 positive; B: 2; none in April but one of A's; searches
    outside the hot spots and of another operation are not counted."""
    stops = [("A", 3, "Arrest")] * 6 + [("A", 3, "A no further action disposal")] * 6
    stops += [("B", 3, "Arrest"), ("B", 3, None), (None, 3, "Arrest"), ("A", 4, "Arrest")]
    with operation.begin() as session:
        op_id = session.query(Operation).one().id
        for n, (hotspot_id, month, outcome) in enumerate(stops):
            session.add(
                StopSearch(
                    type="Person search",
                    occurred_at=datetime(2026, month, 5, 12, tzinfo=UTC),
                    outcome=outcome,
                    hotspot_id=hotspot_id,
                    operation_id=op_id,
                    import_key=f"k{n}",
                )
            )
        session.add(
            StopSearch(
                type="Person search",
                occurred_at=datetime(2026, 3, 6, tzinfo=UTC),
                hotspot_id="A",
                operation_id=op_id + 1,
                import_key="other",
            )
        )
    with operation() as session:
        op = session.query(Operation).one()
        by_hotspot, by_month = partner_stop_tables(session, op, op.tz)

    # March's total (14) is published, so B's 2 would be 14 - 12: A's 12 is hidden too.
    assert by_hotspot[["month", "hotspot_id", "searches"]].values.tolist() == [
        ["2026-03", "A", SUPPRESSED],
        ["2026-03", "B", FEWER],
        ["2026-04", "A", FEWER],
        ["2026-04", "B", FEWER],
    ]
    assert by_hotspot["positive_outcomes"].tolist() == [SUPPRESSED, FEWER, FEWER, FEWER]
    assert by_hotspot["positive_outcome_rate"].tolist() == [SUPPRESSED] * 4
    assert by_month.to_dict("records") == [
        {
            "month": "2026-03",
            "searches": 14,
            "positive_outcomes": 7,
            "arrests": 7,
            "positive_outcome_rate": 50.0,
            "arrest_rate": 50.0,
        },
        {
            "month": "2026-04",
            "searches": FEWER,
            "positive_outcomes": FEWER,
            "arrests": FEWER,
            "positive_outcome_rate": SUPPRESSED,
            "arrest_rate": SUPPRESSED,
        },
    ]


def test_crime_harm_of_fewer_than_5_crimes_is_suppressed():
    months = pd.DataFrame(
        {
            "month": ["2026-01", "2026-02"],
            "period": ["before", "during"],
            "hotspots_crimes": pd.array([3, 12], dtype="Int64"),
            "hotspots_harm": [365.0, 40.5],
            "buffer_crimes": pd.array([pd.NA, 5], dtype="Int64"),
            "buffer_harm": [np.nan, 12.0],
            "rest_crimes": pd.array([400, 380], dtype="Int64"),
            "rest_harm": [2000.0, 1800.25],
        }
    )
    shown = protect_harm(months)

    assert shown.to_dict("records") == [
        {
            "month": "2026-01",
            "period": "before",
            "hotspots_crimes": FEWER,
            "hotspots_harm": SUPPRESSED,
            "buffer_crimes": None,
            "buffer_harm": None,
            "rest_crimes": 400,
            "rest_harm": 2000.0,
        },
        {
            "month": "2026-02",
            "period": "during",
            "hotspots_crimes": 12,
            "hotspots_harm": 40.5,
            "buffer_crimes": 5,
            "buffer_harm": 12.0,
            "rest_crimes": 380,
            "rest_harm": 1800.2,
        },
    ]


CENTRE = (52.6300, -1.1300)  # (lat, lon) of hot spot H, a 200 m square


def test_crime_harm_per_month_in_the_hot_spots_and_the_rest_or_why_there_is_none(db):
    feature = square_feature("H", *CENTRE, 200)
    with db.begin() as session:
        session.add(
            HotSpotRow(id="H", name="H", geometry=feature["geometry"], properties={"id": "H"})
        )
        operation = Operation(
            name="O", start_date=date(2026, 3, 2), end_date=date(2026, 12, 31), tz="Europe/London"
        )
        session.add(operation)
        session.flush()
        session.add(OperationHotSpot(operation_id=operation.id, hotspot_id="H"))
    with db() as session:
        op = session.query(Operation).one()
        assert harm_trend(session, op, date(2026, 3, 1), date(2026, 4, 10)) == (None, NO_CRIME_DATA)
    # February: 2 robberies in H, 6 in the rest (2 km away), 1 unlocated; March: 5 in H.
    crimes = [(2, "Robbery", CENTRE)] * 2 + [(2, "Robbery", (52.648, -1.13))] * 6
    crimes += [(2, "Robbery", None)] + [(3, "Robbery", CENTRE)] * 5
    with db.begin() as session:
        for n, (month, crime_type, at) in enumerate(crimes):
            session.add(
                RecordedCrime(
                    import_key=f"c{n}",
                    source="police.uk",
                    month=date(2026, month, 1),
                    crime_type=crime_type,
                    latitude=at[0] if at else None,
                    longitude=at[1] if at else None,
                )
            )
    with db() as session:
        months, note = harm_trend(session, op, date(2026, 4, 1), date(2026, 4, 10))

    robbery = float(load_weights().weigh(pd.Series(["Robbery"]), None)[0])
    rows = months.set_index("month")
    assert list(rows.index) == [f"{y}-{m:02d}" for y, m in [(2025, n) for n in range(3, 13)]] + [
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
    ]
    # The baseline year; March began on the 2nd and April is not over: both excluded.
    assert rows["period"].tolist() == ["before"] * 12 + ["excluded", "excluded"]
    assert rows.loc["2026-02", ["hotspots_crimes", "rest_crimes"]].tolist() == [2, 6]
    assert rows.loc["2026-02", "hotspots_harm"] == pytest.approx(2 * robbery)
    assert rows.loc["2026-03", "hotspots_crimes"] == 5
    assert pd.isna(rows.loc["2025-12", "hotspots_crimes"])  # no crime loaded: blank, not 0
    assert "No crime is loaded for 2025-03" in note
    shown = protect_harm(months).set_index("month")
    assert shown.loc["2026-02", ["hotspots_crimes", "hotspots_harm"]].tolist() == [
        FEWER,
        SUPPRESSED,
    ]
    assert shown.loc["2026-03", "hotspots_crimes"] == 5
