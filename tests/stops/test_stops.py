"""Stop and search: CSV validation and import (real police.uk months), linking, the BWV review
workflow and its audit trail, assurance figures, and the `stops` commands."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.builders import BOX_A, BOX_B, IN_A_AND_B, hot_spot_set, polygon_feature
from tracker.cli import main
from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.recompute import replace_hot_spots
from tracker.foundation.database import make_engine
from tracker.foundation.models import AuditEvent, Base, Officer
from tracker.plan.models import Operation
from tracker.stops.figures import (
    assurance_summary,
    breakdown,
    ethnicity_breakdown,
    export_stops,
    review_outcomes,
    review_queue,
    stop_dict,
    stops_frame,
)
from tracker.stops.models import GOWISELY, BwvReview, StopSearch
from tracker.stops.records import (
    PUBLIC_COLUMNS,
    BadStopRows,
    ReviewError,
    ReviewPolicy,
    StopFileError,
    StopNotFound,
    StopValidationError,
    create_stop,
    hot_spot_ids,
    import_stops,
    is_sampled,
    parse_stops,
    read_stops,
    relink_stops,
)
from tracker.stops.review import is_overdue, review_of, update_review

ROOT = Path(__file__).resolve().parents[2]
DEMO_GEOJSON = ROOT / "geofences" / "leicestershire_demo.geojson"
POLICE_UK = Path(
    os.environ.get("TRACKER_TEST_POLICE_UK_DIR", "/work/shared/data/police-uk/leicestershire")
)
MONTHS = sorted(POLICE_UK.glob("*-stop-and-search.csv"))
HEADER = ",".join(PUBLIC_COLUMNS)
NOW = datetime(2019, 12, 1, tzinfo=UTC)
LE01_CENTRE = (52.636675, -1.13331)  # (lat, lon)
LE02_CENTRE = (52.634475, -1.13109)
OUTSIDE = (52.60, -1.30)


def month(name: str) -> Path:
    """Return the shared police.uk file of one month (YYYY-MM); skip if the data is absent."""
    path = POLICE_UK / f"{name}-leicestershire-stop-and-search.csv"
    if not path.exists():
        pytest.skip(f"police.uk data not found at {POLICE_UK} (TRACKER_TEST_POLICE_UK_DIR)")
    return path


def data_lines(path: Path) -> int:
    """Count a CSV's data rows independently of the parser: its non-blank lines after the header."""
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip())


def row(
    *,
    type="Person search",
    date="2019-06-01T12:00:00+00:00",
    operation="",
    operation_name="",
    lat="52.636675",
    lon="-1.13331",
    gender="Male",
    age="18-24",
    self_defined="White - English/Welsh/Scottish/Northern Irish/British",
    officer_defined="White",
    legislation="Misuse of Drugs Act 1971 (section 23)",
    object="Controlled drugs",
    outcome="A no further action disposal",
    linked="",
    removal="False",
    **extended: str,
) -> dict[str, str]:
    """Return one CSV row by published header; extended columns by keyword (Reference=...)."""
    values = [
        type,
        date,
        operation,
        operation_name,
        lat,
        lon,
        gender,
        age,
        self_defined,
        officer_defined,
        legislation,
        object,
        outcome,
        linked,
        removal,
    ]
    named = dict(zip(PUBLIC_COLUMNS, values, strict=True))
    named.update({k.replace("_", " "): v for k, v in extended.items()})
    return named


def csv_text(*rows: dict[str, str]) -> str:
    """Return CSV text of rows (the header is the union of their columns, published first)."""
    header = list(PUBLIC_COLUMNS)
    for r in rows:
        header += [k for k in r if k not in header]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def import_text(session, text_: str, **options):
    records, bad = parse_stops(text_, source="test.csv", now=NOW)
    return import_stops(
        session, records, actor="tester", source="test.csv", bad_rows=bad, **options
    )


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def load_demo_hot_spots(session) -> None:
    replace_hot_spots(session, load_hot_spots(DEMO_GEOJSON), DosageParams())


# --- parsing real data ------------------------------------------------------------------


def test_all_twelve_leicestershire_months_parse_without_bad_rows():
    assert len(MONTHS) == 12 or pytest.skip(f"the 12 police.uk months are not at {POLICE_UK}")
    total = 0
    for path in MONTHS:
        records, bad = read_stops(path)
        assert bad == [], path.name
        assert len(records) == data_lines(path), path.name
        # Identical rows (there are some) are kept apart by their occurrence number.
        assert len({r.import_key for r in records}) == len(records), path.name
        total += len(records)
    assert total == 3004


def test_identical_rows_in_a_real_month_are_all_kept():
    path = month("2018-11")
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    repeated = len(lines) - len(set(lines))
    assert repeated > 0  # this month has identical rows: the case the occurrence number is for
    records, _ = read_stops(path)
    assert len(records) == len(lines)
    assert len({r.normalised() for r in records}) == len(set(lines))


def test_the_first_row_of_a_real_month_is_read_field_by_field():
    records, _ = read_stops(month("2018-11"))
    first = records[0]
    assert first.line == 2
    assert first.type == "Person search"
    assert first.occurred_at == datetime(2018, 11, 1, 1, 55, tzinfo=UTC)
    assert (first.latitude, first.longitude) == (52.635767, -1.135267)
    assert first.part_of_policing_operation is None and first.policing_operation is None
    assert (first.gender, first.age_range) == ("Male", "18-24")
    assert first.self_defined_ethnicity == (
        "Mixed/Multiple ethnic groups - Any other Mixed/Multiple ethnic background"
    )
    assert first.officer_defined_ethnicity == "Black"
    assert first.legislation == "Police and Criminal Evidence Act 1984 (section 1)"
    assert first.object_of_search == "Offensive weapons"
    assert first.outcome == "A no further action disposal"
    assert first.outcome_linked_to_object is None
    assert first.removal_of_more_than_outer_clothing is False


# --- validation -------------------------------------------------------------------------


def test_bad_rows_are_reported_with_line_numbers_and_reasons():
    text_ = (
        csv_text(
            row(),  # line 2: good
            row(date="2019-13-01T00:00:00+00:00"),  # 3
            row(date="2019-06-01T12:00:00"),  # 4: no offset
            row(lat="52.6", lon=""),  # 5
            row(lat="", lon="-1.1"),  # 6
            row(lat="95", lon="-1.1"),  # 7
            row(lon="-181"),  # 8
            row(type="Foot search"),  # 9
            row(linked="Yes"),  # 10
            row(removal="1"),  # 11
            row(lat="0", lon="0"),  # 12
            row(date="2091-01-01T00:00:00Z"),  # 13: future
            row(lat="north"),  # 14
            row(lat="", lon=""),  # 15: good, no location
        )
        + "Person search,2019-06-01T12:00:00Z,only three\n"
    )  # 16
    records, bad = parse_stops(text_, now=NOW)
    assert [r.line for r in records] == [2, 15]
    reasons = {b.line: b.reason for b in bad}
    assert sorted(reasons) == [*range(3, 15), 16]
    assert reasons[3].startswith("bad Date '2019-13-01T00:00:00+00:00'")
    assert "no UTC offset" in reasons[4]
    assert reasons[5] == "latitude without longitude"
    assert reasons[6] == "longitude without latitude"
    assert reasons[7] == "Latitude '95' is out of range [-90, 90]"
    assert reasons[8] == "Longitude '-181' is out of range [-180, 180]"
    assert reasons[9].startswith("unknown Type 'Foot search'")
    assert reasons[10] == "Outcome linked to object of search 'Yes' must be True, False or blank"
    assert reasons[11] == (
        "Removal of more than just outer clothing '1' must be True, False or blank"
    )
    assert "(0, 0)" in reasons[12]
    assert "in the future" in reasons[13]
    assert reasons[14] == "Latitude 'north' is not a number"
    assert reasons[16] == "expected 15 fields, found 3"
    assert str(bad[0]) == f"line 3: {reasons[3]}"


def test_several_problems_in_one_row_are_all_named():
    _, bad = parse_stops(csv_text(row(type="", linked="maybe")), now=NOW)
    assert bad[0].reason == (
        "missing Type; Outcome linked to object of search 'maybe' must be True, False or blank"
    )


def test_line_numbers_count_lines_inside_quoted_fields():
    text_ = csv_text(row(Grounds="smelt of cannabis,\nseen passing a package"), row(type="X"))
    _, bad = parse_stops(text_, now=NOW)
    assert [b.line for b in bad] == [4]


def test_a_reference_twice_in_one_file_is_a_bad_row():
    _, bad = parse_stops(
        csv_text(row(Reference="SS-1"), row(Reference="SS-1", age="25-34")), now=NOW
    )
    assert [(b.line, b.reason) for b in bad] == [(3, "Reference 'SS-1' is also on line 2")]


def test_a_date_without_offset_is_local_time_when_a_zone_is_given():
    records, bad = parse_stops(
        csv_text(row(date="2019-06-01T12:00:00")), naive_tz="Europe/London", now=NOW
    )
    assert bad == []
    assert records[0].occurred_at == datetime(2019, 6, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text_", "message"),
    [
        ("", "the file is empty"),
        (HEADER.replace(",Gender", "") + "\n", "lacks Gender"),
        (HEADER + ",Colour\n", "unknown columns Colour"),
        (HEADER + ",BWV Recorded\n", "unknown columns BWV Recorded"),
        (HEADER + ",Reference,Reference\n", "repeats Reference"),
    ],
)
def test_a_wrong_header_is_a_file_error(text_, message):
    with pytest.raises(StopFileError, match=message):
        parse_stops(text_, source="x.csv")


def test_a_field_too_large_for_the_csv_module_is_a_file_error_naming_its_line():
    text = HEADER + "\n" + "Person search," + "x" * 200_000 + "\n"
    with pytest.raises(StopFileError, match=r"^x.csv: line 2: cannot read the CSV: field larger"):
        parse_stops(text, source="x.csv")


def test_an_unreadable_file_is_a_file_error(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "\n").encode() + "Person search,caf\xe9\n".encode("latin-1"))
    with pytest.raises(StopFileError, match="cannot read"):
        read_stops(path)


# --- import -----------------------------------------------------------------------------


def test_real_months_import_with_counts_matching_the_files(db):
    paths = [month("2018-11"), month("2019-03"), month("2019-10")]
    with db.begin() as session:
        for path in paths:
            records, bad = read_stops(path)
            report = import_stops(session, records, actor="tester", source=path.name, bad_rows=bad)
            assert (report.read, report.imported, report.already_present, report.skipped) == (
                data_lines(path),
                data_lines(path),
                0,
                0,
            )
    with db() as session:
        expected = sum(data_lines(p) for p in paths)
        assert count(session, StopSearch) == expected
        assert count(session, BwvReview) == expected
        per_file = dict(
            session.execute(
                select(StopSearch.source_file, func.count()).group_by(StopSearch.source_file)
            ).all()
        )
        assert per_file == {p.name: data_lines(p) for p in paths}
        first = session.scalar(
            select(StopSearch).where(
                StopSearch.source_file == paths[0].name, StopSearch.source_line == 2
            )
        )
        assert first.occurred_at == datetime(2018, 11, 1, 1, 55, tzinfo=UTC)
        assert (first.latitude, first.longitude) == (52.635767, -1.135267)
        assert first.removal_of_more_than_outer_clothing is False
        assert first.outcome_linked_to_object is None


def test_importing_the_same_file_twice_adds_nothing(db):
    path = month("2019-10")
    for attempt in range(2):
        with db.begin() as session:
            records, _ = read_stops(path)
            report = import_stops(session, records, actor="tester", source=path.name)
        assert (report.imported, report.already_present) == (
            (data_lines(path), 0) if attempt == 0 else (0, data_lines(path))
        )
    with db() as session:
        assert count(session, StopSearch) == data_lines(path)
        assert count(session, BwvReview) == data_lines(path)
        imports = session.scalars(
            select(AuditEvent.after)
            .where(AuditEvent.action == "stops.import")
            .order_by(AuditEvent.id)
        ).all()
        assert [a["imported"] for a in imports] == [data_lines(path), 0]


def test_identical_rows_in_one_file_are_separate_searches(db):
    same = row(lat="52.6", lon="-1.1")
    with db.begin() as session:
        assert import_text(session, csv_text(same, same)).imported == 2
    with db.begin() as session:
        again = import_text(session, csv_text(same, same))
        assert (again.imported, again.already_present) == (0, 2)
    with db.begin() as session:
        # A later file with one more identical row holds one more search.
        assert import_text(session, csv_text(same, same, same)).imported == 1
    with db() as session:
        assert count(session, StopSearch) == 3


def test_a_file_with_bad_rows_imports_nothing_by_default(db):
    text_ = csv_text(row(), row(type="Foot search"), row(age="25-34"))
    with db.begin() as session, pytest.raises(BadStopRows) as caught:
        import_text(session, text_)
    assert (caught.value.read, [b.line for b in caught.value.bad_rows]) == (3, [3])
    with db() as session:
        assert count(session, StopSearch) == 0


def test_skip_invalid_imports_the_good_rows(db):
    text_ = csv_text(row(), row(type="Foot search"), row(age="25-34"))
    with db.begin() as session:
        report = import_text(session, text_, skip_invalid=True)
    assert (report.read, report.imported, report.already_present, report.skipped) == (3, 2, 0, 1)
    with db() as session:
        assert sorted(session.scalars(select(StopSearch.source_line))) == [2, 4]


def test_extended_columns_are_stored_and_unknown_officers_added(db):
    with db.begin() as session:
        session.add(Officer(id="PC101", name="Known"))
    text_ = csv_text(
        row(
            Reference="SS-1",
            Officer="PC101",
            Grounds="Smell of cannabis",
            BWV_recorded="True",
            BWV_reference="BWV-9",
        ),
        row(Reference="SS-2", Officer="PC202", Grounds="", BWV_recorded="False", BWV_reference=""),
    )
    with db.begin() as session:
        assert import_text(session, text_).imported == 2
    with db() as session:
        one, two = session.scalars(select(StopSearch).order_by(StopSearch.reference)).all()
        assert (
            one.reference,
            one.officer_id,
            one.grounds,
            one.bwv_recorded,
            one.bwv_reference,
        ) == ("SS-1", "PC101", "Smell of cannabis", True, "BWV-9")
        assert (two.officer_id, two.grounds, two.bwv_recorded, two.bwv_reference) == (
            "PC202",
            None,
            False,
            None,
        )
        assert session.get(Officer, "PC101").name == "Known"
        assert session.get(Officer, "PC202") is not None


def test_a_reference_already_stored_counts_as_already_present(db):
    with db.begin() as session:
        import_text(session, csv_text(row(Reference="SS-1")))
    with db.begin() as session:
        report = import_text(session, csv_text(row(Reference="SS-1", outcome="Arrest")))
    assert (report.imported, report.already_present) == (0, 1)


# --- linking ----------------------------------------------------------------------------


def test_stops_are_linked_to_the_demo_hot_spot_they_fall_in(db):
    with db.begin() as session:
        load_demo_hot_spots(session)
    text_ = csv_text(
        row(lat=str(LE01_CENTRE[0]), lon=str(LE01_CENTRE[1])),
        row(lat=str(OUTSIDE[0]), lon=str(OUTSIDE[1])),
        row(lat="", lon=""),
    )
    with db.begin() as session:
        import_text(session, text_)
    with db() as session:
        links = session.execute(
            select(StopSearch.source_line, StopSearch.hotspot_id).order_by(StopSearch.source_line)
        ).all()
    assert links == [(2, "LE01"), (3, None), (4, None)]


def test_a_real_month_links_as_the_polygons_say(db):
    path = month("2019-08")
    demo = load_hot_spots(DEMO_GEOJSON)
    with db.begin() as session:
        load_demo_hot_spots(session)
        records, _ = read_stops(path)
        import_stops(session, records, actor="tester", source=path.name)
    with db() as session:
        stored = session.execute(
            select(StopSearch.longitude, StopSearch.latitude, StopSearch.hotspot_id)
        ).all()
    lon = np.array([s[0] for s in stored])
    lat = np.array([s[1] for s in stored])
    points = shapely.points(lon, lat)
    expected = np.full(len(stored), None, dtype=object)
    for hot_spot in sorted(demo, key=lambda h: h.id, reverse=True):
        expected[shapely.covers(hot_spot.geometry, points)] = hot_spot.id
    assert [s[2] for s in stored] == list(expected)
    assert sum(e is not None for e in expected) > 0


def test_a_point_in_overlapping_hot_spots_goes_to_the_first_by_id():
    # Listed B first, so the rule, not the order of the set, decides.
    spots = hot_spot_set(polygon_feature("B", BOX_B), polygon_feature("A", BOX_A))
    lat, lon = IN_A_AND_B
    assert hot_spot_ids(spots, [lon, None], [lat, None]) == ["A", None]


def test_stops_are_linked_to_the_operation_whose_local_dates_contain_them(db):
    with db.begin() as session:
        session.add_all(
            [
                Operation(
                    id=7,
                    name="June",
                    start_date=date(2019, 6, 1),
                    end_date=date(2019, 6, 30),
                    tz="Europe/London",
                ),
                Operation(
                    id=8,
                    name="July",
                    start_date=date(2019, 7, 1),
                    end_date=date(2019, 7, 31),
                    tz="Europe/London",
                ),
            ]
        )
    text_ = csv_text(
        row(date="2019-06-15T12:00:00Z"),
        # 23:30 UTC on 30 June is 00:30 on 1 July in London (BST): July's operation.
        row(date="2019-06-30T23:30:00Z"),
        row(date="2019-09-01T12:00:00Z"),
    )
    with db.begin() as session:
        import_text(session, text_)
    with db() as session:
        links = session.execute(
            select(StopSearch.source_line, StopSearch.operation_id).order_by(StopSearch.source_line)
        ).all()
        by_operation = breakdown(stops_frame(session), "operation_id")
    assert links == [(2, 7), (3, 8), (4, None)]
    assert dict(zip(by_operation["operation_id"], by_operation["searches"], strict=True)) == {
        "7": 1,
        "8": 1,
        "(not recorded)": 1,
    }


def test_without_operations_no_stop_is_linked_to_one(db):
    with db.begin() as session:
        import_text(session, csv_text(row()))
    with db() as session:
        assert session.scalar(select(StopSearch.operation_id)) is None


def test_relinking_follows_new_hot_spots(db):
    with db.begin() as session:
        import_text(session, csv_text(row(lat=str(LE02_CENTRE[0]), lon=str(LE02_CENTRE[1]))))
    with db.begin() as session:
        assert session.scalar(select(StopSearch.hotspot_id)) is None
        load_demo_hot_spots(session)
        assert relink_stops(session) == 1
    with db() as session:
        assert session.scalar(select(StopSearch.hotspot_id)) == "LE02"
        assert relink_stops(session) == 0


# --- reviews: due dates, sampling, overdue ------------------------------------------------


def test_each_new_stop_gets_a_pending_review_due_days_after_its_local_date(db):
    text_ = csv_text(row(date="2019-06-15T12:00:00Z"), row(date="2019-06-30T23:30:00Z"))
    with db.begin() as session:
        import_text(session, text_, policy=ReviewPolicy(due_days=10))
    with db() as session:
        reviews = session.execute(
            select(StopSearch.source_line, BwvReview.status, BwvReview.due_date, BwvReview.sampled)
            .join(BwvReview, BwvReview.stop_id == StopSearch.id)
            .order_by(StopSearch.source_line)
        ).all()
    assert reviews == [
        (2, "pending", date(2019, 6, 25), True),
        (3, "pending", date(2019, 7, 11), True),
    ]


def test_default_due_date_is_28_days_later():
    assert ReviewPolicy().due_days == 28


def test_sampling_is_reproducible_and_near_the_rate(db):
    path = month("2019-08")
    first, _ = read_stops(path)
    second, _ = read_stops(path)
    chosen = [is_sampled(r.import_key, 0.25) for r in first]
    assert chosen == [is_sampled(r.import_key, 0.25) for r in second]
    assert 0.15 < sum(chosen) / len(chosen) < 0.35
    with db.begin() as session:
        import_stops(
            session, first, actor="tester", source=path.name, policy=ReviewPolicy(sample_rate=0.25)
        )
    with db() as session:
        stored = dict(
            session.execute(
                select(StopSearch.import_key, BwvReview.sampled).join(
                    BwvReview, BwvReview.stop_id == StopSearch.id
                )
            ).all()
        )
    assert stored == {r.import_key: s for r, s in zip(first, chosen, strict=True)}


@pytest.mark.parametrize("rate", [1.0, 0.0])
def test_sampling_rate_one_reviews_all_and_zero_none(rate):
    records, _ = read_stops(month("2019-10"))
    assert {is_sampled(r.import_key, rate) for r in records} == {rate == 1.0}


@pytest.mark.parametrize("policy", [{"due_days": -1}, {"sample_rate": 1.5}, {"tz": "Mars/Base"}])
def test_a_bad_review_policy_is_refused(policy):
    with pytest.raises(ValueError, match=r"must be|unknown time zone"):
        ReviewPolicy(**policy)


def test_overdue_means_sampled_pending_and_past_its_due_date():
    due = date(2019, 7, 1)

    def review(**values):
        return BwvReview(**{"status": "pending", "sampled": True, "due_date": due, **values})

    assert is_overdue(review(), date(2019, 7, 2))
    assert not is_overdue(review(), due)
    assert not is_overdue(review(status="reviewed"), date(2019, 7, 2))
    assert not is_overdue(review(status="no_footage"), date(2019, 7, 2))
    assert not is_overdue(review(sampled=False), date(2019, 7, 2))


# --- the review workflow ------------------------------------------------------------------

# A complete assessment: every GOWISELY point covered, and the encounter judged.
ASSESSMENT = {
    "grounds_reasonable": "yes",
    "camera": "whole",
    "conduct_respectful": "yes",
    "conduct_explained": "yes",
    "conduct_de_escalated": "yes",
    "grade": "good_practice",
}
ALL_YES = {**dict.fromkeys(GOWISELY, "yes"), **ASSESSMENT}
REVIEWED_AT = datetime(2019, 6, 10, 9, 0, tzinfo=UTC)


def one_stop(db) -> int:
    with db.begin() as session:
        import_text(session, csv_text(row()))
    with db() as session:
        return session.scalar(select(StopSearch.id))


def audit_trail(db, action="bwv_review.update"):
    with db() as session:
        return session.execute(
            select(AuditEvent.actor, AuditEvent.subject, AuditEvent.before, AuditEvent.after)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        ).all()


def test_completing_a_review_needs_outcome_all_gowisely_answers_and_rag(db):
    stop_id = one_stop(db)
    partial = {**ALL_YES, "station": None, "legal_power": ""}
    with db.begin() as session, pytest.raises(ReviewError) as caught:
        update_review(session, stop_id, "lead", {"status": "reviewed", **partial})
    assert caught.value.errors == {
        "outcome": "a completed review needs an outcome",
        "station": "GOWISELY station: not answered",
        "legal_power": "GOWISELY legal power: not answered",
        "rag": "a completed review needs a RAG rating",
    }
    with db() as session:
        assert review_of(session, stop_id).status == "pending"
    assert audit_trail(db) == []


def test_a_completed_review_is_audited_with_before_and_after(db):
    stop_id = one_stop(db)
    changes = {
        "status": "reviewed",
        "outcome": "learning_identified",
        "rag": "amber",
        **ALL_YES,
        "identity": "partly",
        "findings": "Did not give name and station",
    }
    with db.begin() as session:
        review = update_review(session, stop_id, "lead", changes, now=REVIEWED_AT)
        assert (review.reviewer, review.reviewed_at) == ("lead", REVIEWED_AT)
    with db() as session:
        stored = review_of(session, stop_id)
        assert (stored.status, stored.outcome, stored.identity, stored.rag) == (
            "reviewed",
            "learning_identified",
            "partly",
            "amber",
        )
        assert stored.reviewed_at == REVIEWED_AT
    ((actor, subject, before, after),) = audit_trail(db)
    assert (actor, subject) == ("lead", f"stop {stop_id}")
    assert after == {**changes, "reviewer": "lead", "reviewed_at": REVIEWED_AT.isoformat()}
    assert before == dict.fromkeys(after) | {"status": "pending"}


def test_a_completed_review_can_be_corrected_and_the_correction_is_audited(db):
    stop_id = one_stop(db)
    with db.begin() as session:
        update_review(
            session,
            stop_id,
            "lead",
            {"status": "reviewed", "outcome": "no_issues", "rag": "green", **ALL_YES},
            now=REVIEWED_AT,
        )
    later = REVIEWED_AT + timedelta(days=2)
    with db.begin() as session:
        update_review(
            session,
            stop_id,
            "senior",
            {"outcome": "referred", "rag": "red", "warrant_card": "no"},
            now=later,
        )
    corrected = audit_trail(db)[-1]
    assert corrected.actor == "senior"
    assert corrected.before == {
        "outcome": "no_issues",
        "rag": "green",
        "warrant_card": "yes",
        "reviewer": "lead",
        "reviewed_at": REVIEWED_AT.isoformat(),
    }
    assert corrected.after == {
        "outcome": "referred",
        "rag": "red",
        "warrant_card": "no",
        "reviewer": "senior",
        "reviewed_at": later.isoformat(),
    }


def test_no_footage_needs_a_reason_and_takes_no_checklist(db):
    stop_id = one_stop(db)
    with db.begin() as session, pytest.raises(ReviewError, match="say why there is no footage"):
        update_review(session, stop_id, "lead", {"status": "no_footage"})
    with db.begin() as session, pytest.raises(ReviewError, match="no footage"):
        update_review(
            session,
            stop_id,
            "lead",
            {
                "status": "no_footage",
                "outcome": "no_issues",
                "no_footage_reason": "camera not worn",
            },
        )
    with db.begin() as session:
        update_review(
            session,
            stop_id,
            "lead",
            {"status": "no_footage", "no_footage_reason": "camera not worn"},
            now=REVIEWED_AT,
        )
    ((_, _, before, after),) = audit_trail(db)
    # No footage is, by definition, a camera that recorded none of the encounter.
    assert before == {
        "status": "pending",
        "no_footage_reason": None,
        "camera": None,
        "reviewer": None,
        "reviewed_at": None,
    }
    assert after == {
        "status": "no_footage",
        "no_footage_reason": "camera not worn",
        "camera": "none",
        "reviewer": "lead",
        "reviewed_at": REVIEWED_AT.isoformat(),
    }


def test_switching_a_no_footage_review_to_reviewed_clears_the_reason(db):
    stop_id = one_stop(db)
    with db.begin() as session:
        update_review(
            session, stop_id, "lead", {"status": "no_footage", "no_footage_reason": "not uploaded"}
        )
    with db.begin() as session:
        update_review(
            session,
            stop_id,
            "lead",
            {"status": "reviewed", "outcome": "no_issues", "rag": "green", **ALL_YES},
        )
    with db() as session:
        review = review_of(session, stop_id)
        assert (review.status, review.no_footage_reason) == ("reviewed", None)


def test_a_completed_review_cannot_be_reopened(db):
    stop_id = one_stop(db)
    with db.begin() as session:
        update_review(
            session, stop_id, "lead", {"status": "no_footage", "no_footage_reason": "camera failed"}
        )
    with db.begin() as session, pytest.raises(ReviewError, match="not reopened"):
        update_review(session, stop_id, "lead", {"status": "pending"})


def test_a_pending_review_can_hold_draft_answers_but_no_outcome(db):
    stop_id = one_stop(db)
    with db.begin() as session:
        update_review(session, stop_id, "lead", {"grounds": "yes", "findings": "half way"})
    with db.begin() as session, pytest.raises(ReviewError, match="needs the status 'reviewed'"):
        update_review(session, stop_id, "lead", {"outcome": "no_issues"})
    with db() as session:
        review = review_of(session, stop_id)
        assert (review.status, review.grounds, review.reviewer) == ("pending", "yes", None)
    assert [a.after for a in audit_trail(db)] == [{"grounds": "yes", "findings": "half way"}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": "done"}, "status"),
        ({"outcome": "fine"}, "outcome"),
        ({"rag": "blue"}, "rag"),
        ({"grounds": "maybe"}, "grounds"),
        ({"sampled": "yes"}, "sampled"),
        ({"reviewer": "someone else"}, "reviewer"),
    ],
)
def test_bad_review_values_are_refused_by_field(db, changes, field):
    stop_id = one_stop(db)
    with db.begin() as session, pytest.raises(ReviewError) as caught:
        update_review(session, stop_id, "lead", changes)
    assert list(caught.value.errors) == [field]


def test_an_unchanged_review_is_not_audited(db):
    stop_id = one_stop(db)
    with db.begin() as session:
        update_review(session, stop_id, "lead", {"status": "pending", "outcome": None})
    assert audit_trail(db) == []


def test_reviewing_an_unknown_stop_is_not_found(db):
    with db.begin() as session, pytest.raises(StopNotFound):
        update_review(session, 999, "lead", {"findings": "x"})


# --- form / API records -------------------------------------------------------------------


def form(**values):
    return {
        "type": "Person search",
        "occurred_at": "2019-06-01T13:00",
        "latitude": "52.636675",
        "longitude": "-1.13331",
        "gender": "Male",
        "self_defined_ethnicity": "White - Irish",
        "outcome": "Arrest",
        "outcome_linked_to_object": "true",
        "officer_id": "PC7",
        "reference": "F-1",
        "bwv_recorded": True,
        **values,
    }


def test_a_form_record_is_validated_stored_linked_and_audited(db):
    with db.begin() as session:
        load_demo_hot_spots(session)
        stop = create_stop(
            session,
            form(),
            actor="pc7",
            naive_tz="Europe/London",
            now=NOW,
            policy=ReviewPolicy(due_days=14),
        )
        stop_id = stop.id
    with db() as session:
        stop = session.get(StopSearch, stop_id)
        assert stop.occurred_at == datetime(2019, 6, 1, 12, 0, tzinfo=UTC)  # 13:00 BST
        assert (stop.hotspot_id, stop.outcome_linked_to_object, stop.officer_id) == (
            "LE01",
            True,
            "PC7",
        )
        assert stop.source_file == "form"
        assert review_of(session, stop_id).due_date == date(2019, 6, 15)
    ((actor, subject, before, after),) = audit_trail(db, "stop.create")
    assert (actor, subject, before) == ("pc7", f"stop {stop_id}", None)
    assert after["reference"] == "F-1" and after["occurred_at"] == "2019-06-01T12:00:00+00:00"


def test_two_identical_form_records_are_two_searches(db):
    with db.begin() as session:
        create_stop(session, form(reference=None), actor="pc7", naive_tz="Europe/London", now=NOW)
        create_stop(session, form(reference=None), actor="pc7", naive_tz="Europe/London", now=NOW)
    with db() as session:
        assert count(session, StopSearch) == 2


def test_a_bad_form_record_names_each_bad_field(db):
    values = form(
        type="Foot",
        latitude="95",
        outcome_linked_to_object="perhaps",
        colour="red",
        occurred_at="2019-06-01T13:00",
    )
    with db.begin() as session, pytest.raises(StopValidationError) as caught:
        create_stop(session, values, actor="pc7", now=NOW)
    assert sorted(caught.value.errors) == [
        "colour",
        "latitude",
        "occurred_at",
        "outcome_linked_to_object",
        "type",
    ]
    with db() as session:
        assert count(session, StopSearch) == 0


def test_a_form_reference_already_recorded_is_refused(db):
    with db.begin() as session:
        create_stop(session, form(), actor="pc7", naive_tz="Europe/London", now=NOW)
    with db.begin() as session, pytest.raises(StopValidationError, match="already recorded"):
        create_stop(
            session, form(age_range="25-34"), actor="pc7", naive_tz="Europe/London", now=NOW
        )


# --- assurance figures on a crafted operation ------------------------------------------------

WHITE_BRITISH = "White - English/Welsh/Scottish/Northern Irish/British"
BLACK_AFRICAN = "Black/African/Caribbean/Black British - African"
BLACK_CARIBBEAN = "Black/African/Caribbean/Black British - Caribbean"
INDIAN = "Asian/Asian British - Indian"
NFA = "A no further action disposal"
# Ten searches on 1-10 June 2019 at noon UTC:
# (place, self-defined ethnicity, outcome, outcome linked to object, officer)
CRAFTED = [
    (LE01_CENTRE, WHITE_BRITISH, "Arrest", "True", "PC1"),
    (LE01_CENTRE, "White - Irish", NFA, "False", "PC1"),
    (LE02_CENTRE, WHITE_BRITISH, "Community resolution", "", "PC2"),
    (OUTSIDE, "White - Any other White background", "Arrest", "True", "PC2"),
    (LE01_CENTRE, BLACK_AFRICAN, "Arrest", "True", "PC1"),
    (LE01_CENTRE, BLACK_CARIBBEAN, NFA, "False", "PC1"),
    (OUTSIDE, INDIAN, NFA, "", "PC2"),
    (LE02_CENTRE, INDIAN, "Arrest", "False", "PC2"),
    (OUTSIDE, "", "Community resolution", "True", ""),
    (LE02_CENTRE, BLACK_AFRICAN, NFA, "", "PC1"),
]
TODAY = date(2019, 7, 4)  # due dates are 29 June to 8 July: stops 1-5 are past due


@pytest.fixture
def crafted(db):
    """The crafted operation imported, with stop 1 reviewed (no issues) 3 days later, stop 2
    reviewed (referred) 10 days later and stop 5 without footage 5 days later."""
    rows = [
        row(
            date=f"2019-06-{day:02d}T12:00:00Z",
            lat=str(place[0]),
            lon=str(place[1]),
            self_defined=ethnicity,
            outcome=outcome,
            linked=linked,
            Officer=officer,
            Reference=f"C-{day}",
        )
        for day, (place, ethnicity, outcome, linked, officer) in enumerate(CRAFTED, 1)
    ]
    with db.begin() as session:
        load_demo_hot_spots(session)
        import_text(session, csv_text(*rows))
    with db.begin() as session:
        ids = {r: i for r, i in session.execute(select(StopSearch.reference, StopSearch.id))}
        reviewed = {"status": "reviewed", "rag": "green", **ALL_YES}
        update_review(
            session,
            ids["C-1"],
            "lead",
            {**reviewed, "outcome": "no_issues"},
            now=datetime(2019, 6, 4, 10, tzinfo=UTC),
        )
        update_review(
            session,
            ids["C-2"],
            "lead",
            {**reviewed, "outcome": "referred"},
            now=datetime(2019, 6, 12, 10, tzinfo=UTC),
        )
        update_review(
            session,
            ids["C-5"],
            "lead",
            {"status": "no_footage", "no_footage_reason": "battery"},
            now=datetime(2019, 6, 10, 10, tzinfo=UTC),
        )
    with db() as session:
        return stops_frame(session), ids


def test_summary_figures_match_hand_computed_ones(crafted):
    frame, _ = crafted
    summary = assurance_summary(frame, TODAY)
    assert summary == {
        "searches": 10,
        "sampled": 10,
        "pending": 7,
        "overdue": 2,
        "reviewed": 2,
        "no_footage": 1,
        "review_coverage_pct": 30.0,
        "median_days_to_review": 5.0,
        "finds": 4,
        "find_known": 7,
        "find_rate_pct": pytest.approx(100 * 4 / 7),
        "arrests": 4,
        "arrest_rate_pct": 40.0,
    }


def test_the_queue_puts_overdue_reviews_first_then_by_due_date(crafted):
    frame, ids = crafted
    queue = review_queue(frame, TODAY)
    assert list(queue["stop_id"]) == [ids[f"C-{n}"] for n in (3, 4, 6, 7, 8, 9, 10)]
    assert list(queue["overdue"]) == [True, True, False, False, False, False, False]
    assert list(queue["days_overdue"]) == [3, 2, 0, 0, 0, 0, 0]


def test_review_outcomes_are_counted(crafted):
    frame, _ = crafted
    counts = {(s, o): n for s, o, n in review_outcomes(frame).itertuples(index=False)}
    assert counts == {
        ("not_sampled", None): 0,
        ("pending", None): 7,
        ("reviewed", "no_issues"): 1,
        ("reviewed", "learning_identified"): 0,
        ("reviewed", "referred"): 1,
        ("no_footage", None): 1,
    }


def by_group(table, key):
    return {r[key]: r for r in table.to_dict(orient="records")}


def test_breakdown_by_officer(crafted):
    frame, _ = crafted
    groups = by_group(breakdown(frame, "officer_id"), "officer_id")
    assert list(groups) == ["PC1", "PC2", "(not recorded)"]
    pc1, pc2 = groups["PC1"], groups["PC2"]
    assert (pc1["searches"], pc1["arrests"], pc1["arrest_rate_pct"]) == (5, 2, 40.0)
    assert (pc1["finds"], pc1["find_known"], pc1["find_rate_pct"]) == (2, 4, 50.0)
    assert (pc1["reviews_completed"], pc1["review_coverage_pct"], pc1["referred"]) == (3, 60.0, 1)
    assert (pc2["searches"], pc2["arrest_rate_pct"], pc2["find_rate_pct"]) == (4, 50.0, 50.0)
    assert pc2["share_pct"] == 40.0


def test_breakdown_by_hot_spot(crafted):
    frame, _ = crafted
    groups = by_group(breakdown(frame, "hotspot_id"), "hotspot_id")
    assert {g: r["searches"] for g, r in groups.items()} == {
        "LE01": 4,
        "LE02": 3,
        "(outside hot spots)": 3,
    }
    assert groups["LE01"]["arrest_rate_pct"] == 50.0
    assert groups["LE02"]["find_rate_pct"] == 0.0


def test_breakdown_by_object_of_search(crafted):
    frame, _ = crafted
    table = breakdown(frame, "object_of_search")
    assert table.to_dict(orient="records")[0] == {
        "object_of_search": "Controlled drugs",
        "searches": 10,
        "share_pct": 100.0,
        "finds": 4,
        "find_known": 7,
        "find_rate_pct": pytest.approx(100 * 4 / 7),
        "arrests": 4,
        "arrest_rate_pct": 40.0,
        "sampled": 10,
        "reviews_completed": 3,
        "review_coverage_pct": 30.0,
        "referred": 1,
    }


def test_without_a_population_there_is_no_ratio_of_search_counts(crafted):
    frame, _ = crafted
    table = ethnicity_breakdown(frame)
    groups = by_group(table, "self_defined_ethnicity")
    assert groups[BLACK_AFRICAN]["searches"] == 2
    # Searches alone do not allow for the size of each group: no ratio is made of them.
    assert not {"ratio_to_white", "searches_per_1000", "disproportionality_ratio"} & set(table)


def test_searches_per_1000_and_disproportionality_against_white(crafted):
    frame, _ = crafted
    population = {
        WHITE_BRITISH: 4000,
        "White - Irish": 2000,
        "White - Any other White background": 2000,
        BLACK_AFRICAN: 500,
        BLACK_CARIBBEAN: 500,
        INDIAN: 2000,
    }
    groups = by_group(ethnicity_breakdown(frame, population), "self_defined_ethnicity")
    # The White groups together: 4 searches of 8,000 people, 0.5 per 1,000.
    rates = {g: groups[g]["searches_per_1000"] for g in population}
    assert rates == {
        WHITE_BRITISH: 0.5,
        "White - Irish": 0.5,
        "White - Any other White background": 0.5,
        BLACK_AFRICAN: 4.0,
        BLACK_CARIBBEAN: 2.0,
        INDIAN: 1.0,
    }
    ratios = {g: groups[g]["disproportionality_ratio"] for g in population}
    assert ratios[BLACK_AFRICAN] == 8.0 and ratios[BLACK_CARIBBEAN] == 4.0
    assert ratios[INDIAN] == 2.0 and ratios[WHITE_BRITISH] == 1.0
    assert np.isnan(groups["(not recorded)"]["disproportionality_ratio"])


def test_figures_of_no_searches_are_empty_not_errors(db):
    with db() as session:
        frame = stops_frame(session)
    summary = assurance_summary(frame, TODAY)
    assert (
        summary["searches"],
        summary["find_rate_pct"],
        summary["review_coverage_pct"],
        summary["median_days_to_review"],
    ) == (0, None, None, None)
    assert review_queue(frame, TODAY).empty
    assert breakdown(frame, "officer_id").empty
    assert ethnicity_breakdown(frame, {"White": 10}).empty


def test_frames_can_be_limited_to_local_dates(crafted, db):
    with db() as session:
        frame = stops_frame(session, from_day=date(2019, 6, 3), to_day=date(2019, 6, 4))
    assert list(frame["reference"]) == ["C-3", "C-4"]


def test_export_carries_exact_coordinates_and_utc_times(crafted, db):
    with db() as session:
        table = export_stops(session)
    first = table.iloc[0]
    assert (first["occurred_at"], first["latitude"], first["longitude"]) == (
        "2019-06-01T12:00:00Z",
        "52.636675",
        "-1.13331",
    )
    assert (
        first["review_status"],
        first["review_outcome"],
        first["reviewer"],
        first["reviewed_at"],
    ) == ("reviewed", "no_issues", "lead", "2019-06-04T10:00:00Z")
    assert table.iloc[2]["reviewed_at"] is None


def test_a_stop_as_a_dict_for_the_api(crafted, db):
    _, ids = crafted
    with db() as session:
        stop = session.get(StopSearch, ids["C-3"])
        described = stop_dict(stop, review_of(session, stop.id), TODAY)
    assert json.loads(json.dumps(described)) == described
    assert (
        described["reference"],
        described["occurred_at"],
        described["hotspot_id"],
        described["review_status"],
        described["due_date"],
        described["overdue"],
    ) == ("C-3", "2019-06-03T12:00:00+00:00", "LE02", "pending", "2019-07-01", True)


# --- the migration ----------------------------------------------------------------------


def test_the_migration_builds_the_tables_the_models_describe(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    ours = [d for d in differences if "stop_searches" in repr(d) or "bwv_reviews" in repr(d)]
    assert ours == []


# --- the command line ---------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def write(tmp_path, name: str, text_: str) -> str:
    path = tmp_path / name
    path.write_text(text_, encoding="utf-8")
    return str(path)


def test_cli_imports_a_real_month_then_finds_it_already_present(database_url):
    path = str(month("2019-10"))
    n = data_lines(Path(path))
    first = invoke("stops", "import", path, "--db", database_url)
    assert first.exit_code == 0, first.output
    assert f"read {n}, imported {n}, already present 0, skipped 0" in first.output
    second = invoke("stops", "import", path, "--db", database_url)
    assert second.exit_code == 0
    assert f"read {n}, imported 0, already present {n}, skipped 0" in second.output


def test_cli_refuses_a_file_with_bad_rows_and_imports_nothing(database_url, tmp_path):
    path = write(tmp_path, "bad.csv", csv_text(row(), row(lat="91"), row(type="Foot search")))
    result = invoke("stops", "import", path, "--db", database_url)
    assert result.exit_code == 1
    assert f"{path}: line 3: Latitude '91' is out of range" in result.stderr
    assert f"{path}: line 4: unknown Type 'Foot search'" in result.stderr
    assert "2 of 3 rows are bad; nothing imported" in result.stderr
    export = invoke("stops", "export", "--db", database_url, "--format", "json")
    assert json.loads(export.stdout) == []


def test_cli_skip_invalid_imports_the_rest(database_url, tmp_path):
    path = write(tmp_path, "bad.csv", csv_text(row(), row(lat="91"), row(age="25-34")))
    result = invoke("stops", "import", path, "--skip-invalid", "--db", database_url)
    assert result.exit_code == 0, result.output
    assert "line 3: Latitude '91' is out of range" in result.stderr
    assert "read 3, imported 2, already present 0, skipped 1" in result.stdout


def test_cli_review_options_shape_the_reviews(database_url, tmp_path):
    path = write(tmp_path, "one.csv", csv_text(row(date="2019-06-01T12:00:00Z")))
    result = invoke(
        "stops",
        "import",
        path,
        "--review-due-days",
        "7",
        "--review-sample-rate",
        "0",
        "--db",
        database_url,
    )
    assert result.exit_code == 0, result.output
    (exported,) = json.loads(
        invoke("stops", "export", "--db", database_url, "--format", "json").stdout
    )
    assert (exported["due_date"], exported["sampled"]) == ("2019-06-08", False)
    bad = invoke("stops", "import", path, "--review-sample-rate", "2", "--db", database_url)
    assert bad.exit_code == 2 and "between 0 and 1" in bad.output


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_cli_exports_every_stop_with_its_review(database_url, tmp_path, fmt):
    path = write(
        tmp_path, "two.csv", csv_text(row(Reference="A-1"), row(Reference="A-2", outcome="Arrest"))
    )
    assert invoke("stops", "import", path, "--db", database_url).exit_code == 0
    result = invoke("stops", "export", "--format", fmt, "--db", database_url)
    assert result.exit_code == 0, result.output
    if fmt == "json":
        exported = json.loads(result.stdout)
    else:
        exported = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(e["reference"], e["outcome"], e["review_status"]) for e in exported] == [
        ("A-1", "A no further action disposal", "pending"),
        ("A-2", "Arrest", "pending"),
    ]
    assert exported[0]["occurred_at"] == "2019-06-01T12:00:00Z"
    assert str(exported[0]["latitude"]) == "52.636675"


def test_cli_reports_an_unusable_file(database_url, tmp_path):
    missing = invoke("stops", "import", str(tmp_path / "none.csv"), "--db", database_url)
    assert missing.exit_code == 1 and "cannot read the file" in missing.stderr
    header = invoke(
        "stops", "import", write(tmp_path, "h.csv", "Type,Date\n"), "--db", database_url
    )
    assert header.exit_code == 1 and "the header lacks" in header.stderr


def test_cli_export_needs_an_initialised_database(tmp_path):
    result = invoke("stops", "export", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert result.exit_code == 1 and "tracker init" in result.stderr
