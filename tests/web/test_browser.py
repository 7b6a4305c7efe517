"""The web app in a real headless Chromium (Playwright), served by waitress over the demo
database: log-in through the form, the overview's RAG table and map, a hot spot's charts,
and a browser that fetches nothing from other hosts and logs no errors.

Skips without /usr/bin/chromium, unless TRACKER_TEST_REQUIRE_SERVICES=1 (then it fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.servers import launch_chromium, served_by_waitress
from tests.web.test_web import OFFICER_OF_DEMO_USER, Demo, demo_database
from web import create_app

pytestmark = pytest.mark.browser

HOT_SPOTS = 25
TIMEOUT_MS = 15_000
# A status cell starts with its sign and its word (web/views.py STATUS_WORDS).
RAG_WORDS = ("GREEN", "AMBER", "RED", "OVER MAX", "NO TARGET")

# The Leaflet map folium creates as a global `map_<hex>`, and its GeoJSON polygon layers.
MAP_LAYERS_JS = """() => {
  const name = Object.keys(window).find((key) => /^map_[0-9a-f]+$/.test(key));
  if (!name) return null;
  const map = window[name];
  const ids = [];
  let groupsWithTooltips = 0;
  map.eachLayer((layer) => {
    const id = layer.feature && layer.feature.properties && layer.feature.properties.id;
    if (id) ids.push(id);
    if (layer.getLayers && layer.getTooltip && layer.getTooltip()) groupsWithTooltips += 1;
  });
  return {name, ids, groupsWithTooltips, canvas: Boolean(map.options.preferCanvas)};
}"""
# Points (in map container pixels) inside each visible polygon, for hovering.
HOVER_POINTS_JS = """(name) => {
  const map = window[name];
  const size = map.getSize();
  const points = [];
  map.eachLayer((layer) => {
    const id = layer.feature && layer.feature.properties && layer.feature.properties.id;
    if (!id || !layer.getBounds) return;
    const centre = map.latLngToContainerPoint(layer.getBounds().getCenter());
    const inside = layer._containsPoint(map.latLngToLayerPoint(layer.getBounds().getCenter()));
    if (inside && centre.x > 5 && centre.y > 5 && centre.x < size.x - 5 && centre.y < size.y - 5)
      points.push({id, x: centre.x, y: centre.y});
  });
  return points;
}"""


@dataclass(frozen=True)
class Served:
    """The app on a local port and the demo database behind it."""

    base_url: str
    demo: Demo


@dataclass
class BrowserSession:
    """One browser context signed in as the supervisor, with what it saw on the way."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, (path, response)

    def assert_clean(self) -> None:
        """No request left this machine; the console shows no errors."""
        foreign = [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).hostname != "127.0.0.1"
        ]
        assert foreign == []
        assert self.errors == []


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    demo = demo_database(tmp_path_factory)
    app = create_app({"DATABASE_URL": demo.url})
    with served_by_waitress(app) as base:
        yield Served(base, demo)


@pytest.fixture(scope="module")
def browser(served) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def record_traffic(context: BrowserContext, page: Page, session: BrowserSession) -> None:
    context.on("request", lambda request: session.requests.append(request.url))
    page.on(
        "console",
        lambda message: (
            session.errors.append(f"console: {message.text} at {message.location}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: session.errors.append(f"page error: {error}"))


@pytest.fixture(scope="module")
def supervisor(browser, served) -> Iterator[BrowserSession]:
    """A browser signed in as the supervisor through the log-in form."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    session = BrowserSession(page, served.base_url)
    record_traffic(context, page, session)
    session.goto("/overview")  # not signed in: sent to the log-in form
    assert urlsplit(page.url).path == "/login"
    page.fill("input[name=username]", "supervisor")
    page.fill("input[name=password]", served.demo.passwords["supervisor"])
    page.click("form:not(.signout) button[type=submit]")
    page.wait_for_url("**/overview")
    yield session
    context.close()


def test_log_in_through_the_form(supervisor):
    page = supervisor.page
    assert urlsplit(page.url).path == "/overview"  # back where the log-in started
    assert "supervisor (supervisor)" in page.inner_text("header.top")
    assert page.locator("form.signout button").is_visible()
    supervisor.assert_clean()


def test_wrong_password_stays_on_the_form(browser, served):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(served.base_url + "/login")
        page.fill("input[name=username]", "supervisor")
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        assert page.locator("p.flash.error").inner_text() == "Unknown user name or wrong password."
        assert urlsplit(page.url).path == "/login"
    finally:
        context.close()


def test_overview_shows_the_rag_table(supervisor):
    supervisor.goto("/overview")
    rows = supervisor.page.locator("table#rag tbody tr")
    assert rows.count() == HOT_SPOTS
    ids = [
        text.strip()
        for text in supervisor.page.locator("table#rag tbody td.hotspot_id a").all_inner_texts()
    ]
    assert len(set(ids)) == HOT_SPOTS and "LE01" in ids
    for column in ("day_presence_status", "week_presence_status", "operation_presence_status"):
        # The cells are coloured, and say their status in words besides.
        cells = supervisor.page.locator(f"table#rag tbody td.{column}")
        assert cells.count() == HOT_SPOTS
        assert cells.first.evaluate("cell => cell.classList.contains('rag')")
        for text in cells.all_inner_texts():
            assert text.split()[1] in {w.split()[0] for w in RAG_WORDS}, (column, text)
    supervisor.assert_clean()


def test_overview_map_draws_every_hot_spot_with_a_tooltip(supervisor):
    supervisor.goto("/overview")
    page = supervisor.page
    page.wait_for_selector(".folium-map.leaflet-container")
    layers = page.evaluate(MAP_LAYERS_JS)
    assert layers is not None, "no Leaflet map on the page"
    assert len(layers["ids"]) == HOT_SPOTS
    assert len(set(layers["ids"])) == HOT_SPOTS
    assert layers["groupsWithTooltips"] >= 1
    if layers["canvas"]:
        assert page.locator(f"#{layers['name']} .leaflet-overlay-pane canvas").count() >= 1
    else:
        assert page.locator(f"#{layers['name']} path.leaflet-interactive").count() == HOT_SPOTS

    # Hovering a polygon opens its tooltip with the hot spot's id and figures.
    map_box = page.locator(f"#{layers['name']}")
    map_box.scroll_into_view_if_needed()
    origin = map_box.bounding_box()
    points = page.evaluate(HOVER_POINTS_JS, layers["name"])
    assert points, "no polygon has its centre inside it and on screen"
    shown = []
    for point in points[:8]:
        page.mouse.move(origin["x"] + point["x"], origin["y"] + point["y"])
        tooltip = page.locator(".leaflet-tooltip")
        try:
            tooltip.first.wait_for(state="visible", timeout=2_000)
        except PlaywrightTimeout:  # this centre is covered by another layer: try the next
            continue
        shown.append((point["id"], tooltip.first.inner_text()))
        if point["id"] in shown[-1][1]:
            break
        page.mouse.move(origin["x"] + 1, origin["y"] + 1)
    assert shown, "hovering the polygons opened no tooltip"
    hovered, text = shown[-1]
    assert hovered in text and "This week" in text, shown
    supervisor.assert_clean()


def test_hot_spot_page_from_the_table_shows_its_charts(supervisor):
    supervisor.goto("/overview")
    page = supervisor.page
    page.locator("table#rag tbody td.hotspot_id a", has_text="LE01").first.click()
    page.wait_for_url("**/hotspots/LE01?*")
    assert page.locator("h1").inner_text().startswith("LE01")
    cumulative = page.locator("#cumulative-chart svg.chart")
    assert cumulative.is_visible()
    lines = cumulative.locator("polyline")
    assert lines.count() == 2  # actual and plan
    assert [lines.nth(i).locator("title").text_content() for i in range(2)] == ["actual", "plan"]
    for i in range(2):
        assert len(lines.nth(i).get_attribute("points").split()) >= 2
    assert cumulative.bounding_box()["width"] > 300
    daily = page.locator("#daily-chart svg.chart")
    assert daily.is_visible()
    assert daily.locator("rect[fill='#54aeff'] title").count() >= 14  # a bar per recent day
    assert daily.locator("polyline").count() == 1  # the target
    supervisor.assert_clean()


def test_the_whole_session_stayed_on_this_machine(supervisor):
    """Every page a supervisor can open: no request leaves 127.0.0.1, no console errors."""
    for path in (
        "/overview",
        "/hotspots/LE02",
        f"/tracks?officer={OFFICER_OF_DEMO_USER}",
        "/health",
    ):
        supervisor.goto(path)
        supervisor.page.wait_for_load_state("load")
    paths = {urlsplit(url).path for url in supervisor.requests}
    assert {
        "/login",
        "/overview",
        "/vendor/leaflet/leaflet.js",
        "/static/tables.js",
        "/tracks",
        "/health",
    } <= paths
    supervisor.assert_clean()
