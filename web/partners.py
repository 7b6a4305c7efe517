"""The partners' view (docs/partners.md): aggregate figures for the agencies the operation
works with, and the problem-solving plans, whose actions a partner updates for its agency.

The partner role sees these pages and their JSON and nothing else but signing in and out: a
hook before every request refuses a partner any other endpoint (as dispatch is kept to
tasking), so a page added later stays closed to partners unless it is in this blueprint.
Nothing here names an officer or a device, or gives a track, a time of a stop or a position:
presence and visits per hot spot and week, stop and search per hot spot and month with small
numbers suppressed, crime harm by area and month, and the plans. Supervisors, administrators
and assurance leads can open the same pages to see what partners see.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from tracker.foundation import parsing
from tracker.foundation.tables import records
from tracker.partnership.figures import (
    FEWER,
    SMALL,
    SUPPRESSED,
    harm_trend,
    hot_spot_status,
    operation_hot_spots,
    partner_stop_tables,
    protect_harm,
    weekly_dosage,
)
from tracker.partnership.models import ACTION_STATUSES
from tracker.partnership.sara import SaraError, partner_update, plan_json, plans_table
from tracker.plan.models import Operation
from web import charts
from web.auth import DOSAGE_READERS, roles_required
from web.database import get_db
from web.sara import (
    PLAN_LABELS,
    STAGES,
    STATUS_LABELS,
    action_of,
    error_status,
    known_hot_spot,
    request_editor,
)
from web.views import csv_response, operation_or_none, thresholds, today, wants_csv

blueprint = Blueprint("partners", __name__)

PARTNER = "partner"
VIEWERS = (PARTNER, *DOSAGE_READERS)
# All that a partner may reach besides this blueprint: signing in and out, static files.
PARTNER_ALSO = frozenset({"auth.login", "auth.logout", "static"})
WEEKS_SHOWN = 8  # on the page; the CSV and JSON have every week of the operation
SUPPRESSION_NOTE = (
    f"Counts under {SMALL} are shown as “{FEWER}”. A count that would give a number under "
    f"{SMALL} by subtraction (from its month's total, or from the searches) is “{SUPPRESSED}”, "
    "and so is any rate worked out from a hidden count."
)


@blueprint.before_app_request
def _partners_see_only_their_pages():
    """Send a partner from the start page to theirs, and refuse them every other page."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in PARTNER_ALSO or endpoint.startswith("partners."):
        return None  # (no endpoint: a 404 follows)
    if not current_user.is_authenticated or current_user.role != PARTNER:
        return None
    if endpoint == "dashboard.home":
        return redirect(url_for("partners.page"))
    abort(403)


# --- the figures ------------------------------------------------------------------------------


def _operation() -> Operation | None:
    return operation_or_none()


def _status(operation: Operation | None) -> pd.DataFrame:
    if operation is None:
        return pd.DataFrame()
    return hot_spot_status(get_db(), operation, today(), thresholds())


def _weekly(operation: Operation | None) -> pd.DataFrame:
    if operation is None or today() < operation.start_date:
        return pd.DataFrame(columns=["hotspot_id", "week_start", "presence_minutes", "visits"])
    last = min(today(), operation.end_date)
    return weekly_dosage(get_db(), operation, operation.start_date, last)


def _stops(operation: Operation | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if operation is None:
        return pd.DataFrame(), pd.DataFrame()
    return partner_stop_tables(get_db(), operation, operation.tz)


def _harm(operation: Operation | None) -> tuple[pd.DataFrame | None, str]:
    if operation is None:
        return None, "No operation plan is loaded."
    months, note = harm_trend(get_db(), operation, today(), today())
    return (None if months is None else protect_harm(months)), note


def _plans(operation: Operation | None) -> pd.DataFrame:
    spots = operation_hot_spots(get_db(), operation) if operation is not None else {}
    return plans_table(get_db(), list(spots), today(), spots)


def _agency() -> str | None:
    return request_editor().agency


# --- pages ------------------------------------------------------------------------------------


@blueprint.get("/partners")
@roles_required(*VIEWERS)
def page():
    """The partners' dashboard: each hot spot's status and dosage, stop and search, crime
    harm and the problem-solving plans; each table also as CSV (`?format=csv&table=`)."""
    operation = _operation()
    tables = {
        "hotspots": lambda: _status(operation),
        "dosage": lambda: _weekly(operation),
        "stops": lambda: _stops(operation)[0],
        "stop-months": lambda: _stops(operation)[1],
        "harm": lambda: _harm(operation)[0],
        "plans": lambda: _plans(operation),
    }
    if wants_csv():
        which = request.args.get("table", "hotspots")
        if which not in tables:
            abort(400, f"table must be one of {', '.join(tables)}")
        frame = tables[which]()
        if frame is None:
            abort(404, _harm(operation)[1])
        return csv_response(frame, f"partners-{which}-{today()}.csv")
    status = _status(operation)
    weekly = _weekly(operation)
    by_hotspot, by_month = _stops(operation)
    harm, harm_note = _harm(operation)
    plans = records(_plans(operation))
    totals = (
        weekly.groupby("week_start", as_index=False)[["presence_minutes", "visits"]].sum()
        if len(weekly)
        else weekly
    )
    recent = sorted(set(weekly["week_start"]))[-WEEKS_SHOWN:]
    chart = None
    if len(totals):
        chart = charts.line_chart(
            [w.strftime("%d %b") for w in totals["week_start"]],
            [("presence", "#0969da", totals["presence_minutes"].tolist())],
            "presence minutes per week, all hot spots",
            "Patrol presence per week in all the hot spots",
        )
    return render_template(
        "partners.html",
        operation=operation,
        status=records(status),
        weeks=recent,
        weekly={(r["hotspot_id"], r["week_start"]): r for r in records(weekly)},
        weekly_chart=chart,
        by_hotspot=records(by_hotspot),
        by_month=records(by_month),
        harm=None if harm is None else records(harm),
        harm_note=harm_note,
        plans=plans,
        plan_of={p["hotspot_id"]: p for p in plans},
        suppression_note=SUPPRESSION_NOTE,
        today=today(),
    )


def _hot_spot_page(hotspot_id: str, status: int = 200, error: str | None = None, form=None):
    hot_spot = known_hot_spot(hotspot_id)
    operation = _operation()
    weekly = _weekly(operation)
    weekly = weekly[weekly["hotspot_id"] == hotspot_id]
    by_hotspot, _ = _stops(operation)
    stops = by_hotspot[by_hotspot["hotspot_id"] == hotspot_id] if len(by_hotspot) else by_hotspot
    if wants_csv():
        tables = {"dosage": weekly, "stops": stops}
        which = request.args.get("table", "dosage")
        if which not in tables:
            abort(400, f"table must be one of {', '.join(tables)}")
        return csv_response(tables[which], f"partners-{hotspot_id}-{which}-{today()}.csv")
    status_rows = _status(operation)
    mine = records(status_rows[status_rows["hotspot_id"] == hotspot_id]) if len(status_rows) else []
    return render_template(
        "partners_hotspot.html",
        hot_spot=hot_spot,
        operation=operation,
        status=mine[0] if mine else None,
        weekly=records(weekly.iloc[::-1]),
        stops=records(stops),
        plan=plan_json(get_db(), hotspot_id, today(), for_partner=True, agency=_agency()),
        stages=STAGES,
        labels=PLAN_LABELS,
        statuses=ACTION_STATUSES,
        status_labels=STATUS_LABELS,
        may_update=current_user.role == PARTNER,
        suppression_note=SUPPRESSION_NOTE,
        error=error,
        form=form or {},
    ), status


@blueprint.get("/partners/hotspots/<hotspot_id>")
@roles_required(*VIEWERS)
def hot_spot(hotspot_id: str):
    """One hot spot for partners: its status, presence and visits per week, stop and search
    per month, and its problem-solving plan, with a form for each action of the partner's
    agency."""
    return _hot_spot_page(hotspot_id)


@blueprint.post("/partners/hotspots/<hotspot_id>")
@roles_required(PARTNER)
def update(hotspot_id: str):
    """A partner's update of an action their agency owns: its status and a note."""
    hot_spot_row = known_hot_spot(hotspot_id)
    action_id = action_of(hot_spot_row, request.form.get("action_id"))
    db = get_db()
    try:
        partner_update(
            db,
            action_id,
            request_editor(),
            status=request.form.get("status"),
            note=request.form.get("note"),
        )
    except SaraError as exc:
        db.rollback()
        return _hot_spot_page(hotspot_id, error_status(exc), str(exc), request.form)
    db.commit()
    flash(f"Action {action_id} is updated.", "info")
    return redirect(url_for("partners.hot_spot", hotspot_id=hotspot_id), 303)


# --- JSON -------------------------------------------------------------------------------------


@blueprint.get("/api/partners/hotspots")
@roles_required(*VIEWERS)
def api_hotspots():
    """Each hot spot's status, compliance, trend, and presence and visits to date."""
    return jsonify(records(_status(_operation())))


@blueprint.get("/api/partners/dosage")
@roles_required(*VIEWERS)
def api_dosage():
    """Presence minutes and visits per hot spot and week (`?hotspot_id=` for one)."""
    weekly = _weekly(_operation())
    hotspot_id = request.args.get("hotspot_id")
    if hotspot_id is not None:
        weekly = weekly[weekly["hotspot_id"] == hotspot_id]
    return jsonify(records(weekly))


@blueprint.get("/api/partners/stops")
@roles_required(*VIEWERS)
def api_stops():
    """Searches and outcome rates per hot spot and month and per month, small numbers
    suppressed (a hidden count is the text "fewer than 5" or "suppressed")."""
    by_hotspot, by_month = _stops(_operation())
    return jsonify(
        {
            "by_hotspot_month": records(by_hotspot),
            "by_month": records(by_month),
            "suppression": SUPPRESSION_NOTE,
        }
    )


@blueprint.get("/api/partners/harm")
@roles_required(*VIEWERS)
def api_harm():
    """Crime and harm per month in the hot spots, the ring around them and the rest, or an
    empty list and why (no crime data loaded)."""
    months, note = _harm(_operation())
    return jsonify({"months": [] if months is None else records(months), "note": note})


@blueprint.get("/api/partners/sara")
@roles_required(*VIEWERS)
def api_sara():
    """The problem-solving plans (`?hotspot_id=` for one), changes shown by agency."""
    operation = _operation()
    spots = list(operation_hot_spots(get_db(), operation)) if operation is not None else []
    hotspot_id = request.args.get("hotspot_id")
    if hotspot_id is not None:
        spots = [known_hot_spot(hotspot_id).id]
    agency = _agency()
    return jsonify(
        [plan_json(get_db(), h, today(), for_partner=True, agency=agency) for h in spots]
    )


@blueprint.post("/api/partners/hotspots/<hotspot_id>/actions")
@roles_required(PARTNER)
def api_update(hotspot_id: str):
    """A partner's update of an action their agency owns, as JSON: {"action_id", "status",
    "note"}; answers with the action as it now stands."""
    hot_spot_row = known_hot_spot(hotspot_id)
    body = _json_object()
    action_id = action_of(hot_spot_row, body.get("action_id"))
    db = get_db()
    try:
        partner_update(
            db, action_id, request_editor(), status=body.get("status"), note=body.get("note")
        )
    except SaraError as exc:
        db.rollback()
        abort(error_status(exc), str(exc))
    db.commit()
    plan = plan_json(db, hotspot_id, today(), for_partner=True, agency=_agency())
    return jsonify(next(a for a in plan["actions"] if a["id"] == action_id))


def _json_object() -> dict[str, Any]:
    try:
        body = parsing.json_loads(request.get_data()) if request.is_json else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        abort(400, "send a JSON object with Content-Type: application/json")
    return body
