"""Properties of the dosage engine that hold for any pings (docs/ingest.md and docs/dosage.md).

Pings are drawn from a few devices and a few positions of the test geography (inside,
on an edge or vertex, in a hole, outside, unusable), over either half an hour or three
days that include both 2026 clock changes, with gaps short and long.
"""

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import (
    BOX_A,
    IN_A,
    IN_A_AND_B,
    IN_H_RING,
    IN_HOLE,
    ON_HOLE_EDGE,
    OUTSIDE,
)
from tracker.dosage.engine import (
    DosageParams,
    DosageResult,
    compute_dosage,
    credited_spans,
    dosage_from_spans,
    presence_from_spans,
)
from tracker.dosage.pings import Ping, parse_timestamp, pings_frame

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)

POSITIONS = [  # (lat, lon); positions inside hot spots are listed twice, to weight them
    IN_A,
    IN_A,
    IN_A_AND_B,
    IN_A_AND_B,
    IN_H_RING,
    IN_H_RING,
    (BOX_A[1], BOX_A[0]),  # the south-west vertex of A
    (51.5, BOX_A[2]),  # on the east edge of A, inside B
    IN_HOLE,
    ON_HOLE_EDGE,
    OUTSIDE,
    (0.0, 0.0),  # unusable
]
# Starts chosen so that the drawn times cross local midnights and the 2026 clock changes.
STARTS = [
    "2026-01-14T23:45:00Z",
    "2026-03-28T22:30:00Z",
    "2026-03-29T22:45:00Z",
    "2026-10-24T22:45:00Z",
    "2026-10-25T23:45:00Z",
]
TABLES = ("daily", "device_daily", "visits", "device_visits")


@st.composite
def ping_lists(draw) -> list[Ping]:
    """Pings: perhaps a long stay, tracks at steady intervals, scattered pings, twins."""
    start_us = parse_timestamp(draw(st.sampled_from(STARTS)))
    horizon_s = draw(st.sampled_from([1800, 3 * 86400]))
    devices = st.sampled_from(["d1", "d2", "d3"])
    accuracy = st.sampled_from([None, None, 20.0, 100.0, 150.0])
    pings = []
    if draw(st.booleans()):
        # A stay through the whole horizon with no gap over 180 s: whole local days.
        device, position = draw(devices), draw(st.sampled_from(POSITIONS))
        pings += [
            Ping(device, start_us + s * 1_000_000, *position) for s in range(0, horizon_s + 1, 180)
        ]
    for _ in range(draw(st.integers(0, 3))):
        device, position, acc = draw(devices), draw(st.sampled_from(POSITIONS)), draw(accuracy)
        first_s = draw(st.just(0) | st.integers(0, horizon_s))
        every_s = draw(st.sampled_from([60, 180, 181, 3600, 3 * 3600]) | st.integers(1, 400))
        for i in range(draw(st.integers(1, 30))):
            pings.append(
                Ping(device, start_us + (first_s + i * every_s) * 1_000_000, *position, acc)
            )
    for _ in range(draw(st.integers(0, 30))):
        offset_s = draw(st.integers(0, horizon_s))
        pings.append(
            Ping(
                draw(devices),
                start_us + offset_s * 1_000_000,
                *draw(st.sampled_from(POSITIONS)),
                draw(accuracy),
            )
        )
    if pings:
        # Some instants reported twice by a device with different fixes (rule 2 keeps one).
        for _ in range(draw(st.integers(0, 3))):
            lat, lon = draw(st.sampled_from(POSITIONS))
            pings.append(draw(st.sampled_from(pings))._replace(lat=lat, lon=lon))
    return pings


dosage_params = st.builds(
    DosageParams,
    max_gap_s=st.sampled_from([180, 3600, 2 * 86400]),
    visit_merge_gap_s=st.sampled_from([0, 60, 600]),
    min_visit_s=st.sampled_from([0, 120, 900]),
    max_speed_kmh=st.sampled_from([None, 30.0]),
    tz=st.sampled_from(["Europe/London", "America/New_York"]),
)


def assert_same_tables(actual: DosageResult, expected: DosageResult) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(actual, name), getattr(expected, name))


@PROPERTY_SETTINGS
@given(pings=ping_lists(), params=dosage_params, data=st.data())
def test_the_order_of_the_pings_changes_nothing(spots_a_b_h, pings, params, data):
    frame = pings_frame(pings)
    order = data.draw(st.permutations(range(len(frame))))
    expected = compute_dosage(frame, spots_a_b_h, params)
    actual = compute_dosage(frame.iloc[list(order)], spots_a_b_h, params)
    assert_same_tables(actual, expected)
    assert actual.counts == expected.counts


@PROPERTY_SETTINGS
@given(pings=ping_lists(), params=dosage_params, data=st.data())
def test_pings_arriving_in_pieces_give_the_same_dosage(spots_a_b_h, pings, params, data):
    # Pieces as separate frames (each with its own 0-based index), concatenated in any
    # order, as batches from several ingesters would be.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(pings)), max_size=4)))
    bounds = [0, *cuts, len(pings)]
    pieces = [pings_frame(pings[a:b]) for a, b in itertools.pairwise(bounds)]
    order = data.draw(st.permutations(range(len(pieces))))
    joined = pd.concat([pieces[i] for i in order])
    expected = compute_dosage(pings_frame(pings), spots_a_b_h, params)
    actual = compute_dosage(joined, spots_a_b_h, params)
    assert_same_tables(actual, expected)
    assert actual.counts == expected.counts


@PROPERTY_SETTINGS
@given(pings=ping_lists(), params=dosage_params, data=st.data())
def test_exact_duplicates_change_nothing(spots_a_b_h, pings, params, data):
    repeats = data.draw(st.lists(st.sampled_from(pings), min_size=1)) if pings else []
    expected = compute_dosage(pings_frame(pings), spots_a_b_h, params)
    actual = compute_dosage(pings_frame(pings + repeats), spots_a_b_h, params)
    assert_same_tables(actual, expected)
    assert actual.counts["credited_spans"] == expected.counts["credited_spans"]


def local_day_minutes(day: date, tz: str) -> float:
    """Return the length of a local day in minutes (1380, 1440 or 1500 around DST)."""
    zone = ZoneInfo(tz)
    begin = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return (end - begin).total_seconds() / 60


@PROPERTY_SETTINGS
@given(pings=ping_lists(), params=dosage_params)
def test_presence_is_at_most_officer_time_and_at_most_the_local_day(spots_a_b_h, pings, params):
    result = compute_dosage(pings_frame(pings), spots_a_b_h, params)
    daily = result.daily
    assert (daily["officer_minutes"] >= daily["presence_minutes"]).all()
    day_minutes = [local_day_minutes(d, params.tz) for d in daily["date"]]
    assert (daily["presence_minutes"] <= day_minutes).all()
    # The hot spot's officer minutes are its devices' minutes added up (to rounding).
    per_device = result.device_daily.groupby(["hotspot_id", "date"])["officer_minutes"].sum()
    officer = daily.set_index(["hotspot_id", "date"])["officer_minutes"]
    slack = result.device_daily.groupby(["hotspot_id", "date"]).size() * 0.005 + 1e-9
    assert ((officer - per_device).abs() <= slack).all()


@PROPERTY_SETTINGS
@given(pings=ping_lists(), params=dosage_params)
def test_presence_alone_is_the_presence_of_the_full_tables(spots_a_b_h, pings, params):
    # Tasking computes presence without devices or visits; it must be the same presence.
    spans, _ = credited_spans(pings_frame(pings), spots_a_b_h, params)
    full = dosage_from_spans(spans, params)
    daily, hourly = presence_from_spans(spans.drop(columns="device_id"), params)
    expected = full.daily.loc[full.daily["presence_us"] > 0, ["hotspot_id", "date", "presence_us"]]
    pd.testing.assert_frame_equal(daily, expected.reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(hourly, full.hourly, check_dtype=False)
