"""The BWV review workflow of a stop and search (docs/stops.md): pending, then reviewed
(no issues / learning identified / referred) or no footage; every change audited.

Functions take a Session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.foundation.models import utc_now
from tracker.stops.models import (
    GOWISELY,
    GOWISELY_ANSWERS,
    RAG_RATINGS,
    REVIEW_OUTCOMES,
    REVIEW_STATUSES,
    BwvReview,
)
from tracker.stops.records import (
    ReviewError,
    StopNotFound,
    clean_text,
    is_blank,
    plain_values,
    stop_subject,
)

REVIEW_FIELDS = ("status", "outcome", "no_footage_reason", "findings", "rag", *GOWISELY, "sampled")
AUDITED_FIELDS = (*REVIEW_FIELDS, "reviewer", "reviewed_at")
COMPLETED = ("reviewed", "no_footage")


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
        raise ValueError(f"{label} {value!r} must be one of {', '.join(allowed)}")
    return value


def _parse_change(name: str, value: Any) -> Any:
    if name == "status":
        if value not in REVIEW_STATUSES:
            raise ValueError(f"status {value!r} must be one of {', '.join(REVIEW_STATUSES)}")
        return value
    if name == "outcome":
        return _choice(value, REVIEW_OUTCOMES, "outcome")
    if name == "rag":
        return _choice(value, RAG_RATINGS, "RAG rating")
    if name in GOWISELY:
        return _choice(value, GOWISELY_ANSWERS, f"GOWISELY {name.replace('_', ' ')}")
    if name == "sampled":
        if not isinstance(value, bool):
            raise ValueError(f"sampled {value!r} must be true or false")
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
) -> BwvReview:
    """Apply changes to a stop's BWV review after checking the workflow; audit what changed
    as `actor` (the user, and the API token if one was used; `reviewer` is the user, if
    different).

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
            errors[name] = f"{name!r} is not a field of a review"
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
        after["no_footage_reason"] = None
    elif status == "no_footage":
        if after["no_footage_reason"] is None:
            errors["no_footage_reason"] = "say why there is no footage"
        # With no footage nothing was assessed: a checklist or outcome would be invented.
        for name in ("outcome", "rag", *GOWISELY):
            if name in parsed and parsed[name] is not None:
                errors[name] = f"{name} cannot be given when there is no footage"
            after[name] = None
    if errors:
        raise ReviewError(errors)

    changed = [name for name in REVIEW_FIELDS if after[name] != before[name]]
    if not changed:
        return review
    # Changing whether a stop is sampled is not a review: it leaves the reviewer as it was.
    if status in COMPLETED and set(changed) - {"sampled"}:
        after["reviewer"], after["reviewed_at"] = reviewer or actor, now or utc_now()
        changed += ["reviewer", "reviewed_at"]
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
