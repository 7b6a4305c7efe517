"""The dosage engine: docs/dosage.md, rule by rule, vectorised over all pings.

Times are integer microseconds since the epoch (UTC) throughout, so sums are exact and
the result never depends on the order of the input. Minutes are rounded to 2 decimals
(half up) only when the tables are built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.pings import ACCURACY_M, DEVICE_ID, LAT, LON, TIMESTAMP
from tracker.foundation import settings
from tracker.foundation.clock import (
    US_PER_HOUR,
    US_PER_MINUTE,
    US_PER_S,
    local_date,
    local_midnight_us,
)

EARTH_RADIUS_KM = 6371.0088

# How a span between two pings is credited (rule 3): to the hot spots containing both
# pings, or, interpolating the straight path between them, the time of the part inside.
ENDPOINTS = "endpoints"
INTERPOLATE = "interpolate"
CROSSING_RULES = (ENDPOINTS, INTERPOLATE)

HOTSPOT_ID = "hotspot_id"
DATE = "date"
PRESENCE_MINUTES = "presence_minutes"
OFFICER_MINUTES = "officer_minutes"
VISITS = "visits"
DAILY_COLUMNS = [HOTSPOT_ID, DATE, PRESENCE_MINUTES, OFFICER_MINUTES, VISITS]
DEVICE_DAILY_COLUMNS = [HOTSPOT_ID, DEVICE_ID, DATE, OFFICER_MINUTES, VISITS]
VISIT_COLUMNS = [HOTSPOT_ID, "start", "end", DATE, "minutes", "devices"]
DEVICE_VISIT_COLUMNS = [HOTSPOT_ID, DEVICE_ID, "start", "end", DATE, "minutes"]


@dataclass(frozen=True)
class DosageParams:
    """The parameters of docs/dosage.md, with its defaults."""

    max_gap_s: float = 180
    max_accuracy_m: float = 100
    visit_merge_gap_s: float = 60
    min_visit_s: float = 120
    max_speed_kmh: float | None = None
    tz: str = "Europe/London"
    crossing_rule: str = INTERPOLATE
    edge_tolerance_m: float = 30.0

    def __post_init__(self) -> None:
        names = ("max_gap_s", "max_accuracy_m", "visit_merge_gap_s", "min_visit_s")
        for name in (*names, "edge_tolerance_m"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.crossing_rule not in CROSSING_RULES:
            raise ValueError(
                f"crossing_rule must be one of {', '.join(CROSSING_RULES)}, "
                f"not {self.crossing_rule!r}"
            )
        if self.max_speed_kmh is not None and not self.max_speed_kmh > 0:
            raise ValueError(f"max_speed_kmh must be > 0 or unset, not {self.max_speed_kmh!r}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.tz!r} (use an IANA name)") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def configured_params() -> DosageParams:
    """Return the dosage parameters of the deployment (TRACKER_ settings), or SettingsError."""
    try:
        return DosageParams(
            max_gap_s=settings.get("TRACKER_MAX_GAP_S"),
            max_accuracy_m=settings.get("TRACKER_MAX_ACCURACY_M"),
            visit_merge_gap_s=settings.get("TRACKER_VISIT_MERGE_GAP_S"),
            min_visit_s=settings.get("TRACKER_MIN_VISIT_S"),
            max_speed_kmh=settings.get("TRACKER_MAX_SPEED_KMH"),
            tz=settings.get("TRACKER_TZ"),
            crossing_rule=settings.get("TRACKER_CROSSING_RULE"),
            edge_tolerance_m=settings.get("TRACKER_EDGE_TOLERANCE_M"),
        )
    except ValueError as exc:  # SettingsError is one too
        raise settings.SettingsError(f"configuration: {exc}") from exc


@dataclass
class DosageResult:
    """Dosage tables: per hot spot per day, per device, and the visits behind them."""

    daily: pd.DataFrame
    device_daily: pd.DataFrame
    visits: pd.DataFrame
    device_visits: pd.DataFrame
    hourly: pd.DataFrame  # presence per hot spot and local clock hour
    counts: dict[str, int] = field(default_factory=dict)


SPAN_COLUMNS = [HOTSPOT_ID, DEVICE_ID, "start_us", "end_us"]


def compute_dosage(
    pings: pd.DataFrame, hot_spots: HotSpotSet, params: DosageParams | None = None
) -> DosageResult:
    """Return dosage for pings (columns of `tracker.pings.PING_COLUMNS`) in the hot spots."""
    params = params or DosageParams()
    spans, counts = credited_spans(pings, hot_spots, params)
    result = dosage_from_spans(spans, params)
    result.counts = {**counts, **result.counts}
    return result


@dataclass(frozen=True)
class _CodedSpans:
    """Spans with hot spots and devices as sorted integer codes, and the local days they cover."""

    hot_spot: np.ndarray
    device: np.ndarray
    ids: np.ndarray  # hot spot id of each code
    devices: np.ndarray  # device id of each code
    start_us: np.ndarray
    end_us: np.ndarray
    days: LocalBins

    @classmethod
    def of(cls, spans: pd.DataFrame, params: DosageParams) -> _CodedSpans:
        hot_spot, ids = pd.factorize(spans[HOTSPOT_ID].to_numpy(dtype=object), sort=True)
        device, devices = pd.factorize(spans[DEVICE_ID].to_numpy(dtype=object), sort=True)
        start_us = spans["start_us"].to_numpy(dtype=np.int64)
        end_us = spans["end_us"].to_numpy(dtype=np.int64)
        return cls(
            hot_spot.astype(np.int64),
            device.astype(np.int64),
            np.asarray(ids, dtype=object),
            np.asarray(devices, dtype=object),
            start_us,
            end_us,
            LocalBins.days(start_us, end_us, params.zone),
        )

    @property
    def n_devices(self) -> int:
        return max(len(self.devices), 1)

    @property
    def device_key(self) -> np.ndarray:
        """One code per (hot spot, device) pair."""
        return self.hot_spot * self.n_devices + self.device


def dosage_from_spans(spans: pd.DataFrame, params: DosageParams) -> DosageResult:
    """Apply rules 4-6 to credited spans (columns SPAN_COLUMNS, times in UTC microseconds).

    Tables carry exact microsecond columns (`*_us`) beside the rounded minutes.
    """
    coded = _CodedSpans.of(spans, params)
    ids, days = coded.ids, coded.days

    # Rule 4: presence is the union of all devices' spans; officer time is their sum.
    union = _merge_runs(coded.hot_spot, coded.start_us, coded.end_us, gap_us=0)
    union_hot_spot = coded.hot_spot[union.first]
    visits = _visits(
        union_hot_spot, union.start_us, union.end_us, union.end_us - union.start_us, params, days
    )
    presence = days.split_sum(union_hot_spot, union.start_us, union.end_us)
    officer = days.split_sum(coded.hot_spot, coded.start_us, coded.end_us)
    daily = _daily_table(presence, officer, visits.count_by_day(), ids, days)
    hourly = _hourly_table(union_hot_spot, union.start_us, union.end_us, ids, params.zone)
    device_daily, device_runs = _device_figures(coded, params)

    visit_table = _visit_table(visits, ids[visits.group], days)
    # The devices behind each hot spot visit: each span maps to its union interval, and
    # that interval to the visit containing it.
    span_visit = visits.run_of_member[union.run_of_member]
    visit_table["devices"] = _devices_per_run(span_visit, coded.device, len(visit_table))
    visit_table = visit_table.sort_values([HOTSPOT_ID, "start"]).reset_index(drop=True)

    n_devices = coded.n_devices
    device_visit_table = _visit_table(device_runs, ids[device_runs.group // n_devices], days)
    device_visit_table.insert(1, DEVICE_ID, coded.devices[device_runs.group % n_devices])
    device_visit_table = device_visit_table.sort_values([HOTSPOT_ID, DEVICE_ID, "start"])
    device_visit_table = device_visit_table.reset_index(drop=True)
    counts = {"visits": len(visit_table), "device_visits": len(device_visit_table)}
    return DosageResult(daily, device_daily, visit_table, device_visit_table, hourly, counts)


def presence_from_spans(
    spans: pd.DataFrame, params: DosageParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return presence alone (rules 4-5), as `dosage_from_spans` gives it in `daily` and
    `hourly`: per hot spot and local day (hotspot_id, date, presence_us) and per local clock
    hour (hotspot_id, date, hour, presence_us). Devices are not needed: presence is the union."""
    hot_spot, ids = pd.factorize(spans[HOTSPOT_ID].to_numpy(dtype=object), sort=True)
    hot_spot, ids = hot_spot.astype(np.int64), np.asarray(ids, dtype=object)
    start_us = spans["start_us"].to_numpy(dtype=np.int64)
    end_us = spans["end_us"].to_numpy(dtype=np.int64)
    union = _merge_runs(hot_spot, start_us, end_us, gap_us=0)
    group = hot_spot[union.first]
    days = LocalBins.days(union.start_us, union.end_us, params.zone)
    presence = days.split_sum(group, union.start_us, union.end_us)
    presence = presence[presence > 0]
    code, day = _index_arrays(presence.to_frame())
    daily = pd.DataFrame(
        {
            HOTSPOT_ID: ids[code],
            DATE: [days.labels[d] for d in day],
            "presence_us": presence.to_numpy(dtype=np.int64),
        }
    )
    return daily, _hourly_table(group, union.start_us, union.end_us, ids, params.zone)


def device_daily_from_spans(spans: pd.DataFrame, params: DosageParams) -> pd.DataFrame:
    """Return `dosage_from_spans(spans, params).device_daily` without the hot spot tables."""
    return _device_figures(_CodedSpans.of(spans, params), params)[0]


def _device_figures(coded: _CodedSpans, params: DosageParams) -> tuple[pd.DataFrame, _Runs]:
    """Officer time and visits per device (rule 6 on one device's spans), and the visits."""
    key = coded.device_key
    runs = _visits(
        key, coded.start_us, coded.end_us, coded.end_us - coded.start_us, params, coded.days
    )
    officer = coded.days.split_sum(key, coded.start_us, coded.end_us)
    table = _device_daily_table(officer, runs.count_by_day(), coded.ids, coded.devices, coded.days)
    return table, runs


def credited_spans(
    pings: pd.DataFrame, hot_spots: HotSpotSet, params: DosageParams
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply rules 1-3: return the credited spans (SPAN_COLUMNS) and counts of pings."""
    lat = pings[LAT].to_numpy(dtype=float)
    lon = pings[LON].to_numpy(dtype=float)
    accuracy = np.full(len(lat), np.nan)
    if ACCURACY_M in pings:
        accuracy = pings[ACCURACY_M].to_numpy(dtype=float)
    t_us = timestamps_us(pings[TIMESTAMP])

    # Rule 1: usable pings.
    in_range = (np.abs(lat) <= 90) & (np.abs(lon) <= 180)  # False for NaN too
    usable = in_range & ~((lat == 0) & (lon == 0)) & ~(accuracy > params.max_accuracy_m)
    codes, devices = pd.factorize(pings[DEVICE_ID].to_numpy(dtype=object), sort=True)
    devices = np.asarray(devices, dtype=object)
    keep = np.flatnonzero(usable)
    device, t_us, lat, lon = codes[keep], t_us[keep], lat[keep], lon[keep]

    # Rule 2: order per device; equal (device, timestamp) count once. The position breaks
    # ties so that which duplicate survives never depends on input order.
    order = _lex_order(device, t_us, lat, lon)
    device, t_us, lat, lon = device[order], t_us[order], lat[order], lon[order]
    first = np.ones(len(device), dtype=bool)
    first[1:] = (device[1:] != device[:-1]) | (t_us[1:] != t_us[:-1])
    device, t_us, lat, lon = device[first], t_us[first], lat[first], lon[first]

    # Rule 3: a pair a -> b of one device with 0 < dt <= max_gap_s credits every hot
    # spot containing both ends.
    dt_us = t_us[1:] - t_us[:-1]
    pair_ok = (device[1:] == device[:-1]) & (dt_us > 0) & (dt_us <= params.max_gap_s * US_PER_S)
    if params.max_speed_kmh is not None:
        km = great_circle_km(lat[:-1], lon[:-1], lat[1:], lon[1:])
        hours = np.maximum(dt_us, 1) / US_PER_HOUR
        pair_ok &= km / hours <= params.max_speed_kmh
    point, hot_spot = hot_spots.classify(lon, lat)
    if params.crossing_rule == INTERPOLATE:
        # A brief step just outside, as GPS error near an edge makes, is no exit.
        stayed = _stayed(hot_spots, point, hot_spot, pair_ok, t_us, lon, lat, params)
        credited = _interpolated(hot_spots, point, hot_spot, pair_ok, t_us, lon, lat, stayed)
    else:
        credited = _between_endpoints(hot_spots, point, hot_spot, pair_ok, t_us)
    spot, pair_start, start_us, end_us = credited
    ids = np.asarray(hot_spots.ids, dtype=object)
    spans = pd.DataFrame(
        {
            HOTSPOT_ID: ids[spot],
            DEVICE_ID: devices[device[pair_start]],
            "start_us": start_us,
            "end_us": end_us,
        },
        columns=SPAN_COLUMNS,
    )
    counts = {
        "pings": len(usable),
        "unusable": int(len(usable) - usable.sum()),
        "duplicates": int(len(first) - first.sum()),
        "credited_spans": len(spans),
    }
    return spans, counts


def _between_endpoints(hot_spots, point, hot_spot, pair_ok, t_us):
    """Rule 3, endpoints: each pair a -> b credits [a.t, b.t] to every hot spot containing
    both pings. Returns (hot spot, a, start_us, end_us) per credited span."""
    n_hot_spots = max(len(hot_spots), 1)
    membership = point.astype(np.int64) * n_hot_spots + hot_spot  # sorted ascending
    starts = np.zeros(len(t_us), dtype=bool)
    starts[:-1] = pair_ok
    candidate = starts[point]
    wanted = (point[candidate].astype(np.int64) + 1) * n_hot_spots + hot_spot[candidate]
    hit = _is_member(membership, wanted)
    a = point[candidate][hit]
    return hot_spot[candidate][hit], a, t_us[a], t_us[a + 1]


def _stayed(hot_spots, point, hot_spot, pair_ok, t_us, lon, lat, params):
    """Rule 4's edge tolerance: return the sorted codes (a * n_hot_spots + hot spot) of the
    pairs a -> a + 1 credited whole because the device stayed: two of its pings inside the
    hot spot, at most max_gap_s apart, with every ping between them (one or more) outside it
    but within edge_tolerance_m, and each pair between them usable (pair_ok)."""
    n_hot_spots = max(len(hot_spots), 1)
    if not params.edge_tolerance_m or not len(t_us):
        return np.empty(0, dtype=np.int64)
    near_point, near_spot = hot_spots.near(lon, lat, params.edge_tolerance_m)
    p = np.concatenate([point, near_point])
    s = np.concatenate([hot_spot, near_spot])
    inside = np.concatenate([np.ones(len(point), bool), np.zeros(len(near_point), bool)])
    order = np.lexsort((p, s))
    p, s, inside = p[order], s[order], inside[order]
    # A chain: successive pings of one device, each pair usable, all inside or near one
    # hot spot. Every near ping between two inside pings of its chain is bridged.
    ok = np.append(pair_ok, False)
    link = (s[1:] == s[:-1]) & (p[1:] == p[:-1] + 1) & ok[p[:-1]]
    chain = np.cumsum(np.concatenate([[True], ~link]))
    entry = np.arange(len(p))
    before = np.maximum.accumulate(np.where(inside, entry, -1))
    after = np.minimum.accumulate(np.where(inside, entry, len(p))[::-1])[::-1]
    k = np.flatnonzero(~inside & (before >= 0) & (after < len(p)))
    i, j = before[k], after[k]
    bridged = k[
        (chain[i] == chain[k])
        & (chain[j] == chain[k])
        & (t_us[p[j]] - t_us[p[i]] <= params.max_gap_s * US_PER_S)
    ]
    code = p[bridged].astype(np.int64) * n_hot_spots + s[bridged]
    return np.unique(np.concatenate([code - n_hot_spots, code]))


def _interpolated(hot_spots, point, hot_spot, pair_ok, t_us, lon, lat, stayed):
    """Rule 3, interpolate: the device is taken to move straight and steadily from a to b;
    each hot spot is credited the time of the parts of that path inside it (edges inside,
    holes outside), whether a, b, both or neither lie in it; pairs in `stayed` (the edge
    tolerance) are credited whole. Returns (hot spot, a, start_us, end_us) per credited span, times
    rounded to the microsecond."""
    a = np.flatnonzero(pair_ok)
    b = a + 1
    segment, spot = hot_spots.segment_candidates(lon[a], lat[a], lon[b], lat[b])
    a, b = a[segment], b[segment]
    n_hot_spots = max(len(hot_spots), 1)
    unstayed = ~_is_member(stayed, a.astype(np.int64) * n_hot_spots + spot)
    a, b, spot = a[unstayed], b[unstayed], spot[unstayed]
    membership = point.astype(np.int64) * n_hot_spots + hot_spot  # sorted ascending
    in_a = _is_member(membership, a.astype(np.int64) * n_hot_spots + spot)
    in_b = _is_member(membership, b.astype(np.int64) * n_hot_spots + spot)
    still = (lon[a] == lon[b]) & (lat[a] == lat[b])
    # Both ends in a convex hot spot (or a device standing still in one): the whole span,
    # with no geometry. Anything else that may meet the hot spot is worked out exactly.
    whole = in_a & in_b & (hot_spots.convex[spot] | still)
    part = ~whole & ~still
    row, f_start, f_end = hot_spots.inside_fractions(
        lon[a[part]], lat[a[part]], lon[b[part]], lat[b[part]], spot[part]
    )
    pa = a[part][row]
    dt = t_us[pa + 1] - t_us[pa]
    start = t_us[pa] + np.rint(f_start * dt).astype(np.int64)
    end = t_us[pa] + np.rint(f_end * dt).astype(np.int64)
    kept = end > start
    stayed_a, stayed_spot = np.divmod(stayed, n_hot_spots)
    return (
        np.concatenate([spot[whole], spot[part][row][kept], stayed_spot]),
        np.concatenate([a[whole], pa[kept], stayed_a]),
        np.concatenate([t_us[a[whole]], start[kept], t_us[stayed_a]]),
        np.concatenate([t_us[b[whole]], end[kept], t_us[stayed_a + 1]]),
    )


def _is_member(membership: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Return, per wanted (point, hot spot) code, whether the sorted codes contain it."""
    if not len(membership):
        return np.zeros(len(wanted), dtype=bool)
    found = np.minimum(np.searchsorted(membership, wanted), len(membership) - 1)
    return membership[found] == wanted


def timestamps_us(timestamps: pd.Series) -> np.ndarray:
    """Return UTC microseconds since the epoch for a series of aware timestamps."""
    utc = pd.to_datetime(timestamps, utc=True)
    return utc.dt.as_unit("us").astype("int64").to_numpy()


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Return haversine distances in kilometres between arrays of points in degrees."""
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


@dataclass(frozen=True)
class LocalBins:
    """Consecutive local periods (days or hours): their labels and UTC starts in microseconds.

    Built with a spare period on each side of the data, so every instant of the data has a
    period and a next period.
    """

    labels: tuple
    starts_us: np.ndarray

    @classmethod
    def days(cls, start_us: np.ndarray, end_us: np.ndarray, zone: ZoneInfo) -> LocalBins:
        """Return the local days from the day before the first start to after the last end."""
        dates = _date_range(start_us, end_us, zone)
        return cls(dates, np.array([local_midnight_us(d, zone) for d in dates], dtype=np.int64))

    @classmethod
    def hours(cls, start_us: np.ndarray, end_us: np.ndarray, zone: ZoneInfo) -> LocalBins:
        """Return local clock hours labelled (date, hour); a repeated hour appears twice."""
        dates = _date_range(start_us, end_us, zone)
        if not dates:
            return cls((), np.zeros(0, dtype=np.int64))
        # Scan quarter hours in UTC: zone offsets are multiples of 15 minutes, and scanning
        # handles skipped and repeated hours on DST days without special cases.
        quarter = 15 * 60
        first = local_midnight_us(dates[0], zone) // US_PER_S
        last = local_midnight_us(dates[-1], zone) // US_PER_S
        labels, starts = [], []
        for t in range(first, last + 1, quarter):
            local = datetime.fromtimestamp(t, tz=zone)
            if local.minute == 0:
                labels.append((local.date(), local.hour))
                starts.append(t * US_PER_S)
        return cls(tuple(labels), np.array(starts, dtype=np.int64))

    def bin_of(self, t_us: np.ndarray) -> np.ndarray:
        """Return the index of the period each instant falls in."""
        return np.searchsorted(self.starts_us, t_us, side="right") - 1

    def split_sum(self, group: np.ndarray, start_us: np.ndarray, end_us: np.ndarray) -> pd.Series:
        """Split intervals at period starts (rule 5); return microseconds per (group, period)."""
        first = self.bin_of(start_us)
        # An interval ending exactly at a boundary has nothing in the next period.
        last = np.searchsorted(self.starts_us, end_us, side="left") - 1
        pieces = np.maximum(last - first + 1, 1)
        row = np.repeat(np.arange(len(start_us)), pieces)
        period = first[row] + (np.arange(len(row)) - np.repeat(np.cumsum(pieces) - pieces, pieces))
        lo = np.maximum(start_us[row], self.starts_us[period])
        hi = np.minimum(end_us[row], self.starts_us[period + 1])
        frame = pd.DataFrame({"group": group[row], "period": period, "us": hi - lo})
        return frame.groupby(["group", "period"], sort=True)["us"].sum()


def _date_range(start_us: np.ndarray, end_us: np.ndarray, zone: ZoneInfo) -> tuple[date, ...]:
    if not len(start_us):
        return ()
    first = local_date(int(start_us.min()), zone) - timedelta(days=1)
    last = local_date(int(end_us.max()), zone) + timedelta(days=1)
    return tuple(first + timedelta(days=i) for i in range((last - first).days + 1))


@dataclass(frozen=True)
class _Runs:
    """Runs of intervals merged per group: the first member index of each run and more."""

    first: np.ndarray
    group: np.ndarray
    start_us: np.ndarray
    end_us: np.ndarray
    covered_us: np.ndarray
    run_of_member: np.ndarray
    day: np.ndarray | None = None

    def count_by_day(self) -> pd.Series:
        return (
            pd.Series(1, index=pd.MultiIndex.from_arrays([self.group, self.day]))
            .groupby(level=[0, 1], sort=True)
            .sum()
        )


def _merge_runs(
    group: np.ndarray,
    start_us: np.ndarray,
    end_us: np.ndarray,
    gap_us: float,
    covered_us: np.ndarray | None = None,
) -> _Runs:
    """Merge intervals of each group into runs where no break exceeds gap_us.

    The input is sorted here by (group, start); `run_of_member` maps each input
    interval (in input order) to its run. A run's covered time is the sum of its members'
    `covered_us` (members must then be disjoint), defaulting to the run's length.
    """
    order = _lex_order(group, start_us, end_us)
    g, s, e = group[order], start_us[order], end_us[order]
    if not len(g):
        empty = np.zeros(0, dtype=np.int64)
        return _Runs(empty, empty, empty, empty, empty, empty)
    reach = pd.Series(e).groupby(g).cummax().to_numpy()
    new = np.ones(len(g), dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (s[1:] - reach[:-1] > gap_us)
    first = np.flatnonzero(new)
    run_sorted = np.cumsum(new) - 1
    run_of_member = np.empty(len(g), dtype=np.int64)
    run_of_member[order] = run_sorted
    run_end = np.maximum.reduceat(e, first)
    covered = (
        run_end - s[first] if covered_us is None else np.add.reduceat(covered_us[order], first)
    )
    return _Runs(order[first], g[first], s[first], run_end, covered, run_of_member)


def _visits(group, start_us, end_us, covered_us, params: DosageParams, days: LocalBins) -> _Runs:
    """Rule 6: runs with breaks <= visit_merge_gap_s, kept when >= min_visit_s of presence."""
    runs = _merge_runs(group, start_us, end_us, params.visit_merge_gap_s * US_PER_S, covered_us)
    long_enough = runs.covered_us >= params.min_visit_s * US_PER_S
    # Renumber the kept runs; members of dropped runs map to -1.
    renumber = np.full(len(long_enough), -1, dtype=np.int64)
    renumber[long_enough] = np.arange(int(long_enough.sum()))
    return _Runs(
        runs.first[long_enough],
        runs.group[long_enough],
        runs.start_us[long_enough],
        runs.end_us[long_enough],
        runs.covered_us[long_enough],
        renumber[runs.run_of_member],
        days.bin_of(runs.start_us[long_enough]),
    )


def rounded_minutes(us) -> np.ndarray:
    """Return minutes rounded half up to 2 decimals, computed exactly from microseconds."""
    hundredths = (np.asarray(us, dtype=np.int64) + US_PER_MINUTE // 200) // (US_PER_MINUTE // 100)
    return hundredths / 100


def _daily_table(presence, officer, visits, ids, days: LocalBins) -> pd.DataFrame:
    table = pd.concat(
        {PRESENCE_MINUTES: presence, OFFICER_MINUTES: officer, VISITS: visits}, axis=1
    ).fillna(0)
    table = table[(table[[PRESENCE_MINUTES, OFFICER_MINUTES, VISITS]] > 0).any(axis=1)]
    group, day = _index_arrays(table)
    frame = pd.DataFrame(
        {
            HOTSPOT_ID: ids[group],
            DATE: [days.labels[d] for d in day],
            PRESENCE_MINUTES: rounded_minutes(table[PRESENCE_MINUTES].to_numpy()),
            OFFICER_MINUTES: rounded_minutes(table[OFFICER_MINUTES].to_numpy()),
            VISITS: table[VISITS].to_numpy(dtype=np.int64),
            "presence_us": table[PRESENCE_MINUTES].to_numpy(dtype=np.int64),
            "officer_us": table[OFFICER_MINUTES].to_numpy(dtype=np.int64),
        }
    )
    return frame.sort_values([HOTSPOT_ID, DATE], kind="stable").reset_index(drop=True)


def _hourly_table(hot_spot, start_us, end_us, ids, zone: ZoneInfo) -> pd.DataFrame:
    hours = LocalBins.hours(start_us, end_us, zone)
    presence = hours.split_sum(hot_spot, start_us, end_us)
    presence = presence[presence > 0]
    group, period = _index_arrays(presence.to_frame())
    labels = [hours.labels[p] for p in period]
    frame = pd.DataFrame(
        {
            HOTSPOT_ID: ids[group],
            DATE: [label[0] for label in labels],
            "hour": np.array([label[1] for label in labels], dtype=np.int64),
            "presence_us": presence.to_numpy(dtype=np.int64),
        }
    )
    # A repeated clock hour (the autumn DST change) is one row: its two halves summed.
    frame = frame.groupby([HOTSPOT_ID, DATE, "hour"], as_index=False, sort=True)["presence_us"]
    return frame.sum()


def _device_daily_table(officer, visits, ids, devices, days: LocalBins) -> pd.DataFrame:
    table = pd.concat({OFFICER_MINUTES: officer, VISITS: visits}, axis=1).fillna(0)
    table = table[(table[OFFICER_MINUTES] > 0) | (table[VISITS] > 0)]
    key, day = _index_arrays(table)
    n_devices = max(len(devices), 1)
    frame = pd.DataFrame(
        {
            HOTSPOT_ID: ids[key // n_devices],
            DEVICE_ID: devices[key % n_devices],
            DATE: [days.labels[d] for d in day],
            OFFICER_MINUTES: rounded_minutes(table[OFFICER_MINUTES].to_numpy()),
            VISITS: table[VISITS].to_numpy(dtype=np.int64),
            "officer_us": table[OFFICER_MINUTES].to_numpy(dtype=np.int64),
        }
    )
    return frame.sort_values([HOTSPOT_ID, DEVICE_ID, DATE], kind="stable").reset_index(drop=True)


def _index_arrays(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if not len(table):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return (
        table.index.get_level_values(0).to_numpy(np.int64),
        table.index.get_level_values(1).to_numpy(np.int64),
    )


def _visit_table(runs: _Runs, hot_spot_ids: np.ndarray, days: LocalBins) -> pd.DataFrame:
    return pd.DataFrame(
        {
            HOTSPOT_ID: hot_spot_ids,
            "start": pd.to_datetime(runs.start_us, unit="us", utc=True),
            "end": pd.to_datetime(runs.end_us, unit="us", utc=True),
            DATE: [days.labels[d] for d in runs.day],
            "minutes": rounded_minutes(runs.covered_us),
            "start_us": runs.start_us,
            "end_us": runs.end_us,
            "presence_us": runs.covered_us,
        }
    )


def _devices_per_run(member_run: np.ndarray, member_device: np.ndarray, n_runs: int) -> np.ndarray:
    """Return how many distinct devices have a member interval in each run."""
    in_run = member_run >= 0
    n_devices = int(member_device.max()) + 1 if len(member_device) else 1
    pairs = np.unique(member_run[in_run] * n_devices + member_device[in_run])
    return np.bincount(pairs // n_devices, minlength=n_runs)


def _lex_order(major: np.ndarray, minor: np.ndarray, *ties: np.ndarray) -> np.ndarray:
    """Return the permutation of np.lexsort((*reversed(ties), minor, major)).

    One argsort of a combined int64 key is several times faster than lexsort; only runs
    of equal keys are then ordered by the tie-breakers (and by index, as lexsort does).
    """
    n = len(major)
    if not n:
        return np.zeros(0, dtype=np.intp)
    lo_major, lo_minor = int(major.min()), int(minor.min())
    span = int(minor.max()) - lo_minor + 1
    if (int(major.max()) - lo_major + 1) * span >= 2**62:
        return np.lexsort((*reversed(ties), minor, major))
    key = (major.astype(np.int64) - lo_major) * span + (minor.astype(np.int64) - lo_minor)
    order = np.argsort(key)
    ordered = key[order]
    same = ordered[1:] == ordered[:-1]
    if same.any():
        tie = np.zeros(n, dtype=bool)
        tie[1:] |= same
        tie[:-1] |= same
        at = np.flatnonzero(tie)
        sub = order[at]
        order[at] = sub[np.lexsort((sub, *(t[sub] for t in reversed(ties)), key[sub]))]
    return order
