"""Tasking: where to patrol now (docs/tasking.md), for supervisors, officers and dispatch.

The page lists the hot spots most needed first and keeps itself current by polling
/api/tasking (web/static/tasking.js). The dispatch role sees these two and nothing else but
signing in and out: a hook before every request refuses dispatch any other endpoint, so a
page added later stays closed to dispatch unless it is named here.
"""

from __future__ import annotations

import re
from datetime import datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from tracker.plan.tasking import distance_text, duration_text, parse_moment, tasking
from web.auth import roles_required
from web.database import get_db
from web.views import params

blueprint = Blueprint("tasking", __name__)

DISPATCH = "dispatch"
# Admins too: they hold every dosage figure already and set up dispatch's accounts. Not
# assurance leads, whose work is reviewing stop and search, not deploying patrols.
TASKING_ROLES = ("admin", "supervisor", "officer", DISPATCH)
# All that dispatch may reach: this page and its API, signing in and out, static files.
DISPATCH_ENDPOINTS = frozenset({"tasking.page", "tasking.api", "auth.login", "auth.logout"})
ALWAYS_OPEN = frozenset({"static"})
DEFAULT_POLL_MS = 30_000  # the page refreshes itself at least once a minute
# A "+" of a UTC offset left unencoded in a query string arrives as a space.
_PLUS_AS_SPACE = re.compile(r"^(\S+[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


@blueprint.before_app_request
def _dispatch_sees_only_tasking():
    """Send dispatch from the start page to tasking, and refuse it every other page."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in ALWAYS_OPEN or endpoint in DISPATCH_ENDPOINTS:
        return None  # (no endpoint: a 404 follows)
    if not current_user.is_authenticated or current_user.role != DISPATCH:
        return None
    if endpoint == "dashboard.home":
        return redirect(url_for("tasking.page"))
    abort(403)


def requested_moment() -> datetime | None:
    """Return the `at` query argument (ISO 8601 with an offset), or 400 naming it."""
    text = request.args.get("at")
    if text is None:
        return None
    try:
        return parse_moment(_PLUS_AS_SPACE.sub(r"\1+\2", text))
    except ValueError as exc:
        abort(400, f"at: {exc}")


def _tasking(moment: datetime | None):
    """Return the list at the moment; an officer's with distances from their own position."""
    officer_id = current_user.officer_id if current_user.role == "officer" else None
    return tasking(get_db(), params(), moment, officer_id=officer_id)


@blueprint.get("/tasking")
@roles_required(*TASKING_ROLES)
def page():
    """The ranked list, built for a phone as well as a desk; it refreshes itself."""
    moment = requested_moment()
    result = _tasking(moment)
    return render_template(
        "tasking.html",
        tasking=result,
        items=result.to_json(),
        api_url=url_for("tasking.api", at=moment.isoformat() if moment else None),
        looking_back=moment is not None,
        poll_ms=int(current_app.config.get("TASKING_POLL_MS", DEFAULT_POLL_MS)),
        duration=duration_text,
        distance=distance_text,
    )


@blueprint.get("/api/tasking")
@roles_required(*TASKING_ROLES)
def api():
    """The ranked list as JSON, most needed first (docs/tasking.md gives each field)."""
    return jsonify(_tasking(requested_moment()).to_json())
