"""Problem-solving plans (SARA) in the web app (docs/partners.md): each hot spot's plan page,
where supervisors edit the plan and its actions, and the summary on the hot spot page.

Every edit of a plan goes through one form endpoint, told apart by the form's `form` field
(the plan's texts, a new action, or one action's change), so each form is one POST with its
CSRF token and a supervisor's change is audited and versioned in tracker.partnership.sara.
Partners update their agency's actions on their own pages (web/partners.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from tracker.foundation.models import HotSpotRow, User
from tracker.partnership.models import ACTION_STATUSES, PLAN_FIELDS
from tracker.partnership.sara import (
    ACTION_FIELDS,
    Conflict,
    Editor,
    NotAllowed,
    NotFound,
    SaraError,
    action_counts,
    add_action,
    hot_spot_of_action,
    plan_json,
    save_plan,
    update_action,
)
from web.auth import DOSAGE_READERS, SUPERVISORS, roles_required
from web.database import get_db
from web.views import today

blueprint = Blueprint("sara", __name__)

# What each part of the plan is called on the pages, in SARA order.
PLAN_LABELS = {
    "problem": "Problem statement",
    "harm": "Harm it causes",
    "offender": "Offender",
    "victim": "Victim or target",
    "place": "Place",
    "evidence": "Evidence",
    "measures": "What will be measured",
    "result": "Result",
}
STAGES = (
    ("Scanning", ("problem", "harm")),
    ("Analysis", ("offender", "victim", "place", "evidence")),
    ("Assessment", ("measures", "result")),
)
STATUS_LABELS = {
    "open": "Open",
    "in_progress": "In progress",
    "done": "Done",
    "cancelled": "Cancelled",
}
FORMS = ("plan", "new_action", "action")
MAX_HOT_SPOT_ID = 64  # the hot_spots column


def known_hot_spot(hotspot_id: str) -> HotSpotRow:
    """Return a stored hot spot, or 404 (also for an id no hot spot could have, before it
    reaches the database, which refuses some characters)."""
    if len(hotspot_id) > MAX_HOT_SPOT_ID or not hotspot_id.isprintable():
        abort(404, "no such hot spot")
    row = get_db().get(HotSpotRow, hotspot_id)
    if row is None:
        abort(404, "no such hot spot")
    return row


def request_editor() -> Editor:
    """The signed-in user as an editor of plans: their audit name and their agency."""
    agency = None
    if current_user.role == "partner":
        agency = get_db().get(User, current_user.id).agency
    return Editor(current_user.audit_name, agency)


def error_status(error: SaraError) -> int:
    """The HTTP status of a refused change."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, NotAllowed):
        return 403
    return 409 if isinstance(error, Conflict) else 400


def record_id(text: Any, label: str) -> int:
    """A record id sent in a form or JSON, or 400 (404 for one no record can have)."""
    if isinstance(text, bool) or not isinstance(text, int | str):
        abort(400, f"{label}: a whole number")
    try:
        value = int(text)
    except ValueError:
        abort(400, f"{label}: a whole number")
    if not 1 <= value <= 2**31 - 1:
        abort(404, f"no {label.removesuffix('_id')} {value}")
    return value


def action_of(hotspot: HotSpotRow, text: Any) -> int:
    """The id of an action of the hot spot's plan sent in a form or JSON, or 400 or 404."""
    action_id = record_id(text, "action_id")
    if hot_spot_of_action(get_db(), action_id) != hotspot.id:
        abort(404, f"no action {action_id} in the plan of this hot spot")
    return action_id


def plan_version(text: Any) -> int | None:
    """The version of the plan a form was filled in on (blank: none given), or 400."""
    if text is None or text == "":
        return None
    if not isinstance(text, str) or not text.isdigit() or len(text) > 9:
        abort(400, "version: a whole number")
    return int(text)


def sara_summary(hotspot_id: str) -> dict[str, Any]:
    """The hot spot page's summary of its plan (web/templates/_sara_summary.html): the
    problem, the actions not done with the overdue first, and the counts."""
    day = today()
    plan = plan_json(get_db(), hotspot_id, day, for_partner=False)
    unfinished = [a for a in plan["actions"] if a["status"] in ("open", "in_progress")]
    unfinished.sort(key=lambda a: (not a["overdue"], a["due_date"]))
    counts = action_counts(get_db(), day).get(hotspot_id, {})
    return {
        "plan": plan,
        "unfinished": unfinished,
        "open": counts.get("open", 0),
        "overdue": counts.get("overdue", 0),
        "done": counts.get("done", 0),
        "url": url_for("sara.page", hotspot_id=hotspot_id),
    }


def sara_action_counts() -> dict[str, dict[str, int]]:
    """Each hot spot's actions open, overdue and done today (for the overview's columns)."""
    return action_counts(get_db(), today())


blueprint.add_app_template_global(sara_summary, "sara_summary")
blueprint.add_app_template_global(sara_action_counts, "sara_action_counts")


def _render(hotspot: HotSpotRow, status: int = 200, error: str | None = None, form=None):
    db = get_db()
    return render_template(
        "sara.html",
        hot_spot=hotspot,
        plan=plan_json(db, hotspot.id, today(), for_partner=False),
        stages=STAGES,
        labels=PLAN_LABELS,
        statuses=ACTION_STATUSES,
        status_labels=STATUS_LABELS,
        may_edit=current_user.role in SUPERVISORS,
        error=error,
        form=form or {},
        today=today(),
    ), status


@blueprint.get("/hotspots/<hotspot_id>/sara")
@roles_required(*DOSAGE_READERS)
def page(hotspot_id: str):
    """The hot spot's problem-solving plan, its actions with their updates, and its versions;
    with the forms to change them for supervisors."""
    return _render(known_hot_spot(hotspot_id))


@blueprint.post("/hotspots/<hotspot_id>/sara")
@roles_required(*SUPERVISORS)
def save(hotspot_id: str):
    """Save one of the plan page's forms (`form`: plan, new_action or action)."""
    hotspot = known_hot_spot(hotspot_id)
    which = request.form.get("form")
    if which is None:
        flash("Nothing was sent to save.", "info")
        return _render(hotspot)
    if which not in FORMS:
        return _render(hotspot, 400, f"form: one of {', '.join(FORMS)}")
    db = get_db()
    editor = request_editor()
    fields = request.form
    try:
        if which == "plan":
            changed = save_plan(
                db,
                hotspot.id,
                {name: fields[name] for name in PLAN_FIELDS if name in fields},
                editor,
                version=plan_version(fields.get("version")),
            )[1]
            message = "The plan is saved." if changed else "Nothing changed in the plan."
        elif which == "new_action":
            action = add_action(
                db,
                hotspot.id,
                editor,
                **{name: fields.get(name) for name in ACTION_FIELDS if name != "status"},
                status=fields.get("status", "open"),
                note=fields.get("note", ""),
            )
            message = f"Action {action.id} is added."
        else:
            action_id = action_of(hotspot, fields.get("action_id"))
            changed = update_action(
                db,
                action_id,
                editor,
                {name: fields[name] for name in ACTION_FIELDS if name in fields},
                fields.get("note", ""),
            )[1]
            message = f"Action {action_id} is updated." if changed else "Nothing changed."
    except SaraError as exc:
        db.rollback()
        return _render(hotspot, error_status(exc), str(exc), fields)
    db.commit()
    flash(message, "info")
    return redirect(url_for("sara.page", hotspot_id=hotspot.id), 303)
