"""An integer in a URL too large for the database's integer columns is a 404, never a 500:
for every route with an integer argument, every method, every role allowed on it, on both
databases (SQLite stores 64-bit integers; PostgreSQL's INTEGER, which the stop ids are, 32)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tracker.accounts.users import create_user
from tracker.foundation.database import make_engine, session_factory
from tracker.stops.records import create_stop
from web import create_app

PASSWORD = "correct horse battery"
ROLES = ("admin", "supervisor", "assurance", "officer")
DATABASE_INT_MAX = 2**31 - 1  # PostgreSQL's INTEGER
# Past PostgreSQL's INTEGER, past a 64-bit integer (SQLite's), and far past both.
TOO_LARGE = (2**31, 2**63 - 1, 2**63, 10**30)
INT_ARGUMENT = re.compile(r"<int(?:\([^)]*\))?:(\w+)>")
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def app(database_url):
    engine = make_engine(database_url)
    with session_factory(engine).begin() as session:
        for role in ROLES:
            create_user(
                session, role, role, PASSWORD, officer_id="PC1" if role == "officer" else None
            )
        stop = create_stop(
            session,
            {
                "type": "Person search",
                "occurred_at": datetime.now(UTC) - timedelta(days=1),
                "officer_id": "PC1",
            },
            actor="test",
        )
        stop_id = stop.id
    engine.dispose()
    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    app.config["stop id"] = stop_id
    yield app
    app.extensions["tracker.sessions"].kw["bind"].dispose()


def signed_in(app, username: str):
    """Return a test client signed in as `username`, with the session's CSRF token."""
    client = app.test_client()
    token = CSRF_FIELD.search(client.get("/login").text).group(1)
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.text
    client.csrf = CSRF_FIELD.search(client.get("/", follow_redirects=True).text).group(1)
    return client


def integer_routes(app) -> list[tuple[str, str, tuple[str, ...]]]:
    """Return (rule, method, roles allowed) of every route with an integer argument."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not INT_ARGUMENT.search(rule.rule):
            continue
        view = app.view_functions[rule.endpoint]
        for method in sorted(rule.methods - IGNORED_METHODS):
            routes.append((rule.rule, method, getattr(view, "allowed_roles", ROLES)))
    return routes


def request(client, rule: str, method: str, number: int):
    path = INT_ARGUMENT.sub(str(number), rule)
    assert "<" not in path, f"{rule}: fill its other arguments in this test"
    if method == "GET":
        return client.get(path)
    return client.open(path, method=method, json={}, headers={"X-CSRFToken": client.csrf})


def test_the_routes_with_integer_arguments_are_found(app):
    found = {(rule, method) for rule, method, _ in integer_routes(app)}
    assert {
        ("/api/stops/<int:stop_id>", "GET"),
        ("/api/stops/<int:stop_id>/review", "POST"),
        ("/assurance/stops/<int:stop_id>", "GET"),
        ("/assurance/stops/<int:stop_id>/review", "POST"),
    } <= found


def test_an_integer_too_large_for_the_database_is_not_found_on_every_route(app):
    clients = {role: signed_in(app, role) for role in ROLES}
    problems = []
    for rule, method, roles in integer_routes(app):
        for role in roles:
            for number in TOO_LARGE:
                status = request(clients[role], rule, method, number).status_code
                if status != 404:
                    problems.append(f"{method} {rule} as {role} with {number}: {status}")
    assert not problems, "\n".join(problems)


def test_the_largest_id_the_database_holds_still_reaches_the_view(app):
    clients = {role: signed_in(app, role) for role in ROLES}
    client = clients["admin"]
    for rule, method, roles in integer_routes(app):
        # As a role the route allows (the officer's acknowledgement is for officers only).
        allowed = clients["admin" if "admin" in roles else roles[0]]
        response = request(allowed, rule, method, DATABASE_INT_MAX)
        assert response.status_code == 404, (method, rule, response.status_code)
        assert f"{DATABASE_INT_MAX}" in response.text, (method, rule)  # the view's own 404
    assert client.get(f"/api/stops/{app.config['stop id']}").status_code == 200
    assert client.get(f"/assurance/stops/{app.config['stop id']}").status_code == 200


def test_an_id_with_more_digits_than_python_converts_is_not_found(app):
    client = signed_in(app, "admin")
    assert client.get("/api/stops/" + "9" * 5000).status_code == 404


# --- numbers in a request body too large to convert ---------------------------------------

TOO_LARGE_TO_CONVERT = "9" * 400  # an integer JSON and YAML read, but no float can hold


def test_a_stop_with_a_coordinate_too_large_for_a_float_is_a_400(app):
    client = signed_in(app, "assurance")
    body = (
        '{"type": "Person search", "occurred_at": "2019-06-01T12:00:00Z", '
        f'"latitude": {TOO_LARGE_TO_CONVERT}, "longitude": 1}}'
    )
    response = client.post(
        "/api/stops",
        data=body,
        content_type="application/json",
        headers={"X-CSRFToken": client.csrf},
    )
    assert response.status_code == 400, response.text
    # The field is named and the value shortened, not echoed back whole.
    problem = response.json["error"]["fields"]["latitude"]
    assert "out of range [-90, 90]" in problem and "(400 characters)" in problem
    assert TOO_LARGE_TO_CONVERT not in response.text
    assert client.get("/api/stops").json[0]["id"] == app.config["stop id"]  # nothing stored
    assert len(client.get("/api/stops").json) == 1


def test_a_plan_with_a_target_too_large_for_a_float_is_a_400(app):
    plan = (Path(__file__).resolve().parents[2] / "geofences" / "demo_plan.yaml").read_text()
    target = re.search(r"presence_minutes_per_day: *\d+", plan).group(0)
    plan = plan.replace(target, f"presence_minutes_per_day: {TOO_LARGE_TO_CONVERT}", 1)
    client = signed_in(app, "admin")
    response = client.post(
        "/plan",
        data={"csrf_token": client.csrf, "plan": (io.BytesIO(plan.encode()), "plan.yaml")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400, response.text
    assert "presence_minutes_per_day: expected a number &gt;= 0" in response.text
    assert "characters)" in response.text and TOO_LARGE_TO_CONVERT not in response.text
