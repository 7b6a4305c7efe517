"""The tasking page and API (docs/tasking.md): who may use them, the dispatch role that may
use nothing else, the JSON, the `at` argument, and the page in a real Chromium updating
itself in place when new presence is stored.

One SQLite database for the module: the hot spots of tests/plan/test_tasking.py, a plan
around today (no windows: N 60, S 30 and W 45 minutes a day, so the list does not depend on
the hour the tests run), and a user of every role.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import sync_playwright

from tests.plan.test_tasking import CENTRES, HOT_SPOTS, PARAMS, ZONE
from tests.servers import launch_chromium, served_by_waitress
from tests.web.test_browser import BrowserSession, record_traffic
from tracker.accounts.users import create_user, issue_token
from tracker.dosage.devices import AssignmentRow, load_assignments
from tracker.dosage.pings import make_ping
from tracker.dosage.recompute import bring_up_to_date, replace_hot_spots
from tracker.dosage.store import store_pings
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.plan.reader import parse_plan
from tracker.plan.storage import load_plan
from web import create_app

PASSWORD = "correct horse battery"
ROLES = ("admin", "supervisor", "assurance", "officer", "dispatch")
MAY_TASK = {"admin", "supervisor", "officer", "dispatch"}
ITEM_KEYS = {
    "hotspot_id",
    "hotspot_name",
    "rank",
    "last_presence_end",
    "minutes_since_presence",
    "window_open",
    "window_end",
    "next_window_start",
    "target_minutes",
    "counted_minutes",
    "short_minutes",
    "over_max",
    "reason",
}
# What dispatch may reach besides the tasking page and API (tested on their own below).
DISPATCH_ALLOWED = {"tasking.page", "tasking.api", "auth.login", "auth.logout", "static"}
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")
TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Site:
    url: str
    tokens: dict[str, str]  # role -> a read token of that role's user
    s_patrol_end: datetime  # when the stored patrol of S ended

    @property
    def looking_back(self) -> str:
        """A moment after every stored ping but the browser test's own, URL-encoded."""
        return quote((self.s_patrol_end + timedelta(minutes=100)).isoformat())


def store_patrol(factory, spot: str, first: datetime, minutes: int) -> None:
    """Store a radio standing in a hot spot, pinging every minute, and bring figures up to date."""
    lat, lon = CENTRES[spot]
    pings = [
        make_ping(f"radio-{spot}", (first + timedelta(minutes=i)).isoformat(), lat, lon)
        for i in range(minutes + 1)
    ]
    with factory.begin() as session:
        store_pings(session, pings, PARAMS, source="import")
    bring_up_to_date(factory.begin, HOT_SPOTS, PARAMS)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    url = f"sqlite:///{tmp_path_factory.mktemp('tasking') / 'tracker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    factory = session_factory(engine)
    today = datetime.now(ZONE).date()
    plan = parse_plan(
        f"operation: Operation Tasking\nstart: {today - timedelta(days=60)}\n"
        f"end: {today + timedelta(days=60)}\ntz: Europe/London\nhotspots:\n"
        "  N: {presence_minutes_per_day: 60}\n"
        "  S: {presence_minutes_per_day: 30, max_presence_minutes_per_day: 240}\n"
        "  W: {presence_minutes_per_day: 45}\n"
    )
    tokens = {}
    with factory.begin() as session:
        replace_hot_spots(session, HOT_SPOTS, PARAMS)
        load_plan(session, plan, actor="test")
        for role in ROLES:
            officer = "PC1" if role == "officer" else None
            create_user(session, role, role, PASSWORD, officer, actor="test")
        session.flush()
        for role in ROLES:
            tokens[role] = issue_token(session, role, "tasking test", actor="test")
    s_start = datetime.combine(today - timedelta(days=1), datetime.min.time(), ZONE).replace(
        hour=10
    )
    store_patrol(factory, "S", s_start, 20)
    # The officer user (PC1) carries radio-PC1; its last position: 600 m north of W's
    # centre, 500 m from its edge, an hour after S's patrol.
    with factory.begin() as session:
        week_ago = s_start - timedelta(days=7)
        load_assignments(
            session, [AssignmentRow(2, "radio-PC1", "PC1", "", week_ago, None)], "test"
        )
        lat, lon = CENTRES["W"]
        position = make_ping(
            "radio-PC1", (s_start + timedelta(hours=1)).isoformat(), lat + 600 / 111_320, lon
        )
        store_pings(session, [position], PARAMS)
    engine.dispose()
    return Site(url, tokens, s_start + timedelta(minutes=20))


@pytest.fixture(scope="module")
def app(site):
    app = create_app({"DATABASE_URL": site.url, "TESTING": True})
    yield app
    app.extensions["tracker.sessions"].kw["bind"].dispose()


def signed_in(app, username: str):
    """Return a test client signed in as `username`, with its session's CSRF token."""
    client = app.test_client()
    token = CSRF_FIELD.search(client.get("/login").text).group(1)
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.text
    return client


@pytest.fixture(scope="module")
def clients(app) -> dict:
    return {role: signed_in(app, role) for role in ROLES}


# --- who may use the page and the API ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", ["/tasking", "/api/tasking"])
def test_page_and_api_by_role(clients, role, path):
    response = clients[role].get(path)

    if role not in MAY_TASK:
        assert response.status_code == 403
        return
    assert response.status_code == 200, response.text[:300]
    if path.startswith("/api/"):
        assert response.is_json
        assert len(response.json) == 3
    else:
        assert response.mimetype == "text/html"
        assert 'id="tasking-list"' in response.text


def test_anonymous_is_sent_to_log_in_and_the_api_says_401(app):
    client = app.test_client()
    page = client.get("/tasking")
    assert page.status_code == 302
    assert urlsplit(page.headers["Location"]).path == "/login"
    api = client.get("/api/tasking")
    assert api.status_code == 401
    assert api.json["error"]["status"] == 401


@pytest.mark.parametrize("role", ROLES)
def test_bearer_tokens_follow_their_user_s_role(app, site, role):
    response = app.test_client().get(
        "/api/tasking", headers={"Authorization": f"Bearer {site.tokens[role]}"}
    )
    assert response.status_code == (200 if role in MAY_TASK else 403)
    if role in MAY_TASK:
        assert {item["hotspot_id"] for item in response.json} == {"N", "S", "W"}


def test_an_unknown_token_is_refused(app):
    response = app.test_client().get("/api/tasking", headers={"Authorization": "Bearer hsd_nope"})
    assert response.status_code == 401


def test_the_nav_links_to_tasking_for_its_roles(clients):
    for role in ROLES:
        page = clients[role].get("/tasking" if role in MAY_TASK else "/login")
        assert ('href="/tasking"' in page.text) == (role in MAY_TASK), role


# --- dispatch sees only tasking ---------------------------------------------------------------


def test_dispatch_starts_on_tasking(clients):
    response = clients["dispatch"].get("/")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/tasking"


def test_dispatch_is_refused_every_other_route(app, clients):
    """Every rule of the app, every method: a 403 unless dispatch may use it. A route added
    later is covered without being listed here."""
    client = clients["dispatch"]
    csrf = CSRF_FIELD.search(client.get("/tasking").text).group(1)
    checked, wrong = [], []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in DISPATCH_ALLOWED or rule.endpoint == "dashboard.home":
            continue
        _, path = rule.build(dict.fromkeys(rule.arguments, 1))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(
                path,
                method=method,
                data={"csrf_token": csrf},
                headers={"X-CSRFToken": csrf},
            )
            checked.append(f"{method} {rule.rule}")
            if response.status_code != 403:
                wrong.append(f"{method} {path}: {response.status_code}")
    assert not wrong, wrong
    assert {"GET /overview", "GET /api/dosage", "GET /plan", "POST /plan", "GET /me"} <= set(
        checked
    )
    # Still signed in, and still allowed its own page.
    assert client.get("/tasking").status_code == 200


def test_dispatch_signs_in_and_out(app):
    client = signed_in(app, "dispatch")
    assert client.get("/login").status_code == 200
    csrf = CSRF_FIELD.search(client.get("/tasking").text).group(1)
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 302
    assert urlsplit(client.get("/tasking").headers["Location"]).path == "/login"


def test_other_roles_keep_their_start_pages(clients):
    assert urlsplit(clients["officer"].get("/").headers["Location"]).path == "/me"
    assert urlsplit(clients["supervisor"].get("/").headers["Location"]).path == "/overview"


# --- the JSON -----------------------------------------------------------------------------------


def test_the_json_list_most_needed_first(clients):
    items = clients["supervisor"].get("/api/tasking").json

    assert [item["rank"] for item in items] == [1, 2, 3]
    for item in items:
        assert set(item) == ITEM_KEYS
        assert isinstance(item["rank"], int)
        assert isinstance(item["window_open"], bool) and isinstance(item["over_max"], bool)
        for key in ("short_minutes", "target_minutes", "counted_minutes"):
            assert isinstance(item[key], float)
        for key in ("last_presence_end", "window_end", "next_window_start"):
            assert item[key] is None or ISO_WITH_OFFSET.match(item[key]), (key, item[key])
        assert isinstance(item["reason"], str) and item["reason"]
    # No windows: presence counts all day, so all three are open, and none has presence
    # today: the most short first, N (60), W (45), S (30, patrolled yesterday).
    assert [item["hotspot_id"] for item in items] == ["N", "W", "S"]
    assert all(item["window_open"] for item in items)
    assert [item["short_minutes"] for item in items] == [60.0, 45.0, 30.0]


def test_at_looks_back_with_only_presence_up_to_then(clients, site):
    client = clients["supervisor"]
    during = site.s_patrol_end - timedelta(minutes=5)
    after = site.s_patrol_end + timedelta(minutes=100)

    s_during = _item(client.get(f"/api/tasking?at={quote(during.isoformat())}").json, "S")
    s_after = _item(client.get(f"/api/tasking?at={quote(after.isoformat())}").json, "S")
    before = _item(
        client.get(f"/api/tasking?at={quote((during - timedelta(hours=1)).isoformat())}").json,
        "S",
    )

    assert s_during["last_presence_end"] == during.isoformat()
    assert s_during["counted_minutes"] == 15.0
    assert s_after["last_presence_end"] == site.s_patrol_end.isoformat()
    assert (s_after["counted_minutes"], s_after["minutes_since_presence"]) == (20.0, 100.0)
    assert (before["last_presence_end"], before["counted_minutes"]) == (None, 0.0)


def test_at_with_its_plus_left_unencoded(clients, site):
    client = clients["supervisor"]
    moment = site.s_patrol_end.astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00"
    encoded = client.get(f"/api/tasking?at={quote(moment)}")
    plain = client.get(f"/api/tasking?at={moment}")  # "+" arrives as a space
    assert encoded.status_code == plain.status_code == 200
    assert encoded.json == plain.json


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-06-05T18:00:00", "has no UTC offset and is ambiguous"),
        ("tomorrow", "expected a time as ISO 8601 with a UTC offset"),
        ("", "expected a time as ISO 8601 with a UTC offset"),
        ("1969-12-31T12:00:00Z", "outside the dates handled, 1970-01-01 to 2099-12-31"),
        ("2100-01-01T00:00:00%2B01:00", "outside the dates handled, 1970-01-01 to 2099-12-31"),
    ],
)
def test_a_bad_at_is_a_400_naming_it(clients, value, message):
    api = clients["supervisor"].get(f"/api/tasking?at={value}")
    assert api.status_code == 400
    assert api.json["error"]["message"].startswith("at: ")
    assert message in api.json["error"]["message"]
    page = clients["dispatch"].get(f"/tasking?at={value}")
    assert page.status_code == 400
    assert "at: " in page.text


@pytest.mark.parametrize("value", ["1970-01-01T00:00:00Z", "2099-12-31T23:59:59%2B00:00"])
def test_at_on_the_edges_of_the_dates_handled(clients, value):
    # Far outside the operation: no target, no window open, nothing short.
    response = clients["supervisor"].get(f"/api/tasking?at={value}")
    assert response.status_code == 200
    assert [(i["window_open"], i["short_minutes"]) for i in response.json] == [(False, 0.0)] * 3


def _item(items: list[dict], hotspot_id: str) -> dict:
    return next(item for item in items if item["hotspot_id"] == hotspot_id)


def test_an_officer_gets_distances_from_their_own_position(clients, site):
    officer = clients["officer"].get(f"/api/tasking?at={site.looking_back}").json
    supervisor = clients["supervisor"].get(f"/api/tasking?at={site.looking_back}").json

    distances = {item["hotspot_id"]: item["distance_m"] for item in officer}
    assert distances["W"] == 499  # 500 m as laid out; haversine's degree is 111.195 km
    assert min(distances["N"], distances["S"]) > 2000
    assert {item["position_time"] for item in officer} == {
        (site.s_patrol_end + timedelta(minutes=40)).isoformat()
    }
    assert all(set(item) == ITEM_KEYS for item in supervisor)
    assert [set(item) - ITEM_KEYS for item in officer] == [{"distance_m", "position_time"}] * 3
    # Before their radio's ping, the officer has no position and no distances.
    early = quote(site.s_patrol_end.isoformat())
    assert all(set(i) == ITEM_KEYS for i in clients["officer"].get(f"/api/tasking?at={early}").json)


def test_only_an_officer_s_page_offers_nearest_first(clients):
    assert 'id="tasking-nearest"' in clients["officer"].get("/tasking").text
    for role in ("supervisor", "dispatch", "admin"):
        assert 'id="tasking-nearest"' not in clients[role].get("/tasking").text


# --- the page -----------------------------------------------------------------------------------


def test_the_page_lists_the_api_s_items_in_its_order(clients):
    client = clients["officer"]
    page = client.get("/tasking")
    items = client.get("/api/tasking").json

    shown = re.findall(r'<li class="tasking-item[^"]*"\s+data-hotspot-id="([^"]+)"', page.text)
    assert shown == [item["hotspot_id"] for item in items]
    assert 'data-api-url="/api/tasking"' in page.text
    assert re.search(r'data-poll-ms="(\d+)"', page.text).group(1) == "30000"
    # Scripts only from this server, with the request's nonce (the CSP allows no other).
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    tags = re.findall(r"<script\b[^>]*>", page.text)
    assert any('src="/static/tasking.js"' in tag for tag in tags)
    assert all(f'nonce="{nonce}"' in tag and "src=" in tag for tag in tags)


def test_the_page_looking_back_polls_the_same_moment(clients, site):
    moment = site.s_patrol_end.isoformat()
    page = clients["supervisor"].get(f"/tasking?at={quote(moment)}")
    assert page.status_code == 200
    assert f'data-api-url="/api/tasking?at={quote(moment, safe=":")}"' in page.text
    assert "only presence up to then" in page.text


# --- in Chromium: the list updates itself, in place -------------------------------------------


@dataclass(frozen=True)
class Served:
    base_url: str
    browser: object


@pytest.fixture(scope="module")
def served(site) -> Iterator[Served]:
    """The app on waitress, polling every 300 ms, and a Chromium to open it."""
    app = create_app({"DATABASE_URL": site.url, "TASKING_POLL_MS": 300})
    with served_by_waitress(app) as base, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield Served(base, browser)
        browser.close()
    app.extensions["tracker.sessions"].kw["bind"].dispose()


@contextmanager
def phone(served: Served, username: str, path: str = "/tasking") -> Iterator[BrowserSession]:
    """A phone-sized browser signed in as `username` through the form, then at `path`."""
    context = served.browser.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # Every change to the list from the moment the page is parsed, before any poll.
    page.add_init_script(MUTATIONS_JS)
    session = BrowserSession(page, served.base_url)
    record_traffic(context, page, session)
    try:
        session.goto(f"/login?next={quote(path)}")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("form:not(.signout) button[type=submit]")
        page.wait_for_url("**/tasking*")
        yield session
    finally:
        context.close()


MUTATIONS_JS = """document.addEventListener("DOMContentLoaded", () => {
  window.tasking_mutations = [];
  const list = document.getElementById("tasking-list");
  if (!list) return;
  new MutationObserver((records) => {
    for (const r of records) window.tasking_mutations.push(`${r.type} ${r.target.nodeName}`);
  }).observe(list, {subtree: true, childList: true, characterData: true, attributes: true});
});"""
SHOWN_JS = """() => Array.from(document.querySelectorAll('#tasking-list > li'), (li) => ({
  id: li.dataset.hotspotId,
  rank: li.querySelector('[data-field="rank"]').textContent,
  reason: li.querySelector('[data-field="reason"]').textContent,
  distance: li.querySelector('[data-field="distance"]').textContent,
}))"""
POLLED_JS = "() => /updated/.test(document.getElementById('tasking-status').textContent)"


def test_dispatch_signs_in_onto_the_tasking_page(served):
    with phone(served, "dispatch", "/") as session:  # "/" is dispatch's start: tasking
        assert urlsplit(session.page.url).path == "/tasking"
        assert session.page.locator("#tasking-list > li").count() == 3
        session.assert_clean()


@pytest.mark.parametrize("username", ["dispatch", "officer"])
def test_a_poll_that_brings_nothing_new_changes_nothing_on_the_page(served, site, username):
    """Looking back, every answer is the same: the cards as the server drew them must be
    exactly what the script draws from the JSON, or the first poll would rewrite them."""
    with phone(served, username, f"/tasking?at={site.looking_back}") as session:
        page = session.page
        before = page.evaluate(SHOWN_JS)
        page.wait_for_function(POLLED_JS)
        page.wait_for_timeout(700)  # two polls more

        assert page.evaluate("() => window.tasking_mutations") == []
        assert page.evaluate(SHOWN_JS) == before
        assert any(card["distance"] for card in before) == (username == "officer")
        session.assert_clean()


def test_the_page_updates_in_place_when_presence_is_stored(served, site):
    with phone(served, "dispatch") as session:
        page = session.page
        page.wait_for_function(POLLED_JS)
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        # Marks a reload would wipe: a global, and the very element of N's card.
        page.evaluate(
            "() => { window.tasking_marker = 'kept';"
            " document.querySelector('[data-hotspot-id=\"N\"]').tasking_marker = 'kept'; }"
        )
        n_before = next(card for card in page.evaluate(SHOWN_JS) if card["id"] == "N")
        assert n_before["reason"].startswith("no presence on record; ")

        engine = make_engine(site.url)
        # Two minutes in N, ended a minute ago.
        store_patrol(session_factory(engine), "N", datetime.now(UTC) - timedelta(minutes=3), 2)
        engine.dispose()

        page.wait_for_function(
            '() => !document.querySelector(\'[data-hotspot-id="N"] [data-field="reason"]\')'
            ".textContent.startsWith('no presence on record')"
        )
        n_after = next(card for card in page.evaluate(SHOWN_JS) if card["id"] == "N")
        assert n_after["reason"].startswith(("no presence for 1 min; ", "no presence for 2 min; "))
        assert page.evaluate("() => window.tasking_marker") == "kept"
        marker = "() => document.querySelector('[data-hotspot-id=\"N\"]').tasking_marker"
        assert page.evaluate(marker) == "kept"
        assert navigations == []
        # What the page shows is what the API says, in its order.
        page.wait_for_function(POLLED_JS)
        api = page.evaluate("async () => (await fetch('/api/tasking')).json()")
        assert [(c["id"], c["rank"], c["reason"]) for c in page.evaluate(SHOWN_JS)] == [
            (i["hotspot_id"], str(i["rank"]), i["reason"]) for i in api
        ]
        session.assert_clean()


def test_an_officer_orders_the_list_nearest_first(served, site):
    with phone(served, "officer", f"/tasking?at={site.looking_back}") as session:
        page = session.page
        ranked_ids = [card["id"] for card in page.evaluate(SHOWN_JS)]
        api = page.evaluate(
            f"async () => (await fetch('/api/tasking?at={site.looking_back}')).json()"
        )
        by_distance = [i["hotspot_id"] for i in sorted(api, key=lambda i: i["distance_m"])]
        assert by_distance[0] == "W" and by_distance != ranked_ids

        page.click("#tasking-nearest")
        assert page.get_attribute("#tasking-nearest", "aria-pressed") == "true"
        page.wait_for_function(
            "() => document.querySelector('#tasking-list > li').dataset.hotspotId === 'W'"
        )
        assert [card["id"] for card in page.evaluate(SHOWN_JS)] == by_distance
        page.wait_for_function(POLLED_JS)
        page.wait_for_timeout(700)  # polls keep the order asked for
        assert [card["id"] for card in page.evaluate(SHOWN_JS)] == by_distance

        page.click("#tasking-nearest")
        page.wait_for_function(
            f"() => document.querySelector('#tasking-list > li').dataset.hotspotId"
            f" === '{ranked_ids[0]}'"
        )
        assert [card["id"] for card in page.evaluate(SHOWN_JS)] == ranked_ids
        session.assert_clean()


def test_the_page_fits_a_phone(served):
    with phone(served, "officer") as session:
        page = session.page
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        for card in page.locator("#tasking-list > li").all():
            box = card.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390
