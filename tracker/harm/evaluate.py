"""Judging an operation by crime harm (docs/harm.md, "Evaluation").

Harm is summed per month in three areas: the operation's hot spots, a ring of `buffer_m`
metres around them (where crime could be displaced to, or benefit diffuse to), and the rest
of the force area (the comparison). The baseline is the months before the operation; the
operation's months run from its first complete month to its last complete one. The
relative effect is the hot spots' change over the rest's change (Farrington and Welsh's
relative effect size, with harm for counts); its 95% interval comes from a quasi-Poisson
model of harm: compound Poisson variances, inflated by the overdispersion the monthly series
show. Months without any recorded crime are reported and left out, never taken as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import shapely

from tracker.dosage.geofence import HotSpot, HotSpotSet
from tracker.harm.crimes import month_text
from tracker.harm.identify import geometry_to_grid, to_grid
from tracker.harm.weights import HarmWeights

AREAS = ("hotspots", "buffer", "rest")
BEFORE, DURING, EXCLUDED = "before", "during", "excluded"
DEFAULT_BASELINE_MONTHS = 12
DEFAULT_BUFFER_M = 200.0
Z95 = 1.959963984540054
CI_METHOD = (
    "log relative effect ± 1.96 standard errors; variance of each area-period's log harm "
    "Σw²/(Σw)² (compound Poisson), times that area's overdispersion (Pearson χ²/df of its "
    "monthly harm, at least 1)"
)


class EvaluationError(ValueError):
    """An evaluation that cannot run: no complete month yet, no hot spots, bad settings."""


def add_months(month: date, n: int) -> date:
    """Return the first day of the month `n` months after `month` (before, if negative)."""
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_end(month: date) -> date:
    return add_months(month, 1) - timedelta(days=1)


@dataclass(frozen=True)
class Periods:
    """The months of the evaluation: baseline, a partial start month left out, operation."""

    before: tuple[date, ...]
    excluded: tuple[date, ...]
    during: tuple[date, ...]

    @property
    def months(self) -> tuple[date, ...]:
        return (*self.before, *self.excluded, *self.during)

    def period_of(self, month: date) -> str:
        if month in self.before:
            return BEFORE
        return DURING if month in self.during else EXCLUDED


def evaluation_periods(start: date, end: date, today: date, baseline_months: int) -> Periods:
    """Return the baseline months before the operation's start month and its complete
    months: from its first whole month to the last month ended by both its end and today."""
    if baseline_months < 1:
        raise EvaluationError("the baseline needs at least 1 month")
    start_month = start.replace(day=1)
    first = start_month if start.day == 1 else add_months(start_month, 1)
    last_day = min(end, today - timedelta(days=1))
    last = last_day.replace(day=1)
    if month_end(last) != last_day:
        last = add_months(last, -1)
    during = []
    month = first
    while month <= last:
        during.append(month)
        month = add_months(month, 1)
    if not during:
        raise EvaluationError(
            f"the operation has no complete month yet (it starts {start}, ends {end})"
        )
    before = tuple(add_months(start_month, -n) for n in range(baseline_months, 0, -1))
    excluded = (start_month,) if first != start_month else ()
    return Periods(before, excluded, tuple(during))


@dataclass(frozen=True)
class AreaFigures:
    """One area's harm per month of data, before and during, and its change."""

    before: float | None  # mean harm per month with data
    during: float | None
    crimes_before: int | None  # None: no month of the period has data
    crimes_during: int | None
    harm_before: float  # summed over the months with data
    harm_during: float
    squares_before: float  # Σw², for the compound Poisson variance
    squares_during: float
    dispersion: float
    dispersion_df: int

    @property
    def change(self) -> float | None:
        if self.before is None or self.during is None or self.before == 0:
            return None
        return self.during / self.before

    def to_json(self) -> dict[str, Any]:
        return {
            "before": _rounded(self.before),
            "during": _rounded(self.during),
            "change": self.change,
            "crimes_before": self.crimes_before,
            "crimes_during": self.crimes_during,
            "dispersion": self.dispersion,
            "dispersion_df": self.dispersion_df,
        }


@dataclass(frozen=True)
class Evaluation:
    """The figures of `tracker harm evaluate` (docs/harm.md names each)."""

    periods: Periods
    missing_months: tuple[date, ...]
    areas: Mapping[str, AreaFigures]
    relative_effect: float | None
    ci95: tuple[float, float] | None
    ci_note: str | None
    wdq: float | None
    wdq_buffer_measure: float | None
    wdq_success_measure: float | None
    wdq_note: str | None
    months: pd.DataFrame
    hot_spots: pd.DataFrame
    unlocated_crimes: int
    unlocated_harm: float
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def months(values: Sequence[date]) -> list[str]:
            return [month_text(m) for m in values]

        present = set(self.periods.months) - set(self.missing_months)
        return {
            **self.settings,
            "before": {
                "months": months(self.periods.before),
                "months_with_data": sum(m in present for m in self.periods.before),
            },
            "during": {
                "months": months(self.periods.during),
                "months_with_data": sum(m in present for m in self.periods.during),
            },
            "excluded_months": months(self.periods.excluded),
            "missing_months": months(self.missing_months),
            **{area: figures.to_json() for area, figures in self.areas.items()},
            "relative_effect": self.relative_effect,
            "ci95": list(self.ci95) if self.ci95 else None,
            "ci95_method": CI_METHOD,
            "ci95_note": self.ci_note,
            "weighted_displacement_quotient": self.wdq,
            "wdq_buffer_measure": self.wdq_buffer_measure,
            "wdq_success_measure": self.wdq_success_measure,
            "wdq_note": self.wdq_note,
            "unlocated": {"crimes": self.unlocated_crimes, "harm": self.unlocated_harm},
            "per_hotspot": _records(self.hot_spots),
            "months": _records(self.months),
        }

    def summary_table(self) -> pd.DataFrame:
        """The headline figures as measure,value rows (the CSV form of the JSON)."""
        rows: list[tuple[str, Any]] = []
        for area, figures in self.areas.items():
            for key, value in figures.to_json().items():
                rows.append((f"{area}_{key}", value))
        rows += [
            ("relative_effect", self.relative_effect),
            ("ci95_low", self.ci95[0] if self.ci95 else None),
            ("ci95_high", self.ci95[1] if self.ci95 else None),
            ("weighted_displacement_quotient", self.wdq),
            ("wdq_buffer_measure", self.wdq_buffer_measure),
            ("wdq_success_measure", self.wdq_success_measure),
            ("before_from", month_text(self.periods.before[0])),
            ("before_to", month_text(self.periods.before[-1])),
            ("during_from", month_text(self.periods.during[0])),
            ("during_to", month_text(self.periods.during[-1])),
            ("missing_months", " ".join(month_text(m) for m in self.missing_months)),
            ("unlocated_crimes", self.unlocated_crimes),
            ("unlocated_harm", self.unlocated_harm),
        ]
        rows += [
            (key, "; ".join(value) if isinstance(value, list | tuple) else value)
            for key, value in self.settings.items()
        ]
        return pd.DataFrame(rows, columns=["measure", "value"])


def _rounded(value: float | None, digits: int = 3) -> float | None:
    """Harm for people to read: sums of weights such as 28.1 carry float noise."""
    return None if value is None else round(value, digits)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a table's rows JSON-ready: missing values as None, numpy scalars as Python's."""

    def plain(value: Any) -> Any:
        if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _dispersion(series: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[float, int]:
    """Return the pooled overdispersion of monthly harm (at least 1) and its degrees of
    freedom, from (monthly harm, monthly Σw²) per period.

    Under a compound Poisson model with a steady rate, a month's harm varies by the mean of
    its Σw²; Pearson's statistic compares the months' spread with that (McCullagh and
    Nelder's quasi-likelihood estimate). Seasonality and trend count as overdispersion, which
    widens the interval: conservative.
    """
    statistic, df = 0.0, 0
    for harm, squares in series:
        if len(harm) < 2 or squares.mean() <= 0:
            continue
        statistic += float(((harm - harm.mean()) ** 2).sum() / squares.mean())
        df += len(harm) - 1
    return (max(1.0, statistic / df) if df else 1.0), df


def _classify_areas(
    x: np.ndarray, y: np.ndarray, hot_spots_m: HotSpotSet, buffer_m: float
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Return each point's area code (0 hot spots, 1 buffer, 2 rest) and the (point, hot
    spot) pairs; edges of a hot spot count as inside it, of the ring as inside the ring."""
    pairs = hot_spots_m.classify(x, y)
    code = np.full(len(x), 2, dtype=np.int8)
    if buffer_m > 0:
        union = shapely.union_all([h.geometry for h in hot_spots_m])
        ring = HotSpotSet([HotSpot("buffer", "buffer", union.buffer(buffer_m))])
        code[ring.classify(x, y)[0]] = 1
    code[pairs[0]] = 0
    return code, pairs


def evaluate(
    crimes: pd.DataFrame,
    weights: HarmWeights,
    hot_spots: HotSpotSet,
    periods: Periods,
    *,
    buffer_m: float = DEFAULT_BUFFER_M,
    settings: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate harm in the hot spots, the buffer ring and the rest over the periods.

    `crimes`: month (first day, a date), crime_type, longitude and latitude (NaN:
    unlocated), optionally offence_code; only the periods' months are read.
    """
    if not len(hot_spots):
        raise EvaluationError("the operation has no hot spots to evaluate")
    if buffer_m < 0:
        raise EvaluationError("the buffer must be 0 or more metres")
    frame = crimes[crimes["month"].isin(periods.months)].reset_index(drop=True)
    missing = tuple(m for m in periods.months if m not in set(frame["month"]))
    weight = weights.weigh(frame["crime_type"], frame.get("offence_code"))
    located = frame["longitude"].notna().to_numpy()
    x, y = to_grid(frame["longitude"].to_numpy(dtype=float), frame["latitude"].to_numpy(float))
    metric = HotSpotSet([HotSpot(h.id, h.name, geometry_to_grid(h.geometry)) for h in hot_spots])
    code, (point, spot) = _classify_areas(x[located], y[located], metric, buffer_m)
    located_index = np.flatnonzero(located)

    month_index = {m: i for i, m in enumerate(periods.months)}
    month_of = frame["month"].map(month_index).to_numpy(dtype=np.int64)
    n_months = len(periods.months)
    month_harm = np.zeros((3, n_months))
    month_squares = np.zeros((3, n_months))
    month_crimes = np.zeros((3, n_months), dtype=np.int64)
    for area in range(3):
        rows = located_index[code == area]
        month_harm[area] = np.bincount(month_of[rows], weights=weight[rows], minlength=n_months)
        month_squares[area] = np.bincount(
            month_of[rows], weights=weight[rows] ** 2, minlength=n_months
        )
        month_crimes[area] = np.bincount(month_of[rows], minlength=n_months)

    present = np.array([m not in missing for m in periods.months])
    in_before = np.array([m in periods.before for m in periods.months]) & present
    in_during = np.array([m in periods.during for m in periods.months]) & present
    areas = {
        name: _area_figures(month_harm[i], month_squares[i], month_crimes[i], in_before, in_during)
        for i, name in enumerate(AREAS)
    }
    effect, ci, ci_note = _relative_effect(areas["hotspots"], areas["rest"])
    wdq, buffer_measure, success_measure, wdq_note = _wdq(areas, buffer_m)

    months = pd.DataFrame(
        {
            "month": [month_text(m) for m in periods.months],
            "period": [periods.period_of(m) for m in periods.months],
            "has_data": present,
            **{
                f"{name}_harm": np.where(present, month_harm[i].round(3), np.nan)
                for i, name in enumerate(AREAS)
            },
            **{
                f"{name}_crimes": pd.Series(month_crimes[i], dtype="Int64").mask(~present)
                for i, name in enumerate(AREAS)
            },
        }
    )
    hot_spot_rows = _per_hot_spot(
        hot_spots, located_index[point], spot, weight, month_of, in_before, in_during
    )
    return Evaluation(
        periods=periods,
        missing_months=missing,
        areas=areas,
        relative_effect=effect,
        ci95=ci,
        ci_note=ci_note,
        wdq=wdq,
        wdq_buffer_measure=buffer_measure,
        wdq_success_measure=success_measure,
        wdq_note=wdq_note,
        months=months,
        hot_spots=hot_spot_rows,
        unlocated_crimes=int((~located).sum()),
        unlocated_harm=float(weight[~located].sum()),
        settings=dict(settings or {}),
    )


def _area_figures(
    harm: np.ndarray,
    squares: np.ndarray,
    crimes: np.ndarray,
    in_before: np.ndarray,
    in_during: np.ndarray,
) -> AreaFigures:
    dispersion, df = _dispersion(
        [(harm[in_before], squares[in_before]), (harm[in_during], squares[in_during])]
    )
    return AreaFigures(
        before=float(harm[in_before].mean()) if in_before.any() else None,
        during=float(harm[in_during].mean()) if in_during.any() else None,
        crimes_before=int(crimes[in_before].sum()) if in_before.any() else None,
        crimes_during=int(crimes[in_during].sum()) if in_during.any() else None,
        harm_before=float(harm[in_before].sum()),
        harm_during=float(harm[in_during].sum()),
        squares_before=float(squares[in_before].sum()),
        squares_during=float(squares[in_during].sum()),
        dispersion=dispersion,
        dispersion_df=df,
    )


def _relative_effect(
    hot: AreaFigures, rest: AreaFigures
) -> tuple[float | None, tuple[float, float] | None, str | None]:
    """Return the relative effect, its 95% interval and why there is none, if there is not."""
    if hot.before is None:
        return None, None, "no month of the baseline has data"
    if hot.during is None:
        return None, None, "no month of the operation has data"
    hot_change, rest_change = hot.change, rest.change
    if hot_change is None or rest_change is None or rest_change == 0:
        return None, None, "no harm in the hot spots or the rest in a period: no ratio"
    effect = hot_change / rest_change
    sums = (hot.harm_before, hot.harm_during, rest.harm_before, rest.harm_during)
    if min(sums) <= 0:
        return effect, None, "an area had no harm in a period: the interval is not defined"
    variance = hot.dispersion * (
        hot.squares_before / hot.harm_before**2 + hot.squares_during / hot.harm_during**2
    ) + rest.dispersion * (
        rest.squares_before / rest.harm_before**2 + rest.squares_during / rest.harm_during**2
    )
    half = Z95 * math.sqrt(variance)
    note = None
    if min(hot.dispersion_df, rest.dispersion_df) == 0:
        note = "too few months to estimate overdispersion: Poisson variance only (too narrow)"
    return effect, (effect * math.exp(-half), effect * math.exp(half)), note


def _wdq(
    areas: Mapping[str, AreaFigures], buffer_m: float
) -> tuple[float | None, float | None, float | None, str | None]:
    """Return Bowers and Johnson's weighted displacement quotient, its two measures, and
    why it is not given, if it is not."""
    hot, ring, rest = areas["hotspots"], areas["buffer"], areas["rest"]
    if buffer_m <= 0:
        return None, None, None, "no buffer"
    if not rest.before or not rest.during or hot.before is None or ring.before is None:
        return None, None, None, "no harm in the rest of the area in a period"
    buffer_measure = ring.during / rest.during - ring.before / rest.before
    success_measure = hot.during / rest.during - hot.before / rest.before
    if success_measure >= 0:
        return (
            None,
            buffer_measure,
            success_measure,
            "harm did not fall in the hot spots relative to the rest: nothing to displace",
        )
    return buffer_measure / success_measure, buffer_measure, success_measure, None


def _per_hot_spot(
    hot_spots: HotSpotSet,
    crime: np.ndarray,
    spot: np.ndarray,
    weight: np.ndarray,
    month_of: np.ndarray,
    in_before: np.ndarray,
    in_during: np.ndarray,
) -> pd.DataFrame:
    """Return each hot spot's harm per month before and during, and its change."""
    n = len(hot_spots)
    period = np.where(in_before[month_of[crime]], 0, np.where(in_during[month_of[crime]], 1, 2))
    rows = []
    counts = {
        p: (
            np.bincount(spot[period == p], weights=weight[crime[period == p]], minlength=n),
            np.bincount(spot[period == p], minlength=n),
        )
        for p in (0, 1)
    }
    months_before, months_during = int(in_before.sum()), int(in_during.sum())
    for i, hot_spot in enumerate(hot_spots):
        before = counts[0][0][i] / months_before if months_before else None
        during = counts[1][0][i] / months_during if months_during else None
        rows.append(
            {
                "hotspot_id": hot_spot.id,
                "name": hot_spot.name,
                "harm_before": _rounded(before),
                "harm_during": _rounded(during),
                "change": during / before if before and during is not None else None,
                "crimes_before": int(counts[0][1][i]) if months_before else None,
                "crimes_during": int(counts[1][1][i]) if months_during else None,
            }
        )
    return pd.DataFrame(rows)
