"""The figures partners see (docs/partners.md, "What partners see"): each hot spot's status,
its patrol presence and visits per week, stop and search per hot spot and month with small
numbers suppressed, and crime harm in the hot spots against the rest. Aggregates only: no
officer, device, track, time of a stop or position is in any of them.

Suppression: a count under 5 is shown as "fewer than 5". A count that would give a number
under 5 by subtraction from its total (the searches without a positive outcome, say) is
"suppressed", and so is a second cell of a month when only one of its hot spots' cells is
hidden (the month's total would otherwise give it away). A rate is shown only when neither
count it is worked out from is hidden.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.dosage.reports import daily_report
from tracker.foundation.models import HotSpotRow
from tracker.plan.compliance import RagThresholds, overview_table
from tracker.plan.models import Operation, OperationHotSpot
from tracker.stops.figures import stops_frame
from tracker.stops.records import ARREST
from tracker.stops.search_figures import positive_outcomes

SMALL = 5
FEWER = "fewer than 5"
SUPPRESSED = "suppressed"
COUNTS = ("searches", "positive_outcomes", "arrests")
RATES = {"positive_outcome_rate": "positive_outcomes", "arrest_rate": "arrests"}
WEEKLY_COLUMNS = [
    "hotspot_id",
    "hotspot_name",
    "week_start",
    "week_end",
    "days",
    "presence_minutes",
    "visits",
]
STATUS_COLUMNS = [
    "hotspot_id",
    "hotspot_name",
    "week_status",
    "week_compliance",
    "to_date_compliance",
    "trend",
    "days_since_last_visit",
    "presence_minutes_to_date",
    "visits_to_date",
    "presence_minutes_last_week",
    "presence_minutes_week_before",
    "presence_change_pct",
]
STOP_COLUMNS = ["month", "hotspot_id", "hotspot_name", *COUNTS, *RATES]
MONTH_COLUMNS = ["month", *COUNTS, *RATES]


def operation_hot_spots(session: Session, operation: Operation) -> dict[str, str]:
    """Return the operation's hot spots, id to name (the id where the set lacks it), by id."""
    ids = session.scalars(
        select(OperationHotSpot.hotspot_id)
        .where(OperationHotSpot.operation_id == operation.id)
        .order_by(OperationHotSpot.hotspot_id)
    ).all()
    names = dict(session.execute(select(HotSpotRow.id, HotSpotRow.name)).all())
    return {h: names.get(h, h) for h in ids}


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weekly_dosage(session: Session, operation: Operation, first: date, last: date) -> pd.DataFrame:
    """Return each hot spot's presence minutes and visits per week (Monday to Sunday, cut to
    first..last), every week listed, zero where there was none (WEEKLY_COLUMNS)."""
    spots = operation_hot_spots(session, operation)
    daily = daily_report(session, first, last, list(spots))
    weeks = []
    start = monday(first)
    while start <= last:
        weeks.append((max(start, first), min(start + timedelta(days=6), last)))
        start += timedelta(days=7)
    daily["week_start"] = [max(monday(d), first) for d in daily["date"]]
    sums = daily.groupby(["hotspot_id", "week_start"])[["presence_minutes", "visits"]].sum()
    rows = []
    for hotspot_id, name in spots.items():
        for week_start, week_end in weeks:
            key = (hotspot_id, week_start)
            found = key in sums.index
            rows.append(
                {
                    "hotspot_id": hotspot_id,
                    "hotspot_name": name,
                    "week_start": week_start,
                    "week_end": week_end,
                    "days": (week_end - week_start).days + 1,
                    "presence_minutes": round(float(sums.loc[key, "presence_minutes"]), 2)
                    if found
                    else 0.0,
                    "visits": int(sums.loc[key, "visits"]) if found else 0,
                }
            )
    return pd.DataFrame(rows, columns=WEEKLY_COLUMNS)


def hot_spot_status(
    session: Session, operation: Operation, reference: date, thresholds: RagThresholds
) -> pd.DataFrame:
    """Return each hot spot's status (STATUS_COLUMNS): this week's RAG status and compliance,
    compliance to date and its trend, days since a visit, presence and visits to date, and
    presence in the last two complete weeks with the change between them."""
    overview = overview_table(session, operation, reference, thresholds).set_index("hotspot_id")
    last = min(reference, operation.end_date)
    first = operation.start_date
    if last < first:
        return pd.DataFrame(columns=STATUS_COLUMNS)
    weekly = weekly_dosage(session, operation, first, last)
    this_monday = monday(reference)
    rows = []
    for hotspot_id, name in operation_hot_spots(session, operation).items():
        weeks = weekly[weekly["hotspot_id"] == hotspot_id]
        complete = weeks[(weeks["week_start"] < this_monday) & (weeks["days"] == 7)]
        last_week = float(complete["presence_minutes"].iloc[-1]) if len(complete) else None
        before = float(complete["presence_minutes"].iloc[-2]) if len(complete) > 1 else None
        status = overview.loc[hotspot_id] if hotspot_id in overview.index else None
        rows.append(
            {
                "hotspot_id": hotspot_id,
                "hotspot_name": name,
                "week_status": None if status is None else status["week_presence_status"],
                "week_compliance": _ratio(status, "week_presence_compliance"),
                "to_date_compliance": _ratio(status, "operation_presence_compliance"),
                "trend": None if status is None else status["trend"],
                "days_since_last_visit": None
                if status is None or pd.isna(status["days_since_last_visit"])
                else int(status["days_since_last_visit"]),
                "presence_minutes_to_date": round(float(weeks["presence_minutes"].sum()), 2),
                "visits_to_date": int(weeks["visits"].sum()),
                "presence_minutes_last_week": last_week,
                "presence_minutes_week_before": before,
                "presence_change_pct": round(100 * (last_week - before) / before, 1)
                if last_week is not None and before
                else None,
            }
        )
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def _ratio(row, column: str) -> float | None:
    if row is None or pd.isna(row[column]):
        return None
    return float(row[column])


# --- stop and search, small numbers suppressed ------------------------------------------------


def stop_counts(
    session: Session, operation: Operation, tz: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the operation's searches, positive outcomes and arrests per hot spot and local
    month (every hot spot in every month with searches, zero included) and per month over
    all its hot spots: raw counts, before suppression (protect)."""
    spots = operation_hot_spots(session, operation)
    frame = stops_frame(session, tz=tz, operation_id=operation.id)
    frame = frame[frame["hotspot_id"].isin(list(spots))]
    parts = pd.DataFrame(
        {
            "month": [d.strftime("%Y-%m") for d in frame["stop_date"]],
            "hotspot_id": frame["hotspot_id"].astype(object),
            "searches": 1,
            "positive_outcomes": positive_outcomes(frame["outcome"]).astype(int),
            "arrests": frame["outcome"].astype(object).eq(ARREST).astype(int),
        }
    )
    sums = parts.groupby(["month", "hotspot_id"])[list(COUNTS)].sum()
    months = sorted(set(parts["month"]))
    rows = []
    for month in months:
        for hotspot_id, name in spots.items():
            counts = sums.loc[(month, hotspot_id)] if (month, hotspot_id) in sums.index else None
            rows.append(
                {
                    "month": month,
                    "hotspot_id": hotspot_id,
                    "hotspot_name": name,
                    **{c: 0 if counts is None else int(counts[c]) for c in COUNTS},
                }
            )
    cells = pd.DataFrame(rows, columns=["month", "hotspot_id", "hotspot_name", *COUNTS])
    totals = cells.groupby("month", as_index=False)[list(COUNTS)].sum()
    return cells, totals


def _hidden(counts: pd.DataFrame) -> dict[str, np.ndarray]:
    """Which cells are hidden: searches under 5, and outcomes under 5 or whose complement in
    the searches is under 5."""
    searches = counts["searches"].to_numpy()
    hidden = {"searches": searches < SMALL}
    for column in ("positive_outcomes", "arrests"):
        values = counts[column].to_numpy()
        hidden[column] = (values < SMALL) | (searches - values < SMALL)
    return hidden


def _hide_a_second(values: np.ndarray, hidden: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Where a group has exactly one hidden cell, hide its smallest shown cell too, so that
    the group's published total does not give the hidden one away."""
    hidden = hidden.copy()
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        shown = members[~hidden[members]]
        if hidden[members].sum() == 1 and len(shown):
            hidden[shown[np.argmin(values[shown])]] = True
    return hidden


def protect(counts: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Return counts (with COUNTS columns) as partners see them: hidden counts as "fewer
    than 5" (under 5) or "suppressed", rates in percent to one decimal only where neither of
    their counts is hidden. With `group` (a column), cells are also hidden in pairs within
    each group, whose total is published."""
    hidden = _hidden(counts)
    if group is not None:
        groups = counts[group].to_numpy()
        hidden = {
            c: _hide_a_second(counts[c].to_numpy(), mask, groups) for c, mask in hidden.items()
        }
    shown = counts.drop(columns=list(COUNTS)).copy()
    for column in COUNTS:
        shown[column] = [
            (FEWER if value < SMALL else SUPPRESSED) if hide else int(value)
            for value, hide in zip(counts[column], hidden[column], strict=True)
        ]
    for rate, part in RATES.items():
        shown[rate] = [
            SUPPRESSED if hide_part or hide_whole else round(100.0 * p / s, 1)
            for p, s, hide_part, hide_whole in zip(
                counts[part], counts["searches"], hidden[part], hidden["searches"], strict=True
            )
        ]
    return shown


def partner_stop_tables(
    session: Session, operation: Operation, tz: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return searches and outcome rates per hot spot and month (STOP_COLUMNS) and per month
    over the hot spots (MONTH_COLUMNS), small numbers suppressed."""
    cells, totals = stop_counts(session, operation, tz)
    return protect(cells, group="month")[STOP_COLUMNS], protect(totals)[MONTH_COLUMNS]


# --- crime harm -------------------------------------------------------------------------------

HARM_COLUMNS = [
    "month",
    "period",
    "hotspots_crimes",
    "hotspots_harm",
    "buffer_crimes",
    "buffer_harm",
    "rest_crimes",
    "rest_harm",
]
NO_CRIME_DATA = (
    "No crime data is loaded: crime harm trends appear here once recorded crime is imported "
    "(tracker crimes import FILE)."
)


def harm_trend(
    session: Session, operation: Operation, through: date, today: date
) -> tuple[pd.DataFrame | None, str]:
    """Return crime and harm per month in the operation's hot spots, the ring around them and
    the rest of the area (HARM_COLUMNS): the baseline year before the operation, then its
    months up to `through`'s; and a note. None and why, when no crime is loaded.

    Months come from tracker.harm (docs/harm.md): the operation's first month, if it began
    after the 1st, and a month not yet over are "excluded"; a month without any recorded
    crime is blank, never zero.
    """
    from tracker.harm.crimes import crimes_frame, months_with_data
    from tracker.harm.evaluate import (
        DEFAULT_BASELINE_MONTHS,
        DEFAULT_BUFFER_M,
        EvaluationError,
        Periods,
        add_months,
        evaluate,
        month_end,
    )
    from tracker.harm.figures import operation_hot_spots as stored_operation_hot_spots
    from tracker.harm.weights import load_weights

    if not months_with_data(session):
        return None, NO_CRIME_DATA
    start = operation.start_date.replace(day=1)
    last = min(through.replace(day=1), operation.end_date.replace(day=1))
    before = tuple(add_months(start, -n) for n in range(DEFAULT_BASELINE_MONTHS, 0, -1))
    months = []
    month = start
    while month <= last:
        months.append(month)
        month = add_months(month, 1)
    partial = {start} if operation.start_date.day != 1 else set()
    partial |= {m for m in months if month_end(m) >= today}
    periods = Periods(
        before,
        tuple(m for m in months if m in partial),
        tuple(m for m in months if m not in partial),
    )
    hot_spots, _ = stored_operation_hot_spots(session, operation)
    crimes = crimes_frame(session, before[0], max(last, before[-1]))
    try:
        evaluation = evaluate(crimes, load_weights(), hot_spots, periods, buffer_m=DEFAULT_BUFFER_M)
    except EvaluationError as exc:
        return None, f"Crime harm cannot be shown: {exc}."
    table = evaluation.months.set_index("month").reindex(
        [m.strftime("%Y-%m") for m in (*before, *months)]
    )
    table["period"] = [periods.period_of(m) for m in (*before, *months)]
    note = (
        "Crime harm: each recorded crime weighed by its harm (docs/harm.md); the ring is "
        f"{DEFAULT_BUFFER_M:.0f} m around the hot spots. The baseline is the "
        f"{DEFAULT_BASELINE_MONTHS} months before the operation; a month it began part-way "
        "through, or not yet over, is marked excluded."
    )
    missing = [m.strftime("%Y-%m") for m in evaluation.missing_months]
    if missing:
        note += f" No crime is loaded for {', '.join(missing)}: those months are blank."
    return table.reset_index().reindex(columns=HARM_COLUMNS), note


def protect_harm(months: pd.DataFrame) -> pd.DataFrame:
    """Return harm per month as partners see it: crime counts under 5 as "fewer than 5",
    and the harm of such an area-month suppressed (one crime's weight would name its type)."""
    shown = months[["month", "period"]].copy()
    for area in ("hotspots", "buffer", "rest"):
        crimes = months[f"{area}_crimes"]
        small = [not pd.isna(c) and c < SMALL for c in crimes]
        # object columns: a month without data stays None, not NaN
        shown[f"{area}_crimes"] = pd.Series(
            [
                None if pd.isna(c) else FEWER if s else int(c)
                for c, s in zip(crimes, small, strict=True)
            ],
            index=months.index,
            dtype=object,
        )
        shown[f"{area}_harm"] = pd.Series(
            [
                None if pd.isna(h) else SUPPRESSED if s else round(float(h), 1)
                for h, s in zip(months[f"{area}_harm"], small, strict=True)
            ],
            index=months.index,
            dtype=object,
        )
    return shown
