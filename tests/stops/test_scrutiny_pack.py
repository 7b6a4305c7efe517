"""The community scrutiny pack (issue 12, item 4): a reproducible random sample of a month's
reviewed encounters, with no officer or personal identifier, from the command line and as a
download for assurance leads."""

from __future__ import annotations

import io
import json
import zipfile

from click.testing import CliRunner
from sqlalchemy import select

from tests.stops.test_stops import ALL_YES, csv_text, import_text, load_demo_hot_spots, row
from tests.web.test_web_assurance import PASSWORD, csrf_token, make_app
from tracker.accounts.users import create_user
from tracker.cli import main
from tracker.stops.models import StopSearch
from tracker.stops.review import update_review

LE01_NAME = "Clock Tower and Haymarket"  # LE01 of the demo hot spots
DONE = {"status": "reviewed", "outcome": "no_issues", "rag": "green", **ALL_YES}


def month_of_stops(db) -> list[int]:
    """Twelve June 2019 searches by two officers in LE01 (one outside), nine reviewed."""
    with db.begin() as session:
        load_demo_hot_spots(session)
        import_text(
            session,
            csv_text(
                *(
                    row(
                        date=f"2019-06-{day:02d}T14:35:00+00:00",
                        Reference=f"REF-{day}",
                        Officer="PC101" if day % 2 else "PC202",
                        BWV_reference=f"BWV-{day}",
                        lat="52.636675" if day != 3 else "52.60",
                        lon="-1.13331" if day != 3 else "-1.30",
                    )
                    for day in range(1, 13)
                ),
                row(date="2019-07-01T10:00:00+00:00", Reference="REF-JULY", Officer="PC101"),
            ),
        )
    with db() as session:
        ids = list(session.scalars(select(StopSearch.id).order_by(StopSearch.id)))
    with db.begin() as session:
        for stop_id in ids[:9]:
            update_review(session, stop_id, "lead", {**DONE, "findings": "Grounds well explained."})
        update_review(session, ids[-1], "lead", DONE)  # July's: another month
    return ids


def pack(database_url, out, *extra) -> tuple[list[dict], str]:
    result = CliRunner().invoke(
        main,
        [
            "stops",
            "scrutiny-pack",
            "--db",
            database_url,
            "--month",
            "2019-06",
            "--out",
            str(out),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    encounters = json.loads((out / "encounters.json").read_text(encoding="utf-8"))
    return encounters, result.stdout


def test_a_pack_is_a_reproducible_sample_of_the_months_reviewed_encounters(
    database_url, db, tmp_path
):
    month_of_stops(db)
    first, said = pack(database_url, tmp_path / "a", "--sample", "5")
    again, _ = pack(database_url, tmp_path / "b", "--sample", "5")
    other, _ = pack(database_url, tmp_path / "c", "--sample", "5", "--seed", "2")
    everything, _ = pack(database_url, tmp_path / "d", "--sample", "50")

    assert "5 of 9 reviewed encounters of 2019-06" in said
    assert first == again and first != other
    assert len(everything) == 9  # all reviewed encounters of June, none of July's
    assert {e["date"][:7] for e in everything} == {"2019-06"}
    # Placed in the hot spot, not at the point; the search on 3 June was outside them all.
    assert sorted({e["place"] for e in everything}) == [LE01_NAME, "outside the hot spots"]
    assert all(e["grade"] == "good_practice" and e["gowisely_covered"] == 8 for e in everything)
    assert (
        (tmp_path / "a" / "README.txt")
        .read_text()
        .startswith("Stop and search scrutiny pack, 2019-06")
    )


def test_a_pack_names_no_officer_and_no_person(database_url, db, tmp_path):
    month_of_stops(db)
    encounters, _ = pack(database_url, tmp_path / "pack", "--sample", "50")
    text = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "pack").iterdir())
    for identifier in ("PC101", "PC202", "REF-", "BWV-", "52.636675", "-1.13331", "14:35"):
        assert identifier not in text, identifier
    assert set(encounters[0]) == {
        "encounter",
        "date",
        "place",
        "type",
        "legislation",
        "object_of_search",
        "outcome",
        "age_range",
        "gender",
        "ethnic_group",
        "grounds_reasonable",
        "camera",
        "conduct_respectful",
        "conduct_explained",
        "conduct_de_escalated",
        "gowisely_covered",
        "grade",
        "findings",
    }
    assert encounters[0]["ethnic_group"] == "White"


def test_a_bad_month_or_sample_is_refused(database_url, tmp_path):
    for args, message in (
        (["--month", "2019-13", "--sample", "5"], "month '2019-13' is not YYYY-MM"),
        (["--month", "2019-06", "--sample", "0"], "0 is not in the range"),
    ):
        result = CliRunner().invoke(
            main, ["stops", "scrutiny-pack", "--db", database_url, "--out", str(tmp_path), *args]
        )
        assert result.exit_code == 2 and message in result.output, result.output


def test_assurance_leads_download_the_pack(database_url, db):
    month_of_stops(db)
    with db.begin() as session:
        create_user(session, "assurance", "assurance", PASSWORD)
    app = make_app(database_url)
    lead = app.test_client()
    signed_in = lead.post(
        "/login",
        data={
            "username": "assurance",
            "password": PASSWORD,
            "csrf_token": csrf_token(lead.get("/login").text),
        },
    )
    assert signed_in.status_code == 302
    assert 'id="scrutiny-pack"' in lead.get("/assurance/").text
    response = lead.get("/assurance/scrutiny-pack?month=2019-06&sample=4")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "filename=scrutiny-2019-06.zip" in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert sorted(archive.namelist()) == ["README.txt", "encounters.csv", "encounters.json"]
    assert len(json.loads(archive.read("encounters.json"))) == 4
    assert lead.get("/assurance/scrutiny-pack?month=June&sample=4").status_code == 400
    assert lead.get("/assurance/scrutiny-pack?month=2019-06&sample=x").status_code == 400
    app.extensions["tracker.sessions"].kw["bind"].dispose()  # close PostgreSQL connections
