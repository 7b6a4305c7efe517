"""Administration pages: the audit log, the users, and the operation's plan."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from flask import Blueprint, render_template, request
from sqlalchemy import select

from tracker.models import AuditEvent, User
from tracker.plan import plan_table, stored_plan
from web.auth import DOSAGE_READERS, roles_required
from web.dashboard import (
    csv_response,
    current_operation,
    params,
    parse_day,
    table_rows,
    today,
    wants_csv,
)
from web.database import get_db

blueprint = Blueprint("admin", __name__)
AUDIT_LIMIT = 2000


@blueprint.get("/admin/audit")
@roles_required("admin")
def audit():
    """Who did what and when: log-ins, plans, assignments, reviews, views of tracks."""
    to_day = parse_day("to", today())
    from_day = parse_day("from", to_day - timedelta(days=30))
    action = (request.args.get("action") or "").strip()
    actor = (request.args.get("actor") or "").strip()
    zone = params().zone
    start = pd.Timestamp(from_day, tz=zone).tz_convert("UTC").to_pydatetime()
    end = pd.Timestamp(to_day + timedelta(days=1), tz=zone).tz_convert("UTC").to_pydatetime()
    statement = (select(AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.subject,
                        AuditEvent.before, AuditEvent.after)
                 .where(AuditEvent.at >= start, AuditEvent.at < end)
                 .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()))
    if action:
        statement = statement.where(AuditEvent.action == action)
    if actor:
        statement = statement.where(AuditEvent.actor == actor)
    rows = get_db().execute(statement.limit(None if wants_csv() else AUDIT_LIMIT)).all()
    frame = pd.DataFrame(rows, columns=["at", "actor", "action", "subject", "before", "after"])
    frame["before"] = frame["before"].map(_compact)
    frame["after"] = frame["after"].map(_compact)
    if wants_csv():
        return csv_response(frame, f"audit-{from_day}-{to_day}.csv")
    actions = get_db().scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    return render_template("admin_audit.html", rows=table_rows(frame), from_day=from_day,
                           to_day=to_day, action=action, actor=actor, actions=list(actions),
                           limit=AUDIT_LIMIT)


def _compact(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


@blueprint.get("/admin/users")
@roles_required("admin")
def users():
    """The accounts and their roles (accounts are created with `python -m tracker users`)."""
    rows = get_db().execute(select(User.username, User.role, User.officer_id, User.active,
                                   User.created_at, User.last_login)
                            .order_by(User.username)).all()
    frame = pd.DataFrame(rows, columns=["username", "role", "officer_id", "active", "created_at",
                                        "last_login"])
    if wants_csv():
        return csv_response(frame, "users.csv")
    return render_template("admin_users.html", rows=table_rows(frame))


@blueprint.get("/plan")
@roles_required(*DOSAGE_READERS)
def plan():
    """The operation's plan: every hot spot's phases of targets and patrol windows."""
    operation = current_operation()
    frame = plan_table(stored_plan(get_db(), operation))
    if wants_csv():
        return csv_response(frame, "plan.csv")
    return render_template("plan.html", operation=operation, rows=table_rows(frame))
