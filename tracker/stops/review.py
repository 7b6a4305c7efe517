"""The BWV review workflow of a stop and search (docs/stops.md): pending, then reviewed
(no issues / learning identified / referred) or no footage; the officer's acknowledgement
of the findings, a second review of a sample, and actions; every change audited.

Functions take a Session and never commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.foundation import parsing
from tracker.foundation.models import utc_now
from tracker.stops.models import (
    ACTION_STATUSES,
    CAMERA_COVERAGE,
    CONDUCT,
    GOWISELY,
    GOWISELY_ANSWERS,
    GRADES,
    GROUNDS_ANSWERS,
    RAG_RATINGS,
    REVIEW_OUTCOMES,
    REVIEW_STATUSES,
    BwvReview,
    ReviewAction,
    StopSearch,
)
from tracker.stops.records import (
    ReviewError,
    StopNotFound,
    clean_text,
    is_blank,
    plain_values,
    stop_subject,
)

CONDUCT_FIELDS = tuple(f"conduct_{c}" for c in CONDUCT)
# What a completed review must answer beside GOWISELY (the judgement of the encounter).
ASSESSMENT_FIELDS = ("grounds_reasonable", "camera", *CONDUCT_FIELDS, "grade")
REVIEW_FIELDS = (
    "status",
    "outcome",
    "no_footage_reason",
    "findings",
    "rag",
    *GOWISELY,
    *ASSESSMENT_FIELDS,
    "grounds_note",
    "camera_note",
    "sampled",
)
AUDITED_FIELDS = (*REVIEW_FIELDS, "reviewer", "reviewed_at")
COMPLETED = ("reviewed", "no_footage")
CHOICES = {
    "outcome": (REVIEW_OUTCOMES, "outcome"),
    "rag": (RAG_RATINGS, "RAG rating"),
    "grounds_reasonable": (GROUNDS_ANSWERS, "reasonable grounds"),
    "camera": (CAMERA_COVERAGE, "camera coverage"),
    "grade": (GRADES, "grade"),
    **{f"conduct_{c}": (GOWISELY_ANSWERS, f"conduct: {c.replace('_', '-')}") for c in CONDUCT},
    **{name: (GOWISELY_ANSWERS, f"GOWISELY {name.replace('_', ' ')}") for name in GOWISELY},
}


def review_of(session: Session, stop_id: int) -> BwvReview:
    """Return the BWV review of a stop, or raise StopNotFound."""
    review = session.scalar(select(BwvReview).where(BwvReview.stop_id == stop_id))
    if review is None:
        raise StopNotFound(f"no stop and search with id {stop_id}")
    return review


def _choice(value: Any, allowed: tuple[str, ...], label: str) -> str | None:
    if is_blank(value):
        return None
    if value not in allowed:
        raise ValueError(f"{label} {parsing.shortened(value)} must be one of {', '.join(allowed)}")
    return value


def _parse_change(name: str, value: Any) -> Any:
    if name == "status":
        if value not in REVIEW_STATUSES:
            raise ValueError(
                f"status {parsing.shortened(value)} must be one of {', '.join(REVIEW_STATUSES)}"
            )
        return value
    if name in CHOICES:
        return _choice(value, *CHOICES[name])
    if name == "sampled":
        if not isinstance(value, bool):
            raise ValueError(f"sampled {parsing.shortened(value)} must be true or false")
        return value
    return clean_text(value, name.replace("_", " "), None)


def update_review(
    session: Session,
    stop_id: int,
    actor: str,
    changes: Mapping[str, Any],
    *,
    now: datetime | None = None,
    reviewer: str | None = None,
    second_review_rate: float = 0.0,
) -> BwvReview:
    """Apply changes to a stop's BWV review after checking the workflow; audit what changed
    as `actor` (the user, and the API token if one was used; `reviewer` is the user, if
    different). A review completed for the first time is drawn for a second review with
    probability `second_review_rate`, reproducibly per stop.

    pending -> reviewed needs an outcome, all eight GOWISELY answers and a RAG rating;
    pending -> no_footage needs a reason. A completed review can be corrected (or switched
    between reviewed and no footage) but not reopened; whoever completes or corrects it
    becomes its reviewer. Answers and findings may be saved while it is still pending.
    """
    # Locked (on PostgreSQL) so that two reviewers' changes, and their audit, come in turn.
    review = session.scalar(select(BwvReview).where(BwvReview.stop_id == stop_id).with_for_update())
    if review is None:
        raise StopNotFound(f"no stop and search with id {stop_id}")
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in REVIEW_FIELDS:
            errors[name] = f"{parsing.shortened(name)} is not a field of a review"
            continue
        try:
            parsed[name] = _parse_change(name, value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ReviewError(errors)

    before = {name: getattr(review, name) for name in AUDITED_FIELDS}
    after = {**before, **parsed}
    status = after["status"]
    if status == "pending" and before["status"] in COMPLETED:
        errors["status"] = "a completed review can be corrected but not reopened"
    elif status == "pending" and after["outcome"] is not None:
        errors["outcome"] = "an outcome needs the status 'reviewed'"
    elif status == "reviewed":
        if after["outcome"] is None:
            errors["outcome"] = "a completed review needs an outcome"
        for name in GOWISELY:
            if after[name] is None:
                errors[name] = f"GOWISELY {name.replace('_', ' ')}: not answered"
        if after["rag"] is None:
            errors["rag"] = "a completed review needs a RAG rating"
        for name in ASSESSMENT_FIELDS:
            if after[name] is None:
                errors[name] = f"{CHOICES[name][1]}: not answered"
        if after["grounds_reasonable"] in ("partly", "no") and after["grounds_note"] is None:
            errors["grounds_note"] = "say what was missing from the grounds"
        if after["camera"] not in (None, "whole") and after["camera_note"] is None:
            errors["camera_note"] = "say why the camera did not record the whole encounter"
        after["no_footage_reason"] = None
    elif status == "no_footage":
        if after["no_footage_reason"] is None:
            errors["no_footage_reason"] = "say why there is no footage"
        # With no footage nothing was assessed: a checklist or outcome would be invented.
        for name in ("outcome", "rag", *GOWISELY, *ASSESSMENT_FIELDS):
            if name in parsed and parsed[name] is not None:
                errors[name] = f"{name} cannot be given when there is no footage"
            after[name] = None
        after["camera"] = "none"  # nothing recorded is what "no footage" means
    if errors:
        raise ReviewError(errors)

    changed = [name for name in REVIEW_FIELDS if after[name] != before[name]]
    if not changed:
        return review
    # Changing whether a stop is sampled is not a review: it leaves the reviewer as it was.
    if status in COMPLETED and set(changed) - {"sampled"}:
        after["reviewer"], after["reviewed_at"] = reviewer or actor, now or utc_now()
        changed += ["reviewer", "reviewed_at"]
        # Changed findings need reading again; a review is drawn for a second look once.
        review.acknowledged_by = review.acknowledged_at = None
        if before["status"] not in COMPLETED:
            review.second_sampled = _drawn(stop_id, second_review_rate)
    for name in changed:
        setattr(review, name, after[name])
    record(
        session,
        actor,
        "bwv_review.update",
        stop_subject(stop_id),
        plain_values({name: before[name] for name in changed}),
        plain_values({name: after[name] for name in changed}),
    )
    return review


def review_state(sampled: bool, status: str, due_date: date | None, today: date) -> str:
    """Return where a stop's review stands: reviewed, no_footage, not sampled, pending, or
    overdue (sampled for review and still pending after its due date)."""
    if status in COMPLETED:
        return status
    if not sampled:
        return "not sampled"
    return "overdue" if due_date is not None and due_date < today else "pending"


def is_overdue(review: BwvReview, today: date) -> bool:
    """Return whether a review is overdue (review_state)."""
    return review_state(review.sampled, review.status, review.due_date, today) == "overdue"


def _drawn(stop_id: int, rate: float) -> bool:
    """Whether a stop is in the second-review sample: reproducible, about `rate` of all."""
    if rate >= 1:
        return True
    digest = hashlib.sha256(f"second review {stop_id}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13 < rate


def _completed_review(session: Session, stop_id: int) -> BwvReview:
    review = session.scalar(select(BwvReview).where(BwvReview.stop_id == stop_id).with_for_update())
    if review is None:
        raise StopNotFound(f"no stop and search with id {stop_id}")
    if review.status not in COMPLETED:
        raise ReviewError({"status": "the review is not completed yet"})
    return review


def acknowledge(session: Session, stop_id: int, officer_id: str, actor: str) -> BwvReview:
    """Record that the stop's own officer has read the review's findings."""
    review = _completed_review(session, stop_id)
    if session.get(StopSearch, stop_id).officer_id != officer_id:
        raise ReviewError({"officer": "only the officer who made the stop acknowledges it"})
    if review.acknowledged_at is None:
        review.acknowledged_by, review.acknowledged_at = actor, utc_now()
        after = {"acknowledged_by": actor, "acknowledged_at": review.acknowledged_at}
        record(
            session,
            actor,
            "bwv_review.acknowledge",
            stop_subject(stop_id),
            None,
            plain_values(after),
        )
    return review


def second_review(
    session: Session, stop_id: int, reviewer: str, grade: Any, note: Any, actor: str | None = None
) -> BwvReview:
    """Record a second reviewer's grade of a review drawn for it (someone other than its
    first reviewer); agreement is the two grades being equal."""
    review = _completed_review(session, stop_id)
    errors = {}
    if not review.second_sampled:
        errors["second_sampled"] = "this review was not drawn for a second review"
    elif review.status != "reviewed":
        errors["status"] = "a review without footage has no grade to check"
    elif reviewer == review.reviewer:
        errors["second_reviewer"] = "the second review must be by someone else"
    try:
        grade = _choice(grade, GRADES, "grade")
        note = clean_text(note, "note", None)
    except ValueError as exc:
        errors["second_grade"] = str(exc)
    if grade is None and "second_grade" not in errors:
        errors["second_grade"] = "grade: not answered"
    if errors:
        raise ReviewError(errors)
    before = {n: getattr(review, n) for n in ("second_reviewer", "second_grade", "second_note")}
    review.second_reviewer, review.second_grade, review.second_note = reviewer, grade, note
    review.second_reviewed_at = utc_now()
    after = {"second_reviewer": reviewer, "second_grade": grade, "second_note": note}
    record(
        session,
        actor or reviewer,
        "bwv_review.second",
        stop_subject(stop_id),
        plain_values(before),
        plain_values(after),
    )
    return review


def add_action(
    session: Session, stop_id: int, actor: str, description: Any, owner: Any, due_date: Any
) -> ReviewAction:
    """Add an action to a stop's review (what is to be done, whose it is, by when)."""
    if session.get(StopSearch, stop_id) is None:
        raise StopNotFound(f"no stop and search with id {stop_id}")
    errors = {}
    values = {}
    for name, value, limit in (("description", description, None), ("owner", owner, 200)):
        try:
            values[name] = clean_text(value, name, limit)
        except ValueError as exc:
            errors[name] = str(exc)
        else:
            if values[name] is None:
                errors[name] = f"{name}: required"
    try:
        day = due_date if isinstance(due_date, date) else date.fromisoformat(str(due_date))
    except ValueError:
        errors["due_date"] = f"due date {parsing.shortened(due_date)} is not YYYY-MM-DD"
    else:
        try:
            values["due_date"] = parsing.check_day(day)
        except ValueError as exc:
            errors["due_date"] = f"due date: {exc}"
    if errors:
        raise ReviewError(errors)
    action = ReviewAction(stop_id=stop_id, status="open", **values)
    session.add(action)
    session.flush()
    record(
        session,
        actor,
        "review_action.add",
        stop_subject(stop_id),
        None,
        plain_values({"action": action.id, **values}),
    )
    return action


def set_action_status(session: Session, action_id: int, status: Any, actor: str) -> ReviewAction:
    """Mark an action done (or open again)."""
    action = session.get(ReviewAction, action_id)
    if action is None:
        raise StopNotFound(f"no review action {action_id}")
    if status not in ACTION_STATUSES:
        raise ReviewError({"status": f"status must be one of {', '.join(ACTION_STATUSES)}"})
    if status != action.status:
        before = {"action": action.id, "status": action.status}
        action.status = status
        action.done_at = utc_now() if status == "done" else None
        record(
            session,
            actor,
            "review_action.update",
            stop_subject(action.stop_id),
            before,
            {"action": action.id, "status": status},
        )
    return action


def actions_of(session: Session, stop_id: int) -> list[ReviewAction]:
    """Return a stop's review actions, oldest first."""
    return list(
        session.scalars(
            select(ReviewAction).where(ReviewAction.stop_id == stop_id).order_by(ReviewAction.id)
        )
    )


def action_is_overdue(action: ReviewAction, today: date) -> bool:
    return action.status == "open" and action.due_date < today
