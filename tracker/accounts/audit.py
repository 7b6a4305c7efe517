"""The audit log: who changed a review, a plan or an assignment, and who viewed a track."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.foundation.models import AuditEvent, utc_now


def record(
    session: Session,
    actor: str,
    action: str,
    subject: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add one audit event (committed with the change it describes)."""
    session.add(
        AuditEvent(
            at=utc_now(), actor=actor, action=action, subject=subject, before=before, after=after
        )
    )


def events_about(session: Session, subject: str) -> list[AuditEvent]:
    """Return the audit events of one subject ("stop 12", ...), oldest first."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == subject)
            .order_by(AuditEvent.at, AuditEvent.id)
        )
    )
