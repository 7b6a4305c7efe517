"""Every route of the web app, walked with hostile input as every role that may reach it: the
safety net that keeps the security review's fixes (issue 15) in place for routes added later.

The routes are read from `app.url_map` when the tests are collected (all but static files and
Leaflet's), so a new route is walked, and checked, without a change here; a new path argument
needs a sample value in `Site.sample` (the coverage test says so). Which query and form
parameters a view reads is recorded as it runs (a request class whose parameter dictionaries
note each key asked for), so each parameter a route reads gets the hostile values.

The app runs on a copy of the web tests' demo database (tests/web/test_web.py), made hostile:
a hot spot, officer, device, dead letter, audit event, user, stop and review action whose
texts start like a spreadsheet formula and hold markup, a hot spot id with a quote, device and
officer ids with a quote and CR LF, and a user of every role. The walks whose values a
database may refuse (NUL, large integers) also run on PostgreSQL. Each kind of hostile input
goes once to each role that may reach a route (and to an anonymous visitor), except where
who sends it makes no difference (noted). Checked:

1. markup in every parameter read (and in every form field, and in a JSON body) never comes
   back as markup in an HTML page; any other body says its type and forbids sniffing; no 5xx,
   and a redirect stays on this site; the stored hostile texts are shown as text too (a GET
   gets its parameters at once, then, for its first role, one by one where that was refused);
2. every CSV download (`format=csv`, with each `table=` its page links to or its error names)
   has no cell a spreadsheet would run;
3. an out-of-range or malformed date in each date parameter read is a 400 or 404, promptly;
4. an integer id of 0, 2**31 - 1, 2**31, 2**63, 10**30 or -1 is a 404 (or 405), on SQLite as
   each role, on PostgreSQL as the first;
5. a body over MAX_CONTENT_LENGTH is refused (413, or 400/401/403/405 before it is read); a
   10,000-character value in a form or JSON field is refused, not stored, and not repeated
   whole in the answer (the form field that keeps it for correction aside);
6. a state change with a signed-in session but no CSRF token is refused, also with a bogus
   bearer token beside it, and changes nothing (no audit event, still signed in);
7. a valid bearer token works whatever session cookie comes with it (junk, or another user's),
   and signs no browser in (each role on the API, the first role on pages);
8. NUL, other control characters, U+202E and 10,000-character strings in path segments and
   query parameters give a page or a 4xx, never a 5xx, and no NUL, U+202E or markup raw, on
   SQLite and PostgreSQL (as the first role and an anonymous visitor);
9. every Content-Disposition (each download's name) is well formed, also for the hostile ids.

Every defect it found was fixed at its root (a NUL refused before any view; error messages
that shorten what they quote); a new one fails here.
"""

from __future__ import annotations

import csv
import html
import inspect
import io
import json
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import shapely
from flask import Flask, Response
from flask.testing import FlaskClient
from itsdangerous import BadSignature
from markupsafe import escape
from sqlalchemy import func, select, text
from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.routing import IntegerConverter

from tests import servers
from tests.web import test_web, test_web_assurance
from tests.web.test_security_downloads import expected_name, offered_name
from tests.web.test_web import ANONYMOUS, CSRF_INPUT, OFFICER_OF_DEMO_USER, Demo, bearer
from tracker.accounts.audit import record
from tracker.accounts.users import FULL_SCOPE, ROLES, create_user, issue_token
from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import parse_hot_spots
from tracker.dosage.recompute import replace_hot_spots
from tracker.foundation.clock import local_today
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.foundation.models import (
    ApiToken,
    AuditEvent,
    DeadLetter,
    Device,
    HotSpotRow,
    Officer,
    PingRow,
)
from tracker.plan.reader import parse_plan
from tracker.plan.storage import load_plan
from tracker.stops.records import create_stop
from tracker.stops.review import add_action
from web import create_app

# The web tests' demo database, built once per test session; this module works on a copy.
demo = test_web.demo

# --- hostile input --------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
META = '<meta http-equiv="refresh" content="0;url=https://evil.example">'
MARKUP = (SCRIPT, IMG, META)
# What must never appear in an HTML page: the start of each payload as markup.
MARKERS = ("<script>alert(", "<img src=x onerror", '<meta http-equiv="refresh" content="0;url=')
# NUL (which PostgreSQL refuses in text), other controls, a bidi override; and a long one.
CONTROL = (
    f"\x00{SCRIPT}\x00\u202egpj.exe\r\n\t\x1b[2J\x7f\x85\u2028\ufeff",
    "A" * 10_000 + IMG,
)
PATH_VALUES = (
    SCRIPT,
    IMG,
    "\x00",
    "LE01\x00",
    "\r\nSet-Cookie: session=stolen",
    "\u202egpj.exe",
    "\x7f\x1b[0m",
    "B" * 10_000,
    "..",
    "%00",
)
DATE_VALUES = ("0001-01-01", "9999-12-31", "99999-01-01", "2026-02-30", "x")
DATE_NAMES = ("date", "from", "to", "day", "at", "start", "end")
DATE_LIKE = re.compile(r"(?:^|_)(?:date|day|week|month|from|to|at|start|end|since|until)$")


def is_date_like(name: str) -> bool:
    return name in DATE_NAMES or bool(DATE_LIKE.search(name))


INT_VALUES = (0, 2**31 - 1, 2**31, 2**63, 10**30)
LONG_TEXT = 10_500
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_REFUSAL = "Form expired or forged"  # web/errors.py: the page and JSON of a CSRFError
REFUSED_BEFORE_READING = {400, 401, 403, 405, 413}
HANG_SECONDS = 10.0
# What a spreadsheet runs (tracker/foundation/tables.py, after OWASP), unless a plain number.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)

# --- hostile data in the database -----------------------------------------------------------

HOT_SPOT_NAME = f'=HYPERLINK("https://evil.example","{IMG}")'  # LE01's name
# An id the geofence loader takes (no control characters) and a path segment holds (no "/").
HOSTILE_HOT_SPOT = 'HS"9; filename=evil.exe <img src=x onerror=alert(1)>'
OUTSIDE_PLAN = "LE99"  # a hot spot of the stored set that the operation's plan leaves out
OFFICER_NAME = f"@officer {SCRIPT}"  # the demo officer's
HOSTILE_OFFICER = 'PC "9";\r\nRefresh: 0;url=https://evil.example'
FORMULA_DEVICE = f"=cmd|' /C calc'!A0 {IMG}"
CRLF_DEVICE = 'radio "9"; filename=evil.exe\r\nSet-Cookie: session=stolen'
DEVICE_LABEL = f"\r+label {SCRIPT}"
DEAD_LETTER = {"topic": f"=topic {IMG}", "reason": "\treason", "payload": f"-payload {SCRIPT}"}
AUDIT = {"actor": "=actor", "action": "+action", "subject": f"@subject {IMG}"}
HOSTILE_USER = "-cmd"
STOP_TEXT = {
    "policing_operation": "=operation",
    "gender": "+gender",
    "age_range": "@age",
    "self_defined_ethnicity": "@ethnicity",
    "officer_defined_ethnicity": "-ethnicity",
    "legislation": f"=legislation {SCRIPT}",
    "object_of_search": f"+object {IMG}",
    "outcome": f"@outcome {META}",
    "reference": "=REF-9",
    "grounds": '=HYPERLINK("https://evil.example")',
    "bwv_reference": "+BWV-9",
}
# Each must reach some download, neutralised.
FORMULA_SEEDS = (
    HOT_SPOT_NAME,
    OFFICER_NAME,
    FORMULA_DEVICE,
    DEVICE_LABEL,
    *DEAD_LETTER.values(),
    *AUDIT.values(),
    HOSTILE_USER,
    *STOP_TEXT.values(),
)

# --- the routes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One method of one URL rule, and who may reach it."""

    rule: str
    endpoint: str
    method: str
    roles: tuple[str, ...]  # its view's allowed roles, else everyone (anonymous too)
    arguments: tuple[tuple[str, str], ...]  # (name, "int" or "string")

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"

    @property
    def changes_state(self) -> bool:
        return self.method in STATE_CHANGING

    @property
    def signed_in_roles(self) -> tuple[str, ...]:
        return tuple(r for r in self.roles if r != ANONYMOUS)

    @property
    def walkers(self) -> tuple[str, ...]:
        """Everyone allowed, and an anonymous visitor (who is sent to log in)."""
        return self.roles if ANONYMOUS in self.roles else (*self.roles, ANONYMOUS)

    @property
    def first_walkers(self) -> tuple[str, ...]:
        """The first role allowed, and an anonymous visitor: for the values whose handling
        does not depend on who sends them (control characters, large integers)."""
        return (*self.signed_in_roles[:1], ANONYMOUS)


def _argument_kind(converter) -> str:
    return "int" if isinstance(converter, IntegerConverter) else "string"


def web_routes(app: Flask) -> list[Route]:
    """Return every method of every rule but static files and Leaflet's."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("vendor."):
            continue
        allowed = getattr(app.view_functions[rule.endpoint], "allowed_roles", None)
        roles = tuple(allowed) if allowed else (*ROLES, ANONYMOUS)
        arguments = tuple(
            (name, _argument_kind(converter)) for name, converter in rule._converters.items()
        )
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append(Route(rule.rule, rule.endpoint, method, roles, arguments))
    return sorted(routes, key=str)


def _collected_routes() -> list[Route]:
    # The url_map does not depend on the database: an app on an in-memory one lists it.
    app = create_app({"DATABASE_URL": "sqlite://", "TESTING": True})
    try:
        return web_routes(app)
    finally:
        app.extensions["tracker.sessions"].kw["bind"].dispose()


ROUTES = _collected_routes()
GET_ROUTES = [r for r in ROUTES if r.method == "GET"]
STATE_ROUTES = [r for r in ROUTES if r.changes_state]
INT_ROUTES = [r for r in ROUTES if any(kind == "int" for _, kind in r.arguments)]
STRING_ROUTES = [r for r in ROUTES if any(kind == "string" for _, kind in r.arguments)]
ARGUMENT = re.compile(r"<(?:[^<>:]+:)?(\w+)>")

# --- recording which parameters a view reads -------------------------------------------------

READ: set[str] = set()


class RecordedParameters(ImmutableMultiDict):
    """Query and form parameters that note each key a view (or template, or form) asks for."""

    def __getitem__(self, key):
        READ.add(key)
        return super().__getitem__(key)

    def get(self, key, *args, **kwargs):
        READ.add(key)
        return super().get(key, *args, **kwargs)

    def getlist(self, key, *args, **kwargs):
        READ.add(key)
        return super().getlist(key, *args, **kwargs)

    def __contains__(self, key):
        READ.add(key)
        return super().__contains__(key)


def recording(app: Flask) -> Flask:
    class RecordingRequest(app.request_class):
        parameter_storage_class = RecordedParameters

    app.request_class = RecordingRequest
    return app


# --- the hostile site -----------------------------------------------------------------------


@dataclass
class Site:
    """The app on the hostile copy of the demo database, and what the walk needs of it."""

    app: Flask
    passwords: dict[str, str]  # of a user named after each role
    stop_id: int  # a stop of the demo officer's, with hostile text
    action_id: int  # an action of that stop's review
    clients: dict[str, FlaskClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)
    reads_cache: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    fetched: dict[tuple, Response] = field(default_factory=dict)

    # clients

    def client(self, role: str) -> FlaskClient:
        """Return the role's signed-in client (anonymous: one with a session and token)."""
        if role not in self.clients:
            client = self.app.test_client()
            if role != ANONYMOUS:
                response = test_web.post_login(client, role, self.passwords[role])
                assert response.status_code == 302, response.text
            page = client.get("/login")
            self.csrf[role] = CSRF_INPUT.search(page.text).group(1)
            self.clients[role] = client
        return self.clients[role]

    def is_signed_in(self, client: FlaskClient) -> bool:
        return self.session_user(client) is not None

    def _user_in(self, cookie: str | None) -> str | None:
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        try:
            return serializer.loads(cookie).get("_user_id") if cookie else None
        except BadSignature:
            return None

    def session_user(self, client: FlaskClient) -> str | None:
        """The signed-in session the client's cookie holds, if any."""
        cookie = client.get_cookie("session")
        return self._user_in(cookie.value if cookie else None)

    def cookie_user(self, response: Response) -> str | None:
        """The signed-in session of the session cookie the response sets, if any."""
        for cookie in response.headers.getlist("Set-Cookie"):
            if cookie.startswith("session="):
                return self._user_in(cookie.partition(";")[0].removeprefix("session="))
        return None

    def token(self, role: str) -> str:
        """Issue a new API token with the role's full rights (the walk may revoke others)."""
        with self.app.extensions["tracker.sessions"].begin() as session:
            return issue_token(session, role, "hostile-walk", actor="test", scope=FULL_SCOPE)

    def audit_count(self) -> int:
        with self.app.extensions["tracker.sessions"]() as session:
            return session.scalar(select(func.count()).select_from(AuditEvent))

    def last_audit_id(self) -> int:
        with self.app.extensions["tracker.sessions"]() as session:
            return session.scalar(select(func.max(AuditEvent.id)))

    def audited_since(self, audit_id: int) -> str:
        """Return the audit events after this id as text (every change records its values)."""
        with self.app.extensions["tracker.sessions"]() as session:
            events = session.execute(
                select(
                    AuditEvent.actor,
                    AuditEvent.action,
                    AuditEvent.subject,
                    AuditEvent.before,
                    AuditEvent.after,
                ).where(AuditEvent.id > audit_id)
            ).all()
        return json.dumps([list(event) for event in events], default=str)

    # requests

    def sample(self, name: str, kind: str) -> str | int:
        """Return a value of a path argument that the view finds (a route added with an
        argument named otherwise gets 1 or "sample": the coverage test then asks for one)."""
        if name == "hotspot_id":
            return "LE01"
        if name == "stop_id":
            return self.stop_id
        if name == "action_id":
            return self.action_id
        if name == "token_id":  # a new one each time: revoking one uses it up
            with self.app.extensions["tracker.sessions"].begin() as session:
                issue_token(session, "officer", "hostile-sample", actor="test")
                return session.scalar(select(func.max(ApiToken.id)))
        return 1 if kind == "int" else "sample"

    def path(self, route: Route, overrides: dict | None = None) -> str:
        def fill(match: re.Match) -> str:
            name = match.group(1)
            value = (overrides or {}).get(name)
            if value is None:
                value = self.sample(name, dict(route.arguments)[name])
            return quote(str(value), safe="")

        return ARGUMENT.sub(fill, route.rule)

    def request(
        self,
        role: str,
        route: Route,
        *,
        path: str | None = None,
        query: dict | None = None,
        form: dict | None = None,
        body: dict | None = None,
        raw: tuple[bytes, str] | None = None,
        token: bool = True,
        headers: dict | None = None,
        client: FlaskClient | None = None,
    ) -> Response:
        """Send one request as `role` (with the session's CSRF token unless told not to)."""
        own = client is None
        client = client or self.client(role)
        headers = dict(headers or {})
        kwargs: dict = {"query_string": query or {}}
        if route.changes_state:
            if token and own:
                headers["X-CSRFToken"] = self.csrf[role]
            if raw is not None:
                kwargs.update(data=raw[0], content_type=raw[1])
            elif body is not None:
                kwargs["json"] = body
            else:
                data = dict(form if form is not None else {"_probe": "1"})
                if token and own:
                    data["csrf_token"] = self.csrf[role]
                kwargs["data"] = data
        READ.clear()
        started = time.perf_counter()
        response = client.open(
            path or self.path(route), method=route.method, headers=headers, **kwargs
        )
        response.elapsed = time.perf_counter() - started
        response.read_keys = frozenset(READ) - {"csrf_token", "_probe"}
        if own and role != ANONYMOUS and not self.is_signed_in(client):
            self.clients.pop(role)  # signed out (by /logout): sign in again when next needed
        elif own and role == ANONYMOUS and route.changes_state:
            self.clients.pop(role)  # its session (and CSRF token) may have been cleared
        return response

    def send(self, role: str, route: Route, key: str, value: str) -> Response:
        """Send `value` as the parameter `key` (in the query, and in the form of a state
        change, whose other fields it reads get plain values: the view then goes further)."""
        if not route.changes_state:
            return self.request(role, route, query={key: value})
        form = {name: plain_value(name) for name in self.reads(route, role)}
        return self.request(role, route, query={key: value}, form={**form, key: value})

    def walk(
        self, role: str, route: Route, values: dict[str, str], thorough: bool = True
    ) -> list[tuple[str, Response]]:
        """Send each parameter its hostile value (`values`); return (keys, response) pairs.

        A state change gets each field alone, its other fields plain (see `send`). A GET gets
        all but the dates at once, and each date alone (a bad one is refused first); then,
        if `thorough`, alone each parameter that this did not reach (a refusal came first, or
        the view reads it only for a download: then it goes with `format=csv`). Who asks
        changes what a page shows, so each role gets the first; the values go deeper the
        same way for all, so one role (the first) is thorough.
        """
        keys = sorted(values)
        if route.changes_state:
            return [(key, self.send(role, route, key, values[key])) for key in keys]
        replies = []
        dates = [k for k in keys if is_date_like(k)]
        others = [k for k in keys if k not in dates]
        reached: frozenset[str] = frozenset()
        if others:
            response = self.request(role, route, query={k: values[k] for k in others})
            replies.append((", ".join(others), response))
            if response.status_code < 400:
                reached = response.read_keys
        replies += [(key, self.send(role, route, key, values[key])) for key in dates]
        if thorough:
            plain, for_download = self.read_sets(route, role)
            for key in others:
                if key in reached or key == "format":
                    continue
                if key in plain:
                    replies.append((key, self.send(role, route, key, values[key])))
                elif key in for_download:
                    query = {"format": "csv", key: values[key]}
                    replies.append((f"{key} (CSV)", self.request(role, route, query=query)))
        return replies

    def fetch(
        self, role: str, route: Route, path: str | None = None, query: dict | None = None
    ) -> Response:
        """A GET of the route, sent once per (role, path, query): the plain pages and
        downloads that several checks read (some pages take seconds to make)."""
        path = path or self.path(route)
        key = (role, str(route), path, tuple(sorted((query or {}).items())))
        if key not in self.fetched:
            self.fetched[key] = self.request(role, route, path=path, query=query)
        return self.fetched[key]

    def read_sets(self, route: Route, role: str) -> tuple[frozenset[str], frozenset[str]]:
        """The parameters a GET route reads for a page, and for a download (`format=csv`;
        the same if the page does not read `format`)."""
        page = self.fetch(role, route).read_keys
        if "format" not in page:
            return page, page
        return page, self.fetch(role, route, query={"format": "csv"}).read_keys

    def reads(self, route: Route, role: str) -> frozenset[str]:
        """Return the parameters the route's view reads for this role (with and without
        `format=csv`; a state change, from a form)."""
        key = (str(route), role)
        if key not in self.reads_cache:
            if route.changes_state:
                keys = self.request(role, route).read_keys
            else:
                keys = frozenset().union(*self.read_sets(route, role))
            self.reads_cache[key] = keys
        return self.reads_cache[key]

    def form_fields(self) -> list[str]:
        """Every form field any state-changing route reads (the JSON API takes the same)."""
        return sorted(
            {k for route in STATE_ROUTES for role in route.roles for k in self.reads(route, role)}
        )


def plain_value(name: str) -> str:
    return date.today().isoformat() if is_date_like(name) else "sample"


# What create_user needs besides a name and password for some roles (given if it takes them).
ROLE_DETAILS = {
    "officer": {"officer_id": OFFICER_OF_DEMO_USER},
    "partner": {"agency": f"=agency {SCRIPT}"},
}


def _create_user(session, role: str, password: str) -> None:
    """Create a user named after the role."""
    accepted = inspect.signature(create_user).parameters
    details = {k: v for k, v in ROLE_DETAILS.get(role, {}).items() if k in accepted}
    create_user(session, role, role, password, actor="test", **details)


def _review_action(session, stop_id: int) -> int:
    """Add an action to the stop's review, with hostile text; return its id."""
    due = date.today() + timedelta(days=7)
    return add_action(session, stop_id, "test", f"=action {SCRIPT}", f"@owner {IMG}", due).id


def _hostile_copy(demo: Demo, folder: Path) -> tuple[str, dict[str, str], int, int]:
    """Copy the demo database and add the hostile data and a user of each role the demo has
    none of; return its URL, each role's password, and the ids of a stop (the demo
    officer's) holding hostile text and of an action of its review."""
    copy = folder / "demo.db"
    shutil.copyfile(demo.url.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    engine = make_engine(url)
    params = DosageParams()
    with session_factory(engine).begin() as session:
        le01 = session.get(HotSpotRow, "LE01")
        le01.name = HOT_SPOT_NAME
        for hot_spot_id in (HOSTILE_HOT_SPOT, OUTSIDE_PLAN):
            session.add(
                HotSpotRow(
                    id=hot_spot_id,
                    name=hot_spot_id,
                    geometry=le01.geometry,
                    properties={"id": hot_spot_id, "name": hot_spot_id},
                )
            )
        session.flush()
        plan = f"{test_web.DEMO_PLAN_TEXT}  '{HOSTILE_HOT_SPOT}': {{}}\n"
        load_plan(session, parse_plan(plan, default_tz=params.tz), actor="test")
        session.get(Officer, OFFICER_OF_DEMO_USER).name = OFFICER_NAME
        session.add(Officer(id=HOSTILE_OFFICER, name=f"-officer {IMG}"))
        centre = shapely.geometry.shape(le01.geometry).centroid
        midnight = datetime.combine(local_today(params.zone), day_time(), params.zone)
        for device in (FORMULA_DEVICE, CRLF_DEVICE):
            session.add(Device(id=device, label=DEVICE_LABEL))
            for n in range(3):
                at = midnight.astimezone(UTC) + timedelta(minutes=1, seconds=10 * n)
                session.add(
                    PingRow(
                        device_id=device,
                        t_us=int(at.timestamp() * 1_000_000),
                        lat=centre.y,
                        lon=centre.x + n * 1e-5,
                        source="mqtt",
                    )
                )
        session.add(DeadLetter(source="mqtt", **DEAD_LETTER))
        record(session, AUDIT["actor"], AUDIT["action"], AUDIT["subject"])
        create_user(session, HOSTILE_USER, "supervisor", secrets.token_urlsafe(24), actor="test")
        stop = create_stop(
            session,
            {
                "type": "Person search",
                "occurred_at": datetime.now(UTC) - timedelta(days=1),
                "officer_id": OFFICER_OF_DEMO_USER,
                "latitude": centre.y,
                "longitude": centre.x,
                **STOP_TEXT,
            },
            actor="test",
        )
        stop_id, action_id = stop.id, _review_action(session, stop.id)
        passwords = dict(demo.passwords)
        for role in set(ROLES) - set(passwords):
            passwords[role] = secrets.token_urlsafe(24)
            _create_user(session, role, passwords[role])
    engine.dispose()
    return url, passwords, stop_id, action_id


@pytest.fixture(scope="module")
def site(demo, tmp_path_factory) -> Site:
    url, passwords, stop_id, action_id = _hostile_copy(demo, tmp_path_factory.mktemp("hostile"))
    app = recording(
        create_app({"DATABASE_URL": url, "TESTING": True, "LOGIN_RATE_LIMIT": "10000 per minute"})
    )
    yield Site(app, passwords, stop_id, action_id)
    app.extensions["tracker.sessions"].kw["bind"].dispose()


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_site() -> Site:
    """The app on PostgreSQL (a private schema, as tests/servers.py makes them): the demo hot
    spots and plan, a user of each role and one stop. PostgreSQL refuses what SQLite takes
    (a NUL in text, an integer over 32 bits), so the walks that send those run on both."""
    base = os.environ.get("TRACKER_TEST_DATABASE_URL", servers.DEFAULT_POSTGRES_URL)
    parts = urlsplit(base.replace("postgresql+psycopg", "postgresql"))
    if not servers.port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        servers.unavailable(f"PostgreSQL at {parts.hostname}:{parts.port or 5432}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    site = None
    try:
        site = _postgres_site(url)
        yield site
    finally:
        if site is not None:
            site.app.extensions["tracker.sessions"].kw["bind"].dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _postgres_site(url: str) -> Site:
    engine = make_engine(url)
    upgrade(engine)
    params = DosageParams()
    passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
    with session_factory(engine).begin() as session:
        geofences = (ROOT / "geofences" / "leicestershire_demo.geojson").read_text()
        replace_hot_spots(session, parse_hot_spots(geofences), params)
        load_plan(session, parse_plan(test_web.DEMO_PLAN_TEXT, default_tz=params.tz), "test")
        session.add(Officer(id=OFFICER_OF_DEMO_USER, name="PC"))
        session.flush()
        for role, password in passwords.items():
            _create_user(session, role, password)
        stop = create_stop(
            session,
            {
                "type": "Person search",
                "occurred_at": datetime.now(UTC) - timedelta(days=1),
                "officer_id": OFFICER_OF_DEMO_USER,
            },
            actor="test",
        )
        stop_id, action_id = stop.id, _review_action(session, stop.id)
    engine.dispose()
    app = recording(
        create_app({"DATABASE_URL": url, "TESTING": True, "LOGIN_RATE_LIMIT": "10000 per minute"})
    )
    return Site(app, passwords, stop_id, action_id)


BACKENDS = ("sqlite", "postgresql")


def on_both(routes: list[Route]) -> list:
    """(backend, route) cases: every route on SQLite and on PostgreSQL."""
    return [
        pytest.param(backend, route, id=f"{backend} {route}")
        for backend in BACKENDS
        for route in routes
    ]


def site_on(request, backend: str) -> Site:
    return request.getfixturevalue("site" if backend == "sqlite" else "pg_site")


# --- what every response must be -------------------------------------------------------------


def text_of(response: Response) -> str:
    return response.get_data().decode("utf-8", "replace")  # a PDF or ZIP download too


def defended(response: Response, what: str) -> list[str]:
    """Return what is wrong with any response to hostile input: a 5xx, markup, NUL or U+202E
    come back raw in HTML, a body of another type that a browser might sniff, a download's
    name in a malformed Content-Disposition, a redirect to another site, or a response that
    took too long."""
    problems = []
    status = response.status_code
    if status >= 500:
        problems.append(f"{what}: {status}")
    body = text_of(response)
    if response.mimetype in MARKUP_TYPES:
        problems += [f"{what}: {marker!r} raw in the page" for marker in MARKERS if marker in body]
        text = outside_form_fields(body)
        problems += [f"{what}: {c!r} raw in the page" for c in ("\x00", "\u202e") if c in text]
    elif body and (
        not response.mimetype or response.headers.get("X-Content-Type-Options") != "nosniff"
    ):
        problems.append(f"{what}: a body of type {response.mimetype!r} a browser may sniff")
    if "Content-Disposition" in response.headers:
        try:
            offered_name(response.headers)
        except AssertionError as exc:
            problems.append(f"{what}: Content-Disposition: {exc}")
    location = response.headers.get("Location")
    if location is not None:
        parts = urlsplit(location)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            problems.append(f"{what}: redirected to {location!r}")
    if response.elapsed > HANG_SECONDS:
        problems.append(f"{what}: took {response.elapsed:.1f} s")
    return problems


# What a browser renders as markup; any other body must say its type and forbid sniffing.
MARKUP_TYPES = {
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
}
# A form shown again after a refusal keeps what was typed (escaped) for correction.
FORM_FIELD_VALUES = re.compile(r'\bvalue="[^"]*"|<textarea\b[^>]*>.*?</textarea>', re.DOTALL)


def outside_form_fields(page: str) -> str:
    """Return the page without its form fields' values (what the user typed, shown again)."""
    return FORM_FIELD_VALUES.sub("", page)


def echoed(response: Response, value: str) -> bool:
    """Whether the response repeats the value whole: anywhere in JSON, or in a page outside
    the form field that holds it for correction (in an error message, say)."""
    text = text_of(response)
    if response.mimetype == "text/html":
        text = html.unescape(outside_form_fields(text))
    return value in text


def markup(n: int) -> str:
    """Every markup payload, the n-th first (an echo cut short still shows a whole one)."""
    k = n % len(MARKUP)
    return " ".join(MARKUP[k:] + MARKUP[:k])


def long_value(name: str) -> str:
    """A value of 10,000+ characters, none a part of another's."""
    return f"[{name}]" + "long text " * (LONG_TEXT // 10) + "end"


# --- the walk covers every route -------------------------------------------------------------


def test_the_walk_covers_every_route_and_reaches_each_view(site):
    """Every rule but static files is walked, and its sample request reaches the view (so the
    hostile variants below test the view, not a 404 for a made-up id)."""
    rules = {
        (rule.rule, method)
        for rule in site.app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.endpoint != "static" and not rule.endpoint.startswith("vendor.")
    }
    assert {(r.rule, r.method) for r in ROUTES} == rules
    assert {r.endpoint for r in ROUTES} >= {
        "auth.login",
        "auth.logout",
        "dashboard.hot_spot",
        "assurance.review",
        "stops_api.create",
        "admin.load_plan_file",
    }
    unreached = []
    for route in ROUTES:
        role = route.roles[0]
        response = site.request(role, route) if route.changes_state else site.fetch(role, route)
        if response.status_code == 404:
            unreached.append(f"{route} as {role}: add a sample for {route.arguments}")
    assert not unreached


# --- 1. markup in parameters, and stored markup ------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_markup_in_every_parameter_is_never_reflected(site, route):
    problems = []
    for n, role in enumerate(route.walkers):
        # What the view reads; for a visitor sent to log in, also where it is to go next.
        keys = sorted(site.reads(route, role) | ({"next"} if role == ANONYMOUS else set()))
        values = {key: markup(n + i) for i, key in enumerate(keys)}
        for key, response in site.walk(role, route, values, thorough=n == 0):
            problems += defended(response, f"{role} {key}")
        if route.changes_state:
            body = {name: markup(j) for j, name in enumerate(site.form_fields())}
            problems += defended(site.request(role, route, body=body), f"{role} JSON")
    assert not problems, "\n".join(problems)


def page_samples(site: Site, route: Route, role: str) -> list[tuple[str, dict]]:
    """Return (path, query) samples of a GET route that show the hostile data: each hot
    spot (the hostile one too) and, where read, each hostile device or officer."""
    paths = [site.path(route)]
    if any(name == "hotspot_id" for name, _ in route.arguments):
        paths.append(site.path(route, {"hotspot_id": HOSTILE_HOT_SPOT}))
    reads = site.reads(route, role)
    queries: list[dict] = [{}]
    if "device" in reads:
        queries += [{"device": FORMULA_DEVICE}, {"device": CRLF_DEVICE}]
    if "officer" in reads:
        queries.append({"officer": HOSTILE_OFFICER})
    return [(path, query) for path in paths for query in queries]


@pytest.mark.parametrize("route", GET_ROUTES, ids=str)
def test_stored_hostile_text_is_shown_as_text(site, route):
    problems = []
    for role in route.roles:
        for path, query in page_samples(site, route, role):
            response = site.fetch(role, route, path=path, query=query)
            problems += defended(response, f"{role} {path} {query}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("role", "url", "shown"),
    [
        ("supervisor", "/hotspots/LE01", HOT_SPOT_NAME),
        ("supervisor", f"/hotspots/{quote(HOSTILE_HOT_SPOT, safe='')}", HOSTILE_HOT_SPOT),
        ("supervisor", "/health", FORMULA_DEVICE),
        ("supervisor", "/health", DEAD_LETTER["topic"]),
        ("supervisor", f"/tracks?device={quote(FORMULA_DEVICE)}", FORMULA_DEVICE),
        ("admin", "/admin/audit", AUDIT["subject"]),
        ("assurance", "/assurance/stops/{stop_id}", STOP_TEXT["outcome"]),
        ("officer", "/assurance/stops/{stop_id}", STOP_TEXT["legislation"]),
    ],
)
def test_the_hostile_data_is_on_the_pages_escaped(site, role, url, shown):
    """The pages walked above do show the hostile data (so its absence as markup counts)."""
    response = site.client(role).get(url.format(stop_id=site.stop_id))
    assert response.status_code == 200, response.text[:500]
    assert str(escape(shown)) in response.text


@pytest.mark.parametrize("suffix", ["", "?format=csv&table=daily"])
def test_a_hot_spot_outside_the_plan_is_not_a_500(site, suffix):
    """The hot spot set and the plan are loaded apart (`tracker hotspots load`, `tracker plan
    load`): a hot spot of the set that the plan leaves out is shown, or refused, not a 500."""
    response = site.client("supervisor").get(f"/hotspots/{OUTSIDE_PLAN}{suffix}")
    assert response.status_code in (200, 404), response.status_code


# --- 2 and 9. downloads --------------------------------------------------------------------

TABLE_CHOICES = re.compile(r"table must be ([^<\"]*)")
HREF = re.compile(r'href="([^"]*)"')


@dataclass(frozen=True)
class Download:
    role: str
    route: Route
    path: str
    query: tuple[tuple[str, str], ...]
    status: int
    mimetype: str
    headers: tuple[tuple[str, str], ...]
    text: str

    def __str__(self) -> str:
        return f"{self.role} {self.path}?{'&'.join(f'{k}={v!r}' for k, v in self.query)}"


def _tables_linked(response: Response) -> set[str]:
    """The tables a page links to as CSV downloads (`?format=csv&table=...`)."""
    tables = set()
    for href in HREF.findall(text_of(response)):
        query = parse_qs(urlsplit(html.unescape(href)).query)
        if query.get("format") == ["csv"]:
            tables |= set(query.get("table", []))
    return tables


def _tables_named(response: Response) -> set[str]:
    """The tables an error for an unknown one names (`table must be one of ...`)."""
    match = TABLE_CHOICES.search(text_of(response))
    words = re.findall(r"[a-z][a-z-]*", match.group(1)) if match else []
    return set(words) - {"one", "of", "or", "and"}


@pytest.fixture(scope="module")
def downloads(site) -> dict[str, list[Download | str]]:
    """Every CSV each role can download from each GET route: `?format=csv`, and with each
    `table=` its page links to (if none, each its error for an unknown table names) that an
    earlier role did not download already; a str is a problem met on the way."""
    found: dict[str, list[Download | str]] = {}
    for route in GET_ROUTES:
        results: list[Download | str] = []
        seen: dict[str, set[str]] = {}  # the tables downloaded, by path: not again for others
        for role in route.roles:
            for path, base in page_samples(site, route, role):
                page = site.fetch(role, route, path=path, query=base)
                if "format" not in page.read_keys:
                    continue  # no download
                first = site.fetch(role, route, path=path, query={**base, "format": "csv"})
                replies = [({**base, "format": "csv"}, first)]
                if "table" in first.read_keys:
                    names = _tables_linked(page)
                    if not names:  # the page links none: ask which there are
                        bogus = {**base, "format": "csv", "table": "?"}
                        names = _tables_named(site.request(role, route, path=path, query=bogus))
                    for name in sorted(names - seen.get(path, set())):
                        query = {**base, "format": "csv", "table": name}
                        replies.append((query, site.request(role, route, path=path, query=query)))
                        if replies[-1][1].mimetype == "text/csv":
                            seen.setdefault(path, set()).add(name)
                for query, response in replies:
                    results += defended(response, f"{role} {path} {query}")
                    if response.mimetype == "text/csv":
                        results.append(
                            Download(
                                role,
                                route,
                                path,
                                tuple(query.items()),
                                response.status_code,
                                response.mimetype,
                                tuple(response.headers.items()),
                                text_of(response),
                            )
                        )
        found[str(route)] = results
    return found


def runnable(cell: str) -> bool:
    """Whether a spreadsheet would run this cell (or split it into another row)."""
    if re.search(r"\r(?!\n)", cell):
        return True
    return cell.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(cell)


def download_problems(download: Download) -> list[str]:
    problems = []
    headers = {k.lower(): v for k, v in download.headers}
    if download.status != 200:
        problems.append(f"{download}: {download.status}")
    if headers.get("x-content-type-options") != "nosniff":
        problems.append(f"{download}: no nosniff")
    if "no-store" not in headers.get("cache-control", ""):
        problems.append(f"{download}: may be cached")
    for n, row in enumerate(csv.reader(io.StringIO(download.text, newline=""))):
        problems += [f"{download}: row {n}: {cell!r} runs" for cell in row if runnable(cell)]
    try:
        name = offered_name(Headers(list(download.headers)))
        assert name.endswith(".csv") and name.isprintable(), name
    except AssertionError as exc:
        problems.append(f"{download}: Content-Disposition: {exc}")
    return problems


@pytest.mark.parametrize("route", GET_ROUTES, ids=str)
def test_every_download_is_spreadsheet_safe_and_well_named(downloads, route):
    problems = []
    for item in downloads[str(route)]:
        problems += [item] if isinstance(item, str) else download_problems(item)
    assert not problems, "\n".join(problems)


def _known_downloads(site: Site) -> set[tuple[str, str | None]]:
    """The downloads the web tests reach by hand (test_web.ROUTES and the assurance CSVs)."""
    adapter = site.app.url_map.bind("localhost")
    known = set()
    for method, url, _ in test_web.ROUTES:
        parts = urlsplit(url)
        if method == "GET" and "format=csv" in parts.query:
            table = dict(p.split("=", 1) for p in parts.query.split("&")).get("table")
            known.add((adapter.match(parts.path)[0], table))
    known |= {("assurance.queue", table) for table in test_web_assurance.CSV_TABLES}
    return known


def test_the_walk_reaches_every_known_download(site, downloads):
    reached = {
        (item.route.endpoint, dict(item.query).get("table"))
        for items in downloads.values()
        for item in items
        if isinstance(item, Download) and item.status == 200
    }
    missing = _known_downloads(site) - reached
    assert not missing, missing
    assert ("dashboard.me", None) in reached and ("assurance.mine", None) in reached
    assert ("dashboard.tracks", None) in reached


def _shown_as(cell: str) -> str:
    return cell.replace("\r\n", "\r")


def test_every_hostile_text_reaches_a_download_neutralised(downloads):
    cells = {
        _shown_as(cell)
        for items in downloads.values()
        for item in items
        if isinstance(item, Download)
        for row in csv.reader(io.StringIO(item.text, newline=""))
        for cell in row
    }
    missing = [seed for seed in FORMULA_SEEDS if "'" + _shown_as(seed) not in cells]
    assert not missing, missing
    assert not {_shown_as(seed) for seed in FORMULA_SEEDS} & cells


@pytest.mark.parametrize(
    ("argument", "identifier"),
    [("hotspot_id", HOSTILE_HOT_SPOT), ("device", CRLF_DEVICE), ("officer", HOSTILE_OFFICER)],
)
def test_downloads_named_by_hostile_ids_are_well_formed(downloads, argument, identifier):
    """A hot spot id in a path, and a device or officer id in a query, with a quote and CR LF:
    the download is reached, and offers the id with each unfit character made "_"."""
    named = [
        item
        for items in downloads.values()
        for item in items
        if isinstance(item, Download)
        and (
            item.path.endswith(quote(identifier, safe=""))
            if argument == "hotspot_id"
            else dict(item.query).get(argument) == identifier
        )
    ]
    assert named, f"no download for the hostile {argument}"
    for item in named:
        assert item.status == 200, item
        name = offered_name(Headers(list(item.headers)))
        assert expected_name(identifier) in name, name
        assert not {"\r", "\n"} & set(name)


# --- 3. dates ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", GET_ROUTES, ids=str)
def test_out_of_range_and_malformed_dates_are_refused(site, route):
    problems = []
    for role in route.roles:
        reads = site.reads(route, role)
        dated = sorted(k for k in reads if is_date_like(k))
        formats = [{}, {"format": "csv"}] if "format" in reads else [{}]
        for name in dated:
            for value in DATE_VALUES:
                for extra in formats:
                    what = f"{role} {name}={value} {extra}"
                    response = site.request(role, route, query={name: value, **extra})
                    problems += defended(response, what)
                    if response.status_code not in (400, 404):
                        problems.append(f"{what}: {response.status_code}, not a 400 or 404")
    assert not problems, "\n".join(problems)


# --- 4. integer ids ------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "route"), on_both(INT_ROUTES))
def test_integer_ids_out_of_range_are_not_found(request, backend, route):
    site = site_on(request, backend)
    problems = []
    names = [name for name, kind in route.arguments if kind == "int"]
    for role in route.signed_in_roles[: None if backend == "sqlite" else 1]:
        for name in names:
            for value in (*INT_VALUES, -1):
                path = site.path(route, {name: value})
                body = {} if route.changes_state else None
                response = site.request(role, route, path=path, body=body)
                what = f"{role} {name}={value}"
                problems += defended(response, what)
                expected = (404, 405) if value < 0 else (404,)
                if response.status_code not in expected:
                    problems.append(f"{what}: {response.status_code}")
    assert not problems, "\n".join(problems)


# --- 5. oversized requests and long free text ---------------------------------------------------


@pytest.mark.parametrize("route", STATE_ROUTES, ids=str)
def test_a_body_over_the_limit_is_refused(site, route):
    limit = site.app.config["MAX_CONTENT_LENGTH"]
    assert limit == 2 * 1024 * 1024
    big = "x" * (limit + 1024)
    bodies = {
        "form": (f"note={big}".encode(), "application/x-www-form-urlencoded"),
        "JSON": (json.dumps({"note": big}).encode(), "application/json"),
        "multipart": (
            (
                '--b\r\nContent-Disposition: form-data; name="plan"; filename="p.yaml"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n{big}\r\n--b--\r\n"
            ).encode(),
            "multipart/form-data; boundary=b",
        ),
    }
    problems = []
    for role in route.walkers:
        for kind, raw in bodies.items():
            response = site.request(role, route, raw=raw)
            problems += defended(response, f"{role} {kind}")
            if response.status_code not in REFUSED_BEFORE_READING:
                problems.append(f"{role} {kind}: {response.status_code}")
            if big[:1000] in text_of(response):
                problems.append(f"{role} {kind}: the body echoed")
    assert not problems, "\n".join(problems)


@dataclass(frozen=True)
class LongTextReply:
    what: str  # the role and the field (or "JSON": every field at once)
    sent: dict[str, str]
    status: int
    problems: tuple[str, ...]  # a 5xx, markup, ... (see defended)
    echoed: tuple[str, ...]  # the fields whose whole value the answer repeats
    stored: tuple[str, ...]  # the fields whose value an audit event (so a change) holds
    read: bool  # sent as a form field the view reads


@pytest.fixture(scope="module")
def long_text(site) -> dict[str, list[LongTextReply]]:
    """Each state change, as each role allowed: each form field it reads with 10,000+
    characters, and every form field of the app as a JSON object of such values."""
    replies: dict[str, list[LongTextReply]] = {}
    for route in STATE_ROUTES:
        replies[str(route)] = []
        for role in route.signed_in_roles:
            attempts = [(n, {n: long_value(n)}, None) for n in sorted(site.reads(route, role))]
            attempts.append(("JSON", None, {n: long_value(n) for n in site.form_fields()}))
            for what, form, body in attempts:
                last = site.last_audit_id()
                response = site.request(role, route, form=form, body=body)
                sent = form or body
                stored = site.audited_since(last)
                replies[str(route)].append(
                    LongTextReply(
                        f"{role} {what}",
                        sent,
                        response.status_code,
                        tuple(defended(response, f"{role} {what}")),
                        tuple(n for n, v in sent.items() if echoed(response, v)),
                        tuple(n for n, v in sent.items() if v in stored),
                        form is not None,
                    )
                )
    return replies


@pytest.mark.parametrize("route", STATE_ROUTES, ids=str)
def test_long_free_text_is_refused_and_not_stored(long_text, route):
    """A form field the view reads is refused with a 4xx; no value is stored (no audit event,
    which every change writes, holds it), whether sent in a form or as JSON."""
    problems = []
    for reply in long_text[str(route)]:
        problems += reply.problems
        if reply.read and not 400 <= reply.status < 500:
            problems.append(f"{reply.what}: {reply.status}, not refused")
        problems += [f"{reply.what}: {name} stored" for name in reply.stored]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("route", STATE_ROUTES, ids=str)
def test_long_free_text_is_not_echoed_whole(long_text, route):
    """The answer does not repeat a 10,000-character value whole: not in JSON, and not in a
    page outside the form field that keeps it for correction (in an error message, say)."""
    problems = [
        f"{reply.what}: {name} echoed whole ({reply.status})"
        for reply in long_text[str(route)]
        for name in reply.echoed
    ]
    assert not problems, "\n".join(problems)


# --- 6. CSRF -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", STATE_ROUTES, ids=str)
def test_a_state_change_without_a_csrf_token_is_refused(site, route):
    problems = []
    for role in route.roles:
        for headers in ({}, bearer("hsd_invalid")):
            for body in (None, {}):
                what = f"{role} {'JSON' if body is not None else 'form'} {headers}"
                client = site.client(role)
                path = site.path(route)  # first: a sample id may itself be audited
                before = site.audit_count()
                response = site.request(
                    role, route, path=path, body=body, token=False, headers=headers
                )
                if response.status_code not in (400, 403) or CSRF_REFUSAL not in response.text:
                    problems.append(f"{what}: {response.status_code}, not refused as forged")
                problems += defended(response, what)
                if site.audit_count() != before:
                    problems.append(f"{what}: audited a change")
                if role != ANONYMOUS and not site.is_signed_in(client):
                    problems.append(f"{what}: signed out")
        # With the token, the same request passes the check (whatever the view then says).
        response = site.request(role, route)
        if CSRF_REFUSAL in response.text:
            problems.append(f"{role} with the token: refused as forged")
    assert not problems, "\n".join(problems)


# --- 7. bearer tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_valid_token_works_whatever_cookies_come_with_it(site, route):
    """A fresh token with the role's full rights, sent with a junk session cookie or another
    user's session: answered as the role's own session is, and signs no browser in. Each
    role allowed on an API route; the first on a page (what tokens are for is the API)."""
    problems = []
    roles = route.signed_in_roles if route.rule.startswith("/api/") else route.signed_in_roles[:1]
    for n, role in enumerate(roles):
        other = next(r for r in ROLES if r != role)
        expected = site.request(role, route) if route.changes_state else site.fetch(role, route)
        expected = expected.status_code
        junk = site.app.test_client()
        junk.set_cookie("session", "junk")
        # A junk cookie for each role; another user's session too for the first.
        for name in ("junk cookie", f"{other}'s session")[: 1 if n else 2]:
            client = junk if name == "junk cookie" else site.client(other)
            before = site.session_user(client)
            response = site.request(
                role, route, client=client, token=False, headers=bearer(site.token(role))
            )
            what = f"{role}'s token with {name}"
            problems += defended(response, what)
            status = response.status_code
            if status != expected:
                problems.append(f"{what}: {status}, with the session {expected}")
            if CSRF_REFUSAL in response.text:
                problems.append(f"{what}: {status}, refused as forged")
            if site.cookie_user(response) not in (None, before):
                problems.append(f"{what}: set a session cookie that signs in")
            if client is not junk and not site.is_signed_in(client):
                site.clients.pop(other)  # signed out by /logout with the token
    assert not problems, "\n".join(problems)


# --- 8. control characters and long strings --------------------------------------------------


@pytest.mark.parametrize(("backend", "route"), on_both(ROUTES))
def test_control_characters_in_parameters_are_harmless(request, backend, route):
    site = site_on(request, backend)
    problems = []
    for n, role in enumerate(route.first_walkers):
        # The short one (a NUL: PostgreSQL refuses it), and on SQLite the long one too.
        for value in CONTROL if backend == "sqlite" else CONTROL[:1]:
            values = dict.fromkeys(site.reads(route, role), value)
            for key, response in site.walk(role, route, values, thorough=n == 0):
                problems += defended(response, f"{role} {key}={value[:12]!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("backend", "route"), on_both(STRING_ROUTES))
def test_hostile_path_segments_are_harmless(request, backend, route):
    site = site_on(request, backend)
    problems = []
    names = [name for name, kind in route.arguments if kind == "string"]
    for role in route.first_walkers:
        for value in PATH_VALUES:
            path = site.path(route, dict.fromkeys(names, value))
            response = site.request(role, route, path=path)
            what = f"{role} {value[:12]!r}"
            problems += defended(response, what)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("value", PATH_VALUES[:3])
@pytest.mark.parametrize("role", ["supervisor", ANONYMOUS])
def test_an_unknown_url_with_hostile_segments_is_a_plain_404(site, role, value):
    response = site.client(role).get(f"/no-such-page/{quote(value, safe='')}?q={quote(value)}")
    response.elapsed = 0.0
    assert response.status_code == 404
    assert defended(response, "404") == []
