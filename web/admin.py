"""Administration pages: the audit log, the users and their API tokens, and the operation's
plan."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from tracker.accounts.users import (
    MAX_TOKEN_NAME,
    SCOPES,
    UserError,
    issue_token,
    revoke_token_id,
    tokens_table,
)
from tracker.foundation.models import AuditEvent, User, utc_now
from tracker.plan.models import Operation
from tracker.plan.reader import parse_plan, require_dosage_tz
from tracker.plan.storage import find_operation, load_plan, plan_table, stored_plan
from tracker.plan.targets import PlanError
from tracker.stops.records import relink_stops
from web.auth import DOSAGE_READERS, roles_required
from web.database import get_db
from web.views import (
    csv_response,
    current_operation,
    local_time,
    params,
    period,
    table_rows,
    wants_csv,
)

blueprint = Blueprint("admin", __name__)
AUDIT_LIMIT = 2000
MAX_TOKEN_DAYS = 3650
MAX_PLAN_BYTES = 1024 * 1024


@blueprint.get("/admin/audit")
@roles_required("admin")
def audit():
    """Who did what and when: log-ins, plans, assignments, reviews, views of tracks."""
    from_day, to_day = period(last_days=31)
    action = (request.args.get("action") or "").strip()
    actor = (request.args.get("actor") or "").strip()
    zone = params().zone
    start = pd.Timestamp(from_day, tz=zone).tz_convert("UTC").to_pydatetime()
    end = pd.Timestamp(to_day + timedelta(days=1), tz=zone).tz_convert("UTC").to_pydatetime()
    statement = (
        select(
            AuditEvent.at,
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.subject,
            AuditEvent.before,
            AuditEvent.after,
        )
        .where(AuditEvent.at >= start, AuditEvent.at < end)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    )
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
    return render_template(
        "admin_audit.html",
        rows=table_rows(frame),
        from_day=from_day,
        to_day=to_day,
        action=action,
        actor=actor,
        actions=list(actions),
        limit=AUDIT_LIMIT,
    )


def _compact(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


@blueprint.get("/admin/users")
@roles_required("admin")
def users():
    """The accounts and their roles (accounts are created with `tracker users`)."""
    rows = (
        get_db()
        .execute(
            select(
                User.username,
                User.role,
                User.officer_id,
                User.active,
                User.created_at,
                User.last_login,
            ).order_by(User.username)
        )
        .all()
    )
    frame = pd.DataFrame(
        rows, columns=["username", "role", "officer_id", "active", "created_at", "last_login"]
    )
    if wants_csv():
        return csv_response(frame, "users.csv")
    return render_template("admin_users.html", rows=table_rows(frame))


@blueprint.get("/admin/tokens")
@roles_required("admin")
def tokens():
    """API tokens: whose, what they may do, until when, when last used; revoke or issue."""
    return _tokens_page({}, 200)


@blueprint.post("/admin/tokens")
@roles_required("admin")
def issue():
    """Issue a token for a user; it is shown once, on the page this answers with."""
    form = {k: (request.form.get(k) or "").strip() for k in ("username", "name", "scope", "days")}
    errors = {}
    expires_at = None
    if form["days"]:
        try:
            days = int(form["days"])
        except ValueError:
            days = 0
        if not 1 <= days <= MAX_TOKEN_DAYS:
            errors["days"] = f"a whole number of days from 1 to {MAX_TOKEN_DAYS}, or empty"
        else:
            expires_at = utc_now() + timedelta(days=days)
    if not errors:
        db = get_db()
        try:
            token = issue_token(
                db,
                form["username"],
                form["name"],
                actor=current_user.audit_name,
                scope=form["scope"],
                expires_at=expires_at,
            )
        except UserError as exc:
            db.rollback()
            errors["form"] = str(exc)
        else:
            db.commit()
            return _tokens_page({}, 201, issued=token, form=form)
    return _tokens_page(errors, 400, form=form)


@blueprint.post("/admin/tokens/<int:token_id>/revoke")
@roles_required("admin")
def revoke(token_id: int):
    """Revoke one token at once: its next request is refused."""
    db = get_db()
    if not revoke_token_id(db, token_id, actor=current_user.audit_name):
        abort(404, f"No token {token_id}, or it is already revoked.")
    db.commit()
    flash(f"Token {token_id} is revoked.", "info")
    return redirect(url_for("admin.tokens"))


def _tokens_page(errors: dict, status: int, issued: str | None = None, form: dict | None = None):
    db = get_db()
    frame = pd.DataFrame(
        tokens_table(db),
        columns=[
            "id",
            "username",
            "name",
            "scope",
            "created_at",
            "expires_at",
            "last_used",
            "state",
        ],
    )
    if wants_csv():
        return csv_response(frame, "tokens.csv")
    for column in ("created_at", "expires_at", "last_used"):
        frame[column] = frame[column].map(local_time)
    usernames = db.scalars(select(User.username).where(User.active).order_by(User.username))
    page = render_template(
        "admin_tokens.html",
        rows=table_rows(frame),
        usernames=list(usernames),
        scopes=SCOPES,
        errors=errors,
        issued=issued,
        form=form or {},
        max_name=MAX_TOKEN_NAME,
        max_days=MAX_TOKEN_DAYS,
    )
    return page, status


@blueprint.get("/plan")
@roles_required(*DOSAGE_READERS)
def plan():
    """The operation's plan: every hot spot's phases of targets and patrol windows."""
    if wants_csv():
        operation = current_operation()
        return csv_response(plan_table(stored_plan(get_db(), operation)), "plan.csv")
    return _plan_page([], 200)


@blueprint.post("/plan")
@roles_required("admin")
def load_plan_file():
    """Load a YAML plan file, as `tracker plan load` does (validated, audited)."""
    upload = request.files.get("plan")
    data = upload.read(MAX_PLAN_BYTES + 1) if upload else b""
    name = (upload.filename or "plan") if upload else "plan"
    if not data:
        return _plan_page(["Choose a plan file (YAML) to load."], 400)
    if len(data) > MAX_PLAN_BYTES:
        return _plan_page(
            [f"{name}: larger than {MAX_PLAN_BYTES // 1024} KB; a plan is a few KB."], 400
        )
    db = get_db()
    tz = params().tz
    try:
        new_plan = parse_plan(data.decode("utf-8"), source=name, default_tz=tz)
        require_dosage_tz(new_plan, tz, source=name)
        existing = db.scalar(select(Operation).where(Operation.name == new_plan.name))
        stamp = existing.updated_at if existing else None
        operation = load_plan(db, new_plan, actor=current_user.audit_name)
        relink_stops(db, tz)  # stops now fall in other operation dates
    except UnicodeDecodeError:
        return _plan_page([f"{name}: not UTF-8 text"], 400)
    except PlanError as exc:
        db.rollback()
        return _plan_page(str(exc).splitlines(), 400)
    db.commit()
    if existing is not None and operation.updated_at == stamp:  # load_plan changed nothing
        flash(f"The plan of {operation.name} is already this one; nothing changed.", "info")
    else:
        flash(
            f"Loaded the plan of {operation.name}: {len(new_plan.hotspot_ids)} hot spots, "
            f"{len(new_plan.phases)} phases, {new_plan.start_date} to {new_plan.end_date}.",
            "info",
        )
    return redirect(url_for("admin.plan"))


def _plan_page(errors: list[str], status: int):
    """The plan page; without a plan loaded, only administrators see it (to load one)."""
    db = get_db()
    try:
        operation = find_operation(db)
    except PlanError as exc:
        if current_user.role != "admin":
            abort(404, str(exc))
        operation = None
    rows = table_rows(plan_table(stored_plan(db, operation))) if operation else []
    return render_template(
        "plan.html", operation=operation, rows=rows, errors=errors, max_kb=MAX_PLAN_BYTES // 1024
    ), status
