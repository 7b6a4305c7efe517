"""Stop-and-search records and their body-worn video (BWV) reviews (docs/stops.md).

Kept apart from tracker.foundation.models so that this area can grow without touching the
core schema; the Alembic environment imports this module so autogenerate sees its tables.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from tracker.foundation.models import Base, utc_now

REVIEW_STATUSES = ("pending", "reviewed", "no_footage")
REVIEW_OUTCOMES = ("no_issues", "learning_identified", "referred")
RAG_RATINGS = ("red", "amber", "green")
GOWISELY_ANSWERS = ("yes", "partly", "no")
# Were the grounds objectively reasonable (PACE Code A, 2.2)? Same three answers.
GROUNDS_ANSWERS = GOWISELY_ANSWERS
# What the camera recorded of the encounter; anything but "whole" needs a reason.
CAMERA_COVERAGE = ("whole", "joined_late", "stopped_early", "none")
# The officer's conduct, each answered yes / partly / no.
CONDUCT = ("respectful", "explained", "de_escalated")
GRADES = ("good_practice", "learning", "concern")
ACTION_STATUSES = ("open", "done")
# GOWISELY: what an officer must tell the person searched (PACE Code A, 3.8).
GOWISELY = (
    "grounds",
    "object",
    "warrant_card",
    "identity",
    "station",
    "entitlement",
    "legal_power",
    "you_are_detained",
)


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_allowed")


class StopSearch(Base):
    """One stop and search: the published fields, the force's own, and what it is linked to."""

    __tablename__ = "stop_searches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The columns of the public police.uk data, in its order.
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    part_of_policing_operation: Mapped[bool | None]
    policing_operation: Mapped[str | None] = mapped_column(String(200))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    gender: Mapped[str | None] = mapped_column(String(64))
    age_range: Mapped[str | None] = mapped_column(String(64))
    self_defined_ethnicity: Mapped[str | None] = mapped_column(String(200))
    officer_defined_ethnicity: Mapped[str | None] = mapped_column(String(200))
    legislation: Mapped[str | None] = mapped_column(String(200))
    object_of_search: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(200))
    outcome_linked_to_object: Mapped[bool | None]
    removal_of_more_than_outer_clothing: Mapped[bool | None]
    # What the force records but does not publish.
    reference: Mapped[str | None] = mapped_column(String(64), unique=True)
    officer_id: Mapped[str | None] = mapped_column(ForeignKey("officers.id"), index=True)
    grounds: Mapped[str | None] = mapped_column(Text)
    bwv_recorded: Mapped[bool | None]
    bwv_reference: Mapped[str | None] = mapped_column(String(128))
    # Links, not foreign keys: hot spot sets are replaced wholesale, and operations live
    # in the plan's tables.
    hotspot_id: Mapped[str | None] = mapped_column(String(64), index=True)
    operation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    import_key: Mapped[str] = mapped_column(String(64), unique=True)
    source_file: Mapped[str | None] = mapped_column(String(255))
    source_line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class BwvReview(Base):
    """The BWV review of one stop: pending, then reviewed (with the GOWISELY check) or no footage.

    Each GOWISELY column holds whether the footage shows the officer covering that point:
    yes, partly, no, or null while not yet answered.
    """

    __tablename__ = "bwv_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stop_id: Mapped[int] = mapped_column(
        ForeignKey("stop_searches.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), default="pending")
    outcome: Mapped[str | None] = mapped_column(String(32))
    no_footage_reason: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None]
    grounds: Mapped[str | None] = mapped_column(String(8))
    object: Mapped[str | None] = mapped_column(String(8))
    warrant_card: Mapped[str | None] = mapped_column(String(8))
    identity: Mapped[str | None] = mapped_column(String(8))
    station: Mapped[str | None] = mapped_column(String(8))
    entitlement: Mapped[str | None] = mapped_column(String(8))
    legal_power: Mapped[str | None] = mapped_column(String(8))
    you_are_detained: Mapped[str | None] = mapped_column(String(8))
    findings: Mapped[str | None] = mapped_column(Text)
    rag: Mapped[str | None] = mapped_column(String(8))
    due_date: Mapped[date] = mapped_column(Date, index=True)
    sampled: Mapped[bool] = mapped_column(default=True)
    grounds_reasonable: Mapped[str | None] = mapped_column(String(8))
    grounds_note: Mapped[str | None] = mapped_column(Text)
    camera: Mapped[str | None] = mapped_column(String(16))
    camera_note: Mapped[str | None] = mapped_column(Text)
    conduct_respectful: Mapped[str | None] = mapped_column(String(8))
    conduct_explained: Mapped[str | None] = mapped_column(String(8))
    conduct_de_escalated: Mapped[str | None] = mapped_column(String(8))
    grade: Mapped[str | None] = mapped_column(String(16))
    # The officer has read the findings (cleared when the review is corrected).
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    # A second reviewer re-grades a reproducible sample of completed reviews.
    second_sampled: Mapped[bool] = mapped_column(default=False, server_default=false())
    second_reviewer: Mapped[str | None] = mapped_column(String(64))
    second_reviewed_at: Mapped[datetime | None]
    second_grade: Mapped[str | None] = mapped_column(String(16))
    second_note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        _one_of("status", REVIEW_STATUSES),
        _one_of("outcome", REVIEW_OUTCOMES),
        _one_of("rag", RAG_RATINGS),
        *(_one_of(column, GOWISELY_ANSWERS) for column in GOWISELY),
        _one_of("grounds_reasonable", GROUNDS_ANSWERS),
        _one_of("camera", CAMERA_COVERAGE),
        *(_one_of(f"conduct_{c}", GOWISELY_ANSWERS) for c in CONDUCT),
        _one_of("grade", GRADES),
        _one_of("second_grade", GRADES),
    )


class ReviewAction(Base):
    """Something a review asks to be done (training, a debrief, a referral), with whose it
    is, by when, and whether it is done."""

    __tablename__ = "review_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stop_id: Mapped[int] = mapped_column(
        ForeignKey("stop_searches.id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(200))
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    done_at: Mapped[datetime | None]
    __table_args__ = (_one_of("status", ACTION_STATUSES),)
