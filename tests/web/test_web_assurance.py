"""The assurance area of the web app: every route for every role, the BWV review workflow
through the form and the API (with its audit trail), CSRF, CSV exports, and the dashboard's
figures against hand-computed ones for a small crafted set of stops."""

from __future__ import annotations

import csv
import io
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.stops.test_stops import ASSESSMENT
from tracker.accounts.users import create_user, issue_token
from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import parse_hot_spots
from tracker.dosage.recompute import replace_hot_spots
from tracker.foundation.clock import local_today
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.foundation.models import AuditEvent
from tracker.stops.models import GOWISELY, BwvReview, StopSearch
from tracker.stops.records import create_stop
from tracker.stops.review import update_review
from web import create_app

TZ = "Europe/London"
PASSWORD = "correct horse battery"
ROLES = ("admin", "supervisor", "assurance", "officer")
REVIEWERS = ("admin", "assurance")
NOT_REVIEWERS = ("supervisor", "officer")
WHITE_BRITISH = "White - English/Welsh/Scottish/Northern Irish/British"
WHITE_IRISH = "White - Irish"
BLACK_CARIBBEAN = "Black/African/Caribbean/Black British - Caribbean"
BLACK_AFRICAN = "Black/African/Caribbean/Black British - African"
ASIAN_INDIAN = "Asian/Asian British - Indian"
BLACK = "Black/African/Caribbean/Black British"
ASIAN = "Asian/Asian British"
NFA = "A no further action disposal"
IN_HS1 = (52.6365, -1.1325)  # (lat, lon)
IN_HS2 = (52.6365, -1.1225)
ALL_ANSWERS = {**dict.fromkeys(GOWISELY, "yes"), **ASSESSMENT}
CSV_TABLES = (
    "summary",
    "queue",
    "review-outcomes",
    "search-outcomes",
    "hotspots",
    "officers",
    "objects",
    "ethnicity",
    "disproportionality",
    "search-figures",
    "breakdowns",
    "trend",
    "patrol-hours",
    "stops",
)


def square(
    hotspot_id: str, name: str, west: float, south: float, east: float, north: float
) -> dict:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "properties": {"id": hotspot_id, "name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


HOT_SPOTS = {
    "type": "FeatureCollection",
    "features": [
        square("HS1", "Market Street", -1.135, 52.635, -1.130, 52.638),
        square("HS2", "Clock Tower", -1.125, 52.635, -1.120, 52.638),
    ],
}


@dataclass(frozen=True)
class Crafted:
    """One stop of the crafted set: days before today, its fields, and its review."""

    days_ago: int
    officer: str
    ethnicity: str | None
    where: tuple[float, float] | None
    object_of_search: str
    outcome: str
    linked: bool | None
    review: str  # pending, no_issues, referred or no_footage


# Hand-computed figures for these seven stops are in test_dashboard_figures.
CRAFTED = {
    "S1": Crafted(40, "PC1", WHITE_BRITISH, IN_HS1, "Controlled drugs", "Arrest", True, "pending"),
    "S2": Crafted(35, "PC1", WHITE_IRISH, IN_HS1, "Controlled drugs", NFA, False, "no_issues"),
    "S3": Crafted(
        10, "PC2", BLACK_CARIBBEAN, IN_HS2, "Offensive weapons", "Arrest", True, "pending"
    ),
    "S4": Crafted(
        5,
        "PC2",
        BLACK_CARIBBEAN,
        IN_HS2,
        "Controlled drugs",
        "Community resolution",
        True,
        "no_footage",
    ),
    "S5": Crafted(3, "PC2", ASIAN_INDIAN, None, "Stolen goods", NFA, None, "pending"),
    "S6": Crafted(1, "PC1", None, IN_HS1, "Controlled drugs", NFA, False, "referred"),
    "S7": Crafted(
        20, "PC2", BLACK_AFRICAN, IN_HS2, "Offensive weapons", "Arrest", False, "pending"
    ),
}


def local_noon(days_ago: int) -> datetime:
    """Return noon local time `days_ago` local days before today, as an aware datetime."""
    return datetime.combine(local_today(TZ) - timedelta(days=days_ago), time(12), ZoneInfo(TZ))


def review_changes(kind: str) -> dict:
    if kind == "no_footage":
        return {"status": "no_footage", "no_footage_reason": "camera not switched on"}
    return {"status": "reviewed", "outcome": kind, "rag": "green", **ALL_ANSWERS}


def seed(session) -> dict[str, int]:
    """Store the hot spots, the users and the crafted stops; return stop ids by reference."""
    replace_hot_spots(session, parse_hot_spots(HOT_SPOTS), DosageParams(tz=TZ))
    for role in ROLES:
        create_user(session, role, role, PASSWORD, officer_id="PC1" if role == "officer" else None)
    create_user(session, "officer2", "officer", PASSWORD, officer_id="PC2")
    ids = {}
    for reference, stop in CRAFTED.items():
        lat, lon = stop.where or (None, None)
        created = create_stop(
            session,
            {
                "type": "Person search",
                "occurred_at": local_noon(stop.days_ago),
                "reference": reference,
                "officer_id": stop.officer,
                "latitude": lat,
                "longitude": lon,
                "self_defined_ethnicity": stop.ethnicity,
                "object_of_search": stop.object_of_search,
                "outcome": stop.outcome,
                "outcome_linked_to_object": stop.linked,
                "bwv_recorded": True,
                "bwv_reference": f"BWV-{reference}",
                "legislation": "Misuse of Drugs Act 1971 (section 23)",
                "gender": "Male",
                "age_range": "18-24",
            },
            actor="seed",
        )
        ids[reference] = created.id
        if stop.review != "pending":
            update_review(session, created.id, "seed", review_changes(stop.review))
    return ids


def sqlite_url(path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def templates(tmp_path_factory) -> dict:
    """Migrated databases made once per run and copied for each test: one empty, one seeded
    (migrations and password hashes are what makes a test database slow to build)."""
    folder = tmp_path_factory.mktemp("assurance-templates")
    empty, seeded = folder / "empty.db", folder / "seeded.db"
    engine = make_engine(sqlite_url(empty))
    upgrade(engine)
    engine.dispose()  # closing the last connection folds the WAL into the file
    shutil.copyfile(empty, seeded)
    engine = make_engine(sqlite_url(seeded))
    with session_factory(engine).begin() as session:
        ids = seed(session)
    engine.dispose()
    return {"empty": empty, "seeded": seeded, "ids": ids}


def database_copy(templates: dict, which: str, folder) -> str:
    target = folder / "tracker.db"
    shutil.copyfile(templates[which], target)
    return sqlite_url(target)


@pytest.fixture
def database_url(templates, tmp_path) -> str:
    """A fresh copy of the seeded database."""
    return database_copy(templates, "seeded", tmp_path)


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def stop_ids(templates) -> dict[str, int]:
    return templates["ids"]


def make_app(database_url: str, **config):
    return create_app({"TESTING": True, "DATABASE_URL": database_url, **config})


@pytest.fixture
def app(database_url, stop_ids):
    return make_app(database_url)


CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(app, username: str):
    """Return a test client signed in as `username` through the log-in form."""
    client = app.test_client()
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_token(page.text)},
    )
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
def as_role(app):
    clients = {}

    def client_for(username: str):
        if username not in clients:
            clients[username] = login(app, username)
        return clients[username]

    return client_for


class Tables(HTMLParser):
    """The tables of a page by id, each as a list of {header: cell text} rows."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._id = None
        self._headers: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._id = attributes.get("id")
            self._headers = []
            self.tables[self._id] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._id is not None:
            if not self._headers:
                self._headers = self._row
            else:
                self.tables[self._id].append(dict(zip(self._headers, self._row, strict=True)))
            self._row = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def by(rows: list[dict[str, str]], column: str) -> dict[str, dict[str, str]]:
    return {row[column]: row for row in rows}


def figure(html: str, name: str) -> str:
    match = re.search(rf'id="figure-{name}">([^<]*)<', html)
    assert match, f"no figure {name}"
    return match.group(1).strip()


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.text)))


def review_form(token: str, **fields) -> dict:
    return {
        "csrf_token": token,
        "status": "pending",
        "outcome": "",
        "no_footage_reason": "",
        **dict.fromkeys(GOWISELY, ""),
        "rag": "",
        "findings": "",
        **fields,
    }


def stored_review(sessions, stop_id: int) -> BwvReview:
    with sessions() as session:
        return session.scalar(select(BwvReview).where(BwvReview.stop_id == stop_id))


def audit_events(sessions, stop_id: int) -> list[AuditEvent]:
    with sessions() as session:
        return session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject == f"stop {stop_id}")
            .order_by(AuditEvent.id)
        ).all()


# --- who may do what --------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in_and_the_api_says_401(app, stop_ids):
    client = app.test_client()
    for path in (
        "/assurance/",
        "/assurance/mine",
        f"/assurance/stops/{stop_ids['S1']}",
        "/assurance/stops/new",
    ):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.location, path
    response = client.get("/api/stops")
    assert response.status_code == 401
    assert response.json["error"]["status"] == 401


@pytest.mark.parametrize("role", ROLES)
def test_dashboard_by_role(as_role, role):
    response = as_role(role).get("/assurance/")
    if role == "officer":
        # The menu links the dashboard for everyone; an officer lands on their own records.
        assert response.status_code == 302 and response.location.endswith("/assurance/mine")
        assert as_role(role).get("/assurance/?format=csv&table=stops").status_code == 302
    else:
        assert response.status_code == 200
        assert "Review queue" in response.text


@pytest.mark.parametrize("role", ROLES)
def test_home_sends_assurance_leads_to_the_dashboard(as_role, role):
    response = as_role(role).get("/")
    assert response.status_code == 302
    assert response.location.endswith("/assurance/") == (role == "assurance")


@pytest.mark.parametrize("role", ROLES)
def test_own_records_page_is_for_officers_only(as_role, role, stop_ids):
    response = as_role(role).get("/assurance/mine")
    if role != "officer":
        assert response.status_code == 403
        return
    assert response.status_code == 200
    shown = {row["Reference"] for row in Tables(response.text).tables["mine"]}
    assert shown == {"S1", "S2", "S6"}  # PC1's, and nobody else's
    exported = csv_rows(as_role(role).get("/assurance/mine?format=csv"))
    assert {row["reference"] for row in exported} == {"S1", "S2", "S6"}
    assert {row["officer_id"] for row in exported} == {"PC1"}


@pytest.mark.parametrize("role", ROLES)
def test_record_page_by_role(as_role, role, stop_ids):
    own, others = stop_ids["S1"], stop_ids["S3"]  # PC1's and PC2's
    client = as_role(role)
    page = client.get(f"/assurance/stops/{own}")
    assert page.status_code == 200
    assert ('id="review-form"' in page.text) == (role in REVIEWERS)
    assert ('id="audit-trail"' in page.text) == (role != "officer")
    assert client.get(f"/assurance/stops/{others}").status_code == (
        403 if role == "officer" else 200
    )
    assert client.get("/assurance/stops/999999").status_code == 404


@pytest.mark.parametrize("role", ROLES)
def test_review_by_role(as_role, sessions, role, stop_ids):
    client = as_role(role)
    stop_id = stop_ids["S1"]  # the officer's own stop: even that they may not review
    token = csrf_token(client.get(f"/assurance/stops/{stop_id}").text)
    response = client.post(
        f"/assurance/stops/{stop_id}/review",
        data=review_form(token, status="reviewed", outcome="no_issues", rag="green", **ALL_ANSWERS),
    )
    if role in REVIEWERS:
        assert response.status_code == 302
        assert stored_review(sessions, stop_id).status == "reviewed"
    else:
        assert response.status_code == 403
        assert stored_review(sessions, stop_id).status == "pending"


@pytest.mark.parametrize("role", ROLES)
def test_new_record_form_by_role(as_role, sessions, role):
    client = as_role(role)
    page = client.get("/assurance/stops/new")
    assert page.status_code == (200 if role in REVIEWERS else 403)
    token = csrf_token(page.text if role in REVIEWERS else client.get("/login").text)
    response = client.post(
        "/assurance/stops/new",
        data={
            "csrf_token": token,
            "type": "Person search",
            "occurred_at": "2024-07-01T14:30",
            "reference": f"NEW-{role}",
        },
    )
    assert response.status_code == (302 if role in REVIEWERS else 403)
    with sessions() as session:
        stored = session.scalar(select(StopSearch).where(StopSearch.reference == f"NEW-{role}"))
    assert (stored is not None) == (role in REVIEWERS)


@pytest.mark.parametrize("role", ROLES)
def test_api_by_role(as_role, sessions, role, stop_ids):
    client = as_role(role)
    token = csrf_token(client.get("/login").text)
    listed = client.get("/api/stops")
    assert listed.status_code == 200
    references = {row["reference"] for row in listed.json}
    assert references == ({"S1", "S2", "S6"} if role == "officer" else set(CRAFTED))
    assert client.get(f"/api/stops/{stop_ids['S3']}").status_code == (
        403 if role == "officer" else 200
    )
    assert client.get(f"/api/stops/{stop_ids['S1']}").status_code == 200

    created = client.post(
        "/api/stops",
        headers={"X-CSRFToken": token},
        json={
            "type": "Vehicle search",
            "occurred_at": "2024-07-01T14:30:00+01:00",
            "reference": f"API-{role}",
        },
    )
    reviewed = client.post(
        f"/api/stops/{stop_ids['S5']}/review",
        headers={"X-CSRFToken": token},
        json={"status": "no_footage", "no_footage_reason": "battery flat"},
    )
    allowed = role in REVIEWERS
    assert created.status_code == (201 if allowed else 403)
    assert reviewed.status_code == (200 if allowed else 403)
    if not allowed:
        assert created.json["error"]["status"] == 403
    assert (stored_review(sessions, stop_ids["S5"]).status == "no_footage") == allowed


# --- CSRF -------------------------------------------------------------------------------


def test_review_form_without_csrf_token_is_refused(as_role, sessions, stop_ids):
    stop_id = stop_ids["S3"]
    client = as_role("assurance")
    form = review_form("", status="reviewed", outcome="no_issues", rag="green", **ALL_ANSWERS)
    del form["csrf_token"]
    response = client.post(f"/assurance/stops/{stop_id}/review", data=form)
    assert response.status_code == 400
    assert "Form expired or forged" in response.text
    forged = client.post(
        f"/assurance/stops/{stop_id}/review", data={**form, "csrf_token": "forged"}
    )
    assert forged.status_code == 400
    assert stored_review(sessions, stop_id).status == "pending"
    assert len(audit_events(sessions, stop_id)) == 1  # only the creation


def test_api_with_a_session_needs_the_csrf_token_but_a_bearer_token_does_not(
    app, as_role, sessions, stop_ids
):
    client = as_role("assurance")
    refused = client.post(
        "/api/stops", json={"type": "Person search", "occurred_at": "2024-07-01T14:30:00Z"}
    )
    assert refused.status_code == 400
    assert refused.json["error"]["title"] == "Form expired or forged"
    with sessions.begin() as session:
        bearer = issue_token(session, "assurance", "bi", scope="full")
    accepted = app.test_client().post(
        "/api/stops",
        headers={"Authorization": f"Bearer {bearer}"},
        json={"type": "Person search", "occurred_at": "2024-07-01T14:30:00Z"},
    )
    assert accepted.status_code == 201


# --- the workflow -----------------------------------------------------------------------


def test_review_workflow_through_the_form(as_role, sessions, stop_ids):
    stop_id = stop_ids["S3"]
    client = as_role("assurance")
    page = client.get(f"/assurance/stops/{stop_id}")
    assert 'data-status="pending"' in page.text
    token = csrf_token(page.text)
    # Reviewed without two of the GOWISELY answers and without a RAG rating: nothing is saved,
    # and each problem is shown next to its field.
    incomplete = {**ALL_ANSWERS, "station": "", "legal_power": ""}
    response = client.post(
        f"/assurance/stops/{stop_id}/review",
        data=review_form(
            token,
            status="reviewed",
            outcome="learning_identified",
            findings="Grounds vague",
            **incomplete,
        ),
    )
    assert response.status_code == 400
    for field in ("station", "legal_power", "rag"):
        assert f'id="error-{field}"' in response.text
    assert 'id="error-grounds"' not in response.text
    # What was entered is kept in the re-shown form.
    assert re.search(r'<option value="learning_identified" selected', response.text)
    assert "Grounds vague" in response.text
    assert stored_review(sessions, stop_id).status == "pending"

    response = client.post(
        f"/assurance/stops/{stop_id}/review",
        data=review_form(
            token,
            status="reviewed",
            outcome="learning_identified",
            rag="amber",
            findings="Grounds vague",
            **{**ALL_ANSWERS, "station": "partly"},
        ),
    )
    assert response.status_code == 302
    page = client.get(response.location)
    assert "Review of stop" in page.text and "saved: reviewed (learning identified)" in page.text
    assert 'data-status="reviewed"' in page.text
    review = stored_review(sessions, stop_id)
    assert (review.status, review.outcome, review.rag, review.station, review.reviewer) == (
        "reviewed",
        "learning_identified",
        "amber",
        "partly",
        "assurance",
    )

    trail = Tables(page.text).tables["audit-trail"]
    # Actions, fields and coded values as words, not identifiers.
    assert [row["What"] for row in trail] == ["Stop and search recorded", "BWV review saved"]
    assert trail[1]["Who"] == "assurance"
    assert "Status: Pending → Reviewed" in trail[1]["Changes (before → after)"]
    assert "Outcome: – → Learning identified" in trail[1]["Changes (before → after)"]
    assert (
        "S – station the officer is attached to: – → partly" in trail[1]["Changes (before → after)"]
    )

    # Saving the same again changes nothing and audits nothing.
    client.post(
        f"/assurance/stops/{stop_id}/review",
        data=review_form(
            token,
            status="reviewed",
            outcome="learning_identified",
            rag="amber",
            findings="Grounds vague",
            **{**ALL_ANSWERS, "station": "partly"},
        ),
    )
    assert len(audit_events(sessions, stop_id)) == 2
    # A completed review cannot be reopened.
    response = client.post(
        f"/assurance/stops/{stop_id}/review", data=review_form(token, status="pending")
    )
    assert response.status_code == 400 and 'id="error-status"' in response.text


def test_review_workflow_through_the_api(app, as_role, sessions):
    with sessions.begin() as session:
        bearer = issue_token(session, "assurance", "bi", scope="full")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {bearer}"}
    bad = client.post(
        "/api/stops",
        headers=headers,
        json={"type": "Strip search", "occurred_at": "2024-07-01 14:30", "latitude": 95},
    )
    assert bad.status_code == 400
    error = bad.json["error"]
    assert error["status"] == 400 and error["title"] and error["message"]
    assert set(error["fields"]) == {"type", "occurred_at", "latitude"}
    assert "ambiguous" in error["fields"]["occurred_at"]
    assert (
        client.post(
            "/api/stops", headers=headers, data="not json", content_type="application/json"
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/api/stops",
            headers=headers,
            data="[" * 100_000 + "]" * 100_000,
            content_type="application/json",
        ).status_code
        == 400
    )

    created = client.post(
        "/api/stops",
        headers=headers,
        json={
            "type": "Person search",
            "occurred_at": "2024-07-01T14:30:00+01:00",
            "latitude": IN_HS2[0],
            "longitude": IN_HS2[1],
            "officer_id": "PC9",
            "reference": "API-1",
            "bwv_recorded": True,
        },
    )
    assert created.status_code == 201
    record = created.json
    assert (record["occurred_at"], record["hotspot_id"], record["review_status"]) == (
        "2024-07-01T13:30:00+00:00",
        "HS2",
        "pending",
    )
    assert created.headers["Location"].endswith(f"/api/stops/{record['id']}")
    duplicate = client.post(
        "/api/stops",
        headers=headers,
        json={
            "type": "Person search",
            "occurred_at": "2024-07-01T14:30:00+01:00",
            "reference": "API-1",
        },
    )
    assert duplicate.status_code == 400 and "reference" in duplicate.json["error"]["fields"]

    stop_id = record["id"]
    refused = client.post(
        f"/api/stops/{stop_id}/review", headers=headers, json={"status": "no_footage", "rag": "red"}
    )
    assert refused.status_code == 400
    assert set(refused.json["error"]["fields"]) == {"no_footage_reason", "rag"}
    done = client.post(
        f"/api/stops/{stop_id}/review",
        headers=headers,
        json={"status": "no_footage", "no_footage_reason": "camera faulty"},
    )
    assert done.status_code == 200
    assert (done.json["review_status"], done.json["reviewer"]) == ("no_footage", "assurance")
    assert (
        client.post(
            "/api/stops/999999/review", headers=headers, json={"status": "reviewed"}
        ).status_code
        == 404
    )

    events = audit_events(sessions, stop_id)
    assert [e.action for e in events] == ["stop.create", "bwv_review.update"]
    assert events[1].before["status"] == "pending"
    assert events[1].after["status"] == "no_footage"
    assert events[1].after["no_footage_reason"] == "camera faulty"
    page = as_role("supervisor").get(f"/assurance/stops/{stop_id}")
    trail = Tables(page.text).tables["audit-trail"]
    assert "Status: Pending → No footage" in trail[-1]["Changes (before → after)"]


def test_api_lists_by_local_dates(as_role):
    client = as_role("supervisor")
    since = (local_today(TZ) - timedelta(days=10)).isoformat()
    until = (local_today(TZ) - timedelta(days=3)).isoformat()
    rows = client.get(f"/api/stops?from={since}&to={until}").json
    assert [row["reference"] for row in rows] == ["S3", "S4", "S5"]  # oldest first
    s3 = rows[0]
    assert s3["overdue"] is False and s3["review_status"] == "pending"
    assert s3["occurred_at"] == local_noon(10).astimezone(UTC).isoformat()
    assert client.get(f"/api/stops?from={until}&to={since}").status_code == 400
    assert client.get("/api/stops?from=yesterday").status_code == 400


def test_record_entry_through_the_form(as_role, sessions):
    client = as_role("assurance")
    token = csrf_token(client.get("/assurance/stops/new").text)
    response = client.post(
        "/assurance/stops/new",
        data={
            "csrf_token": token,
            "type": "Person search",
            "occurred_at": "2024-07-01T14:30",
            "latitude": "95",
            "longitude": "-1.1",
            "outcome_linked_to_object": "true",
        },
    )
    assert response.status_code == 400
    assert 'id="error-latitude"' in response.text
    assert 'value="2024-07-01T14:30"' in response.text  # the form keeps what was typed

    response = client.post(
        "/assurance/stops/new",
        data={
            "csrf_token": token,
            "type": "Person search",
            "occurred_at": "2024-07-01T14:30",
            "latitude": str(IN_HS1[0]),
            "longitude": str(IN_HS1[1]),
            "officer_id": "PC3",
            "reference": "FORM-1",
            "self_defined_ethnicity": WHITE_IRISH,
            "outcome": "Arrest",
            "outcome_linked_to_object": "true",
            "bwv_recorded": "false",
            "grounds": "",
        },
    )
    assert response.status_code == 302
    with sessions() as session:
        stored = session.scalar(select(StopSearch).where(StopSearch.reference == "FORM-1"))
    # The form's local time (BST in July) is stored in UTC.
    assert stored.occurred_at == datetime(2024, 7, 1, 13, 30, tzinfo=UTC)
    assert (stored.hotspot_id, stored.outcome_linked_to_object, stored.bwv_recorded) == (
        "HS1",
        True,
        False,
    )
    assert response.location.endswith(f"/assurance/stops/{stored.id}")
    page = client.get(response.location)
    assert "recorded; its BWV review is pending" in page.text
    assert "2024-07-01 14:30" in page.text


# --- figures and exports ----------------------------------------------------------------


def test_dashboard_figures(as_role, stop_ids):
    page = as_role("assurance").get("/assurance/")
    html = page.text
    # 7 stops; pending S1 S3 S5 S7; S1 (40 days ago, due after 28) alone is overdue.
    assert figure(html, "records") == "7"
    assert figure(html, "pending") == "4"
    assert figure(html, "overdue") == "1"
    # Completed reviews S2 S4 S6 of 7 sampled; reviewed today, 35, 5 and 1 days after the stop.
    assert figure(html, "coverage") == "42.9%"
    assert figure(html, "median-days") == "5.0"
    # Linked to the object: S1 S3 S4 of the 6 where it is known (S5 blank).
    assert figure(html, "find-rate") == "50.0%"
    # Arrests S1 S3 S7 of 7.
    assert figure(html, "arrest-rate") == "42.9%"

    tables = Tables(html).tables
    # Overdue first, then by due date.
    assert [row["Reference"] for row in tables["queue"]] == ["S1", "S7", "S3", "S5"]
    assert tables["queue"][0]["Overdue"] == "overdue"
    assert tables["queue"][0]["Days overdue"] == "12"

    spots = by(tables["hotspots"], "Hot spot")
    assert spots["HS1"]["Name"] == "Market Street"
    assert (
        spots["HS1"]["Searches"],
        spots["HS1"]["Find rate %"],
        spots["HS1"]["Arrest rate %"],
    ) == ("3", "33.33", "33.33")
    assert (
        spots["HS2"]["Searches"],
        spots["HS2"]["Find rate %"],
        spots["HS2"]["Arrest rate %"],
    ) == ("3", "66.67", "66.67")
    assert spots["(outside hot spots)"]["Searches"] == "1"
    officers = by(tables["officers"], "Officer")
    assert (officers["PC2"]["Searches"], officers["PC2"]["Arrest rate %"]) == ("4", "50.00")
    assert by(tables["objects"], "Object of search")["Controlled drugs"]["Searches"] == "4"

    # The five broad groups, self-defined: White S1 S2, Black S3 S4 S7, Asian S5; S6 gave
    # none. No population configured: no rate and no ratio, and the page says what to load.
    own = {row["Group"]: row for row in tables["disproportionality-self"]}
    assert {g: row["Searches"] for g, row in own.items()} == {
        "Asian": "1",
        "Black": "3",
        "Mixed": "0",
        "White": "2",
        "Other": "0",
    }
    assert {row["Ratio to White"] for row in own.values()} == {"–"}
    assert 'id="population-needed"' in html and "group,population" in html
    officer = {row["Group"]: row["Searches"] for row in tables["disproportionality-officer"]}
    assert set(officer.values()) == {"0"}  # no officer-defined ethnicity in these records
    assert "1 self-defined and 7 officer-defined" in " ".join(html.split())
    detailed = by(tables["ethnicity"], "Self-defined ethnicity")
    assert detailed[BLACK_CARIBBEAN]["Searches"] == "2"
    assert "Ratio to White" not in detailed[BLACK_CARIBBEAN]
    # Positive outcomes: S1 S3 S7 arrested, S4 community resolution; 4 of 7.
    assert figure(html, "positive-rate") == "57.1%"
    assert by(tables["breakdown-age"], "Age range")["18-24"]["Searches"] == "7"
    assert by(tables["trend"], "Month")  # at least one month

    outcomes = {
        (row["Status"], row["Outcome"]): row["Reviews"] for row in tables["review-outcomes"]
    }
    assert outcomes[("Pending", "–")] == "4"
    assert outcomes[("Reviewed", "No issues")] == "1"
    assert outcomes[("Reviewed", "Referred")] == "1"
    assert outcomes[("No footage", "–")] == "1"
    assert by(tables["search-outcomes"], "Outcome")["Arrest"]["Searches"] == "3"
    # The map draws the six stops with a location over the two hot spots.
    assert html.count("L.circleMarker(") == 6
    assert "Market Street" in html


def test_a_population_file_gives_rates_and_ratios_with_small_numbers_flagged(
    database_url, stop_ids, tmp_path
):
    population = tmp_path / "population.csv"
    population.write_text(
        "group,population\nAsian,500\nBlack,200\nMixed,100\nWhite,1000\nOther,100\n"
    )
    app = make_app(database_url, POPULATION_FILE=str(population))
    html = login(app, "supervisor").get("/assurance/").text
    groups = {row["Group"]: row for row in Tables(html).tables["disproportionality-self"]}
    # White: 2 of 1,000 = 2 per 1,000; Black: 3 of 200 = 15 per 1,000, 7.5 times the White
    # rate. Every group here has fewer than 10 searches: the ratio is flagged.
    assert (groups["White"]["Per 1,000"], groups["White"]["Ratio to White"]) == ("2.00", "1.00 *")
    assert (groups["Black"]["Per 1,000"], groups["Black"]["Ratio to White"]) == ("15.00", "7.50 *")
    assert (groups["Asian"]["Per 1,000"], groups["Asian"]["Ratio to White"]) == ("2.00", "1.00 *")
    assert 'id="population-needed"' not in html
    exported = [
        row
        for row in csv_rows(
            login(app, "supervisor").get("/assurance/?format=csv&table=disproportionality")
        )
        if row["definition"] == "self"
    ]
    black = next(row for row in exported if row["group"] == "Black")
    assert float(black["ratio_to_white"]) == pytest.approx(7.5)
    assert black["small_number"] == "True"

    population.write_text("group,population\nWhite,many\n")
    html = login(app, "supervisor").get("/assurance/").text
    assert "Population table not used" in html and "positive number" in html


def test_dashboard_date_filters(as_role):
    client = as_role("supervisor")
    since = (local_today(TZ) - timedelta(days=12)).isoformat()
    html = client.get(f"/assurance/?from={since}").text
    assert figure(html, "records") == "4"  # S3 S4 S5 S6
    assert figure(html, "arrest-rate") == "25.0%"
    until = (local_today(TZ) - timedelta(days=30)).isoformat()
    html = client.get(f"/assurance/?to={until}").text
    assert figure(html, "records") == "2"  # S1 S2
    assert client.get(f"/assurance/?from={since}&to={until}").status_code == 400
    assert client.get("/assurance/?from=2024-13-01").status_code == 400


@pytest.mark.parametrize("table", CSV_TABLES)
def test_every_table_exports_as_csv(as_role, table):
    rows = csv_rows(as_role("assurance").get(f"/assurance/?format=csv&table={table}"))
    assert rows
    if table == "queue":
        assert [row["reference"] for row in rows] == ["S1", "S7", "S3", "S5"]
        assert rows[0]["overdue"] == "True"
    elif table == "summary":
        assert (rows[0]["searches"], rows[0]["arrests"], rows[0]["finds"]) == ("7", "3", "3")
        assert float(rows[0]["find_rate_pct"]) == 50.0
    elif table == "stops":
        assert sorted(row["reference"] for row in rows) == sorted(CRAFTED)
        assert {row["review_status"] for row in rows} == {"pending", "reviewed", "no_footage"}
    elif table == "disproportionality":
        searches = {(r["definition"], r["group"]): r["searches"] for r in rows}
        assert searches[("self", "Black")] == "3" and searches[("officer", "Black")] == "0"
        assert {r["ratio_to_white"] for r in rows} == {""}  # no population configured
    elif table == "patrol-hours":
        assert {r["hotspot_id"]: r["searches"] for r in rows} == {"HS1": "3", "HS2": "3"}


def test_csv_of_an_unknown_table_is_a_400(as_role):
    response = as_role("assurance").get("/assurance/?format=csv&table=secrets")
    assert response.status_code == 400
    assert "table must be one of" in response.text


def test_csv_respects_the_dates(as_role):
    since = (local_today(TZ) - timedelta(days=12)).isoformat()
    rows = csv_rows(as_role("assurance").get(f"/assurance/?format=csv&table=stops&from={since}"))
    assert sorted(row["reference"] for row in rows) == ["S3", "S4", "S5", "S6"]


def test_labels_are_escaped_on_the_map_and_pages(as_role, sessions):
    hostile = "<script>alert(1)</script>`${alert(2)}`"
    with sessions.begin() as session:
        stop = create_stop(
            session,
            {
                "type": "Person search",
                "occurred_at": local_noon(2),
                "latitude": IN_HS1[0],
                "longitude": IN_HS1[1],
                "outcome": hostile,
            },
            actor="seed",
        )
        stop_id = stop.id
    client = as_role("assurance")
    for path in ("/assurance/", f"/assurance/stops/{stop_id}"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html
        scripts = "".join(re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S))
        assert "${alert(2)}" not in scripts  # it would run inside folium's template literal
    # On the map the label is escaped for HTML and for the JavaScript template literal.
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;&#96;&#36;{alert(2)}&#96;"
        in client.get("/assurance/").text
    )


def test_empty_database_shows_an_empty_dashboard(templates, tmp_path):
    database_url = database_copy(templates, "empty", tmp_path)
    engine = make_engine(database_url)
    with session_factory(engine).begin() as session:
        create_user(session, "assurance", "assurance", PASSWORD)
    engine.dispose()
    html = login(make_app(database_url), "assurance").get("/assurance/").text
    assert figure(html, "records") == "0"
    assert figure(html, "find-rate") == "–"
    assert "No review is pending." in html
    assert 'id="stops-map"' not in html


def test_stop_dates_are_local_dates(as_role):
    """A stop at 00:30 BST on 1 July is a 1 July stop, though it is 30 June in UTC."""
    client = as_role("assurance")
    token = csrf_token(client.get("/assurance/stops/new").text)
    client.post(
        "/assurance/stops/new",
        data={
            "csrf_token": token,
            "type": "Person search",
            "occurred_at": "2024-07-01T00:30",
            "reference": "MIDNIGHT",
        },
    )
    rows = client.get("/api/stops?from=2024-07-01&to=2024-07-01").json
    assert [row["reference"] for row in rows] == ["MIDNIGHT"]
    assert rows[0]["occurred_at"] == "2024-06-30T23:30:00+00:00"
    assert client.get("/api/stops?from=2024-06-30&to=2024-06-30").json == []
