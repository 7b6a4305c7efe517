"""The partners' view and the problem-solving plans in the web app (docs/partners.md): the
partner role reaches its own pages and nothing else, by session or API token; nothing it can
reach names an officer or a device or gives a position of a ping or a stop; small numbers are
suppressed in every form; a partner updates only its own agency's actions, a supervisor
edits the whole plan, every change with its CSRF token, versioned and audited; the hot spot
page shows the plan's summary.

On a copy of the web tests' demo database (tests/web/test_web.py) with the demo's
problem-solving plans (tracker/partnership/demo_plans.py) and two partner users.
"""

from __future__ import annotations

import csv
import html
import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from tests.web import test_web
from tests.web.test_web import CSRF_INPUT, Demo, bearer, local_today, post_login
from tracker.accounts.users import FULL_SCOPE, create_user, issue_token
from tracker.dosage.store import stored_hot_spots
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.models import AuditEvent, Device, Officer
from tracker.harm.evaluate import add_months
from tracker.harm.models import RecordedCrime
from tracker.harm.synthetic import HistorySettings, store_synthetic_history
from tracker.partnership.demo_plans import DEMO_PARTNER_AGENCY, seed_demo_plans
from tracker.partnership.figures import FEWER, SUPPRESSED
from tracker.partnership.models import SaraAction, SaraActionUpdate, SaraPlan
from tracker.partnership.sara import action_counts, plan_json
from tracker.plan.models import OperationHotSpot
from tracker.plan.storage import find_operation
from tracker.stops.models import StopSearch
from web import create_app

demo = test_web.demo
PASSWORD = "correct horse battery staple"
PARTNER, OTHER_PARTNER = "council-partner", "nhs-partner"
OTHER_AGENCY = "NHS Leicester, Leicestershire and Rutland"  # owns some demo actions
# What a partner may reach besides its own blueprint ("partners."): signing in and out,
# static files, and the start page, which sends it to its own.
PARTNER_ALSO = {"auth.login", "auth.logout", "static", "dashboard.home"}
HREF = re.compile(r'href="([^"]+)"')
DECIMAL = re.compile(r"(?<![\d.])-?\d{1,3}\.\d{4,}")
TABLE_CHOICES = re.compile(r"table must be one of ([a-z, -]+)")


@dataclass
class Site:
    app: Flask
    url: str
    tokens: dict[str, str]  # "read" and "full" tokens of the council partner
    stop_id: int

    def sessions(self):
        return self.app.extensions["tracker.sessions"]

    def client(self, username: str) -> FlaskClient:
        """A client signed in as one of the partner users."""
        client = self.app.test_client()
        response = post_login(client, username, PASSWORD)
        assert response.status_code == 302, response.text
        return client


@pytest.fixture(scope="module")
def site(demo: Demo, tmp_path_factory) -> Iterator[Site]:
    copy = tmp_path_factory.mktemp("partners") / "demo.db"
    shutil.copyfile(demo.url.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        operation = find_operation(session)  # the one running today
        spots = session.scalars(
            select(OperationHotSpot.hotspot_id)
            .where(OperationHotSpot.operation_id == operation.id)
            .order_by(OperationHotSpot.hotspot_id)
        ).all()
        seed_demo_plans(session, spots, operation.start_date, operation.tz)
        if not session.scalar(select(func.count()).select_from(RecordedCrime)):
            # Crime for the partners' harm figures: the baseline year and the months since.
            this_month = local_today().replace(day=1)
            store_synthetic_history(
                session,
                stored_hot_spots(session),
                add_months(this_month, -14),
                this_month,
                settings=HistorySettings(background_per_month=300),
            )
        create_user(session, PARTNER, "partner", PASSWORD, agency=DEMO_PARTNER_AGENCY)
        create_user(session, OTHER_PARTNER, "partner", PASSWORD, agency=OTHER_AGENCY)
        session.flush()
        tokens = {
            "read": issue_token(session, PARTNER, "read", actor="test"),
            "full": issue_token(session, PARTNER, "full", actor="test", scope=FULL_SCOPE),
        }
        stop_id = session.scalar(select(func.min(StopSearch.id)))
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "TESTING": True, "LOGIN_RATE_LIMIT": "10000 per minute"})
    yield Site(app, url, tokens, stop_id)
    app.extensions["tracker.sessions"].kw["bind"].dispose()


def staff(site: Site, demo: Demo, role: str) -> FlaskClient:
    client = site.app.test_client()
    assert post_login(client, role, demo.passwords[role]).status_code == 302
    return client


def csrf(client: FlaskClient, path: str = "/login") -> str:
    return CSRF_INPUT.search(client.get(path).text).group(1)


# --- the partner reaches its own pages and nothing else --------------------------------------

SAMPLES = {"hotspot_id": "LE01", "filename": "app.css", "token_id": 1, "action_id": 1}


def sample_path(rule, site: Site) -> str:
    values = {**SAMPLES, "stop_id": site.stop_id}
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.rule}: give this test a sample of {missing}"
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<(?:[^<>:]+:)?{name}>", str(values[name]), path)
    return path


def test_a_partner_reaches_only_the_partners_pages_by_session_or_token(site):
    client = site.client(PARTNER)
    token = csrf(client)
    wrong = []
    checked = 0
    for rule in site.app.url_map.iter_rules():
        if rule.endpoint.startswith("vendor.") or rule.endpoint in ("auth.login", "auth.logout"):
            continue  # Leaflet's files as static; signing in and out are tested below
        path = sample_path(rule, site)
        ours = rule.endpoint.startswith("partners.") or rule.endpoint in PARTNER_ALSO
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            changes = method != "GET"
            for how in ("session", "read", "full"):
                if how == "session":
                    response = client.open(
                        path, method=method, data={"csrf_token": token} if changes else None
                    )
                else:
                    response = site.app.test_client().open(
                        path, method=method, headers=bearer(site.tokens[how]), json={}
                    )
                checked += 1
                status = response.status_code
                response.close()  # a static file's response holds the file open
                if not ours:
                    expected = {403}
                elif rule.endpoint == "dashboard.home":
                    expected = {302}
                elif changes and how == "read":
                    expected = {403}  # a read token may only read
                elif changes:
                    expected = {400}  # allowed, but no action named
                else:
                    expected = {200}
                if status not in expected:
                    wrong.append(f"{method} {path} by {how}: {status}, not {expected}")
    assert checked > 150
    assert wrong == []
    start = client.get("/")
    assert start.status_code == 302
    assert urlsplit(start.headers["Location"]).path == "/partners"


def test_the_partners_pages_link_to_nothing_closed_to_them(site):
    client = site.client(PARTNER)
    adapter = site.app.url_map.bind("localhost")
    for path in ("/partners", "/partners/hotspots/LE01"):
        page = client.get(path).text
        nav = re.search(r"<nav>(.*?)</nav>", page, re.DOTALL).group(1)
        assert re.findall(r">([^<]+)</a>", nav) == ["Partners' view"]
        targets = {
            adapter.match(urlsplit(html.unescape(href)).path)[0]
            for href in HREF.findall(page)
            if not href.startswith("data:")
        }
        assert targets and all(t.startswith("partners.") or t in PARTNER_ALSO for t in targets)


# --- nothing a partner reaches names an officer or a device, or gives a position -------------


@dataclass(frozen=True)
class Forbidden:
    words: frozenset[str]  # officer ids and names, device ids
    latitudes: frozenset[int]  # of every ping and stop, in 1/10,000 of a degree
    longitudes: frozenset[int]

    def found_in(self, body: str) -> list[str]:
        found = [w for w in self.words if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", body)]
        for match in DECIMAL.finditer(body):
            value = float(match.group(0))
            for scaled in {round(value * 10_000), int(value * 10_000)}:
                if scaled in self.latitudes or scaled in self.longitudes:
                    found.append(f"a position: {match.group(0)}")
        return found


@pytest.fixture(scope="module")
def forbidden(site) -> Forbidden:
    with site.sessions()() as session:
        words = set(session.scalars(select(Officer.id)))
        words |= {n for n in session.scalars(select(Officer.name)) if n}
        words |= set(session.scalars(select(Device.id)))
        coordinates = {}
        for axis in ("lat", "lon"):
            pings = session.scalars(
                text(f"SELECT DISTINCT CAST(ROUND({axis} * 10000) AS INTEGER) FROM pings")
            )
            column = "latitude" if axis == "lat" else "longitude"
            stops = session.scalars(
                text(
                    f"SELECT DISTINCT CAST(ROUND({column} * 10000) AS INTEGER) "
                    f"FROM stop_searches WHERE {column} IS NOT NULL"
                )
            )
            coordinates[axis] = frozenset(pings) | frozenset(stops)
    assert len(words) >= 24 and len(coordinates["lat"]) > 100
    return Forbidden(frozenset(words), coordinates["lat"], coordinates["lon"])


def test_the_search_finds_what_the_police_pages_show(site, demo, forbidden):
    """The words and positions searched for below are the ones the force's own pages show."""
    client = staff(site, demo, "supervisor")
    yesterday = (local_today() - timedelta(days=1)).isoformat()
    track = client.get(f"/tracks?device=radio-001&date={yesterday}").text
    contributors = client.get("/hotspots/LE01?format=csv&table=contributors").text
    stops = client.get("/api/stops").text
    assert any(f.startswith("a position") for f in forbidden.found_in(track))
    assert "Officer PC4100" in forbidden.found_in(contributors) or "PC4100" in forbidden.found_in(
        contributors
    )
    assert any(f.startswith("a position") for f in forbidden.found_in(stops))


def crawl(client: FlaskClient, seeds: list[str], headers: dict | None = None) -> dict[str, str]:
    """Every page, download and JSON reachable from the seeds by links, and each table a
    page's CSV links or its error for an unknown table names: {url: body}."""
    bodies: dict[str, str] = {}
    queue = list(seeds)
    while queue:
        url = html.unescape(queue.pop(0))
        parts = urlsplit(url)
        if (
            parts.scheme
            or parts.netloc
            or url in bodies
            or parts.path.startswith(("/static/", "/logout"))
        ):
            continue
        response = client.get(url, headers=headers)
        body = response.get_data(as_text=True)
        bodies[url] = body
        if response.status_code != 200:
            continue
        if response.mimetype == "text/html":
            queue += HREF.findall(body)
            tables = client.get(f"{parts.path}?format=csv&table=none", headers=headers)
            for names in TABLE_CHOICES.findall(tables.get_data(as_text=True)):
                queue += [f"{parts.path}?format=csv&table={n.strip()}" for n in names.split(",")]
    return bodies


API = ["/api/partners/hotspots", "/api/partners/dosage", "/api/partners/stops"]
API += ["/api/partners/harm", "/api/partners/sara", "/api/partners/sara?hotspot_id=LE03"]


def test_nothing_a_partner_reaches_names_an_officer_or_a_device_or_gives_a_position(
    site, forbidden
):
    by_session = crawl(site.client(PARTNER), ["/", "/partners", *API])
    by_token = crawl(site.app.test_client(), ["/partners", *API], bearer(site.tokens["read"]))
    reached = {**by_session, **{f"{u} (token)": b for u, b in by_token.items()}}

    paths = {urlsplit(u).path for u in by_session}
    assert {f"/partners/hotspots/LE{n:02d}" for n in range(1, 26)} <= paths
    downloads = [u for u in by_session if "format=csv" in u]
    assert len(downloads) >= 25 * 2 + 5  # each hot spot's two tables and the page's
    leaks = {url: found for url, body in reached.items() if (found := forbidden.found_in(body))}
    assert leaks == {}


# --- small numbers ----------------------------------------------------------------------------


RATE_OF = {"positive_outcome_rate": "positive_outcomes", "arrest_rate": "arrests"}


def hidden_or_large(value) -> bool:
    return value in (FEWER, SUPPRESSED) or (isinstance(value, int) and value >= 5)


def test_stop_and_search_counts_under_5_are_never_shown_in_json_csv_or_pages(site):
    client = site.client(PARTNER)
    stops = client.get("/api/partners/stops").json
    by_hotspot = client.get("/partners?format=csv&table=stops").text
    page = client.get("/partners").text

    counted = stops["by_hotspot_month"] + stops["by_month"]
    assert counted and all(
        hidden_or_large(row[c])
        for row in counted
        for c in ("searches", "positive_outcomes", "arrests")
    )
    assert any(row["searches"] == FEWER for row in counted)
    rows = list(csv.DictReader(io.StringIO(by_hotspot)))
    assert len(rows) == len(stops["by_hotspot_month"])
    for row in rows:
        for column in ("searches", "positive_outcomes", "arrests"):
            assert row[column] in (FEWER, SUPPRESSED) or int(row[column]) >= 5, row
        for rate in ("positive_outcome_rate", "arrest_rate"):
            hidden = {row["searches"], row[RATE_OF[rate]]}
            if row[rate] != SUPPRESSED:
                assert not hidden & {FEWER, SUPPRESSED}, row
    table = re.search(r'<table id="partner-stops">(.*?)</table>', page, re.DOTALL).group(1)
    cells = re.findall(r"<td>(?:<span[^>]*>)?([^<]*)", table)
    assert FEWER in cells
    assert not [c for c in cells if re.fullmatch(r"[0-4]", c)]


def test_crime_harm_counts_under_5_are_never_shown_and_their_harm_is_suppressed(site):
    client = site.client(PARTNER)
    harm = client.get("/api/partners/harm").json
    rows = list(csv.DictReader(io.StringIO(client.get("/partners?format=csv&table=harm").text)))

    assert len(harm["months"]) >= 13 and len(rows) == len(harm["months"])
    assert {m["period"] for m in harm["months"]} >= {"before", "excluded"}
    for month in harm["months"]:
        for area in ("hotspots", "buffer", "rest"):
            crimes, harm_of = month[f"{area}_crimes"], month[f"{area}_harm"]
            assert crimes is None or hidden_or_large(crimes), month
            assert (harm_of == SUPPRESSED) == (crimes == FEWER), month
    assert any(isinstance(m["rest_crimes"], int) for m in harm["months"])  # figures, too
    assert "weighed by its harm" in harm["note"]


# --- partners update their agency's actions ---------------------------------------------------


def actions_of(site: Site, hotspot_id: str) -> list[dict]:
    with site.sessions()() as session:
        return plan_json(session, hotspot_id, local_today(), for_partner=False)["actions"]


def own_and_other(site: Site, hotspot_id: str) -> tuple[dict, dict]:
    actions = actions_of(site, hotspot_id)
    own = next(a for a in actions if a["owner_agency"] == DEMO_PARTNER_AGENCY)
    other = next(a for a in actions if a["owner_agency"] != DEMO_PARTNER_AGENCY)
    return own, other


def test_a_partner_updates_its_own_agencys_actions_on_its_page(site):
    client = site.client(PARTNER)
    own, other = own_and_other(site, "LE01")
    page = client.get("/partners/hotspots/LE01").text
    forms = re.findall(r'<input type="hidden" name="action_id" value="(\d+)">', page)
    ours = [a["id"] for a in actions_of(site, "LE01") if a["owner_agency"] == DEMO_PARTNER_AGENCY]
    assert sorted(map(int, forms)) == sorted(ours)
    token = csrf(client, "/partners/hotspots/LE01")

    refused = client.post(
        "/partners/hotspots/LE01",
        data={"csrf_token": token, "action_id": other["id"], "status": "done", "note": "Done"},
    )
    forged = client.post(
        "/partners/hotspots/LE01", data={"action_id": own["id"], "status": "done", "note": "x"}
    )
    elsewhere = client.post(
        "/partners/hotspots/LE02",
        data={"csrf_token": token, "action_id": own["id"], "status": "done", "note": "Done"},
    )
    no_note = client.post(
        "/partners/hotspots/LE01",
        data={"csrf_token": token, "action_id": own["id"], "status": "done", "note": ""},
    )
    done = client.post(
        "/partners/hotspots/LE01",
        data={
            "csrf_token": token,
            "action_id": own["id"],
            "status": "done",
            "note": "Lights fixed",
        },
    )

    assert refused.status_code == 403 and f"owned by {other['owner_agency']}" in refused.text
    assert forged.status_code == 400
    assert elsewhere.status_code == 404
    assert no_note.status_code == 400 and "note: required" in no_note.text
    assert done.status_code == 303
    after = {a["id"]: a for a in actions_of(site, "LE01")}
    assert after[own["id"]]["status"] == "done"
    assert after[own["id"]]["updates"][-1]["note"] == "Lights fixed"
    assert after[other["id"]]["updates"] == other["updates"]
    with site.sessions()() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "sara.action.update")
            .order_by(AuditEvent.id.desc())
        ).first()
    assert (event.actor, event.subject, event.after["status"]) == (PARTNER, "sara LE01", "done")
    shown = client.get("/partners/hotspots/LE01").text
    assert "Lights fixed" in shown and DEMO_PARTNER_AGENCY in shown
    assert PARTNER not in shown.split("<main>", 1)[1]  # partners see agencies, not users


def test_a_partners_full_token_updates_its_actions_as_json_and_a_read_token_cannot(site):
    own, other = own_and_other(site, "LE02")
    body = {"action_id": own["id"], "status": "in_progress", "note": "Survey booked"}
    client = site.app.test_client()

    read = client.post(
        "/api/partners/hotspots/LE02/actions", json=body, headers=bearer(site.tokens["read"])
    )
    full = client.post(
        "/api/partners/hotspots/LE02/actions", json=body, headers=bearer(site.tokens["full"])
    )
    not_ours = client.post(
        "/api/partners/hotspots/LE02/actions",
        json={**body, "action_id": other["id"]},
        headers=bearer(site.tokens["full"]),
    )
    bad = client.post(
        "/api/partners/hotspots/LE02/actions",
        json={**body, "action_id": "1; drop"},
        headers=bearer(site.tokens["full"]),
    )

    assert read.status_code == 403
    assert full.status_code == 200, full.text
    assert (full.json["id"], full.json["status"], full.json["yours"]) == (
        own["id"],
        "in_progress",
        True,
    )
    assert full.json["updates"][-1] == {
        **full.json["updates"][-1],
        "by": DEMO_PARTNER_AGENCY,
        "note": "Survey booked",
    }
    assert not_ours.status_code == 403 and not_ours.json["error"]["status"] == 403
    assert bad.status_code == 400
    with site.sessions()() as session:
        [actor] = session.scalars(
            select(SaraActionUpdate.author).where(
                SaraActionUpdate.action_id == own["id"], SaraActionUpdate.note == "Survey booked"
            )
        ).all()
    assert re.fullmatch(rf"{PARTNER} \(token \d+\)", actor)


def test_another_agencys_partner_sees_the_forms_of_its_own_actions_only(site):
    page = site.client(OTHER_PARTNER).get("/partners/hotspots/LE01").text
    forms = {int(i) for i in re.findall(r'name="action_id" value="(\d+)"', page)}
    assert forms == {a["id"] for a in actions_of(site, "LE01") if a["owner_agency"] == OTHER_AGENCY}


# --- supervisors edit the plan ----------------------------------------------------------------


def save(client: FlaskClient, token: str, hotspot_id: str = "LE05", **fields):
    return client.post(f"/hotspots/{hotspot_id}/sara", data={"csrf_token": token, **fields})


def test_a_supervisor_edits_the_plan_and_its_actions_with_their_forms(site, demo):
    client = staff(site, demo, "supervisor")
    page = client.get("/hotspots/LE05/sara").text
    token = CSRF_INPUT.search(page).group(1)
    version = int(re.search(r'name="version" value="(\d+)"', page).group(1))

    saved = save(
        client, token, form="plan", version=str(version), result="Robbery fell by a third."
    )
    stale = save(client, token, form="plan", version=str(version), result="Something else.")
    naming = save(client, token, form="plan", evidence="Seen by PC4100")
    added = save(
        client,
        token,
        form="new_action",
        description="Dispersal order at weekends",
        owner_agency="Police",
        owner="Neighbourhood inspector",
        due_date=(local_today() - timedelta(days=1)).isoformat(),
        status="open",
    )
    nothing = save(client, token)
    forged = client.post("/hotspots/LE05/sara", data={"form": "plan", "result": "x"})

    assert saved.status_code == 303
    assert stale.status_code == 409 and "has changed since you opened it" in stale.text
    assert naming.status_code == 400 and "names an officer or a device (PC4100)" in naming.text
    assert added.status_code == 303
    assert nothing.status_code == 200 and "Nothing was sent to save." in nothing.text
    assert forged.status_code == 400
    with site.sessions()() as session:
        plan = plan_json(session, "LE05", local_today(), for_partner=False)
    assert plan["result"] == "Robbery fell by a third."
    assert plan["version"] == version + 2
    new = plan["actions"][
        [a["description"] for a in plan["actions"]].index("Dispersal order at weekends")
    ]
    assert new["overdue"] is True
    updated = save(
        client,
        token,
        form="action",
        action_id=str(new["id"]),
        status="done",
        note="Order made and enforced",
    )
    assert updated.status_code == 303
    page = client.get("/hotspots/LE05/sara").text
    assert "Order made and enforced" in page and "Robbery fell by a third." in page
    with site.sessions()() as session:
        versions = plan_json(session, "LE05", local_today(), for_partner=False)["versions"]
    assert [v["by"] for v in versions[:3]] == ["supervisor"] * 3
    reader = staff(site, demo, "assurance")
    assert 'id="sara-plan-form"' not in reader.get("/hotspots/LE05/sara").text
    assert save(reader, csrf(reader), form="plan", result="x").status_code == 403


def test_the_hot_spot_page_shows_the_plans_open_and_overdue_actions(site, demo):
    client = staff(site, demo, "supervisor")
    with site.sessions()() as session:
        counts = action_counts(session, local_today())["LE03"]
        problem = session.scalar(select(SaraPlan.problem).where(SaraPlan.hotspot_id == "LE03"))
    page = client.get("/hotspots/LE03").text
    summary = re.search(
        r'<section class="sara-summary" id="sara-summary">(.*?)</section>', page, re.DOTALL
    )
    assert summary, page[-3000:]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", summary.group(1))).split())
    assert problem in text
    assert f"{counts['open']} open action" in text
    assert (f"{counts['overdue']} overdue" in text) == (counts["overdue"] > 0)
    assert "/hotspots/LE03/sara" in summary.group(1)


def test_the_partners_view_counts_each_hot_spots_open_and_overdue_actions(site):
    rows = list(
        csv.DictReader(
            io.StringIO(site.client(PARTNER).get("/partners?format=csv&table=plans").text)
        )
    )
    with site.sessions()() as session:
        counts = action_counts(session, local_today())
        statuses = dict(session.execute(select(SaraAction.id, SaraAction.status)).all())
    assert len(rows) == 25
    assert {r["hotspot_id"]: (int(r["open"]), int(r["overdue"])) for r in rows} == {
        h: (c["open"], c["overdue"]) for h, c in counts.items()
    }
    assert sum(int(r["actions"]) for r in rows) == len(statuses)


def test_the_overview_has_each_hot_spots_action_counts_and_the_board_month_to_hand(site):
    """Template globals for the overview (web/templates/overview.html): the actions open and
    overdue per hot spot, and the month of the board report one click away."""
    template = site.app.jinja_env.from_string(
        "{% set counts = sara_action_counts() %}"
        "{{ counts['LE01'].open }}/{{ counts['LE01'].overdue }} {{ board_month().isoformat() }}"
    )
    with site.app.test_request_context():
        shown = template.render()
    with site.sessions()() as session:
        counts = action_counts(session, local_today())["LE01"]
        start = find_operation(session).start_date
    month = (local_today().replace(day=1) - timedelta(days=1)).replace(day=1)
    if month < start.replace(day=1):
        month = start.replace(day=1)  # the operation began since: its first month
    assert shown == f"{counts['open']}/{counts['overdue']} {month.isoformat()}"
