"""Every page reads as words and local times (issue 10, item 3), over the demo database.

Starting from the start page, the supervisor follows every link to another page of the
site (a couple of each kind: two hot spots, two stops...), plus a track by officer and by
device; administrators' and officers' own pages are read too. On each page's visible text:
no True/False, NaT, nan or None; no microseconds and no raw UTC (ISO "T" times, "+00:00");
every date with a time of day to the second names its zone, and a page with times to the
minute names the operation's time zone; no identifiers_with_underscores where words belong;
coordinates on the tracks page to 5 decimals; long tables say how many rows they show.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from tests.web.test_web import (  # noqa: F401 (the session's demo database)
    OFFICER_OF_DEMO_USER,
    demo,
    local_today,
    make_app,
    sign_in,
)

TZ = "Europe/London"
ZONES = ("GMT", "BST")  # what Europe/London's times are called
PER_KIND = 2  # pages of each endpoint to read (each hot spot's page is alike)
NOT_PAGES = ("/api/", "/static/", "/vendor/", "/logout")

SCRIPTS = re.compile(r"<(script|style)\b.*?</\1>", re.DOTALL)
# Raw data a page shows on purpose: code samples, dead letters' payloads.
VERBATIM = re.compile(r"<code\b.*?</code>|<td class=\"payload\b.*?</td>", re.DOTALL)
TAGS = re.compile(r"<[^>]+>")
CELL_END = re.compile(r"</t[dh]>")  # kept apart: a date cell next to a time cell is not a time
HREF = re.compile(r'href="([^"]+)"')
PROBLEMS = {
    "a Python boolean": re.compile(r"\b(True|False)\b"),
    "a missing value as code": re.compile(r"\b(NaT|nan|NaN|None)\b"),
    "microseconds": re.compile(r"\d\d:\d\d:\d\d\.\d"),
    "a raw UTC time": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|[+-]00:00\b"),
    "an identifier": re.compile(r"\b[a-z]+(?:_[a-z]+)+\b"),
}
TO_THE_SECOND = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: (\w+))?")
TO_THE_MINUTE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(?!:)")
COORDINATE = re.compile(r"-?\d{1,3}\.\d{5}")


def visible_text(page: str) -> str:
    text = TAGS.sub(" ", CELL_END.sub(" ¦ ", VERBATIM.sub(" ", SCRIPTS.sub(" ", page))))
    return re.sub(r"\s+", " ", html.unescape(text))


def unreadable(page: str) -> list[str]:
    """Return what breaks the rules above on one page."""
    text = visible_text(page)
    found = [
        f"{what}: {m.group(0)!r}" for what, rule in PROBLEMS.items() for m in rule.finditer(text)
    ]
    found += [
        f"a time without its zone: {m.group(0)!r}"
        for m in TO_THE_SECOND.finditer(text)
        if m.group(1) not in ZONES
    ]
    if TO_THE_MINUTE.search(text) and TZ not in text:
        found.append(f"times to the minute on a page that does not name {TZ}")
    return found


def crawl(client, seeds: list[str]) -> dict[str, str]:
    """Return {path: page} of the pages reachable from the seeds, PER_KIND per endpoint."""
    adapter = client.application.url_map.bind("localhost")
    seen: Counter[str] = Counter()
    pages: dict[str, str] = {}
    queue = list(seeds)
    while queue:
        url = html.unescape(queue.pop(0))
        parts = urlsplit(url)
        if (
            parts.scheme
            or parts.netloc
            or not parts.path.startswith("/")
            or parts.path.startswith(NOT_PAGES)
            or "format=csv" in url
            or url in pages
        ):
            continue
        endpoint = adapter.match(parts.path, method="GET")[0]
        if seen[endpoint] >= PER_KIND:
            continue
        response = client.get(url)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        seen[endpoint] += 1
        pages[url] = response.text
        queue += HREF.findall(response.text)
    return pages


@pytest.fixture(scope="module")
def supervisor_pages(demo) -> dict[str, str]:  # noqa: F811
    client = sign_in(make_app(demo), demo, "supervisor")
    yesterday = (local_today() - timedelta(days=1)).isoformat()
    seeds = [
        "/overview",
        f"/overview?date={yesterday}",
        f"/tracks?officer={OFFICER_OF_DEMO_USER}&date={yesterday}",
        "/tracks?device=radio-001",
    ]
    return crawl(client, seeds)


def test_the_crawl_reaches_every_kind_of_supervisor_page(supervisor_pages):
    paths = {urlsplit(url).path for url in supervisor_pages}
    kinds = {
        p if not p.startswith(("/hotspots/", "/assurance/stops/")) else p.rsplit("/", 1)[0]
        for p in paths
    }
    assert {
        "/overview",
        "/hotspots",
        "/tracks",
        "/health",
        "/plan",
        "/assurance/",
        "/assurance/stops",
    } <= kinds


def test_every_supervisor_page_reads_as_words_and_local_times(supervisor_pages):
    problems = {url: unreadable(page) for url, page in supervisor_pages.items()}
    assert {url: found[:5] for url, found in problems.items() if found} == {}


@pytest.mark.parametrize(
    ("role", "paths"),
    [
        (
            "admin",
            ["/admin/audit", "/admin/users", "/admin/tokens", "/health", "/plan", "/overview"],
        ),
        ("officer", ["/me", "/assurance/mine"]),
        ("assurance", ["/assurance/", "/overview", "/hotspots/LE02"]),
    ],
)
def test_other_roles_pages_read_as_words_and_local_times(demo, role, paths):  # noqa: F811
    client = sign_in(make_app(demo), demo, role)
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, path
        assert unreadable(response.text) == [], path


def test_tracks_show_coordinates_to_5_decimals_and_say_how_many_pings_they_show(
    supervisor_pages,
):
    [(url, page)] = [(u, p) for u, p in supervisor_pages.items() if "officer=" in u]
    table = re.search(r'<table class="sortable" id="pings">(.*?)</table>', page, re.DOTALL)
    assert table, url
    cells = re.findall(r'<td class="(lat|lon)"[^>]*>\s*(.*?)\s*</td>', table.group(1))
    assert len(cells) >= 20
    assert [value for _, value in cells if not COORDINATE.fullmatch(value)] == []
    shown = re.search(r"Showing ([\d,]+) of ([\d,]+) pings", visible_text(page))
    assert shown, "a day of pings is longer than the page shows"
    assert int(shown.group(1).replace(",", "")) == len(cells) // 2


def test_the_hot_spot_page_says_how_many_visits_it_shows_and_marks_the_patrol_windows(
    supervisor_pages,
    demo,  # noqa: F811
):
    client = sign_in(make_app(demo), demo, "supervisor")
    page = client.get("/hotspots/LE01").text  # windows: Daily 10:00-20:00; Fri-Sat 20:00-03:00
    text = visible_text(page)
    shown = re.search(r"Showing ([\d,]+) of ([\d,]+) visits; all ([\d,]+) in the CSV", text)
    assert shown and int(shown.group(1)) < int(shown.group(2).replace(",", "")), text[:2000]
    heat = re.search(r'<table class="heat" id="hours">(.*?)</table>', page, re.DOTALL)
    assert heat
    rows = re.findall(r'<tr><th scope="row">(\d\d):00</th>(.*?)</tr>', heat.group(1), re.DOTALL)
    classes = {int(h): re.findall(r'<td class="([^"]*)"', cells) for h, cells in rows}
    assert len(classes) == 24 and all(len(c) == 7 for c in classes.values())
    windowed = {(h, d) for h, row in classes.items() for d, c in enumerate(row) if "window" in c}
    assert (10, 0) in windowed and (19, 0) in windowed and (20, 0) not in windowed  # Monday
    assert (20, 4) in windowed and (2, 5) in windowed and (3, 5) not in windowed  # Fri night
    assert (2, 6) in windowed and (2, 0) not in windowed  # Saturday's runs into Sunday
    shades = {c.split()[0] for row in classes.values() for c in row}
    assert "heat-0" in shades and "heat-5" in shades  # no presence, and the busiest hour
