"""The stop-and-search JSON API under /api/stops: the same records, reviews and role checks
as the assurance pages (an officer sees only their own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_login import current_user

from tracker.foundation import parsing
from tracker.stops.figures import action_dict, stop_dict
from tracker.stops.records import (
    ReviewError,
    StopNotFound,
    StopValidationError,
    create_stop,
    stops_with_reviews,
)
from tracker.stops.review import (
    acknowledge,
    actions_of,
    add_action,
    review_of,
    second_review,
    set_action_status,
    update_review,
)
from web.assurance import EVERYONE, REVIEWERS, own_officer_id, visible_stop
from web.auth import roles_required
from web.database import get_db
from web.views import params, period, today

blueprint = Blueprint("stops_api", __name__, url_prefix="/api/stops")


def api_error(status: int, title: str, message: str, fields: Mapping[str, str]):
    """Return the API's error body with each bad field's problem."""
    return jsonify(
        {"error": {"status": status, "title": title, "message": message, "fields": dict(fields)}}
    ), status


def json_object() -> dict[str, Any]:
    """Return the request's JSON object, or 400."""
    try:
        # parsing.json_loads rather than request.get_json: JSON nested too deeply fails
        # there as bad JSON, not as a RecursionError.
        body = parsing.json_loads(request.get_data()) if request.is_json else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        abort(400, "send a JSON object with Content-Type: application/json")
    return body


@blueprint.get("")
@roles_required(*EVERYONE)
def list_stops():
    """Stops with their reviews (`from`/`to` local dates); an officer gets their own only."""
    from_day, to_day = period()
    on = today()
    return jsonify(
        [
            stop_dict(record, review, on)
            for record, review in stops_with_reviews(
                get_db(), params().tz, from_day, to_day, own_officer_id()
            )
        ]
    )


@blueprint.get("/<int:stop_id>")
@roles_required(*EVERYONE)
def one_stop(stop_id: int):
    """One stop with its review (an officer: their own only)."""
    db = get_db()
    return jsonify(_stop_body(db, visible_stop(db, stop_id)))


def _stop_body(db, record) -> dict[str, Any]:
    """A stop, its review and the review's actions, as the API returns them."""
    on = today()
    body = stop_dict(record, review_of(db, record.id), on)
    body["actions"] = [action_dict(a, on) for a in actions_of(db, record.id)]
    return body


@blueprint.post("")
@roles_required(*REVIEWERS)
def create():
    """Record one stop from a JSON object of fields (times need a UTC offset); 201 with it."""
    db = get_db()
    try:
        created = create_stop(
            db,
            json_object(),
            actor=current_user.audit_name,
            policy=current_app.config["REVIEW_POLICY"],
            source="api",
        )
    except StopValidationError as exc:
        db.rollback()
        return api_error(400, "Invalid stop and search", str(exc), exc.errors)
    body = stop_dict(created, review_of(db, created.id), today())
    db.commit()
    return jsonify(body), 201, {"Location": url_for("stops_api.one_stop", stop_id=created.id)}


@blueprint.post("/<int:stop_id>/review")
@roles_required(*REVIEWERS)
def review_api(stop_id: int):
    """Change a stop's BWV review from a JSON object of review fields; the stop as it now is."""
    db = get_db()
    record = visible_stop(db, stop_id)
    try:
        update_review(
            db,
            stop_id,
            current_user.audit_name,
            json_object(),
            reviewer=current_user.username,
            second_review_rate=current_app.config["SECOND_REVIEW_RATE"],
        )
    except StopNotFound:
        abort(404, f"no BWV review for stop {stop_id}")
    except ReviewError as exc:
        db.rollback()
        return api_error(400, "Invalid review change", str(exc), exc.errors)
    db.flush()
    body = _stop_body(db, record)
    db.commit()
    return jsonify(body)


@blueprint.post("/<int:stop_id>/acknowledge")
@roles_required("officer")
def acknowledge_api(stop_id: int):
    """The officer who made the stop confirms they have read the review's findings."""
    db = get_db()
    record = visible_stop(db, stop_id)
    try:
        acknowledge(db, stop_id, current_user.officer_id, current_user.audit_name)
    except ReviewError as exc:
        db.rollback()
        return api_error(400, "Cannot acknowledge", str(exc), exc.errors)
    db.commit()
    return jsonify(_stop_body(db, record))


@blueprint.post("/<int:stop_id>/second-review")
@roles_required(*REVIEWERS)
def second_review_api(stop_id: int):
    """A second reviewer's grade ({"grade": ..., "note": ...}) of a review drawn for it."""
    db = get_db()
    record = visible_stop(db, stop_id)
    body = json_object()
    try:
        second_review(
            db,
            stop_id,
            current_user.username,
            body.get("grade"),
            body.get("note"),
            actor=current_user.audit_name,
        )
    except ReviewError as exc:
        db.rollback()
        return api_error(400, "Invalid second review", str(exc), exc.errors)
    db.commit()
    return jsonify(_stop_body(db, record))


@blueprint.post("/<int:stop_id>/actions")
@roles_required(*REVIEWERS)
def add_action_api(stop_id: int):
    """Add an action ({"description", "owner", "due_date"}) to a stop's review; 201."""
    db = get_db()
    record = visible_stop(db, stop_id)
    body = json_object()
    try:
        add_action(
            db,
            stop_id,
            current_user.audit_name,
            body.get("description"),
            body.get("owner"),
            body.get("due_date"),
        )
    except ReviewError as exc:
        db.rollback()
        return api_error(400, "Invalid action", str(exc), exc.errors)
    db.commit()
    return jsonify(_stop_body(db, record)), 201


@blueprint.post("/<int:stop_id>/actions/<int:action_id>")
@roles_required(*REVIEWERS)
def action_status_api(stop_id: int, action_id: int):
    """Mark a review action done or open ({"status": "done"})."""
    db = get_db()
    record = visible_stop(db, stop_id)
    if action_id not in {a.id for a in actions_of(db, stop_id)}:
        abort(404, f"no action {action_id} on stop {stop_id}")
    try:
        set_action_status(db, action_id, json_object().get("status"), current_user.audit_name)
    except ReviewError as exc:
        db.rollback()
        return api_error(400, "Invalid action change", str(exc), exc.errors)
    db.commit()
    return jsonify(_stop_body(db, record))
