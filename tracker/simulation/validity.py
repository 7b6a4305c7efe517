"""The measurement-validity study: simulated officers' true dosage against what the dosage
engine measures from their pings, per ping interval, crediting rule (with its edge
tolerance) and max_gap_s.

For each seed, officers' true paths give the true figures (tracker.simulation.truth);
each ping interval gives the pings a device would send (tracker.simulation.gps), and each
rule, edge tolerance and max_gap_s the figures the real engine computes from them. Errors
are compared per hot spot and day (only hot spot-days with any true or measured time) and
in total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from tracker.dosage.engine import (
    CROSSING_RULES,
    DATE,
    HOTSPOT_ID,
    INTERPOLATE,
    DosageParams,
    compute_dosage,
)
from tracker.dosage.geofence import HotSpotSet
from tracker.simulation.gps import GpsErrorModel, sample_pings
from tracker.simulation.truth import simulate_paths, true_dosage

FIGURES = ("presence_us", "officer_us", "visits")
SIZE_CLASSES = ("small", "medium", "large")  # hot spot area terciles
START = datetime(2026, 6, 1, tzinfo=ZoneInfo("Europe/London"))
SUMMARY_COLUMNS = [
    "gps",
    "interval_s",
    "crossing_rule",
    "edge_tolerance_m",
    "max_gap_s",
    "figure",
    "size",
    "true_total",
    "measured_total",
    "bias_pct",
    "spread_pct",
    "p10_pct",
    "p90_pct",
    "hot_spot_days",
]


@dataclass(frozen=True)
class StudyDesign:
    """What the study simulates and which measurements it compares."""

    intervals_s: Sequence[float] = (5, 10, 30, 60, 120)
    max_gaps_s: Sequence[float] = (60, 120, 180, 300, 600)
    rules: Sequence[str] = CROSSING_RULES
    tolerances_m: Sequence[float] = (0.0, 30.0)  # edge tolerances of the interpolate rule
    seeds: Sequence[int] = (1, 2, 3)
    officers: int = 12
    days: int = 3
    start: datetime = START
    base: DosageParams = field(default_factory=DosageParams)
    models: tuple[tuple[str, GpsErrorModel], ...] = (
        ("exact", GpsErrorModel.exact()),
        ("documented", GpsErrorModel()),
        # Each part of the documented model alone, to see where its error comes from.
        ("noise only", GpsErrorModel.only("noise")),
        ("outliers only", GpsErrorModel.only("outliers")),
        ("gaps only", GpsErrorModel.only("gaps")),
    )


def size_classes(hot_spots: HotSpotSet) -> dict[str, str]:
    """Return each hot spot's size class: the tercile of its area within the set."""
    areas = pd.Series({h.id: h.geometry.area for h in hot_spots})
    ranks = areas.rank(method="first", pct=True)
    return {h: SIZE_CLASSES[min(int(r * 3 - 1e-9), 2)] for h, r in ranks.items()}


def measurements(hot_spots: HotSpotSet, design: StudyDesign) -> pd.DataFrame:
    """Return true and measured figures per configuration, seed, hot spot and day."""
    frames = []
    for seed in design.seeds:
        paths = simulate_paths(hot_spots, design.officers, design.days, design.start, seed)
        truth = _figures(true_dosage(paths, hot_spots, design.base).daily)
        for gps, model in design.models:
            for interval in design.intervals_s:
                pings = sample_pings(paths, hot_spots, interval, model, seed)
                for rule, tolerance, max_gap in _variants(design, interval):
                    params = replace(
                        design.base,
                        crossing_rule=rule,
                        edge_tolerance_m=tolerance,
                        max_gap_s=max_gap,
                    )
                    measured = _figures(compute_dosage(pings, hot_spots, params).daily)
                    both = truth.merge(
                        measured,
                        how="outer",
                        left_index=True,
                        right_index=True,
                        suffixes=("", "_measured"),
                    ).fillna(0)
                    both = both.reset_index()
                    both["gps"], both["interval_s"], both["seed"] = gps, interval, seed
                    both["crossing_rule"], both["max_gap_s"] = rule, max_gap
                    both["edge_tolerance_m"] = tolerance
                    frames.append(both)
    return pd.concat(frames, ignore_index=True)


def _variants(design: StudyDesign, interval: float):
    """(rule, edge tolerance, max_gap_s) to measure; the endpoint rule has no tolerance."""
    for rule in design.rules:
        for tolerance in design.tolerances_m if rule == INTERPOLATE else (0.0,):
            for max_gap in design.max_gaps_s:
                if max_gap >= interval:  # else no two pings would ever be close enough
                    yield rule, tolerance, max_gap


def rule_label(rule: str, tolerance: float) -> str:
    """How a crediting rule is named in tables and charts: "interpolate, 30 m"."""
    return f"{rule}, {tolerance:g} m" if rule == INTERPOLATE else rule


def _figures(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.set_index([HOTSPOT_ID, DATE])[list(FIGURES)].astype(float)


def summarise(rows: pd.DataFrame, sizes: dict[str, str]) -> pd.DataFrame:
    """Return bias and spread per configuration and figure, for all hot spots and per size.

    bias_pct is the aggregate error, 100 x (measured total / true total - 1); spread_pct
    the standard deviation, and p10/p90 the 10th and 90th percentiles, of the relative
    error of each hot spot-day with at least 5 true minutes of presence (visits: at least
    one true visit).
    """
    rows = rows.assign(size=rows[HOTSPOT_ID].map(sizes))
    keys = ["gps", "interval_s", "crossing_rule", "edge_tolerance_m", "max_gap_s"]
    out = []
    for size_name, part in [("all", rows), *((s, rows[rows["size"] == s]) for s in SIZE_CLASSES)]:
        for figure in FIGURES:
            measured = f"{figure}_measured"
            floor = 1 if figure == "visits" else 5 * 60 * 1_000_000
            for key, group in part.groupby(keys, sort=True):
                true_total, measured_total = group[figure].sum(), group[measured].sum()
                counted = group[group[figure] >= floor]
                relative = 100 * (counted[measured] / counted[figure] - 1)
                out.append(
                    {
                        **dict(zip(keys, key, strict=True)),
                        "figure": figure.removesuffix("_us"),
                        "size": size_name,
                        "true_total": _shown(figure, true_total),
                        "measured_total": _shown(figure, measured_total),
                        "bias_pct": round(100 * (measured_total / true_total - 1), 2)
                        if true_total
                        else np.nan,
                        "spread_pct": round(float(relative.std()), 2)
                        if len(relative) > 1
                        else np.nan,
                        "p10_pct": round(float(relative.quantile(0.1)), 2)
                        if len(relative)
                        else np.nan,
                        "p90_pct": round(float(relative.quantile(0.9)), 2)
                        if len(relative)
                        else np.nan,
                        "hot_spot_days": len(counted),
                    }
                )
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _shown(figure: str, total: float) -> float:
    """Totals in minutes for times, as counts for visits."""
    return round(total / 60e6, 2) if figure.endswith("_us") else float(total)
