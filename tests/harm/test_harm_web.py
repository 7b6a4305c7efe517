"""The Harm page: who may open it, what it shows with and without recorded crime, its CSV
downloads (the same figures as the command line), and refused parameters."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from tests.harm.test_harm_import import real_month
from tracker.accounts.users import create_user
from tracker.cli import main
from tracker.dosage.geofence import HotSpotSet, load_hot_spots
from tracker.foundation import settings
from tracker.foundation.database import make_engine, session_factory
from tracker.harm.synthetic import HistorySettings, store_synthetic_history
from web import create_app

DEMO_GEOJSON = settings.PROJECT_ROOT / "geofences" / "leicestershire_demo.geojson"
PASSWORD = "harm page test passphrase 7"
CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')
ROLES = ("admin", "supervisor", "assurance", "officer")


@pytest.fixture(autouse=True)
def no_tracker_settings(monkeypatch):
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)


@pytest.fixture
def site(tmp_path):
    """An app on a fresh SQLite database with one user per role."""
    url = f"sqlite:///{tmp_path / 'harm.db'}"
    assert CliRunner().invoke(main, ["init", "--db", url]).exit_code == 0
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        for role in ROLES:
            create_user(
                session, role, role, PASSWORD, officer_id="PC1" if role == "officer" else None
            )
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    yield app, url
    app.extensions["tracker.sessions"].kw["bind"].dispose()


def signed_in(app, role):
    client = app.test_client()
    token = CSRF_INPUT.search(client.get("/login").text).group(1)
    response = client.post(
        "/login", data={"username": role, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.text
    return client


def cli(url, *args):
    result = CliRunner().invoke(main, [*map(str, args), "--db", url])
    assert result.exit_code == 0, result.output
    return result.stdout


def rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text[:500]
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.text)))


def test_only_supervisors_and_administrators_may_open_it(site):
    app, _ = site
    for role in ROLES:
        response = signed_in(app, role).get("/harm")
        assert response.status_code == (200 if role in ("admin", "supervisor") else 403), role
    anonymous = app.test_client().get("/harm")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert 'href="/harm"' in signed_in(app, "supervisor").get("/plan").text
    assert 'href="/harm"' not in signed_in(app, "assurance").get("/plan").text


def test_without_recorded_crime_it_says_how_to_import_some(site):
    app, _ = site
    page = signed_in(app, "admin").get("/harm")
    assert "No recorded crime is stored yet" in page.text
    assert "tracker crimes import FILE" in page.text
    assert signed_in(app, "admin").get("/harm?format=csv&table=places").status_code == 404


def test_the_real_month_ranks_places_as_the_command_line_does(site, tmp_path):
    app, url = site
    cli(url, "crimes", "import", real_month())
    client = signed_in(app, "supervisor")
    page = client.get("/harm?count=10")
    assert page.status_code == 200
    assert "8,762 crimes stored, 2019-10 to 2019-10" in page.text
    assert page.text.count('src="data:image/svg+xml;base64,') == 1  # the concentration curve
    assert "No operation plan is loaded" in page.text or "no operation plan" in page.text

    places = rows(client.get("/harm?format=csv&table=places&count=10&from=2019-10&to=2019-10"))
    identify = ["hotspots", "identify", "--from", "2019-10", "--to", "2019-10", "--count", "10"]
    output = cli(url, *identify, "--out", tmp_path / "out.geojson", "--format", "json")
    expected = json.loads(output)["chosen"]
    assert [r["id"] for r in places] == [p["id"] for p in expected]
    assert [float(r["harm"]) for r in places] == [p["harm"] for p in expected]
    assert places[0]["name"] in page.text
    curve = rows(client.get("/harm?format=csv&table=concentration"))
    assert list(curve[0]) == ["places", "share_of_places", "share_of_harm"]
    assert float(curve[-1]["share_of_harm"]) == pytest.approx(1.0)


def test_an_operation_with_a_planted_effect_is_judged_on_the_page_and_in_its_downloads(
    site, tmp_path
):
    app, url = site
    cli(url, "geofences", "load", DEMO_GEOJSON)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "operation: Page test\nstart: 2024-01-01\nend: 2024-12-31\ntz: Europe/London\n"
        "defaults:\n  presence_minutes_per_day: 30\nhotspots:\n  LE01: {}\n  LE02: {}\n  LE03: {}\n"
    )
    cli(url, "plan", "load", plan)
    three = HotSpotSet(
        [h for h in load_hot_spots(DEMO_GEOJSON) if h.id in ("LE01", "LE02", "LE03")]
    )
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        history = HistorySettings(effect=0.6, background_per_month=300, extent_m=4_000)
        months = (date(2023, 1, 1), date(2024, 11, 1))
        operation = (date(2024, 1, 1), date(2024, 12, 31))
        store_synthetic_history(session, three, *months, *operation, history)
    engine.dispose()

    client = signed_in(app, "admin")
    page = client.get("/harm")
    assert page.status_code == 200
    assert page.text.count('src="data:image/svg+xml;base64,') == 2  # concentration, evaluation
    expected = json.loads(cli(url, "harm", "evaluate", "--format", "json"))
    assert f"{expected['relative_effect']:.2f}" in page.text
    # December 2024 has no recorded crime: reported, not taken as zero.
    assert expected["missing_months"] == ["2024-12"]
    assert "No recorded crime for 2024-12" in page.text

    summary = {r["measure"]: r["value"] for r in rows(client.get("/harm?format=csv&table=summary"))}
    assert float(summary["relative_effect"]) == pytest.approx(expected["relative_effect"])
    assert float(summary["ci95_low"]) == pytest.approx(expected["ci95"][0])
    months = rows(client.get("/harm?format=csv&table=months"))
    assert [m["month"] for m in months][-2:] == ["2024-11", "2024-12"]
    assert months[-1]["has_data"] == "False" and months[-1]["hotspots_harm"] == ""
    hot_spots = rows(client.get("/harm?format=csv&table=hotspots"))
    assert [h["hotspot_id"] for h in hot_spots] == ["LE01", "LE02", "LE03"]
    named = client.get("/harm?operation=Page%20test")
    assert named.status_code == 200

    # A new operation, running today, has no complete month: the page says so and shows
    # the latest operation that can be judged; asked for by name, it shows no evaluation.
    start = date.today() - timedelta(days=10)
    plan.write_text(
        f"operation: New one\nstart: {start}\nend: {start + timedelta(days=300)}\n"
        "tz: Europe/London\ndefaults:\n  presence_minutes_per_day: 30\nhotspots:\n  LE01: {}\n"
    )
    cli(url, "plan", "load", plan)
    page = client.get("/harm")
    assert "New one: the operation has no complete month yet" in page.text
    assert (
        f"{expected['relative_effect']:.2f}" in page.text and "Page test (2024-01-01" in page.text
    )
    new_one = client.get("/harm?operation=New%20one")
    assert "no complete month yet" in new_one.text and "relative effect" not in new_one.text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=2019-13", 400),
        ("to=0001-01-01", 400),
        ("from=2019-10&to=2019-09", 400),
        ("count=0", 400),
        ("count=999", 400),
        ("count=x", 400),
        ("operation=Nothing%20by%20this%20name", 404),
        ("operation=a%00b", 400),  # a NUL is refused before any view
        ("format=csv&table=nope", 404),
    ],
)
def test_bad_parameters_are_refused(site, query, status):
    app, url = site
    cli(url, "crimes", "import", real_month())
    assert signed_in(app, "admin").get(f"/harm?{query}").status_code == status
