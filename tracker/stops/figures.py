"""Assurance figures over stop-and-search records and their reviews (docs/stops.md): the
review queue, coverage, outcomes, find and arrest rates, and breakdowns with rates and
disproportionality ratios. pandas over one frame of records; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.stops.models import (
    GOWISELY,
    GRADES,
    REVIEW_OUTCOMES,
    BwvReview,
    ReviewAction,
    StopSearch,
)
from tracker.stops.population import population_level
from tracker.stops.records import (
    ARREST,
    DEFAULT_TZ,
    NOT_RECORDED,
    OUTSIDE_HOT_SPOTS,
    STOP_FIELDS,
    WHITE_PREFIX,
    plain_values,
)
from tracker.stops.review import (
    COMPLETED,
    CONDUCT_FIELDS,
    action_is_overdue,
    is_overdue,
    review_state,
)

REVIEW_COLUMNS = {
    "status": "review_status",
    "outcome": "review_outcome",
    "no_footage_reason": "no_footage_reason",
    "reviewer": "reviewer",
    "reviewed_at": "reviewed_at",
    **{name: f"gowisely_{name}" for name in GOWISELY},
    "findings": "findings",
    "rag": "rag",
    "due_date": "due_date",
    "sampled": "sampled",
    "grounds_reasonable": "grounds_reasonable",
    "grounds_note": "grounds_note",
    "camera": "camera",
    "camera_note": "camera_note",
    **{name: name for name in CONDUCT_FIELDS},
    "grade": "grade",
    "acknowledged_by": "acknowledged_by",
    "acknowledged_at": "acknowledged_at",
    "second_sampled": "second_sampled",
    "second_reviewer": "second_reviewer",
    "second_reviewed_at": "second_reviewed_at",
    "second_grade": "second_grade",
    "second_note": "second_note",
}
REVIEW_TIMES = ("reviewed_at", "acknowledged_at", "second_reviewed_at")
EXPORT_COLUMNS = [
    "id",
    *STOP_FIELDS,
    "hotspot_id",
    "operation_id",
    "source_file",
    "source_line",
    *REVIEW_COLUMNS.values(),
]


def stops_frame(
    session: Session,
    *,
    tz: str = DEFAULT_TZ,
    operation_id: int | None = None,
    from_day: date | None = None,
    to_day: date | None = None,
) -> pd.DataFrame:
    """Return stops with their reviews, one row each (EXPORT_COLUMNS), oldest first.

    Derived columns help the figures: `stop_date` and `review_date`, local dates.
    `from_day` and `to_day` are local dates, inclusive.
    """
    stop_columns = [
        getattr(StopSearch, name)
        for name in ("id", *STOP_FIELDS, "hotspot_id", "operation_id", "source_file", "source_line")
    ]
    review_columns = [getattr(BwvReview, name) for name in REVIEW_COLUMNS]
    statement = (
        select(*stop_columns, *review_columns)
        .outerjoin(BwvReview, BwvReview.stop_id == StopSearch.id)
        .order_by(StopSearch.occurred_at, StopSearch.id)
    )
    zone = ZoneInfo(tz)
    if operation_id is not None:
        statement = statement.where(StopSearch.operation_id == operation_id)
    if from_day is not None:
        start = datetime.combine(from_day, datetime.min.time(), zone)
        statement = statement.where(StopSearch.occurred_at >= start)
    if to_day is not None:
        end = datetime.combine(to_day + timedelta(days=1), datetime.min.time(), zone)
        statement = statement.where(StopSearch.occurred_at < end)
    frame = pd.DataFrame(session.execute(statement).all(), columns=EXPORT_COLUMNS)
    for column in ("occurred_at", *REVIEW_TIMES):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("operation_id", "source_line"):
        # Whole numbers or None, not floats with NaN: they are labels, and JSON needs None.
        frame[column] = pd.Series(
            [None if pd.isna(v) else int(v) for v in frame[column]], index=frame.index, dtype=object
        )
    frame["stop_date"] = frame["occurred_at"].dt.tz_convert(zone).dt.date
    frame["review_date"] = frame["reviewed_at"].dt.tz_convert(zone).dt.date
    return frame


def export_stops(session: Session, **filters: Any) -> pd.DataFrame:
    """Return stops and their reviews for a CSV or JSON export (EXPORT_COLUMNS).

    Times are ISO-8601 UTC text and coordinates exact decimal text, so both formats carry
    them unchanged (the shared JSON writer rounds floats to 2 places and has no missing time).
    """
    frame = stops_frame(session, **filters)[EXPORT_COLUMNS].copy()

    def as_text(column: str, render) -> pd.Series:
        return pd.Series(
            [None if pd.isna(v) else render(v) for v in frame[column]],
            index=frame.index,
            dtype=object,
        )

    for column in ("occurred_at", *REVIEW_TIMES):
        frame[column] = as_text(column, lambda t: t.isoformat().replace("+00:00", "Z"))
    for column in ("latitude", "longitude"):
        frame[column] = as_text(column, lambda v: repr(float(v)))
    return frame


def _pct(part: float, whole: float) -> float | None:
    return None if not whole else 100.0 * part / whole


def _status_masks(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    sampled = frame["sampled"].astype(object).eq(True)
    status = frame["review_status"].astype(object)
    completed = status.isin(COMPLETED)
    return sampled, status, completed


def _finds(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    linked = frame["outcome_linked_to_object"].astype(object)
    return linked.eq(True), linked.notna()


def _arrests(frame: pd.DataFrame) -> pd.Series:
    return frame["outcome"].astype(object).eq(ARREST)


def review_states(frame: pd.DataFrame, today: date) -> pd.Series:
    """Return, per stop, where its review stands (review_state)."""
    sampled, status, _ = _status_masks(frame)
    due = frame["due_date"].astype(object)
    return pd.Series(
        [review_state(*values, today) for values in zip(sampled, status, due, strict=True)],
        index=frame.index,
        dtype=object,
    )


def _overdue(frame: pd.DataFrame, today: date) -> pd.Series:
    return review_states(frame, today).eq("overdue")


def assurance_summary(frame: pd.DataFrame, today: date) -> dict[str, Any]:
    """Return the headline figures: volumes, review coverage, find and arrest rates.

    Coverage is completed (reviewed or no footage) over sampled reviews; days to review run
    from the stop's local date to the review's; the find rate counts searches whose outcome
    was linked to the object of search among those where that is known; the arrest rate is
    over all searches.
    """
    sampled, status, completed = _status_masks(frame)
    finds, known = _finds(frame)
    days = _days_to_review(frame)
    return {
        "searches": len(frame),
        "sampled": int(sampled.sum()),
        "pending": int((sampled & status.eq("pending")).sum()),
        "overdue": int(_overdue(frame, today).sum()),
        "reviewed": int(status.eq("reviewed").sum()),
        "no_footage": int(status.eq("no_footage").sum()),
        "review_coverage_pct": _pct(int((sampled & completed).sum()), int(sampled.sum())),
        "median_days_to_review": float(days.median()) if len(days) else None,
        "finds": int(finds.sum()),
        "find_known": int(known.sum()),
        "find_rate_pct": _pct(int(finds.sum()), int(known.sum())),
        "arrests": int(_arrests(frame).sum()),
        "arrest_rate_pct": _pct(int(_arrests(frame).sum()), len(frame)),
    }


OVERDUE_AGES = ((1, 7, "1-7 days"), (8, 28, "8-28 days"), (29, None, "over 28 days"))


def review_quality(frame: pd.DataFrame, actions: pd.DataFrame, today: date) -> dict[str, Any]:
    """Return how well reviewing is going: coverage of the reviews already due, overdue
    reviews by how late they are, grades, officers' acknowledgements, the second reviews'
    agreement, and actions open and overdue (`actions`: actions_frame)."""
    sampled, status, completed = _status_masks(frame)
    due = sampled & frame["due_date"].map(lambda d: d is not None and d <= today)
    late = [
        (today - d).days
        for d, pending in zip(frame["due_date"], sampled & status.eq("pending"), strict=True)
        if pending and d < today
    ]
    second = frame["second_sampled"].astype(object).eq(True) & status.eq("reviewed")
    graded_twice = second & frame["second_grade"].notna()
    agree = graded_twice & frame["second_grade"].eq(frame["grade"])
    reviewed = status.eq("reviewed")
    open_actions = actions["status"].eq("open")
    return {
        "due": int(due.sum()),
        "completed_of_due": int((due & completed).sum()),
        "coverage_of_due_pct": _pct(int((due & completed).sum()), int(due.sum())),
        "overdue_by_age": {
            label: sum(1 for days in late if low <= days and (high is None or days <= high))
            for low, high, label in OVERDUE_AGES
        },
        "grades": {g: int((reviewed & frame["grade"].eq(g)).sum()) for g in GRADES},
        "acknowledged": int((completed & frame["acknowledged_at"].notna()).sum()),
        "awaiting_acknowledgement": int((completed & frame["acknowledged_at"].isna()).sum()),
        "second_reviews_drawn": int(second.sum()),
        "second_reviews_done": int(graded_twice.sum()),
        "second_review_agreement_pct": _pct(int(agree.sum()), int(graded_twice.sum())),
        "actions_open": int(open_actions.sum()),
        "actions_overdue": int((open_actions & actions["due_date"].lt(today)).sum()),
    }


def actions_frame(session: Session) -> pd.DataFrame:
    """Return every review action (stop_id, description, owner, due_date, status)."""
    columns = ["stop_id", "description", "owner", "due_date", "status"]
    rows = session.execute(select(*(getattr(ReviewAction, c) for c in columns))).all()
    return pd.DataFrame(rows, columns=columns)


def _days_to_review(frame: pd.DataFrame) -> pd.Series:
    _, _, completed = _status_masks(frame)
    done = frame[completed & frame["review_date"].notna()]
    return pd.Series(
        [
            (reviewed - stopped).days
            for reviewed, stopped in zip(done["review_date"], done["stop_date"], strict=True)
        ],
        dtype=float,
    )


QUEUE_COLUMNS = [
    "stop_id",
    "reference",
    "occurred_at",
    "hotspot_id",
    "officer_id",
    "bwv_recorded",
    "bwv_reference",
    "due_date",
    "overdue",
    "days_overdue",
]


def review_queue(frame: pd.DataFrame, today: date) -> pd.DataFrame:
    """Return the sampled reviews still pending: overdue first, then by due date."""
    sampled, status, _ = _status_masks(frame)
    pending = frame[sampled & status.eq("pending")].copy()
    pending["overdue"] = _overdue(pending, today)
    pending["days_overdue"] = [max((today - d).days, 0) for d in pending["due_date"]]
    pending = pending.rename(columns={"id": "stop_id"})
    pending = pending.sort_values(
        ["overdue", "due_date", "stop_id"], ascending=[False, True, True], kind="stable"
    )
    return pending[QUEUE_COLUMNS].reset_index(drop=True)


REVIEW_OUTCOME_ROWS = (
    ("not_sampled", None),
    ("pending", None),
    *(("reviewed", o) for o in REVIEW_OUTCOMES),
    ("no_footage", None),
)


def review_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Return how many reviews stand at each status and outcome (every row, zeros included)."""
    sampled, status, _ = _status_masks(frame)
    outcome = frame["review_outcome"].astype(object)
    counts = []
    for row_status, row_outcome in REVIEW_OUTCOME_ROWS:
        if row_status == "not_sampled":
            mask = ~sampled & status.eq("pending")
        elif row_status == "pending":
            mask = sampled & status.eq("pending")
        elif row_outcome is None:
            mask = status.eq(row_status)
        else:
            mask = status.eq(row_status) & outcome.eq(row_outcome)
        counts.append((row_status, row_outcome, int(mask.sum())))
    statuses, outcomes, reviews = zip(*counts, strict=True)
    # Object columns keep None for "no outcome" (a text column would turn it into NaN).
    return pd.DataFrame(
        {
            "status": pd.Series(statuses, dtype=object),
            "outcome": pd.Series(outcomes, dtype=object),
            "reviews": pd.Series(reviews, dtype="int64"),
        }
    )


def search_outcomes(frame: pd.DataFrame) -> pd.DataFrame:
    """Return searches per recorded outcome (Arrest, Community resolution, ...), most first."""
    outcome = frame["outcome"].astype(object).fillna(NOT_RECORDED)
    counts = outcome.value_counts(sort=False).rename_axis("outcome").reset_index(name="searches")
    counts["share_pct"] = [_pct(n, len(frame)) for n in counts["searches"]]
    return counts.sort_values(
        ["searches", "outcome"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


BREAKDOWNS = (
    "hotspot_id",
    "officer_id",
    "object_of_search",
    "self_defined_ethnicity",
    "officer_defined_ethnicity",
    "operation_id",
)


def breakdown(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Return per group of `by`: searches, share, finds and find rate, arrests and arrest rate,
    review coverage and referrals; largest group first.
    """
    if by not in BREAKDOWNS:
        raise ValueError(f"cannot break down by {by!r}; use one of {', '.join(BREAKDOWNS)}")
    blank = OUTSIDE_HOT_SPOTS if by == "hotspot_id" else NOT_RECORDED
    sampled, _, completed = _status_masks(frame)
    finds, known = _finds(frame)
    parts = pd.DataFrame(
        {
            by: frame[by].astype(object).where(frame[by].notna(), blank).astype(str),
            "searches": 1,
            "finds": finds.astype(int),
            "find_known": known.astype(int),
            "arrests": _arrests(frame).astype(int),
            "sampled": sampled.astype(int),
            "reviews_completed": (sampled & completed).astype(int),
            "referred": frame["review_outcome"].astype(object).eq("referred").astype(int),
        }
    )
    table = parts.groupby(by, sort=False).sum().reset_index()
    total = len(frame)
    table["share_pct"] = [_pct(n, total) for n in table["searches"]]
    table["find_rate_pct"] = [
        _pct(f, k) for f, k in zip(table["finds"], table["find_known"], strict=True)
    ]
    table["arrest_rate_pct"] = [
        _pct(a, n) for a, n in zip(table["arrests"], table["searches"], strict=True)
    ]
    table["review_coverage_pct"] = [
        _pct(c, s) for c, s in zip(table["reviews_completed"], table["sampled"], strict=True)
    ]
    table = table.sort_values(["searches", by], ascending=[False, True], kind="stable")
    return table[
        [
            by,
            "searches",
            "share_pct",
            "finds",
            "find_known",
            "find_rate_pct",
            "arrests",
            "arrest_rate_pct",
            "sampled",
            "reviews_completed",
            "review_coverage_pct",
            "referred",
        ]
    ].reset_index(drop=True)


def ethnicity_breakdown(
    frame: pd.DataFrame, population: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Return the breakdown by full self-defined ethnicity ("White - Irish").

    Given a population per ethnicity (keys as in the column), also `searches_per_1000` and
    `disproportionality_ratio`: the group's rate per 1,000 over the White groups' combined
    rate. Without one there is no ratio: searches alone do not allow for the size of each
    group (tracker.stops.search_figures has the five broad groups).
    """
    by = "self_defined_ethnicity"
    table = breakdown(frame, by)
    if population is not None:
        white = table[by].str.startswith(WHITE_PREFIX)
        white_searches = int(table.loc[white, "searches"].sum())
        table["population"] = [population.get(group) for group in table[by]]
        table["searches_per_1000"] = [
            1000.0 * s / p if p else None
            for s, p in zip(table["searches"], table["population"], strict=True)
        ]
        white_population = sum(p for g, p in population.items() if g.startswith(WHITE_PREFIX))
        white_rate = 1000.0 * white_searches / white_population if white_population else None
        table["disproportionality_ratio"] = [
            r / white_rate if r is not None and white_rate else None
            for r in table["searches_per_1000"]
        ]
    return table


def stop_dict(stop: StopSearch, review: BwvReview | None, today: date) -> dict[str, Any]:
    """Return one stop and its review as a JSON-ready dict (for the API and detail pages)."""
    values = {
        name: getattr(stop, name)
        for name in ("id", *STOP_FIELDS, "hotspot_id", "operation_id", "source_file", "source_line")
    }
    if review is not None:
        values.update({column: getattr(review, name) for name, column in REVIEW_COLUMNS.items()})
        values["overdue"] = is_overdue(review, today)
    return plain_values(values)


def action_dict(action: ReviewAction, today: date) -> dict[str, Any]:
    """Return one review action as a JSON-ready dict, with whether it is overdue."""
    values = {
        name: getattr(action, name)
        for name in ("id", "description", "owner", "due_date", "status", "created_at", "done_at")
    }
    values["overdue"] = action_is_overdue(action, today)
    return plain_values(values)


def assurance_tables(
    frame: pd.DataFrame, on: date, population: Mapping[str, float] | None
) -> dict[str, pd.DataFrame]:
    """Return every table of the dashboard by its CSV name (`population`: the detailed
    table's, keyed by full self-defined ethnicity)."""
    level = population_level(population) if population else None
    return {
        "summary": pd.DataFrame([assurance_summary(frame, on)]),
        "queue": review_queue(frame, on),
        "review-outcomes": review_outcomes(frame),
        "search-outcomes": search_outcomes(frame),
        "hotspots": breakdown(frame, "hotspot_id"),
        "officers": breakdown(frame, "officer_id"),
        "objects": breakdown(frame, "object_of_search"),
        "ethnicity": ethnicity_breakdown(
            frame, population if level == "self_defined_ethnicity" else None
        ),
    }
