"""Recorded crime in: police.uk street-level CSVs and force exports, idempotent, all or
nothing per file, on SQLite and PostgreSQL; and the monthly summary."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from tracker.cli import main
from tracker.foundation import settings
from tracker.foundation.models import AuditEvent
from tracker.harm.crimes import (
    FORCE_COLUMNS,
    POLICE_UK_COLUMNS,
    BadCrimeRows,
    CrimeFileError,
    crime_summary,
    import_crimes,
    parse_crimes,
    parse_month,
    read_crimes,
)
from tracker.harm.models import RecordedCrime
from tracker.harm.weights import load_weights

POLICE_UK_DIR = Path(
    os.environ.get("TRACKER_TEST_POLICE_UK_DIR", "/work/shared/data/police-uk/leicestershire")
)
REAL_MONTH = POLICE_UK_DIR / "2019-10-leicestershire-street.csv"
HEADER = ",".join(POLICE_UK_COLUMNS)
FORCE_HEADER = ",".join(FORCE_COLUMNS)
TODAY = date(2026, 1, 15)


@pytest.fixture(autouse=True)
def no_tracker_settings(monkeypatch):
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)


def real_month() -> Path:
    if not REAL_MONTH.exists():
        pytest.skip(f"police.uk data not found at {POLICE_UK_DIR} (TRACKER_TEST_POLICE_UK_DIR)")
    return REAL_MONTH


def street_row(
    crime_id="",
    month="2019-10",
    lon="-1.133",
    lat="52.636",
    location="On or near Market Street",
    crime_type="Robbery",
    outcome="Under investigation",
) -> str:
    return (
        f"{crime_id},{month},Leicestershire Police,Leicestershire Police,{lon},{lat},"
        f"{location},E01013000,Leicester 030A,{crime_type},{outcome},"
    )


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def run(*args) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def count(session) -> int:
    return session.scalar(select(func.count()).select_from(RecordedCrime))


# --- reading -------------------------------------------------------------------------------


def test_the_real_month_parses_completely_with_each_type_counted_as_pandas_counts_it():
    crimes, bad = read_crimes(real_month())
    expected = pd.read_csv(real_month(), dtype=str, keep_default_na=False)
    assert bad == []
    assert len(crimes) == len(expected) == 8762
    ours = pd.Series([c.crime_type for c in crimes]).value_counts().sort_index()
    theirs = expected["Crime type"].value_counts().sort_index()
    pd.testing.assert_series_equal(ours, theirs, check_names=False)
    unlocated = (expected["Longitude"] == "").sum()
    assert sum(not c.located for c in crimes) == unlocated == 684
    # Rows without a Crime ID (anti-social behaviour) and identical rows all stay.
    assert sum(c.crime_ref is None for c in crimes) == (expected["Crime ID"] == "").sum()
    assert len({c.import_key for c in crimes}) == len(crimes)


def test_the_first_real_row_is_read_field_by_field():
    first = read_crimes(real_month())[0][0]
    assert (first.crime_ref, first.month, first.crime_type) == (
        "84a0a8aa45c24b0b2a224893205bc46bf95004d918ff15f9dab07b8bfd2f93d0",
        date(2019, 10, 1),
        "Other theft",
    )
    assert (first.longitude, first.latitude) == (-1.212828, 52.622715)
    assert (first.location, first.lsoa_code, first.lsoa_name) == (
        "On or near Kings Drive",
        "E01025631",
        "Blaby 002A",
    )
    assert first.last_outcome == "Further investigation is not in the public interest"
    assert first.line == 2 and first.source == "police.uk"


def test_bad_rows_name_their_line_and_every_problem():
    text = csv_text(
        street_row(crime_id="a"),
        street_row(crime_id="b", month="2019-13", crime_type=""),
        street_row(crime_id="c", lon="", lat="52.6"),
        street_row(crime_id="d", lon="0", lat="0"),
        street_row(crime_id="a"),
        street_row(crime_id="e", lon="east"),
        street_row(crime_id="f", month="2031-01"),
        "g,2019-10,too,few",
    )
    crimes, bad = parse_crimes(text, today=TODAY)
    assert [c.crime_ref for c in crimes] == ["a"]
    reasons = {b.line: b.reason for b in bad}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9}
    assert "bad Month" in reasons[3] and "missing Crime type" in reasons[3]
    assert reasons[4] == "Latitude without Longitude"
    assert "geocoding failure" in reasons[5]
    assert reasons[6] == "Crime ID 'a' is also on line 2"
    assert "Longitude 'east' is not a number" in reasons[7]
    assert "in the future" in reasons[8]
    assert reasons[9] == "expected 12 fields, found 4"


def test_line_numbers_count_lines_inside_quoted_fields():
    text = csv_text(
        street_row(crime_id="a", location='"On or near\nTwo Lines"'), street_row("b", month="x")
    )
    crimes, bad = parse_crimes(text, today=TODAY)
    assert crimes[0].location == "On or near\nTwo Lines"
    assert [b.line for b in bad] == [4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("Crime ID,Month\nx,2019-10\n", "lacks Reported by"),
        (HEADER + ",Extra\n", "unknown columns Extra"),
        ("Crime ID,Crime ID" + HEADER[8:] + "\n", "repeats Crime ID"),
        ("Reference,Date\n", "lacks Offence code, Crime type"),
    ],
)
def test_a_file_that_is_neither_format_is_refused_whole(text, message):
    with pytest.raises(CrimeFileError, match=message):
        parse_crimes(text, today=TODAY)


def test_a_force_export_gives_the_exact_date_and_offence_code():
    text = csv_text(
        "LE/123/19,2019-10-04,8N,Assault with injury,Violence and sexual offences,-1.13,52.63,"
        "Granby Street,E01013000,Leicester 030A,Charged",
        "LE/124/19,2019-10-05,34B,,Robbery,,,,,,",
        "LE/125/19,05/10/2019,34B,,Robbery,,,,,,",
        "LE/124/19,2019-10-06,34B,,Robbery,,,,,,",
        ",2019-10-06,,,Robbery,,,,,,",
        header=FORCE_HEADER,
    )
    crimes, bad = parse_crimes(text, today=TODAY)
    first = crimes[0]
    assert (first.source, first.crime_ref, first.occurred_on, first.month) == (
        "force",
        "LE/123/19",
        date(2019, 10, 4),
        date(2019, 10, 1),
    )
    assert (first.offence_code, first.offence, first.last_outcome) == (
        "8N",
        "Assault with injury",
        "Charged",
    )
    assert not crimes[1].located
    reasons = {b.line: b.reason for b in bad}
    assert "bad Date" in reasons[4]
    assert reasons[5] == "Reference 'LE/124/19' is also on line 3"
    assert "missing Reference" in reasons[6] and "missing Offence code" in reasons[6]


@pytest.mark.parametrize(
    "text", ["2019-1", "19-10", "2019-00", "2019-10-01", "1969-12", "2100-01", "2019- 1", "+019-10"]
)
def test_a_month_is_yyyy_mm_between_1970_and_2099(text):
    with pytest.raises(ValueError):
        parse_month(text)


# --- storing, on both databases ------------------------------------------------------------


def test_the_real_month_imports_once_with_counts_per_type_as_pandas_counts_them(db):
    path = real_month()
    crimes, bad = read_crimes(path)
    with db.begin() as session:
        report = import_crimes(session, crimes, actor="test", source=str(path), bad_rows=bad)
    assert (report.read, report.imported, report.already_present) == (8762, 8762, 0)
    assert (report.unlocated, report.skipped) == (684, 0)
    with db.begin() as session:
        again = import_crimes(session, read_crimes(path)[0], actor="test", source=str(path))
    assert (again.imported, again.already_present, again.unlocated) == (0, 8762, 684)

    expected = pd.read_csv(path, dtype=str, keep_default_na=False)
    with db() as session:
        assert count(session) == 8762
        stored = dict(
            session.execute(
                select(RecordedCrime.crime_type, func.count()).group_by(RecordedCrime.crime_type)
            ).all()
        )
        summary = crime_summary(session, load_weights())
        audits = session.scalars(
            select(AuditEvent.after).where(AuditEvent.action == "crimes.import")
        ).all()
    assert stored == expected["Crime type"].value_counts().to_dict()
    assert summary.set_index("crime_type")["crimes"].to_dict() == stored
    unlocated = expected[expected["Longitude"] == ""]["Crime type"].value_counts()
    assert summary.set_index("crime_type")["unlocated"].to_dict() == {
        t: int(unlocated.get(t, 0)) for t in stored
    }
    assert [a["imported"] for a in audits] == [8762, 0]


def test_identical_rows_without_an_id_stay_separate_and_match_themselves(db):
    row = street_row(crime_type="Anti-social behaviour", outcome="")
    with db.begin() as session:
        first = import_crimes(session, parse_crimes(csv_text(row, row), today=TODAY)[0], actor="t")
    with db.begin() as session:
        again = import_crimes(session, parse_crimes(csv_text(row, row), today=TODAY)[0], actor="t")
    with db.begin() as session:
        one_more = import_crimes(
            session, parse_crimes(csv_text(row, row, row), today=TODAY)[0], actor="t"
        )
    assert (first.imported, again.imported, again.already_present) == (2, 0, 2)
    assert (one_more.imported, one_more.already_present) == (1, 2)
    with db() as session:
        assert count(session) == 3


def test_a_crime_id_already_stored_is_already_present_even_with_a_new_outcome(db):
    with db.begin() as session:
        import_crimes(session, parse_crimes(csv_text(street_row("x")), today=TODAY)[0], actor="t")
    reissued = csv_text(street_row("x", outcome="Awaiting court outcome"))
    with db.begin() as session:
        report = import_crimes(session, parse_crimes(reissued, today=TODAY)[0], actor="t")
    assert (report.imported, report.already_present) == (0, 1)
    with db() as session:
        assert session.scalar(select(RecordedCrime.last_outcome)) == "Under investigation"


def test_a_file_with_a_bad_row_stores_nothing_unless_skipping(db):
    text = csv_text(street_row("a"), street_row("b", month="October"), street_row("c"))
    crimes, bad = parse_crimes(text, source="oct.csv", today=TODAY)
    with db.begin() as session, pytest.raises(BadCrimeRows, match="1 of 3 rows are bad"):
        import_crimes(session, crimes, actor="t", source="oct.csv", bad_rows=bad)
    with db() as session:
        assert count(session) == 0
    with db.begin() as session:
        report = import_crimes(
            session, crimes, actor="t", source="oct.csv", bad_rows=bad, skip_invalid=True
        )
    assert (report.read, report.imported, report.skipped) == (3, 2, 1)
    with db() as session:
        assert sorted(session.scalars(select(RecordedCrime.crime_ref))) == ["a", "c"]
        assert (
            session.scalar(select(RecordedCrime.source_line).where(RecordedCrime.crime_ref == "c"))
            == 4
        )


def test_the_command_imports_each_file_on_its_own_and_prints_its_counts(database_url, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(
        csv_text(street_row("a"), street_row("b", lon="", lat="", location="No Location"))
    )
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_text(street_row("c"), street_row("d", crime_type="")))
    result = run("crimes", "import", good, bad, "--db", database_url)
    assert result.exit_code == 1
    assert f"{good}: read 2, imported 2, already present 0, unlocated 1, skipped 0" in result.stdout
    assert f"{bad}: line 3: missing Crime type" in result.stderr
    assert "1 of 2 rows are bad; nothing imported (use --skip-invalid" in result.stderr

    result = run("crimes", "import", good, bad, "--skip-invalid", "--db", database_url)
    assert result.exit_code == 0, result.output
    assert f"{good}: read 2, imported 0, already present 2, unlocated 1, skipped 0" in result.stdout
    assert f"{bad}: read 2, imported 1, already present 0, unlocated 0, skipped 1" in result.stdout

    summary = run(
        "crimes", "summary", "--from", "2019-10", "--to", "2019-10", "--format", "json",
        "--db", database_url,
    )  # fmt: skip
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout) == [
        {"month": "2019-10", "crime_type": "Robbery", "crimes": 3, "unlocated": 1, "harm": 1095.0}
    ]
    later = run("crimes", "summary", "--from", "2019-11", "--format", "json", "--db", database_url)
    assert json.loads(later.stdout) == []
