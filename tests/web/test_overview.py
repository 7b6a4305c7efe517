"""The overview and its figures over hand-made data: the OVER status from the root (page,
CSVs and the command agree), "no target today" in words, "today so far" against the whole
day's target, the last 7 days and last week, time since the last presence, the date
picker, the map's labels, links and colours, and the overview before any plan is loaded.

The reference date is yesterday (a whole day, whatever the hour the tests run at). The
operation starts on it, so every period of the operation so far is that one day.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from tests.builders import BOX_A, BOX_H, hot_spot_set, ping, polygon_feature, square_feature
from tests.web.test_web_assurance import PASSWORD, login, make_app
from tracker.accounts.users import create_user
from tracker.cli import main
from tracker.dosage.engine import DosageParams
from tracker.dosage.recompute import bring_up_to_date, replace_hot_spots
from tracker.dosage.store import store_pings
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.plan.reader import parse_plan
from tracker.plan.storage import load_plan
from web.maps import RAG_COLOURS

PARAMS = DosageParams()
ZONE = ZoneInfo(PARAMS.tz)
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Where each hot spot of the site is (lat, lon), and a square far from the others.
IN = {"OVER": (51.5, -0.1005), "UNDER": (51.5, -0.2), "QUIET": (51.52, -0.15)}
IN_NOTGT = (51.48, -0.15)
GEOJSON_DATA = re.compile(r"_add\((\{.*\})\);")


@dataclass(frozen=True)
class Site:
    url: str
    reference: date


def walk(device: str, where: tuple[float, float], day: date, start: time, minutes: int):
    """Pings a minute apart from `start` local time on `day`, for `minutes` minutes."""
    first = datetime.combine(day, start, tzinfo=ZONE)
    return [
        ping(device, (first + timedelta(minutes=m)).isoformat(), *where) for m in range(minutes + 1)
    ]


def build(folder: Path, with_plan: bool, pings: list, start: date | None = None) -> str:
    """Four hot spots, the pings through the dosage pipeline, a supervisor and an admin;
    with a plan if asked, starting on `start` (default the reference date)."""
    url = f"sqlite:///{folder / 'tracker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    hot_spots = hot_spot_set(
        polygon_feature("OVER", BOX_A),
        polygon_feature("UNDER", BOX_H),
        square_feature("QUIET", *IN["QUIET"], 200),
        square_feature("NOTGT", *IN_NOTGT, 200),
    )
    factory = session_factory(engine)
    with factory.begin() as session:
        replace_hot_spots(session, hot_spots, PARAMS)
        store_pings(session, pings, PARAMS)
        for role in ("supervisor", "admin"):
            create_user(session, role, role, PASSWORD, actor="test")
    bring_up_to_date(factory.begin, hot_spots, PARAMS)
    if with_plan:
        reference = yesterday()
        # NOTGT patrols only the day after the reference: no target on the reference date.
        other_day = WEEKDAY_NAMES[(reference.weekday() + 1) % 7]
        plan = parse_plan(
            f"operation: Operation Overview Test\nstart: {start or reference}\n"
            f"end: {reference + timedelta(days=30)}\ntz: {PARAMS.tz}\n"
            "defaults:\n  presence_minutes_per_day: 10\n  max_presence_minutes_per_day: 20\n"
            "hotspots:\n  OVER: {}\n  UNDER: {}\n  QUIET: {}\n"
            f'  NOTGT: {{windows: ["{other_day} 10:00-12:00"]}}\n'
        )
        with factory.begin() as session:
            load_plan(session, plan, actor="test")
    engine.dispose()
    return url


def yesterday() -> date:
    return datetime.now(ZONE).date() - timedelta(days=1)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    """OVER had 40 minutes on the reference date (its maximum is 20), UNDER 5 (of a target
    of 10), QUIET none, NOTGT 15 minutes but no target that day."""
    reference = yesterday()
    pings = [
        *walk("radio-1", IN["OVER"], reference, time(10), 40),
        *walk("radio-2", IN["UNDER"], reference, time(10), 5),
        *walk("radio-3", IN_NOTGT, reference, time(11), 15),
    ]
    return Site(build(tmp_path_factory.mktemp("overview"), True, pings), reference)


@pytest.fixture(scope="module")
def client(site):
    return login(make_app(site.url), "supervisor")


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def cell(page: str, hotspot_id: str, column: str) -> str:
    row = re.search(rf'<tr data-hotspot-id="{hotspot_id}">(.*?)</tr>', page, re.DOTALL)
    assert row, hotspot_id
    found = re.search(rf'<td class="{column}[^"]*"[^>]*>(.*?)</td>', row.group(1), re.DOTALL)
    assert found, (hotspot_id, column)
    return visible_text(found.group(1)).strip()


# --- OVER, from the root ---------------------------------------------------------------------


def test_over_its_maximum_is_over_in_every_csv_and_the_command(client, site):
    day = site.reference.isoformat()
    overview = {
        r["hotspot_id"]: r for r in csv_rows(client.get(f"/overview?format=csv&date={day}"))
    }
    # Compliance alone would make OVER green (40 of 10 minutes).
    assert float(overview["OVER"]["day_presence_compliance"]) == pytest.approx(4.0)
    assert overview["OVER"]["day_presence_status"] == "over"
    assert overview["OVER"]["week_presence_status"] == "over"
    assert overview["OVER"]["operation_presence_status"] == "over"
    assert overview["UNDER"]["day_presence_status"] == "red"
    assert overview["NOTGT"]["day_presence_status"] == "none"

    periods = csv_rows(client.get(f"/overview?format=csv&table=periods&date={day}"))
    over_day = next(r for r in periods if (r["hotspot_id"], r["period"]) == ("OVER", "day"))
    assert (over_day["presence_status"], over_day["over_max"]) == ("over", "True")
    daily = csv_rows(client.get(f"/hotspots/OVER?format=csv&table=daily&date={day}"))
    assert [(r["date"], r["presence_status"], r["over_max"]) for r in daily] == [
        (day, "over", "True")
    ]

    result = CliRunner().invoke(
        main, ["plan", "compliance", "--date", day, "--db", site.url, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    command = {
        (r["hotspot_id"], r["period"]): r["presence_status"] for r in json.loads(result.stdout)
    }
    assert command[("OVER", "day")] == "over"
    assert {(r["hotspot_id"], r["period"]): r["presence_status"] for r in periods} == command


def test_the_page_says_over_max_in_words_and_colours_the_map_by_status(client, site):
    page = client.get(f"/overview?date={site.reference}").text
    assert cell(page, "OVER", "day_presence_status").startswith("▲ OVER MAX")
    assert cell(page, "UNDER", "day_presence_status").startswith("✗ RED 50%")
    assert 'class="status status-over"' in page
    # Each polygon's colour is its week's status: OVER's is the colour of "over".
    [data] = GEOJSON_DATA.findall(page)
    colour = {
        f["properties"]["id"]: f["properties"]["style"]["color"]
        for f in json.loads(data)["features"]
    }
    assert colour["OVER"] == RAG_COLOURS["over"]
    assert colour["UNDER"] == RAG_COLOURS["red"]
    assert colour["NOTGT"] == RAG_COLOURS["none"]
    legend = re.search(r'<ul class="map-legend" id="map-legend".*?</ul>', page, re.DOTALL)
    assert legend
    assert [
        w for w in ("GREEN", "AMBER", "RED", "OVER MAX", "NO TARGET") if w not in legend.group(0)
    ] == []


def test_a_period_is_over_only_when_its_presence_exceeds_its_days_maxima(tmp_path):
    """OVER had 30 minutes the day before the reference date (maximum 20) and none on it:
    that day is OVER; the two days together (40 minutes of maxima) are not, and are judged
    by their compliance, 30 of 20 minutes: GREEN."""
    reference = yesterday()
    pings = walk("radio-1", IN["OVER"], reference - timedelta(days=1), time(10), 30)
    url = build(tmp_path, True, pings, start=reference - timedelta(days=1))
    client = login(make_app(url), "supervisor")

    periods = csv_rows(client.get(f"/overview?format=csv&table=periods&date={reference}"))
    over = {r["period"]: r for r in periods if r["hotspot_id"] == "OVER"}
    assert (over["operation"]["days_over_max"], over["operation"]["presence_status"]) == (
        "1",
        "green",
    )
    assert over["day"]["presence_status"] == "red"  # no presence on the reference date
    daily = csv_rows(client.get(f"/hotspots/OVER?format=csv&table=daily&date={reference}"))
    assert [r["presence_status"] for r in daily] == ["over", "red"]
    page = client.get(f"/overview?date={reference}").text
    assert cell(page, "OVER", "last_7_days_presence_status") == "✓ GREEN 150%"


# --- words, periods and times ----------------------------------------------------------------


def test_no_target_today_is_said_in_words_and_today_is_so_far_against_the_whole_day(client, site):
    page = client.get(f"/overview?date={site.reference}").text
    # No target, so nothing counts: the day's presence is given instead.
    assert cell(page, "NOTGT", "day_presence_status") == "– NO TARGET TODAY 15 min of presence"
    assert "NONE" not in visible_text(page)
    # Today's figure: counted minutes against the whole day's target.
    assert "✗ RED 50% 5 of 10 min" in cell(page, "UNDER", "day_presence_status")
    assert "Today so far" in page and "against the whole day's target" in visible_text(page)


def test_the_last_7_days_and_last_week_are_on_the_page(client, site):
    page = client.get(f"/overview?date={site.reference}").text
    table = re.search(r'<table class="sortable overview" id="rag">.*?</thead>', page, re.DOTALL)
    assert table, "no overview table"
    headings = re.findall(r'<th scope="col" data-key="([^"]+)">([^<]+)</th>', table.group(0))
    assert [label for _, label in headings] == [
        "Hot spot",
        "Today so far",
        "This week",
        "Last 7 days",
        "Last week",
        "To date",
        "Since last presence",
        "Trend",
    ]
    # The operation started on the reference date: the last 7 days are that day alone, and
    # last week is before the operation (no target).
    assert cell(page, "OVER", "last_7_days_presence_status").startswith("▲ OVER MAX")
    assert cell(page, "UNDER", "last_7_days_presence_status") == "✗ RED 50%"
    assert cell(page, "UNDER", "previous_week_presence_status") == "– NO TARGET"


def test_time_since_presence_is_hours_and_minutes_from_the_stored_spans(client, site):
    page = client.get(f"/overview?date={site.reference}").text
    # Presence ended at 10:40 and 10:05; measured to the end of the reference day.
    assert cell(page, "OVER", "since") == "13 h 20 min"
    assert cell(page, "UNDER", "since") == "13 h 55 min"
    assert cell(page, "QUIET", "since") == "none on record"
    assert "Days since visit" not in page


def test_a_date_picker_chooses_the_day(client, site):
    page = client.get(f"/overview?date={site.reference}").text
    assert f'<input type="date" name="date" value="{site.reference}" required>' in page
    assert site.reference.strftime("%A %d %B %Y") in page
    assert 'href="/overview">Back to today</a>' in page
    earlier = client.get(f"/overview?date={site.reference - timedelta(days=1)}").text
    assert cell(earlier, "OVER", "day_presence_status").startswith("– NO TARGET TODAY")


def test_the_map_labels_each_hot_spot_and_links_it_to_its_page(client, site):
    page = client.get(f"/overview?date={site.reference}").text
    [data] = GEOJSON_DATA.findall(page)
    features = {f["properties"]["id"]: f["properties"] for f in json.loads(data)["features"]}
    assert set(features) == {"OVER", "UNDER", "QUIET", "NOTGT"}
    for hotspot_id, properties in features.items():
        assert properties["label"] == hotspot_id
        assert properties["href"] == f"/hotspots/{hotspot_id}?date={site.reference}"
        lat, lon = properties["label_at"]
        assert 51 < lat < 52 and -1 < lon < 0  # (lat, lon), inside the test geography
    assert "window.location.assign(properties.href)" in page


# --- before any plan -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unplanned(tmp_path_factory) -> str:
    """No plan; OVER had presence until 10 minutes ago, UNDER none."""
    now = datetime.now(ZONE).replace(microsecond=0)
    start = now - timedelta(minutes=20)
    pings = [
        ping("radio-1", (start + timedelta(minutes=m)).isoformat(), *IN["OVER"]) for m in range(11)
    ]
    return build(tmp_path_factory.mktemp("unplanned"), False, pings)


@pytest.mark.parametrize("role", ["supervisor", "admin"])
def test_before_any_plan_the_overview_shows_dosage_and_says_targets_need_a_plan(unplanned, role):
    client = login(make_app(unplanned), role)
    response = client.get("/overview")

    assert response.status_code == 200
    text = visible_text(response.text)
    assert "No operation plan is loaded, so there are no targets yet." in text
    assert "Targets, compliance and statuses need a plan" in text
    rows = {r["Hot spot"]: r for r in table_rows(response.text, "dosage")}
    assert set(rows) == {"OVER", "UNDER", "QUIET", "NOTGT"}
    # Ten minutes of presence, all within the last 7 days whenever midnight fell.
    assert rows["OVER"]["Last 7 days (min)"] == "10.00"
    assert rows["UNDER"]["Last 7 days (min)"] == "0.00"
    assert re.fullmatch(r"1[01] min", rows["OVER"]["Since last presence"])
    assert rows["UNDER"]["Since last presence"] == "–"
    assert GEOJSON_DATA.search(response.text), "the map of the hot spots"
    csv_file = csv_rows(client.get("/overview?format=csv"))
    assert {r["hotspot_id"]: r["last_7_days_presence_minutes"] for r in csv_file}["OVER"] == "10.00"


def table_rows(page: str, table_id: str) -> list[dict[str, str]]:
    """Return a table of the page as dicts of visible text, keyed by its headings."""
    table = re.search(rf'<table class="sortable" id="{table_id}">(.*?)</table>', page, re.DOTALL)
    assert table, table_id
    headings = [
        visible_text(h).strip() for h in re.findall(r"<th\b[^>]*>(.*?)</th>", table.group(1))
    ]
    return [
        dict(zip(headings, (visible_text(c).strip() for c in cells), strict=True))
        for cells in (
            re.findall(r"<td\b[^>]*>(.*?)</td>", row, re.DOTALL)
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.DOTALL)
        )
        if cells
    ]
