"""The overview in a real headless Chromium at 1,366 px wide, over the demo database: nothing
scrolls sideways, every status reads without its colour, the map has a legend and a label
per hot spot, and clicking a hot spot's polygon opens its page.

Uses the browser fixtures of tests/web/test_browser.py (waitress over the demo database, a
supervisor signed in through the log-in form). Skips without Chromium unless
TRACKER_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.web.test_browser import (  # noqa: F401 (fixtures)
    HOT_SPOTS,
    browser,
    served,
    supervisor,
)

pytestmark = pytest.mark.browser

WIDTH = 1366
STATUS_WORDS = ("GREEN", "AMBER", "RED", "OVER MAX", "NO TARGET")
# Everything on the page that scrolls sideways: the page itself, or any element whose
# content is wider than its box and that lets it scroll (overflow auto or scroll).
SIDEWAYS_JS = """() => {
  const root = document.documentElement;
  const wide = [];
  if (root.scrollWidth > root.clientWidth)
    wide.push(`page ${root.scrollWidth} > ${root.clientWidth}`);
  for (const element of document.querySelectorAll("body *")) {
    const overflow = getComputedStyle(element).overflowX;
    const scrolls = overflow === "auto" || overflow === "scroll";
    if (scrolls && element.scrollWidth > element.clientWidth + 1)
      wide.push(`${element.className} ${element.scrollWidth} > ${element.clientWidth}`);
  }
  return wide;
}"""
# The centre (in page pixels) of a hot spot's polygon on the page's Leaflet map.
POLYGON_CENTRE_JS = """(id) => {
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
def wide(supervisor):  # noqa: F811 (the fixture of tests/web/test_browser.py)
    """The signed-in supervisor's page at 1,366 x 900 px."""
    supervisor.page.set_viewport_size({"width": WIDTH, "height": 900})
    supervisor.goto("/overview")
    supervisor.page.wait_for_selector(".folium-map.leaflet-container")
    return supervisor


def test_nothing_scrolls_sideways_at_1366_px(wide):
    page = wide.page
    assert page.evaluate("document.documentElement.clientWidth") == WIDTH
    assert page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    assert page.evaluate(SIDEWAYS_JS) == []
    # Opening the further figures keeps it so.
    page.click("#overview-more summary")
    assert page.locator("#more").is_visible()
    assert page.evaluate(SIDEWAYS_JS) == []
    wide.assert_clean()


def test_every_status_is_a_word_and_a_sign_besides_its_colour(wide):
    cells = wide.page.locator("table#rag tbody td.rag")
    assert cells.count() == HOT_SPOTS * 5  # five periods per hot spot
    for text in cells.all_inner_texts():
        assert any(word in text for word in STATUS_WORDS), text
    badges = wide.page.locator("table#rag .status")
    signs = {s.strip() for s in wide.page.locator("table#rag .status-sign").all_inner_texts()}
    assert badges.count() == cells.count()
    assert signs <= {"✓", "!", "✗", "▲", "–"} and len(signs) >= 3, signs
    # The word is there even where colour is not: the same text with colours turned off.
    wide.page.add_style_tag(content="* { color: #000 !important; }")
    assert all(any(w in t for w in STATUS_WORDS) for t in cells.all_inner_texts())
    wide.assert_clean()


def test_the_map_has_a_legend_and_labels_every_hot_spot(wide):
    page = wide.page
    legend = page.locator("#map-legend")
    assert legend.is_visible()
    text = legend.inner_text()
    assert all(word in text for word in STATUS_WORDS), text
    assert page.locator("#map-legend .swatch").count() == len(STATUS_WORDS)
    labels = page.locator(".hot-spot-label span").all_text_contents()
    assert len(labels) == HOT_SPOTS and len(set(labels)) == HOT_SPOTS
    assert "LE19" in labels
    wide.assert_clean()


def test_clicking_a_hot_spot_on_the_map_opens_its_page(wide):
    page = wide.page
    page.locator("#overview-map").scroll_into_view_if_needed()
    # LE19 (Melton Mowbray) stands alone, so its centre is its own at the opening zoom.
    centre = page.evaluate(POLYGON_CENTRE_JS, "LE19")
    assert centre is not None
    page.mouse.click(centre["x"], centre["y"])
    page.wait_for_url("**/hotspots/LE19?*")
    assert urlsplit(page.url).path == "/hotspots/LE19"
    assert page.locator("h1").inner_text().startswith("LE19")
    wide.assert_clean()


def test_the_map_opens_on_the_hot_spots(wide):
    """Its view holds every hot spot, at the closest zoom that does (fitted to their bounds)."""
    view = wide.page.evaluate("""() => {
      const name = Object.keys(window).find((key) => /^map_[0-9a-f]+$/.test(key));
      const map = window[name];
      let all = null;
      map.eachLayer((layer) => {
        if (layer.feature && layer.getBounds)
          all = all ? all.extend(layer.getBounds()) : L.latLngBounds([layer.getBounds()]);
      });
      const fit = map.getBoundsZoom(all);
      return {holds: map.getBounds().contains(all), zoom: map.getZoom(), fit: fit};
    }""")
    assert view["holds"] and view["zoom"] == view["fit"], view
