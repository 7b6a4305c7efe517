"""The problem-solving plans' tables (docs/partners.md): one SARA plan per hot spot, its
actions, each action's dated updates, and every version of the plan.

Kept apart from tracker.foundation.models so that this area can grow without touching the
core schema; the Alembic environment imports this module so autogenerate sees its tables.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tracker.foundation.models import Base, utc_now

OPEN, IN_PROGRESS, DONE, CANCELLED = "open", "in_progress", "done", "cancelled"
ACTION_STATUSES = (OPEN, IN_PROGRESS, DONE, CANCELLED)
# Still to be done: these can be overdue.
UNFINISHED = (OPEN, IN_PROGRESS)
# The plan's texts, in SARA order: Scanning, Analysis (the problem analysis triangle and the
# evidence), Assessment.
PLAN_FIELDS = (
    "problem",
    "harm",
    "offender",
    "victim",
    "place",
    "evidence",
    "measures",
    "result",
)


def _status_allowed(column: str = "status") -> CheckConstraint:
    allowed = ", ".join(f"'{s}'" for s in ACTION_STATUSES)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_allowed")


class SaraPlan(Base):
    """The problem-solving plan of one hot spot (a link by id, not a foreign key: hot spot
    sets are replaced wholesale). `version` grows with every change of the plan or of its
    actions; sara_versions holds what each changed."""

    __tablename__ = "sara_plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hotspot_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Scanning: the problem, and the harm it causes.
    problem: Mapped[str] = mapped_column(Text, default="")
    harm: Mapped[str] = mapped_column(Text, default="")
    # Analysis: the problem analysis triangle, and the evidence behind it.
    offender: Mapped[str] = mapped_column(Text, default="")
    victim: Mapped[str] = mapped_column(Text, default="")  # victim or target
    place: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str] = mapped_column(Text, default="")
    # Assessment: what will be measured, and what was found.
    measures: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=0)  # versions so far
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)


class SaraAction(Base):
    """A response: what is to be done, by which agency and whom, by when, and how it stands."""

    __tablename__ = "sara_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("sara_plans.id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text)
    owner_agency: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(200))  # a role or team, shown to partners
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now)
    __table_args__ = (_status_allowed(),)


class SaraActionUpdate(Base):
    """A dated update of an action: its status after the update, and a note. The first is
    written when the action is added, so an action's status on any past day is known."""

    __tablename__ = "sara_action_updates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("sara_actions.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utc_now)
    author: Mapped[str] = mapped_column(String(128))  # as the audit log names them
    author_agency: Mapped[str] = mapped_column(String(200))  # as partners are shown them
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (_status_allowed(),)


class SaraVersion(Base):
    """One version of a plan: who changed what, when. `changes` maps each changed field to
    {"before": ..., "after": ...}; an action's change names the action."""

    __tablename__ = "sara_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("sara_plans.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utc_now)
    actor: Mapped[str] = mapped_column(String(128))
    actor_agency: Mapped[str] = mapped_column(String(200))
    change: Mapped[str] = mapped_column(String(32))  # plan, action.add, action.update
    action_id: Mapped[int | None] = mapped_column(Integer)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    __table_args__ = (UniqueConstraint("plan_id", "version"),)
