"""Map text is text (security finding 1): a hot spot's name, a device id or a stop's label
never reaches a page as markup, whatever it holds.

folium shows a GeoJSON layer's tooltip fields through `innerHTML` and pastes a marker's
tooltip into a JavaScript template literal as HTML; web/maps.py escapes every text on the
way in. Checked three ways: each map helper's output, decoded as the browser would; every
page with a map, over a database whose names are hostile; and the overview in a real
Chromium, hovering and clicking a hot spot named with a meta refresh.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
from markupsafe import escape

from tests.builders import BOX_A, BOX_H, IN_A, hot_spot_set, ping, polygon_feature
from tests.servers import console_problems, served_by_waitress
from tests.web.test_web_assurance import PASSWORD, login, make_app
from tracker.accounts.users import create_user
from tracker.dosage.engine import DosageParams
from tracker.dosage.recompute import replace_hot_spots
from tracker.dosage.store import store_pings
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.plan.reader import parse_plan
from tracker.plan.storage import load_plan
from web import charts, maps

META_REFRESH = '<meta http-equiv="refresh" content="0;url=https://example.org/">'
IMG_ONERROR = "<img src=x onerror=alert(1)>"
SCRIPT_CLOSE = "</script><script>alert(1)</script>"
TEMPLATE_LITERAL = "`);alert(1);(` ${alert(2)} \\` \\u003c"
ENTITIES = "Fish &amp; chips &lt;b&gt; & more"
HOSTILE = [META_REFRESH, IMG_ONERROR, SCRIPT_CLOSE, TEMPLATE_LITERAL, ENTITIES]

NONCE = "n0nce"
BOUNDS = (-0.201, 51.499, -0.099, 51.501)
# folium embeds a GeoJSON layer's data on one line, `<layer>_add({...});`, and its tooltip's
# aliases as `let aliases = [...];`; a marker's tooltip is `.bindTooltip(`<div>...</div>`, `.
GEOJSON_DATA = re.compile(r"_add\((\{.*\})\);")
GEOJSON_ALIASES = re.compile(r"let aliases = (\[.*\]);")
TOOLTIP_LITERAL = re.compile(r"\.bindTooltip\(\s*`(.*?)`,", re.DOTALL)
TOOLTIP_DIV = re.compile(r"\s*<div>\s*(.*?)\s*</div>\s*", re.DOTALL)


def page_of(fmap) -> str:
    rendered = maps.render(fmap, NONCE)
    return f"{rendered.head}{rendered.body}{rendered.script}"


def assert_html_shows(value: str, text: str) -> None:
    """`value`, set as an element's innerHTML, makes no element and shows exactly `text`."""
    assert isinstance(value, str), value
    assert "<" not in value and ">" not in value, value
    assert html.unescape(value) == text, value


def assert_template_literal_shows(value: str, text: str) -> None:
    """`value`, pasted into a JavaScript template literal as HTML, shows exactly `text`."""
    assert not {"`", "\\"} & set(value) and "${" not in value, value
    assert_html_shows(value, text)


def assert_no_raw_markup(page: str) -> None:
    """No payload appears as markup, and every script on the page is one of ours."""
    for markup in (META_REFRESH, IMG_ONERROR, "<script>alert", "<b>"):
        assert markup not in page
    assert page.count("<script") == page.count(f'<script nonce="{NONCE}"')
    assert page.count("</script>") == page.count("<script")


def geojson_layers(page: str) -> list[list[dict]]:
    """Return each GeoJSON layer's features' properties, as the browser receives them."""
    return [
        [feature["properties"] for feature in json.loads(data)["features"]]
        for data in GEOJSON_DATA.findall(page)
    ]


def marker_tooltips(page: str) -> list[str]:
    """Return the HTML of each marker's tooltip."""
    return [TOOLTIP_DIV.fullmatch(text).group(1) for text in TOOLTIP_LITERAL.findall(page)]


# -- the helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_hot_spot_ids_names_and_aliases_reach_the_tooltip_as_text(name):
    named = polygon_feature("HS1", BOX_A)
    named["properties"]["name"] = name
    named["properties"]["note"] = IMG_ONERROR  # a property no tooltip shows
    fmap = maps.new_map(BOUNDS)
    maps.add_hot_spots(
        fmap,
        [named, polygon_feature(name, BOX_H)],  # the second's id is hostile too
        {"HS1": "red", name: "green"},
        ["id", "name"],
        ["Hot spot", name],
    )
    page = page_of(fmap)

    [shown] = geojson_layers(page)
    assert len(shown) == 2
    for properties, (hot_spot_id, hot_spot_name) in zip(
        shown, [("HS1", name), (name, f"Hot spot {name}")], strict=True
    ):
        assert_html_shows(properties["id"], hot_spot_id)
        assert_html_shows(properties["name"], hot_spot_name)
        assert IMG_ONERROR not in json.dumps(properties)
    [aliases] = [json.loads(a) for a in GEOJSON_ALIASES.findall(page)]
    assert aliases[0] == "Hot spot"
    assert_html_shows(aliases[1], name)
    # Each hot spot still has the colour of its (unescaped) id's status.
    assert maps.RAG_COLOURS["red"] in page and maps.RAG_COLOURS["green"] in page
    assert_no_raw_markup(page)


@pytest.mark.parametrize("label", HOSTILE)
def test_track_and_point_labels_reach_their_tooltips_as_text(label):
    fmap = maps.new_map(BOUNDS)
    maps.add_track(fmap, [(-0.1, 51.5), (-0.1001, 51.5001)], [label, "plain"])
    maps.add_points(fmap, [(-0.1002, 51.5002)], [label], "#000000")
    page = page_of(fmap)

    tooltips = marker_tooltips(page)
    assert len(tooltips) == 3
    for tooltip, text in zip(tooltips, [label, "plain", label], strict=True):
        assert_template_literal_shows(tooltip, text)
    assert_no_raw_markup(page)


def test_map_text_is_html_and_template_literal_safe():
    for text in [*HOSTILE, "plain", "", "Zoë's 5% `x`"]:
        assert_template_literal_shows(maps.map_text(text), text)


# -- every page with a map, over a database of hostile names ----------------------------------

TRACK_DEVICE = 'radio "7"; <b>bold</b> ${x} é'


@dataclass(frozen=True)
class HostileSite:
    url: str
    ping_day: date


def hostile_database(folder: Path) -> HostileSite:
    """A database with hot spots named with markup, a plan around today, a device whose id
    holds markup with pings in HS1, and a user of each role the map pages need."""
    url = f"sqlite:///{folder / 'tracker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    params = DosageParams()
    first = polygon_feature("HS1", BOX_A)
    first["properties"]["name"] = META_REFRESH
    second = polygon_feature("HS2", BOX_H)
    second["properties"]["name"] = IMG_ONERROR
    today = datetime.now(ZoneInfo(params.tz)).date()
    plan = parse_plan(
        f"operation: Operation Hostile Names\nstart: {today - timedelta(days=7)}\n"
        f"end: {today + timedelta(days=30)}\ntz: {params.tz}\n"
        "defaults:\n  presence_minutes_per_day: 30\nhotspots:\n  HS1: {}\n  HS2: {}\n"
    )
    seen = datetime.now(UTC) - timedelta(minutes=30)
    pings = [
        ping(TRACK_DEVICE, (seen + timedelta(minutes=i)).isoformat(), IN_A[0], IN_A[1] + i * 1e-5)
        for i in range(3)
    ]
    with session_factory(engine).begin() as session:
        replace_hot_spots(session, hot_spot_set(first, second), params)
        load_plan(session, plan, actor="test")
        store_pings(session, pings, params)
        for role in ("supervisor", "assurance"):
            create_user(session, role, role, PASSWORD, actor="test")
    engine.dispose()
    return HostileSite(url, seen.astimezone(ZoneInfo(params.tz)).date())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> HostileSite:
    return hostile_database(tmp_path_factory.mktemp("hostile-maps"))


@pytest.fixture(scope="module")
def app(site):
    return make_app(site.url)


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("supervisor", "/overview"),
        ("supervisor", "/tracks?device={device}&date={day}"),
        ("assurance", "/assurance/"),
    ],
)
def test_every_page_with_a_map_shows_hostile_names_as_text(app, site, role, path):
    client = login(app, role)
    response = client.get(path.format(device=quote(TRACK_DEVICE), day=site.ping_day))
    assert response.status_code == 200, response.text
    page = response.text

    [shown] = geojson_layers(page)
    names = {p["id"]: p["name"] for p in shown}
    assert set(names) == {"HS1", "HS2"}
    assert_html_shows(names["HS1"], META_REFRESH)
    assert_html_shows(names["HS2"], IMG_ONERROR)
    for tooltip in marker_tooltips(page):  # the track's pings, on /tracks
        assert_template_literal_shows(tooltip, html.unescape(tooltip))
        assert html.unescape(tooltip).startswith(f"{TRACK_DEVICE} ")
    if path.startswith("/tracks"):
        assert len(marker_tooltips(page)) == 3
    for markup in (META_REFRESH, IMG_ONERROR, "<b>bold</b>"):
        assert markup not in page


@pytest.mark.parametrize("hot_spot_id", ["HS1", "HS2"])
def test_the_hot_spot_page_shows_its_hostile_name_as_text(app, hot_spot_id):
    names = {"HS1": META_REFRESH, "HS2": IMG_ONERROR}
    response = login(app, "supervisor").get(f"/hotspots/{hot_spot_id}")
    assert response.status_code == 200, response.text
    assert str(escape(names[hot_spot_id])) in response.text
    for markup in (META_REFRESH, IMG_ONERROR):
        assert markup not in response.text


# -- the other graphics drawn from text: the SVG charts -----------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_chart_labels_names_units_and_titles_are_text(text):
    """web/charts.py draws SVG from labels: every text stays text (an XML parser finds
    exactly our elements, and each text where it was put)."""
    labels = [text, "02 Jun"]
    drawn = [
        charts.line_chart(labels, [(text, "#0969da", [1.0, 2.0])], text, text),
        charts.bar_chart(labels, [1.0, 2.0], [1.5, 1.5], text, text),
    ]
    for svg in drawn:
        root = ElementTree.fromstring(str(svg))
        tags = {element.tag for element in root.iter()}
        assert tags <= {"svg", "title", "line", "text", "polyline", "rect"}, tags
        assert root.get("aria-label") == text
        assert root.find("title").text == text
        texts = [element.text for element in root.iter("text")]
        assert texts.count(text) >= 2  # the first day's label, the unit (and a series' key)
        titles = [element.text for element in root.iter("title")]
        assert text in titles[1:] or f"{text}: 1.0" in titles[1:]  # a series or a bar


# -- the overview in a real browser -----------------------------------------------------------

# The centre, in page pixels, of the hot spot with this id on the page's Leaflet map.
HOT_SPOT_CENTRE_JS = """(id) => {
  const name = Object.keys(window).find((key) => /^map_[0-9a-f]+$/.test(key));
  const map = window[name];
  const box = document.getElementById(name).getBoundingClientRect();
  let found = null;
  map.eachLayer((layer) => {
    const properties = layer.feature && layer.feature.properties;
    if (properties && properties.id === id && layer.getBounds) {
      const point = map.latLngToContainerPoint(layer.getBounds().getCenter());
      found = {x: box.left + point.x, y: box.top + point.y};
    }
  });
  return found;
}"""


@pytest.fixture
def served(site) -> Iterator[str]:
    with served_by_waitress(make_app(site.url)) as base:
        yield base


@pytest.mark.browser
def test_hovering_and_clicking_a_hostile_hot_spot_shows_its_name_and_opens_its_page(
    chromium, served
):
    """Hovering shows the name as text and goes nowhere; clicking opens the hot spot's own
    page on this site, and nothing else."""
    base = served
    context = chromium.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems = console_problems(page)
    elsewhere: list[str] = []

    def refuse_other_hosts(route) -> None:
        elsewhere.append(route.request.url)
        route.abort()

    page.route(lambda url: urlsplit(url).hostname != "127.0.0.1", refuse_other_hosts)
    try:
        page.goto(f"{base}/login")
        page.fill("input[name=username]", "supervisor")
        page.fill("input[name=password]", PASSWORD)
        page.click("form:not(.signout) button[type=submit]")
        page.wait_for_url(f"{base}/overview")
        overview = page.url
        navigations: list[str] = []
        page.on(
            "framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
        )

        for hot_spot_id, name in (("HS1", META_REFRESH), ("HS2", IMG_ONERROR)):
            if page.url != overview:
                page.goto(overview)
            navigations.clear()
            page.wait_for_selector(".folium-map.leaflet-container")
            page.locator(".folium-map").scroll_into_view_if_needed()
            # The hot spot's own label, its id as text.
            labels = page.locator(".hot-spot-label span").all_inner_texts()
            assert hot_spot_id in labels, labels
            centre = page.evaluate(HOT_SPOT_CENTRE_JS, hot_spot_id)
            assert centre is not None, hot_spot_id
            page.mouse.move(centre["x"], centre["y"])
            page.wait_for_timeout(1_000)  # a meta refresh of 0 s would have fired by now
            assert (elsewhere, navigations) == ([], []), f"hovering {hot_spot_id} navigated"
            tooltip = page.locator(".leaflet-tooltip")
            tooltip.first.wait_for(state="visible")
            text = tooltip.first.inner_text()
            assert hot_spot_id in text and name in text, text
            assert page.locator(".leaflet-tooltip meta, .leaflet-tooltip img").count() == 0
            page.mouse.click(centre["x"], centre["y"])
            page.wait_for_url(f"{base}/hotspots/{hot_spot_id}?*")
            page.wait_for_timeout(1_000)  # nothing else follows
            assert elsewhere == [], f"clicking {hot_spot_id} went elsewhere"
            assert [urlsplit(url).path for url in navigations] == [f"/hotspots/{hot_spot_id}"]
        assert problems == []
    finally:
        context.close()
