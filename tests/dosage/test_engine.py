"""The dosage engine against docs/dosage.md, rule by rule, with figures worked by hand.

The figures here are those of the endpoint crediting rule (a span counts whole, to the hot
spots containing both of its pings), which makes them easy to work by hand; the
interpolating rule, the default, has its own hand-checked cases in test_crossing_rule.py.
Otherwise the parameters are the defaults (max_gap_s 180, max_accuracy_m 100,
visit_merge_gap_s 60, min_visit_s 120, no speed rule, Europe/London) unless a test says
otherwise, and the day is 2026-01-14, when London is on GMT (local time = UTC).
"""

from datetime import date
from functools import partial

import pandas as pd
import pytest

from tests import builders
from tests.builders import (
    BETWEEN_SPOTS,
    BOX_A,
    IN_A,
    IN_A_AND_B,
    IN_H_RING,
    IN_HOLE,
    ON_HOLE_EDGE,
    OUTSIDE,
    at,
    hot_spot_set,
    ping,
    raw_ping,
    square_feature,
    track,
)
from tracker.dosage.engine import (
    DAILY_COLUMNS,
    DEVICE_DAILY_COLUMNS,
    DEVICE_VISIT_COLUMNS,
    ENDPOINTS,
    VISIT_COLUMNS,
)

dosage = partial(builders.dosage, crossing_rule=ENDPOINTS)

T0 = "2026-01-14T12:00:00+00:00"
DAY = date(2026, 1, 14)
WEST_A, SOUTH_A, EAST_A, NORTH_A = BOX_A


def rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return list(frame[columns].itertuples(index=False, name=None))


def daily_rows(result) -> list[tuple]:
    return rows(result.daily, DAILY_COLUMNS)


def device_daily_rows(result) -> list[tuple]:
    return rows(result.device_daily, DEVICE_DAILY_COLUMNS)


def visit_rows(result) -> list[tuple]:
    return rows(result.visits, VISIT_COLUMNS)


def device_visit_rows(result) -> list[tuple]:
    return rows(result.device_visits, DEVICE_VISIT_COLUMNS)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def bystanders(n: int) -> list:
    """Return n pings of another device near, but in none of, hot spots A, B and H."""
    return track("bystander", T0, 1, n, *BETWEEN_SPOTS)


# Points are classified one way for a few pings and another for many: rules on polygon
# boundaries must hold either way, so those tests run once more among 2000 other pings.
FEW_OR_MANY_PINGS = pytest.mark.parametrize("n_bystanders", [0, 2000], ids=["few", "many"])


def minutes_by_date(result, column: str = "presence_minutes") -> dict[date, float]:
    return dict(zip(result.daily["date"], result.daily[column], strict=True))


# Rule 1: usable pings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon", "accuracy_m", "usable"),
    [
        pytest.param(*OUTSIDE, None, True, id="no-accuracy-is-usable"),
        pytest.param(*OUTSIDE, 100.0, True, id="accuracy-exactly-100-is-usable"),
        pytest.param(*OUTSIDE, 100.1, False, id="accuracy-100.1-is-not"),
        pytest.param(90.0, 180.0, None, True, id="lat-90-lon-180-in-range"),
        pytest.param(90.5, -0.1, None, False, id="lat-above-90"),
        pytest.param(-91.0, -0.1, None, False, id="lat-below-minus-90"),
        pytest.param(51.5, 180.5, None, False, id="lon-above-180"),
        pytest.param(51.5, -181.0, None, False, id="lon-below-minus-180"),
        pytest.param(0.0, 0.0, None, False, id="null-island"),
        pytest.param(float("nan"), -0.1, None, False, id="lat-nan"),
        pytest.param(51.5, float("inf"), None, False, id="lon-infinite"),
    ],
)
def test_only_usable_pings_take_part(spot_a, lat, lon, accuracy_m, usable):
    # a (in A) at 0 s, m (outside A, or no position) at 60 s, c (in A) at 120 s.
    # m usable: a->m and m->c each have an end outside A -> 0 min, no rows.
    # m unusable: it is skipped, so a->c is the pair: 120 s <= 180 s -> 2.00 min.
    pings = [
        ping("d1", T0, *IN_A),
        raw_ping("d1", at(T0, 60), lat, lon, accuracy_m),
        ping("d1", at(T0, 120), *IN_A),
    ]
    result = dosage(pings, spot_a)
    expected = [] if usable else [("A", DAY, 2.0, 2.0, 1)]
    assert daily_rows(result) == expected
    assert result.counts["pings"] == 3
    assert result.counts["unusable"] == (0 if usable else 1)


@pytest.mark.parametrize(
    ("accuracy_m", "expected"),
    [(100.0, [("A", DAY, 4.0, 4.0, 1)]), (100.1, [])],
)
def test_an_unusable_ping_inside_a_hot_spot_credits_nothing(spot_a, accuracy_m, expected):
    # Three pings in A at 0, 120 and 240 s; the middle one has the given accuracy.
    # Usable: 2 spans of 120 s -> 4.00 min, one visit.
    # Unusable: only 0 -> 240 s remains, a gap over 180 s -> nothing.
    pings = [
        ping("d1", T0, *IN_A),
        ping("d1", at(T0, 120), *IN_A, accuracy_m=accuracy_m),
        ping("d1", at(T0, 240), *IN_A),
    ]
    assert daily_rows(dosage(pings, spot_a)) == expected


def test_inaccurate_pings_alone_credit_nothing_and_give_empty_tables(spot_a):
    result = dosage(track("d1", T0, 60, 5, *IN_A, accuracy_m=150), spot_a)
    for table, columns in [
        (result.daily, DAILY_COLUMNS),
        (result.device_daily, DEVICE_DAILY_COLUMNS),
        (result.visits, VISIT_COLUMNS),
        (result.device_visits, DEVICE_VISIT_COLUMNS),
    ]:
        assert table.empty
        assert set(columns) <= set(table.columns)
    assert result.counts["unusable"] == 5
    assert result.counts["credited_spans"] == 0


# Rule 2: one ping per (device, timestamp) -------------------------------------------


def test_the_same_instant_written_in_other_formats_counts_once(spot_a):
    # 12:00Z, 12:01Z and 12:02Z, each written three ways. Each instant counts once: two
    # spans of 60 s -> 2.00 min, one visit by one device, and 6 of the 9 pings are
    # duplicates (a misread format would make a separate ping and a lower count).
    lat, lon = IN_A
    pings = [
        ping("d1", "2026-01-14T12:00:00Z", lat, lon),
        ping("d1", "2026-01-14T12:00:00+00:00", lat, lon),
        ping("d1", "1768392000", lat, lon),
        ping("d1", "2026-01-14T13:01:00+01:00", lat, lon),
        ping("d1", "2026-01-14T12:01:00Z", lat, lon),
        ping("d1", 1768392060.0, lat, lon),
        ping("d1", 1768392120, lat, lon),
        ping("d1", "2026-01-14T12:02:00.000+00:00", lat, lon),
        ping("d1", "2026-01-14T07:02:00-05:00", lat, lon),
    ]
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, 2.0, 2.0, 1)]
    assert result.counts["duplicates"] == 6
    assert visit_rows(result) == [
        ("A", utc("2026-01-14T12:00Z"), utc("2026-01-14T12:02Z"), DAY, 2.0, 1)
    ]


def test_two_devices_at_the_same_instant_are_not_duplicates(spot_a):
    # d1 and d2 both ping at 0 and 60 s: one span each -> 2.00 officer, 1.00 presence.
    pings = track("d1", T0, 60, 2, *IN_A) + track("d2", T0, 60, 2, *IN_A)
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, 1.0, 2.0, 0)]
    assert result.counts["duplicates"] == 0


# Rule 3: spans between consecutive pings --------------------------------------------


@pytest.mark.parametrize(
    ("gap_s", "params", "expected_minutes"),
    [
        pytest.param(179, {}, 2.98, id="just-under"),  # 179 / 60 = 2.983 -> 2.98
        pytest.param(180, {}, 3.0, id="exactly-max-gap"),
        pytest.param(180.001, {}, None, id="a-millisecond-over"),
        pytest.param(181, {}, None, id="a-second-over"),
        pytest.param(181, {"max_gap_s": 300}, 3.02, id="over-180-with-max-gap-300"),  # 3.017
    ],
)
def test_a_gap_up_to_max_gap_s_is_credited_and_a_longer_one_is_not(
    spot_a, gap_s, params, expected_minutes
):
    pings = [ping("d1", T0, *IN_A), ping("d1", at(T0, gap_s), *IN_A)]
    result = dosage(pings, spot_a, **params)
    if expected_minutes is None:
        assert result.daily.empty
    else:
        assert daily_rows(result) == [("A", DAY, expected_minutes, expected_minutes, 1)]


@pytest.mark.parametrize(
    ("a", "b", "credited"),
    [
        pytest.param((51.5, WEST_A), (SOUTH_A, -0.1), True, id="west-edge-to-south-edge"),
        pytest.param((SOUTH_A, WEST_A), IN_A, True, id="south-west-vertex-to-inside"),
        pytest.param((SOUTH_A, WEST_A), (NORTH_A, EAST_A), True, id="vertex-to-opposite-vertex"),
        pytest.param((51.5, WEST_A), (51.5, WEST_A - 1e-7), False, id="edge-to-just-outside"),
        pytest.param((NORTH_A + 1e-7, -0.1), IN_A, False, id="just-outside-to-inside"),
    ],
)
@FEW_OR_MANY_PINGS
def test_a_polygon_boundary_counts_as_inside(spots_a_b_h, a, b, credited, n_bystanders):
    # Two pings 60 s apart: 1.00 min when both ends are in A (an edge or a vertex counts).
    # (None of these pairs has both ends in B.)
    pings = [ping("d1", T0, *a), ping("d1", at(T0, 60), *b), *bystanders(n_bystanders)]
    expected = [("A", DAY, 1.0, 1.0, 0)] if credited else []
    assert daily_rows(dosage(pings, spots_a_b_h)) == expected


@pytest.mark.parametrize(
    ("positions", "expected_minutes"),
    [
        pytest.param([IN_H_RING, IN_H_RING], 1.0, id="ring-to-ring"),
        pytest.param([IN_H_RING, ON_HOLE_EDGE], 1.0, id="ring-to-hole-edge"),
        pytest.param([IN_H_RING, IN_HOLE], None, id="ring-into-hole"),
        pytest.param([IN_HOLE, IN_HOLE], None, id="within-hole"),
        # ring -> hole -> ring: both spans have an end in the hole -> nothing.
        pytest.param([IN_H_RING, IN_HOLE, IN_H_RING], None, id="through-hole"),
    ],
)
@FEW_OR_MANY_PINGS
def test_a_hole_is_outside_its_hot_spot(spots_a_b_h, positions, expected_minutes, n_bystanders):
    # Pings 60 s apart at the given positions.
    pings = [ping("d1", at(T0, 60 * i), *p) for i, p in enumerate(positions)]
    result = dosage(pings + bystanders(n_bystanders), spots_a_b_h)
    if expected_minutes is None:
        assert result.daily.empty
    else:
        assert daily_rows(result) == [("H", DAY, expected_minutes, expected_minutes, 0)]


def test_overlapping_hot_spots_are_both_credited(spots_a_b):
    # 0, 60, 120 s in A and B; 180, 240 s in A only.
    # A: all 4 spans -> 4.00 min. B: 0->60 and 60->120 only (120->180 ends outside B)
    # -> 2.00 min. Both are visits (240 s and 120 s >= 120 s).
    pings = track("d1", T0, 60, 3, *IN_A_AND_B) + track("d1", at(T0, 180), 60, 2, *IN_A)
    result = dosage(pings, spots_a_b)
    assert daily_rows(result) == [("A", DAY, 4.0, 4.0, 1), ("B", DAY, 2.0, 2.0, 1)]


@pytest.mark.parametrize(
    ("max_speed_kmh", "expected_minutes"),
    [
        pytest.param(None, 1.2, id="off-by-default"),
        pytest.param(33.0, 1.0, id="jump-faster-than-limit"),
        pytest.param(34.0, 1.2, id="jump-within-limit"),
    ],
)
def test_a_jump_faster_than_max_speed_credits_nothing(spot_a, max_speed_kmh, expected_minutes):
    # P at 0 s, Q 0.001 degrees of latitude north at 12 s, Q again at 72 s, all in A.
    # P->Q: 6371.0088 km * pi/180 * 0.001 = 0.1112 km in 12 s = 33.36 km/h.
    # Q->Q: 0 km/h, 60 s. Credited: 12 + 60 s = 1.20 min, or 60 s = 1.00 min when
    # 33.36 km/h is over the limit.
    lat, lon = IN_A
    pings = [
        ping("d1", T0, lat - 0.0005, lon),
        ping("d1", at(T0, 12), lat + 0.0005, lon),
        ping("d1", at(T0, 72), lat + 0.0005, lon),
    ]
    params = {} if max_speed_kmh is None else {"max_speed_kmh": max_speed_kmh}
    result = dosage(pings, spot_a, **params)
    assert daily_rows(result) == [("A", DAY, expected_minutes, expected_minutes, 0)]


# Rule 4: officer minutes and presence minutes -----------------------------------------


@pytest.mark.parametrize(
    ("d2_offset_s", "presence", "visit_end_s"),
    [
        # d1 0..600 s, d2 0..600 s: officer 10 + 10 = 20; union 0..600 -> presence 10.
        pytest.param(0, 10.0, 600, id="together"),
        # d1 0..600 s, d2 300..900 s: officer 20; union 0..900 -> presence 15.
        pytest.param(300, 15.0, 900, id="partly-together"),
        # d1 0..600 s, d2 660..1260 s: officer 20, presence 20; the 60 s break between
        # them is within visit_merge_gap_s, so one visit of 20 min with 2 devices.
        pytest.param(660, 20.0, 1260, id="one-after-the-other"),
    ],
)
def test_officer_minutes_add_up_and_presence_minutes_are_the_union(
    spot_a, d2_offset_s, presence, visit_end_s
):
    # Each device: 11 pings 60 s apart in A -> 10 spans -> 10.00 officer min, one visit.
    pings = track("d1", T0, 60, 11, *IN_A) + track("d2", at(T0, d2_offset_s), 60, 11, *IN_A)
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, presence, 20.0, 1)]
    assert visit_rows(result) == [("A", utc(T0), utc(at(T0, visit_end_s)), DAY, presence, 2)]
    assert device_daily_rows(result) == [("A", "d1", DAY, 10.0, 1), ("A", "d2", DAY, 10.0, 1)]
    assert device_visit_rows(result) == [
        ("A", "d1", utc(T0), utc(at(T0, 600)), DAY, 10.0),
        ("A", "d2", utc(at(T0, d2_offset_s)), utc(at(T0, d2_offset_s + 600)), DAY, 10.0),
    ]


# Rule 5: local days -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Winter, GMT: local midnight is 00:00Z. 23:58:33 -> 00:01:15 is 87 s (1.45 min)
        # before midnight and 75 s (1.25 min) after it.
        pytest.param(
            "2026-01-14T23:58:33Z",
            "2026-01-15T00:01:15Z",
            {date(2026, 1, 14): 1.45, date(2026, 1, 15): 1.25},
            id="winter",
        ),
        # Summer, BST: local midnight is 23:00Z the day before; 00:00Z splits nothing.
        pytest.param(
            "2026-06-30T22:58:33Z",
            "2026-06-30T23:01:15Z",
            {date(2026, 6, 30): 1.45, date(2026, 7, 1): 1.25},
            id="summer",
        ),
        pytest.param(
            "2026-06-30T23:58:33Z",
            "2026-07-01T00:01:15Z",
            {date(2026, 7, 1): 2.7},
            id="summer-utc-midnight-is-not-a-day-boundary",
        ),
        # 2026-03-29, 23 hours: it starts at 00:00Z (GMT) and ends at 23:00Z (BST).
        pytest.param(
            "2026-03-28T23:58:33Z",
            "2026-03-29T00:01:15Z",
            {date(2026, 3, 28): 1.45, date(2026, 3, 29): 1.25},
            id="march-dst-start",
        ),
        pytest.param(
            "2026-03-29T22:58:33Z",
            "2026-03-29T23:01:15Z",
            {date(2026, 3, 29): 1.45, date(2026, 3, 30): 1.25},
            id="march-dst-end",
        ),
        # The clock change itself (01:00Z: 01:00 GMT becomes 02:00 BST) is not a boundary.
        pytest.param(
            "2026-03-29T00:58:33Z",
            "2026-03-29T01:01:15Z",
            {date(2026, 3, 29): 2.7},
            id="march-clock-change",
        ),
        # 2026-10-25, 25 hours: it starts at 23:00Z on the 24th (BST), ends at 00:00Z (GMT).
        pytest.param(
            "2026-10-24T22:58:33Z",
            "2026-10-24T23:01:15Z",
            {date(2026, 10, 24): 1.45, date(2026, 10, 25): 1.25},
            id="october-dst-start",
        ),
        pytest.param(
            "2026-10-25T23:58:33Z",
            "2026-10-26T00:01:15Z",
            {date(2026, 10, 25): 1.45, date(2026, 10, 26): 1.25},
            id="october-dst-end",
        ),
        pytest.param(
            "2026-10-25T00:58:33Z",
            "2026-10-25T01:01:15Z",
            {date(2026, 10, 25): 2.7},
            id="october-clock-change",
        ),
        # The october-dst-start instants written in local time (BST, +01:00).
        pytest.param(
            "2026-10-24T23:58:33+01:00",
            "2026-10-25T00:01:15+01:00",
            {date(2026, 10, 24): 1.45, date(2026, 10, 25): 1.25},
            id="local-offsets",
        ),
    ],
)
def test_a_span_is_split_at_local_midnight_to_the_second(spot_a, start, end, expected):
    # One span of 162 s (2.70 min); it is a visit, dated the day it starts.
    pings = [ping("d1", start, *IN_A), ping("d1", end, *IN_A)]
    result = dosage(pings, spot_a)
    assert minutes_by_date(result) == expected
    assert minutes_by_date(result, "officer_minutes") == expected
    first_day = min(expected)
    assert minutes_by_date(result, "visits") == {d: int(d == first_day) for d in expected}
    assert visit_rows(result) == [("A", utc(start), utc(end), first_day, 2.7, 1)]


@pytest.mark.parametrize(
    ("start", "end", "day"),
    [
        # A span ending exactly at local midnight is all on the day before ...
        ("2026-01-14T23:58:00Z", "2026-01-15T00:00:00Z", date(2026, 1, 14)),
        ("2026-03-29T22:58:00Z", "2026-03-29T23:00:00Z", date(2026, 3, 29)),
        # ... and one starting exactly at local midnight is all on the new day.
        ("2026-01-15T00:00:00Z", "2026-01-15T00:02:00Z", date(2026, 1, 15)),
        ("2026-10-24T23:00:00Z", "2026-10-24T23:02:00Z", date(2026, 10, 25)),
    ],
)
def test_a_span_touching_local_midnight_stays_on_one_day(spot_a, start, end, day):
    # One span of 120 s: 2.00 min and one visit, on one day only.
    pings = [ping("d1", start, *IN_A), ping("d1", end, *IN_A)]
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", day, 2.0, 2.0, 1)]
    assert visit_rows(result) == [("A", utc(start), utc(end), day, 2.0, 1)]


@pytest.mark.parametrize(
    ("first_ping", "hours", "day", "day_minutes"),
    [
        # Pings every 60 s from 23:00 local the day before to 01:00 local the day after:
        # 60 min on the day before, the whole day, 60 min on the day after.
        pytest.param("2026-01-13T23:00:00Z", 26, date(2026, 1, 14), 1440, id="ordinary-day"),
        pytest.param("2026-03-28T23:00:00Z", 25, date(2026, 3, 29), 1380, id="23-hour-day"),
        pytest.param("2026-10-24T22:00:00Z", 27, date(2026, 10, 25), 1500, id="25-hour-day"),
    ],
)
def test_continuous_presence_fills_the_whole_local_day(spot_a, first_ping, hours, day, day_minutes):
    pings = track("d1", first_ping, 60, hours * 60 + 1, *IN_A)
    result = dosage(pings, spot_a)
    before, after = date.fromordinal(day.toordinal() - 1), date.fromordinal(day.toordinal() + 1)
    # One visit for the whole track, dated the day it starts.
    assert daily_rows(result) == [
        ("A", before, 60.0, 60.0, 1),
        ("A", day, float(day_minutes), float(day_minutes), 0),
        ("A", after, 60.0, 60.0, 0),
    ]
    assert visit_rows(result) == [
        ("A", utc(first_ping), utc(at(first_ping, hours * 3600)), before, float(hours * 60), 1)
    ]


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        # 04:58:33Z -> 05:01:15Z is wholly on 2026-01-15 in London (GMT) ...
        ("Europe/London", {date(2026, 1, 15): 2.7}),
        # ... but crosses local midnight (05:00Z, EST = UTC-5) in New York.
        ("America/New_York", {date(2026, 1, 14): 1.45, date(2026, 1, 15): 1.25}),
    ],
)
def test_the_time_zone_parameter_moves_the_day_boundary(spot_a, tz, expected):
    pings = [ping("d1", "2026-01-15T04:58:33Z", *IN_A), ping("d1", "2026-01-15T05:01:15Z", *IN_A)]
    assert minutes_by_date(dosage(pings, spot_a, tz=tz)) == expected


# Rule 6: visits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_break_s", "expected_visits"),
    [
        # In A at 0, 60, 120 s; outside at 150 s; in A at 180, 240, 300 s.
        # Presence 0..120 and 180..300: a 60 s break merges -> one visit 0..300 s of
        # 4.00 min (the presence inside it, not its 5 min extent).
        pytest.param(0, [(0, 300, 4.0)], id="break-exactly-merge-gap"),
        # One second later: a 61 s break splits -> two visits of 120 s, both counted.
        pytest.param(1, [(0, 120, 2.0), (181, 301, 2.0)], id="break-one-second-longer"),
    ],
)
def test_breaks_up_to_visit_merge_gap_do_not_end_a_visit(spot_a, extra_break_s, expected_visits):
    pings = [
        *track("d1", T0, 60, 3, *IN_A),
        ping("d1", at(T0, 150), *OUTSIDE),
        *track("d1", at(T0, 180 + extra_break_s), 60, 3, *IN_A),
    ]
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, 4.0, 4.0, len(expected_visits))]
    assert visit_rows(result) == [
        ("A", utc(at(T0, start)), utc(at(T0, end)), DAY, minutes, 1)
        for start, end, minutes in expected_visits
    ]
    # Per-device visits follow the same rule on the one device's spans.
    assert device_visit_rows(result) == [
        ("A", "d1", utc(at(T0, start)), utc(at(T0, end)), DAY, minutes)
        for start, end, minutes in expected_visits
    ]


@pytest.mark.parametrize(
    ("length_s", "presence", "visits"),
    [
        pytest.param(120, 2.0, 1, id="exactly-min-visit"),
        pytest.param(119, 1.98, 0, id="a-second-short"),  # 1.983 min
        # 2.00 min once rounded, but still short of 120 s.
        pytest.param(119.999, 2.0, 0, id="a-millisecond-short"),
    ],
)
def test_visits_shorter_than_min_visit_s_are_not_counted(spot_a, length_s, presence, visits):
    pings = [ping("d1", T0, *IN_A), ping("d1", at(T0, length_s), *IN_A)]
    result = dosage(pings, spot_a)
    # The presence counts either way; only the visit depends on the length.
    assert daily_rows(result) == [("A", DAY, presence, presence, visits)]
    assert len(result.visits) == visits
    assert device_daily_rows(result) == [("A", "d1", DAY, presence, visits)]
    assert len(result.device_visits) == visits


def test_a_visit_is_as_long_as_its_presence_not_its_extent(spot_a):
    # In A at 0, 59 s; outside at 89 s; in A at 119, 178 s. Presence 0..59 and
    # 119..178: the 60 s break merges them, but 59 + 59 = 118 s < 120 s: no visit,
    # although the run spans 178 s.
    pings = [
        ping("d1", T0, *IN_A),
        ping("d1", at(T0, 59), *IN_A),
        ping("d1", at(T0, 89), *OUTSIDE),
        ping("d1", at(T0, 119), *IN_A),
        ping("d1", at(T0, 178), *IN_A),
    ]
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, 1.97, 1.97, 0)]  # 118 s = 1.967 min
    assert result.visits.empty


@pytest.mark.parametrize(
    ("start", "visit_day", "next_day"),
    [
        # 23:55Z to 00:05Z in winter: 5 min on each day, the visit on the 14th.
        ("2026-01-14T23:55:00Z", date(2026, 1, 14), date(2026, 1, 15)),
        # In summer the same local times are an hour earlier in UTC.
        ("2026-06-30T22:55:00Z", date(2026, 6, 30), date(2026, 7, 1)),
    ],
)
def test_a_visit_across_midnight_belongs_to_the_day_it_starts(spot_a, start, visit_day, next_day):
    pings = track("d1", start, 60, 11, *IN_A)
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [
        ("A", visit_day, 5.0, 5.0, 1),
        ("A", next_day, 5.0, 5.0, 0),
    ]
    assert visit_rows(result) == [("A", utc(start), utc(at(start, 600)), visit_day, 10.0, 1)]
    assert device_daily_rows(result) == [
        ("A", "d1", visit_day, 5.0, 1),
        ("A", "d1", next_day, 5.0, 0),
    ]


def test_per_device_visits_use_each_devices_own_spans(spot_a):
    # d1 in A at 0, 60, 120, 180 s: 3.00 min, a visit of its own.
    # d2 in A at 200, 260 s: 1.00 min, too short for a visit of its own.
    # The hot spot: presence 0..180 and 200..260, a 20 s break -> one visit of 4.00
    # min from 0 to 260 s, with 2 devices.
    pings = track("d1", T0, 60, 4, *IN_A) + track("d2", at(T0, 200), 60, 2, *IN_A)
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, 4.0, 4.0, 1)]
    assert visit_rows(result) == [("A", utc(T0), utc(at(T0, 260)), DAY, 4.0, 2)]
    assert device_daily_rows(result) == [("A", "d1", DAY, 3.0, 1), ("A", "d2", DAY, 1.0, 0)]
    assert device_visit_rows(result) == [("A", "d1", utc(T0), utc(at(T0, 180)), DAY, 3.0)]
    assert result.counts["visits"] == 1
    assert result.counts["device_visits"] == 1


def test_devices_too_short_alone_can_make_a_hot_spot_visit_together(spot_a):
    # d1 in A at 0 and 90 s, d2 at 90 and 180 s: 90 s each, no per-device visit; the
    # hot spot has presence 0..180 s, one visit of 3.00 min by 2 devices.
    pings = [
        ping("d1", T0, *IN_A),
        ping("d1", at(T0, 90), *IN_A),
        ping("d2", at(T0, 90), *IN_A),
        ping("d2", at(T0, 180), *IN_A),
    ]
    result = dosage(pings, spot_a)
    assert daily_rows(result) == [("A", DAY, 3.0, 3.0, 1)]
    assert visit_rows(result) == [("A", utc(T0), utc(at(T0, 180)), DAY, 3.0, 2)]
    assert device_daily_rows(result) == [("A", "d1", DAY, 1.5, 0), ("A", "d2", DAY, 1.5, 0)]
    assert result.device_visits.empty


def test_a_square_hot_spot_built_from_metres_credits_its_centre_not_a_point_beyond():
    # A 150 m cell centred on IN_A; a ping 100 m north of the centre is outside it.
    cell = hot_spot_set(square_feature("cell", *IN_A, size_m=150))
    lat, lon = IN_A
    north_100_m = lat + 100 / 111_320
    pings = [*track("d1", T0, 60, 3, lat, lon), ping("d1", at(T0, 180), north_100_m, lon)]
    # 0 -> 60 -> 120 s at the centre: 2.00 min; 120 -> 180 s ends outside the cell.
    assert daily_rows(dosage(pings, cell)) == [("cell", DAY, 2.0, 2.0, 1)]
