"""The search figures a scrutiny panel is shown, one definition each (docs/stops.md,
"Search figures"): volumes and outcome rates, disproportionality by either definition of
ethnicity, breakdowns, and searches against patrol time per hot spot.

Definitions:
- a *positive outcome* is any outcome other than "A no further action disposal" or blank;
- the *find rate* is over the searches whose "outcome linked to object of search" is known
  (police.uk leaves it blank for most), and says how many those are;
- ethnicity is grouped into the census's five broad groups, self-defined (the part of
  "Asian/Asian British - Indian" before the dash) or officer-defined; "Not stated" and
  blank are set aside and counted, never treated as a group;
- with a population per group, the rate per 1,000 and the ratio of each group's rate to
  the White group's; without one there is neither (search counts alone are not a rate).
Percentages have one decimal, ratios and rates per 1,000 two.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.foundation.clock import US_PER_HOUR
from tracker.foundation.models import DailyDosage
from tracker.stops.population import BROAD_GROUPS
from tracker.stops.records import ARREST, NOT_RECORDED

WHITE = "White"
SELF, OFFICER = "self", "officer"
ETHNICITY_COLUMNS = {SELF: "self_defined_ethnicity", OFFICER: "officer_defined_ethnicity"}
NO_FURTHER_ACTION = "A no further action disposal"
SMALL_NUMBER = 10  # a ratio resting on fewer searches is shown, but flagged
BREAKDOWN_COLUMNS = {
    "by_age": "age_range",
    "by_gender": "gender",
    "by_legislation": "legislation",
    "by_object": "object_of_search",
    "by_outcome": "outcome",
}


def broad_group(ethnicity: Any) -> str | None:
    """Return the broad group of a self- or officer-defined ethnicity, None if not stated.

    "Black/African/Caribbean/Black British - African" and "Black" are "Black";
    "Other ethnic group - Not stated", "Not stated" and blank are None.
    """
    if not isinstance(ethnicity, str) or not ethnicity.strip():
        return None
    if ethnicity.strip().lower().endswith("not stated"):
        return None
    first = ethnicity.strip().split("/", 1)[0].split(" ", 1)[0].capitalize()
    return first if first in BROAD_GROUPS else "Other"


def positive_outcomes(outcome: pd.Series) -> pd.Series:
    """Return, per search, whether its outcome is positive (recorded, and not NFA)."""
    text = outcome.astype(object)
    return text.notna() & text.astype(str).str.strip().ne("") & text.ne(NO_FURTHER_ACTION)


def search_figures(
    frame: pd.DataFrame,
    *,
    ethnicity: str = SELF,
    population: Mapping[str, float] | None = None,
    presence_hours: Mapping[str, float] | None = None,
    hotspot_ids: pd.Series | None = None,
) -> dict[str, Any]:
    """Return the figures (the JSON of `tracker stops figures`) for the searches in `frame`
    (tracker.stops.figures.stops_frame).

    `population` maps the five broad groups to their population; `presence_hours` gives
    each hot spot's patrol presence over the same dates; `hotspot_ids` the hot spot of each
    search, if not the stored link (e.g. linked with another buffer).
    """
    if ethnicity not in ETHNICITY_COLUMNS:
        raise ValueError(f"ethnicity must be {SELF!r} or {OFFICER!r}, not {ethnicity!r}")
    positive = positive_outcomes(frame["outcome"])
    arrests = frame["outcome"].astype(object).eq(ARREST)
    linked = frame["outcome_linked_to_object"].astype(object)
    known = linked.notna()
    searches = len(frame)
    groups = frame[ETHNICITY_COLUMNS[ethnicity]].map(broad_group)
    return {
        "searches": searches,
        "arrests": int(arrests.sum()),
        "arrest_rate": _pct(arrests.sum(), searches),
        "positive_outcomes": int(positive.sum()),
        "positive_outcome_rate": _pct(positive.sum(), searches),
        "find_rate": _pct(linked[known].eq(True).sum(), known.sum()),
        "find_rate_known": int(known.sum()),
        "strip_searches": int(
            frame["removal_of_more_than_outer_clothing"].astype(object).eq(True).sum()
        ),
        "ethnicity_definition": ethnicity,
        "ethnicity": _ethnicity(groups, population),
        "not_stated": int(groups.isna().sum()),
        **{key: _breakdown(frame[column], positive) for key, column in BREAKDOWN_COLUMNS.items()},
        "by_hotspot": _by_hotspot(
            frame["hotspot_id"] if hotspot_ids is None else hotspot_ids, presence_hours or {}
        ),
    }


def _pct(part, whole) -> float | None:
    return round(100.0 * float(part) / float(whole), 1) if whole else None


def _ethnicity(groups: pd.Series, population: Mapping[str, float] | None) -> list[dict]:
    counts = groups.value_counts()
    rates = {}
    if population:
        rates = {g: 1000.0 * counts.get(g, 0) / population[g] for g in BROAD_GROUPS}
    white_rate = rates.get(WHITE)
    rows = []
    for group in BROAD_GROUPS:
        rate = rates.get(group)
        rows.append(
            {
                "group": group,
                "searches": int(counts.get(group, 0)),
                "population": population[group] if population else None,
                "rate_per_1000": None if rate is None else round(rate, 2),
                "ratio_to_white": round(rate / white_rate, 2)
                if rate is not None and white_rate
                else None,
                "small_number": bool(counts.get(group, 0) < SMALL_NUMBER),
            }
        )
    return rows


def _breakdown(values: pd.Series, positive: pd.Series) -> list[dict]:
    value = values.astype(object).map(
        lambda v: (
            NOT_RECORDED
            if v is None or (isinstance(v, float) and v != v) or str(v).strip() == ""
            else str(v)
        )
    )
    table = (
        pd.DataFrame({"value": value, "searches": 1, "positive_outcomes": positive.astype(int)})
        .groupby("value", sort=False)
        .sum()
        .reset_index()
        .sort_values(["searches", "value"], ascending=[False, True], kind="stable")
    )
    return [
        {"value": v, "searches": int(s), "positive_outcomes": int(p)}
        for v, s, p in zip(
            table["value"], table["searches"], table["positive_outcomes"], strict=True
        )
    ]


def _by_hotspot(hotspot_ids: pd.Series, presence_hours: Mapping[str, float]) -> list[dict]:
    counts = hotspot_ids.dropna().astype(str).value_counts()
    rows = []
    for hotspot_id in sorted(set(counts.index) | set(presence_hours)):
        searches = int(counts.get(hotspot_id, 0))
        hours = presence_hours.get(hotspot_id, 0.0)
        rows.append(
            {
                "hotspot_id": hotspot_id,
                "searches": searches,
                "presence_hours": round(hours, 2),
                "searches_per_patrol_hour": round(searches / hours, 2) if hours else None,
            }
        )
    return rows


def presence_hours(
    session: Session, from_day: date | None, to_day: date | None
) -> dict[str, float]:
    """Return each hot spot's stored presence over the local dates, in hours."""
    statement = select(DailyDosage.hotspot_id, func.sum(DailyDosage.presence_us)).group_by(
        DailyDosage.hotspot_id
    )
    if from_day is not None:
        statement = statement.where(DailyDosage.day >= from_day)
    if to_day is not None:
        statement = statement.where(DailyDosage.day <= to_day)
    return {h: float(us) / US_PER_HOUR for h, us in session.execute(statement)}


def figures_table(figures: Mapping[str, Any]) -> pd.DataFrame:
    """Return the figures as one long table (table, value, measure, number) for a CSV."""
    rows = []
    for key, value in figures.items():
        if isinstance(value, list):
            for item in value:
                label = item.get("group", item.get("value", item.get("hotspot_id")))
                rows += [
                    (key, label, measure, number)
                    for measure, number in item.items()
                    if measure not in ("group", "value", "hotspot_id")
                ]
        else:
            rows.append(("summary", "", key, value))
    return pd.DataFrame(rows, columns=["table", "value", "measure", "number"])


def monthly_trend(frame: pd.DataFrame) -> pd.DataFrame:
    """Return per local month: searches, positive outcomes and their rate, and review coverage
    (completed reviews of the sampled ones), oldest month first."""
    columns = ["month", "searches", "positive_outcomes", "positive_outcome_rate", "sampled"]
    columns += ["reviews_completed", "review_coverage"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    sampled = frame["sampled"].astype(object).eq(True)
    completed = sampled & frame["review_status"].isin(("reviewed", "no_footage"))
    parts = pd.DataFrame(
        {
            "month": [d.strftime("%Y-%m") for d in frame["stop_date"]],
            "searches": 1,
            "positive_outcomes": positive_outcomes(frame["outcome"]).astype(int),
            "sampled": sampled.astype(int),
            "reviews_completed": completed.astype(int),
        }
    )
    table = parts.groupby("month", sort=True).sum().reset_index()
    table["positive_outcome_rate"] = [
        _pct(p, n) for p, n in zip(table["positive_outcomes"], table["searches"], strict=True)
    ]
    table["review_coverage"] = [
        _pct(c, s) for c, s in zip(table["reviews_completed"], table["sampled"], strict=True)
    ]
    return table[columns]


def panel_tables(
    frame: pd.DataFrame,
    *,
    population: Mapping[str, float] | None = None,
    presence_hours: Mapping[str, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """Return the search figures as the assurance dashboard's tables (and CSVs): both
    definitions of ethnicity side by side, the not-stated counts, the breakdowns, the
    monthly trend and searches per patrol hour."""
    by_definition = {
        d: search_figures(frame, ethnicity=d, population=population, presence_hours=presence_hours)
        for d in ETHNICITY_COLUMNS
    }
    own = by_definition[SELF]
    disproportionality = pd.DataFrame(
        [{"definition": d, **row} for d, f in by_definition.items() for row in f["ethnicity"]]
    )
    headline = {k: v for k, v in own.items() if not isinstance(v, list)}
    headline.pop("ethnicity_definition")
    headline["not_stated_officer"] = by_definition[OFFICER]["not_stated"]
    breakdowns = pd.DataFrame(
        [
            {"breakdown": key.removeprefix("by_"), **row}
            for key in BREAKDOWN_COLUMNS
            for row in own[key]
        ],
        columns=["breakdown", "value", "searches", "positive_outcomes"],
    )
    return {
        "search-figures": pd.DataFrame([headline]),
        "disproportionality": disproportionality,
        "breakdowns": breakdowns,
        "trend": monthly_trend(frame),
        "patrol-hours": pd.DataFrame(
            own["by_hotspot"],
            columns=["hotspot_id", "searches", "presence_hours", "searches_per_patrol_hour"],
        ),
    }
