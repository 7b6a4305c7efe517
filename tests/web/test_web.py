"""The web app: who may open what, CSRF, the log-in rate limit,
security headers and cookies, bearer tokens, figures that agree with the command line,
the audit of track views, and pages that load nothing from other hosts.

All tests share one demo database (tracker/demo.py), built once per test session.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tracker.accounts.users import create_user, issue_token, revoke_token
from tracker.cli import main
from tracker.demo import prepare
from tracker.dosage.engine import DosageParams
from tracker.dosage.patrols import officer_figures
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.models import AuditEvent
from tracker.foundation.tables import write_table
from web import ConfigurationError, create_app

ROLES = ("admin", "supervisor", "assurance", "officer")
ANONYMOUS = "anonymous"
SIGNED_IN = frozenset(ROLES)
ANYONE = SIGNED_IN | {ANONYMOUS}
READERS = frozenset({"admin", "supervisor", "assurance"})
SUPERVISOR = frozenset({"supervisor"})
TASKING = frozenset({"admin", "supervisor", "officer"})  # and dispatch: test_web_tasking.py
OFFICER_OF_DEMO_USER = "PC4100"  # tracker.demo links the "officer" user to the first radio
OTHER_OFFICER = "PC4101"

# Every route, and who may use it. A signed-in user outside the set gets 403; an anonymous
# visitor is sent to the log-in page (or gets a 401 JSON error from the API).
ROUTES: list[tuple[str, str, frozenset[str]]] = [
    ("GET", "/", SIGNED_IN),
    ("GET", "/overview", READERS),
    ("GET", "/overview?format=csv", READERS),
    ("GET", "/hotspots/LE01", READERS),
    ("GET", "/hotspots/LE01?format=csv&table=daily", READERS),
    ("GET", "/hotspots/LE01?format=csv&table=visits", READERS),
    ("GET", "/hotspots/LE01?format=csv&table=hours", READERS),
    ("GET", "/hotspots/LE01?format=csv&table=cumulative", READERS),
    ("GET", "/hotspots/LE01?format=csv&table=contributors", SUPERVISOR),
    ("GET", "/tracks", SUPERVISOR),
    ("GET", f"/tracks?officer={OFFICER_OF_DEMO_USER}", SUPERVISOR),
    ("GET", "/health", frozenset({"admin", "supervisor"})),
    ("GET", "/health?format=csv&table=devices", frozenset({"admin", "supervisor"})),
    ("GET", "/me", frozenset({"officer"})),
    ("GET", "/api/dosage", READERS),
    ("GET", "/api/hotspots", READERS),
    ("GET", "/tasking", TASKING),
    ("GET", "/api/tasking", TASKING),
    ("GET", "/login", ANYONE),
    ("GET", "/plan", READERS),
    ("GET", "/plan?format=csv", READERS),
    ("GET", "/harm", frozenset({"admin", "supervisor"})),
    ("POST", "/plan", frozenset({"admin"})),
    ("GET", "/admin/audit", frozenset({"admin"})),
    ("GET", "/admin/audit?format=csv&action=login", frozenset({"admin"})),
    ("GET", "/admin/users", frozenset({"admin"})),
    ("GET", "/admin/users?format=csv", frozenset({"admin"})),
    ("GET", "/admin/tokens", frozenset({"admin"})),
    ("POST", "/admin/tokens", frozenset({"admin"})),
    ("POST", "/admin/tokens/2147483647/revoke", frozenset({"admin"})),
    # The partners' view (the partner role itself: tests/web/test_web_partners.py).
    ("GET", "/partners", READERS),
    ("GET", "/partners?format=csv&table=hotspots", READERS),
    ("GET", "/partners?format=csv&table=stops", READERS),
    ("GET", "/partners/hotspots/LE01", READERS),
    ("GET", "/partners/hotspots/LE01?format=csv&table=dosage", READERS),
    ("POST", "/partners/hotspots/LE01", frozenset()),
    ("GET", "/api/partners/hotspots", READERS),
    ("GET", "/api/partners/dosage", READERS),
    ("GET", "/api/partners/stops", READERS),
    ("GET", "/api/partners/harm", READERS),
    ("GET", "/api/partners/sara", READERS),
    ("POST", "/api/partners/hotspots/LE01/actions", frozenset()),
    ("GET", "/hotspots/LE01/sara", READERS),
    ("POST", "/hotspots/LE01/sara", SUPERVISOR),  # nothing sent: the page, saying so
    ("GET", "/board", frozenset({"admin", "supervisor"})),
    ("GET", "/board/report", frozenset({"admin", "supervisor"})),
    ("POST", "/logout", ANYONE),
]
# Routes whose success is a redirect rather than a page.
REDIRECTS = {("GET", "/"), ("POST", "/logout")}
# Endpoints anyone may use without a role test of their own: static files, Leaflet, and the
# log-in form's POST (tested below for CSRF and the rate limit).
PUBLIC_ENDPOINTS = {("static", "GET"), ("vendor.leaflet_file", "GET"), ("auth.login", "POST")}
# Health checks and Prometheus's /metrics (its own access rule): tests/web/test_metrics.py.
PUBLIC_ENDPOINTS |= {
    ("metrics.healthz", "GET"),
    ("metrics.readyz", "GET"),
    ("metrics.metrics", "GET"),
}
# Covered by the stop-and-search tests.
ROUTES_TESTED_ELSEWHERE = ("/assurance", "/api/stops")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')
SCRIPT_TAG = re.compile(r"<script\b[^>]*>")
SRC_OR_HREF = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
ABSOLUTE_URL = re.compile(r"""https?://([^/\s"'<>`)\\]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Demo:
    """The shared demo database and its users' passwords."""

    url: str
    passwords: dict[str, str]


def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """Return the session's demo database, building it on first use (about 15 s).

    The passwords are kept beside the database so that every test module of the session
    (this one and test_browser.py) finds the same build.
    """
    folder = tmp_path_factory.getbasetemp() / "web-demo"
    passwords_file = folder / "passwords.json"
    if not passwords_file.exists():
        folder.mkdir(exist_ok=True)
        passwords = prepare(folder / "demo.db", DosageParams())
        passwords_file.write_text(json.dumps(passwords), encoding="utf-8")
    return Demo(
        f"sqlite:///{folder / 'demo.db'}", json.loads(passwords_file.read_text(encoding="utf-8"))
    )


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    return demo_database(tmp_path_factory)


@pytest.fixture(scope="session")
def sessions(demo) -> Iterator[sessionmaker[Session]]:
    """Sessions on the demo database, for setting up tokens and reading the audit log."""
    engine = make_engine(demo.url)
    yield session_factory(engine)
    engine.dispose()


def make_app(demo: Demo, **config) -> Flask:
    return create_app({"DATABASE_URL": demo.url, "TESTING": True, **config})


@pytest.fixture(scope="session")
def app(demo) -> Flask:
    return make_app(demo)


def csrf_token(client: FlaskClient) -> str:
    """Return the CSRF token of the client's session, from the log-in form."""
    page = client.get("/login")
    match = CSRF_INPUT.search(page.text)
    assert match, page.text
    return match.group(1)


def post_login(client: FlaskClient, username: str, password: str, **extra):
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_token(client),
            **extra,
        },
    )


def sign_in(app: Flask, demo: Demo, role: str) -> FlaskClient:
    """Return a new client signed in as the demo user of `role`."""
    client = app.test_client()
    response = post_login(client, role, demo.passwords[role])
    assert response.status_code == 302, response.text
    return client


@pytest.fixture(scope="session")
def signed_in(app, demo) -> Callable[[str], FlaskClient]:
    """Return a signed-in client per role, shared by the tests that do not sign out."""
    clients: dict[str, FlaskClient] = {}

    def client_for(role: str) -> FlaskClient:
        if role not in clients:
            clients[role] = sign_in(app, demo, role)
        return clients[role]

    return client_for


def location_path(response) -> str:
    return urlsplit(response.headers["Location"]).path


def is_signed_in(client: FlaskClient) -> bool:
    response = client.get("/me")
    assert response.status_code in (200, 302, 403), response.status_code
    return response.status_code != 302


def local_today() -> date:
    return datetime.now(DosageParams().zone).date()


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.text)))


# --- who may open what ---------------------------------------------------------------------


def route_id(route: tuple[str, str, frozenset[str]]) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("role", [*ROLES, ANONYMOUS])
@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES, ids=[route_id(r) for r in ROUTES])
def test_route_access_by_role(app, demo, signed_in, role, method, path, allowed):
    if role == ANONYMOUS:
        client = app.test_client()
    elif method == "POST":
        client = sign_in(app, demo, role)  # its own session: this request may sign out
    else:
        client = signed_in(role)
    if method == "POST":
        response = client.post(path, data={"csrf_token": csrf_token(client)})
    else:
        response = client.get(path)

    if role not in allowed and role != ANONYMOUS:
        assert response.status_code == 403, response.text[:500]
    elif role not in allowed and path.startswith("/api/"):
        assert response.status_code == 401
        assert response.is_json
        assert response.json["error"]["status"] == 401
    elif role not in allowed:
        assert response.status_code == 302
        assert location_path(response) == "/login"
    elif (method, path) == ("POST", "/plan"):
        assert response.status_code == 400  # allowed, but this request holds no file
        assert "Choose a plan file (YAML) to load." in response.text
    elif (method, path) == ("POST", "/admin/tokens"):
        assert response.status_code == 400  # allowed, but this request names no user
        assert "no user" in response.text
    elif path.endswith("/revoke"):
        assert response.status_code == 404  # allowed, but there is no such token
    elif (method, path) == ("POST", "/logout"):
        assert response.status_code == 302
        assert location_path(response) == "/login"
        assert not is_signed_in(client)
    elif (method, path) == ("GET", "/"):
        assert response.status_code == 302
        start = location_path(response)
        if role == "officer":
            assert start == "/me"
        elif role == "assurance":
            assert start == "/overview" or start.startswith("/assurance")
        else:
            assert start == "/overview"
    else:
        assert response.status_code == 200, response.text[:500]
        if "format=csv" in path:
            assert response.mimetype == "text/csv"
            assert response.text.count("\n") >= 2  # a header and at least one row
        elif path.startswith("/api/"):
            assert response.is_json
        else:
            assert response.mimetype == "text/html"


def test_every_route_has_a_role_test(app):
    """A new route fails here until it is added to ROUTES (or is declared public)."""
    adapter = app.url_map.bind("localhost")
    covered = {
        (adapter.match(urlsplit(path).path, method=method)[0], method) for method, path, _ in ROUTES
    }
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(ROUTES_TESTED_ELSEWHERE):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if (rule.endpoint, method) not in covered | PUBLIC_ENDPOINTS:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
    assert not missing, f"routes without a role test: {missing}"
    assert {endpoint for endpoint, _ in covered} >= {
        "dashboard.overview",
        "dashboard.hot_spot",
        "dashboard.tracks",
        "dashboard.health",
        "dashboard.me",
        "api.dosage",
        "api.hotspots",
        "auth.login",
        "auth.logout",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/static/app.css",
        "/static/tables.js",
        "/vendor/leaflet/leaflet.js",
        "/vendor/leaflet/leaflet.css",
    ],
)
def test_public_files_need_no_log_in(app, path):
    with app.test_client().get(path) as response:  # a file response: close it
        assert response.status_code == 200
        assert len(response.data) > 100


# --- bad requests and unexpected errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("role", "url", "argument"),
    [
        ("supervisor", "/overview?date=9999-12-31", "date"),
        ("supervisor", "/hotspots/LE01?date=0001-01-01", "date"),
        ("supervisor", "/tracks?date=9999-12-31", "date"),
        ("admin", "/admin/audit?to=9999-12-31", "to"),
        ("officer", "/me?from=1969-12-31", "from"),
        ("assurance", "/assurance/?to=9999-12-31", "to"),
        ("supervisor", "/api/dosage?from=9999-12-31", "from"),
        ("assurance", "/api/stops?to=9999-12-31", "to"),
    ],
)
def test_a_date_outside_the_dates_handled_is_a_400_naming_the_argument(
    signed_in, role, url, argument
):
    # These once overflowed Python's dates (a 500): pages work days either side of a date.
    response = signed_in(role).get(url)

    assert response.status_code == 400
    message = response.json["error"]["message"] if url.startswith("/api/") else response.text
    assert f"{argument}: " in message
    assert "is outside the dates handled, 1970-01-01 to 2099-12-31" in message


def test_an_unexpected_error_is_a_500_without_internals_in_json_or_html(demo):
    app = make_app(demo)

    @app.get("/api/fails")
    def fails():
        raise RuntimeError("internal detail")

    client = app.test_client()
    as_json = client.get("/api/fails", headers={"Accept": "application/json"})
    as_page = client.get("/api/fails", headers={"Accept": "text/html"})

    assert as_json.status_code == as_page.status_code == 500
    assert as_json.json == {
        "error": {
            "status": 500,
            "title": "Internal Server Error",
            "message": "Something went wrong; it has been logged.",
        }
    }
    assert "Something went wrong" in as_page.text
    assert "internal detail" not in as_json.text + as_page.text


# --- loading a plan in the browser -----------------------------------------------------------

DEMO_PLAN_TEXT = (Path(__file__).resolve().parents[2] / "geofences" / "demo_plan.yaml").read_text(
    encoding="utf-8"
)


@pytest.fixture
def own_demo(demo, tmp_path) -> Demo:
    """A copy of the demo database, for a test that changes the plan."""
    copy = tmp_path / "demo.db"
    shutil.copyfile(demo.url.removeprefix("sqlite:///"), copy)
    return Demo(f"sqlite:///{copy}", demo.passwords)


def upload_plan(client: FlaskClient, text: str, filename: str = "plan.yaml"):
    return client.post(
        "/plan",
        data={"csrf_token": csrf_token(client), "plan": (io.BytesIO(text.encode()), filename)},
        content_type="multipart/form-data",
    )


def plan_loads(sessions_of: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions_of() as session:
        return [
            tuple(row)
            for row in session.execute(
                select(AuditEvent.actor, AuditEvent.subject)
                .where(AuditEvent.action == "plan.load")
                .order_by(AuditEvent.id)
            )
        ]


def test_an_administrator_loads_a_plan_in_the_browser_and_it_is_audited(own_demo):
    app = make_app(own_demo)
    client = sign_in(app, own_demo, "admin")
    engine = make_engine(own_demo.url)
    before = plan_loads(session_factory(engine))
    changed = DEMO_PLAN_TEXT.replace(
        "  presence_minutes_per_day: 45\n", "  presence_minutes_per_day: 50\n", 1
    )
    assert changed != DEMO_PLAN_TEXT

    def le10_daily_minutes() -> set[float]:
        rows = csv.DictReader(io.StringIO(client.get("/plan?format=csv").text))
        return {float(r["presence_minutes_per_day"]) for r in rows if r["hotspot_id"] == "LE10"}

    assert le10_daily_minutes() == {45.0}  # the default of the demo plan

    response = upload_plan(client, changed)

    assert response.status_code == 302
    assert location_path(response) == "/plan"
    page = client.get("/plan").text
    assert "Loaded the plan of Operation Guardian (DEMONSTRATION): 25 hot spots" in page
    assert le10_daily_minutes() == {50.0}
    assert plan_loads(session_factory(engine)) == [
        *before,
        ("admin", "operation Operation Guardian (DEMONSTRATION)"),
    ]
    engine.dispose()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            DEMO_PLAN_TEXT.replace("end: 2027-05-31", "end: 2026-05-31"),
            "end: 2026-05-31 is before the start 2026-06-01",
        ),
        ("operation: X\nstart: [2026-04-01\n", "line 3: not valid YAML"),
        (
            DEMO_PLAN_TEXT.replace("tz: Europe/London", "tz: Europe/Paris"),
            "tz Europe/Paris differs from TRACKER_TZ Europe/London",
        ),
    ],
)
def test_a_bad_plan_file_is_refused_with_its_errors_and_changes_nothing(own_demo, text, expected):
    app = make_app(own_demo)
    client = sign_in(app, own_demo, "admin")
    csv_before = client.get("/plan?format=csv").text

    response = upload_plan(client, text, filename="bad.yaml")

    assert response.status_code == 400
    assert "Nothing loaded:" in response.text
    assert expected in html.unescape(response.text)
    assert "bad.yaml" in response.text
    assert client.get("/plan?format=csv").text == csv_before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_a_plan_only_an_administrator_sees_the_plan_page_to_load_one(database_url, db):
    passwords = {"admin": secrets.token_urlsafe(), "supervisor": secrets.token_urlsafe()}
    with db.begin() as session:
        for role, password in passwords.items():
            create_user(session, role, role, password, actor="test")
    empty = Demo(database_url, passwords)
    app = make_app(empty)

    as_admin = sign_in(app, empty, "admin").get("/plan")
    as_supervisor = sign_in(app, empty, "supervisor").get("/plan")

    assert as_admin.status_code == 200
    assert "No operation plan is loaded yet." in as_admin.text
    assert 'name="plan"' in as_admin.text
    assert as_supervisor.status_code == 404
    assert "no operation plan is loaded" in as_supervisor.text


def test_loading_the_same_plan_again_says_nothing_changed_and_audits_nothing(own_demo):
    client = sign_in(make_app(own_demo), own_demo, "admin")
    engine = make_engine(own_demo.url)
    # The demo holds its plan moved to start two weeks ago; the file's dates replace it once.
    assert upload_plan(client, DEMO_PLAN_TEXT).status_code == 302
    before = plan_loads(session_factory(engine))

    response = upload_plan(client, DEMO_PLAN_TEXT)  # the plan the database now holds

    assert response.status_code == 302
    assert "is already this one; nothing changed." in client.get("/plan").text
    assert plan_loads(session_factory(engine)) == before
    engine.dispose()


def test_a_plan_upload_without_a_csrf_token_is_refused(own_demo):
    client = sign_in(make_app(own_demo), own_demo, "admin")
    response = client.post(
        "/plan", data={"plan": (io.BytesIO(b"x"), "plan.yaml")}, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert "Form expired or forged" in response.text


# --- CSRF and the log-in rate limit --------------------------------------------------------


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_login_without_a_valid_csrf_token_is_rejected(app, demo, token):
    client = app.test_client()
    client.get("/login")  # a session exists; only the token is missing or wrong
    data = {"username": "supervisor", "password": demo.passwords["supervisor"]}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "Form expired or forged" in response.text
    assert client.get("/overview").status_code == 302  # still not signed in


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_logout_without_a_valid_csrf_token_is_rejected(app, demo, token):
    client = sign_in(app, demo, "officer")
    response = client.post("/logout", data={} if token is None else {"csrf_token": token})
    assert response.status_code == 400
    assert is_signed_in(client)


def test_failed_logins_are_rate_limited(demo):
    app = make_app(demo, LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    password = demo.passwords["assurance"]
    assert post_login(client, "assurance", "wrong password 1").status_code == 401
    assert post_login(client, "assurance", "wrong password 2").status_code == 401
    assert post_login(client, "assurance", password).status_code == 302  # not counted
    assert post_login(client, "assurance", "wrong password 3").status_code == 401
    limited = post_login(client, "assurance", "wrong password 4")
    assert limited.status_code == 429
    # Once limited, even the right password waits; other user names are counted apart.
    assert post_login(app.test_client(), "assurance", password).status_code == 429
    assert post_login(app.test_client(), "admin", "wrong password").status_code == 401


# --- headers, cookies and production settings ----------------------------------------------


@pytest.mark.parametrize(
    ("role", "path"),
    [
        (ANONYMOUS, "/login"),
        ("supervisor", "/overview"),
        ("supervisor", "/hotspots/LE01"),
        ("supervisor", f"/tracks?officer={OFFICER_OF_DEMO_USER}"),
        ("admin", "/overview"),
        ("officer", "/me"),
        ("officer", "/overview"),  # the 403 page
    ],
)
def test_pages_carry_security_headers_and_nonced_scripts(app, signed_in, role, path):
    client = app.test_client() if role == ANONYMOUS else signed_in(role)
    response = client.get(path)
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    nonces = re.findall(r"'nonce-([^']+)'", policy)
    assert len(nonces) == 1 and len(nonces[0]) >= 16, policy
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    scripts = SCRIPT_TAG.findall(response.text)
    assert scripts, "every page loads at least the table script"
    for tag in scripts:
        assert f'nonce="{nonces[0]}"' in tag, tag
    if path.startswith(("/overview", "/tracks")) and response.status_code == 200:
        assert len(scripts) >= 3  # Leaflet, the map and the tables
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    # A new nonce for each response.
    assert client.get(path).headers["Content-Security-Policy"] != policy


def test_api_responses_are_not_cached(signed_in):
    response = signed_in("supervisor").get("/api/hotspots")
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def test_session_cookie_is_http_only_and_same_site_lax(app, demo):
    client = app.test_client()
    response = post_login(client, "supervisor", demo.passwords["supervisor"])
    assert response.status_code == 302
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development serves plain HTTP on 127.0.0.1


@pytest.fixture
def production(monkeypatch):
    monkeypatch.setenv("TRACKER_ENV", "production")
    monkeypatch.delenv("TRACKER_DEBUG", raising=False)
    monkeypatch.delenv("TRACKER_CONFIG", raising=False)
    monkeypatch.setenv("TRACKER_SECRET_KEY", secrets.token_hex(32))
    return monkeypatch


@pytest.mark.parametrize("key", [None, "", "too-short-a-key"])
def test_production_refuses_to_start_without_a_secret_key(production, demo, key):
    if key is None:
        production.delenv("TRACKER_SECRET_KEY")
    else:
        production.setenv("TRACKER_SECRET_KEY", key)
    with pytest.raises(ConfigurationError, match="TRACKER_SECRET_KEY"):
        make_app(demo)


def test_production_refuses_debug_mode(production, demo):
    production.setenv("TRACKER_DEBUG", "1")
    with pytest.raises(ConfigurationError, match="TRACKER_DEBUG"):
        make_app(demo)


def test_rag_thresholds_come_from_the_settings(demo, week, monkeypatch):
    """With green at 0 every hot spot with a target today is green on the overview, unless
    it is over its maximum (OVER whatever the thresholds); a pair that is not
    0 <= amber <= green stops the app from starting."""
    url = f"/overview?format=csv&date={week[1].isoformat()}"

    def statuses() -> list[str]:
        client = sign_in(make_app(demo), demo, "supervisor")
        return [row["day_presence_status"] for row in csv_rows(client.get(url))]

    default = statuses()
    assert {"red", "amber"} & set(default)
    monkeypatch.setenv("TRACKER_RAG_GREEN", "0")
    monkeypatch.setenv("TRACKER_RAG_AMBER", "0")
    assert statuses() == [s if s in ("none", "over") else "green" for s in default]
    monkeypatch.setenv("TRACKER_RAG_AMBER", "0.5")
    with pytest.raises(ConfigurationError, match="amber <= green"):
        make_app(demo)


def test_production_sets_secure_cookies_and_hsts(production, demo):
    app = make_app(demo)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.debug is False
    response = app.test_client().get("/login")
    assert response.status_code == 200
    cookie = session_cookie(response)  # the CSRF token's session
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "max-age=" in response.headers["Strict-Transport-Security"]


# --- bearer tokens -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tokens(sessions) -> dict[str, str]:
    """API tokens: the supervisor's, the officer's, and a revoked one of the supervisor's."""
    with sessions.begin() as session:
        issued = {
            "supervisor": issue_token(session, "supervisor", "bi-tool", actor="test"),
            "officer": issue_token(session, "officer", "phone", actor="test"),
            "revoked": issue_token(session, "supervisor", "old-laptop", actor="test"),
        }
    with sessions.begin() as session:
        assert revoke_token(session, "supervisor", "old-laptop", actor="test") == 1
    return issued


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_bearer_token_reads_the_api_without_a_session(app, tokens):
    client = app.test_client()
    response = client.get("/api/dosage", headers=bearer(tokens["supervisor"]))
    assert response.status_code == 200
    assert response.is_json and len(response.json) > 0
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    # The token signed in this request only.
    assert client.get("/api/dosage").status_code == 401


@pytest.mark.parametrize("which", ["revoked", "bogus"])
def test_revoked_or_bogus_token_is_refused(app, tokens, which):
    token = tokens["revoked"] if which == "revoked" else "hsd_" + secrets.token_urlsafe(32)
    response = app.test_client().get("/api/dosage", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["error"]["status"] == 401


def test_officer_token_may_not_read_dosage(app, tokens):
    response = app.test_client().get("/api/dosage", headers=bearer(tokens["officer"]))
    assert response.status_code == 403
    assert response.json["error"]["status"] == 403


# --- figures agree -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def week() -> tuple[date, date]:
    """The last seven whole local days of the demo patrols."""
    yesterday = local_today() - timedelta(days=1)
    return yesterday - timedelta(days=6), yesterday


@pytest.fixture(scope="session")
def api_rows(signed_in, week) -> list[dict]:
    from_day, to_day = week
    response = signed_in("supervisor").get(
        f"/api/dosage?from={from_day.isoformat()}&to={to_day.isoformat()}"
    )
    assert response.status_code == 200
    return response.json


def test_api_dosage_equals_the_report_command(demo, api_rows, week):
    from_day, to_day = week
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--format",
            "json",
            "--from",
            from_day.isoformat(),
            "--to",
            to_day.isoformat(),
            "--db",
            demo.url,
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert api_rows == report
    days = {row["date"] for row in report}
    assert days == {(from_day + timedelta(days=n)).isoformat() for n in range(7)}
    assert len({row["hotspot_id"] for row in report}) >= 20
    assert sum(row["presence_minutes"] for row in report) > 0


@pytest.mark.parametrize("hotspot_id", ["LE01", "LE02", "LE06"])
def test_hot_spot_daily_csv_agrees_with_the_api(signed_in, api_rows, week, hotspot_id):
    from_day, to_day = week
    daily = csv_rows(
        signed_in("supervisor").get(
            f"/hotspots/{hotspot_id}?format=csv&table=daily&date={to_day.isoformat()}"
        )
    )
    by_date = {row["date"]: row for row in daily}
    api = {row["date"]: row for row in api_rows if row["hotspot_id"] == hotspot_id}
    assert api, f"the demo patrols {hotspot_id}"
    for n in range(7):
        day = (from_day + timedelta(days=n)).isoformat()
        expected = api.get(day, {"presence_minutes": 0.0, "officer_minutes": 0.0, "visits": 0})
        assert by_date[day]["presence_minutes"] == f"{expected['presence_minutes']:.2f}", day
        assert by_date[day]["officer_minutes"] == f"{expected['officer_minutes']:.2f}", day
        assert int(by_date[day]["visits"]) == expected["visits"], day


@pytest.mark.parametrize("hotspot_id", ["LE01", "LE02", "LE06"])
def test_overview_csv_agrees_with_the_api(signed_in, api_rows, week, hotspot_id):
    """Yesterday's compliance on the overview is counted presence / target; without patrol
    windows (LE02, LE06) counted presence is the API's presence."""
    client = signed_in("supervisor")
    day = week[1].isoformat()
    overview = {
        row["hotspot_id"]: row for row in csv_rows(client.get(f"/overview?format=csv&date={day}"))
    }
    assert len(overview) == 25
    daily = {
        row["date"]: row
        for row in csv_rows(client.get(f"/hotspots/{hotspot_id}?format=csv&table=daily&date={day}"))
    }
    assert overview[hotspot_id]["day_presence_compliance"] == daily[day]["presence_compliance"]
    api = next(row for row in api_rows if (row["hotspot_id"], row["date"]) == (hotspot_id, day))
    target = float(daily[day]["target_presence_minutes"])
    assert target > 0
    compliance = float(overview[hotspot_id]["day_presence_compliance"])
    if hotspot_id != "LE01":  # LE01 counts only presence inside its patrol windows
        assert compliance == pytest.approx(api["presence_minutes"] / target, abs=1e-4)
    else:
        assert compliance <= api["presence_minutes"] / target + 1e-4


# --- privacy: audited tracks, an officer's own figures ---------------------------------------


def track_views(sessions, subject: str) -> int:
    with sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == "track.view",
                AuditEvent.actor == "supervisor",
                AuditEvent.subject == subject,
            )
        )


def test_viewing_a_track_is_audited_with_the_supervisors_name(signed_in, sessions):
    subject = f"officer:{OTHER_OFFICER}"
    day = (local_today() - timedelta(days=1)).isoformat()
    before = track_views(sessions, subject)
    # Someone without the right to see tracks leaves no trace and sees nothing.
    assert signed_in("admin").get(f"/tracks?officer={OTHER_OFFICER}").status_code == 403
    assert track_views(sessions, subject) == before
    response = signed_in("supervisor").get(f"/tracks?officer={OTHER_OFFICER}&date={day}")
    assert response.status_code == 200
    assert "Pings (" in response.text
    assert track_views(sessions, subject) == before + 1
    with sessions() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "track.view", AuditEvent.subject == subject)
            .order_by(AuditEvent.id.desc())
        ).first()
    assert event.actor == "supervisor"
    assert event.after == {"date": day}


def test_officer_sees_only_their_own_figures(signed_in, sessions):
    to_day = local_today()
    from_day = to_day - timedelta(days=27)
    contributors = csv_rows(
        signed_in("supervisor").get("/hotspots/LE01?format=csv&table=contributors")
    )
    assert len({row["officer_id"] for row in contributors}) > 1  # others have figures too
    client = signed_in("officer")
    # Query arguments cannot widen the page to other officers.
    rows = csv_rows(client.get(f"/me?format=csv&officer={OTHER_OFFICER}"))
    assert rows
    assert {row["officer_id"] for row in rows} == {OFFICER_OF_DEMO_USER}
    with sessions() as session:
        own = officer_figures(
            session, DosageParams(), from_day, to_day, officer_id=OFFICER_OF_DEMO_USER
        )
    expected = io.StringIO()
    write_table(own, "csv", expected)
    assert client.get("/me?format=csv").text == expected.getvalue()
    # The page's totals by hot spot add up to this officer's minutes.
    page = client.get("/me").text
    totals = re.search(r'<table class="sortable" id="totals">.*?</table>', page, re.DOTALL)
    assert totals, page
    shown = [
        float(v)
        for v in re.findall(r'<td class="officer_minutes"\s+data-sort="([^"]+)"', totals.group(0))
    ]
    assert sum(shown) == pytest.approx(own["officer_minutes"].sum(), abs=0.05)
    assert len(shown) == own["hotspot_id"].nunique()


# --- nothing from other hosts --------------------------------------------------------------


def external_references(html: str) -> list[str]:
    """Return src/href values and absolute URLs in a page that point outside this machine."""
    found = []
    for value in SRC_OR_HREF.findall(html):
        parts = urlsplit(value.replace("&amp;", "&"))
        if parts.scheme == "data":  # inline, fetched from nowhere
            continue
        if parts.scheme not in ("", "http", "https") or (
            parts.netloc and parts.hostname not in LOCAL_HOSTS
        ):
            found.append(value)
    for host in ABSOLUTE_URL.findall(html):
        if urlsplit(f"//{host}").hostname not in LOCAL_HOSTS:
            found.append(host)
    return found


@pytest.mark.parametrize("role", [*ROLES, ANONYMOUS])
def test_pages_reference_no_other_host(app, signed_in, role):
    client = app.test_client() if role == ANONYMOUS else signed_in(role)
    pages = [
        path
        for method, path, allowed in ROUTES
        if method == "GET"
        and role in allowed
        and path != "/"
        and "format=csv" not in path
        and not path.startswith("/api/")
    ]
    pages.append("/hotspots/NO-SUCH-SPOT")  # the error page
    assert pages
    for path in pages:
        response = client.get(path)
        assert response.mimetype == "text/html", path
        assert SRC_OR_HREF.search(response.text), path
        assert external_references(response.text) == [], path
