"""The stop-and-search JSON API under /api/stops: the same records, reviews and role checks
as the assurance pages (an officer sees only their own)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request, url_for
from flask_login import current_user

from tracker.foundation import parsing
from tracker.stops.figures import stop_dict
from tracker.stops.records import (
    ReviewError,
    StopNotFound,
    StopValidationError,
    create_stop,
    stops_with_reviews,
)
from tracker.stops.review import review_of, update_review
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
    record = visible_stop(db, stop_id)
    return jsonify(stop_dict(record, review_of(db, stop_id), today()))


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
        saved = update_review(
            db, stop_id, current_user.audit_name, json_object(), reviewer=current_user.username
        )
    except StopNotFound:
        abort(404, f"no BWV review for stop {stop_id}")
    except ReviewError as exc:
        db.rollback()
        return api_error(400, "Invalid review change", str(exc), exc.errors)
    body = stop_dict(record, saved, today())
    db.commit()
    return jsonify(body)
