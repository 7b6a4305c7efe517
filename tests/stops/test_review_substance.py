"""BWV reviews with substance (issue 12, item 3): reasonable grounds, camera coverage and
conduct judged, a grade, the officer's acknowledgement, a second review of a sample and its
agreement, actions with owners and due dates, and the figures that report them. Each test
runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from tests.stops.test_stops import ALL_YES, csv_text, import_text, row
from tracker.foundation.models import AuditEvent
from tracker.stops.figures import actions_frame, review_quality, stops_frame
from tracker.stops.models import StopSearch
from tracker.stops.records import ReviewError
from tracker.stops.review import (
    acknowledge,
    actions_of,
    add_action,
    review_of,
    second_review,
    set_action_status,
    update_review,
)

DONE = {"status": "reviewed", "outcome": "no_issues", "rag": "green", **ALL_YES}


def stops(db, *officers: str) -> list[int]:
    """Import one stop per officer (1 to 3 June 2019, due 28 days later); return their ids."""
    with db.begin() as session:
        import_text(
            session,
            csv_text(
                *(
                    row(date=f"2019-06-0{i + 1}T12:00:00+00:00", Reference=f"S{i}", Officer=o)
                    for i, o in enumerate(officers)
                )
            ),
        )
    with db() as session:
        return list(session.scalars(select(StopSearch.id).order_by(StopSearch.id)))


def actions_audited(db, action: str) -> list[tuple]:
    with db() as session:
        return [
            (e.actor, e.subject, e.after)
            for e in session.scalars(select(AuditEvent).where(AuditEvent.action == action))
        ]


def test_a_completed_review_judges_the_grounds_the_camera_and_the_conduct(db):
    (stop_id,) = stops(db, "PC101")
    missing = {k: v for k, v in DONE.items() if k not in ("camera", "grade", "conduct_explained")}
    with db.begin() as session, pytest.raises(ReviewError) as caught:
        update_review(session, stop_id, "lead", missing)
    assert caught.value.errors == {
        "camera": "camera coverage: not answered",
        "conduct_explained": "conduct: explained: not answered",
        "grade": "grade: not answered",
    }
    # Grounds only partly reasonable, and a camera switched on late, need saying why.
    with db.begin() as session, pytest.raises(ReviewError) as caught:
        update_review(
            session,
            stop_id,
            "lead",
            {**DONE, "grounds_reasonable": "partly", "camera": "joined_late"},
        )
    assert set(caught.value.errors) == {"grounds_note", "camera_note"}
    with db.begin() as session, pytest.raises(ReviewError, match="grade 'excellent' must be"):
        update_review(session, stop_id, "lead", {**DONE, "grade": "excellent"})
    with db.begin() as session:
        update_review(
            session,
            stop_id,
            "lead",
            {
                **DONE,
                "grounds_reasonable": "partly",
                "grounds_note": "smell of cannabis only; no other grounds recorded",
                "camera": "joined_late",
                "camera_note": "switched on after the search began",
                "grade": "learning",
            },
        )
    with db() as session:
        review = review_of(session, stop_id)
        assert (review.grounds_reasonable, review.camera, review.grade) == (
            "partly",
            "joined_late",
            "learning",
        )
    ((_, subject, after),) = actions_audited(db, "bwv_review.update")
    assert subject == f"stop {stop_id}"
    assert after["grade"] == "learning" and after["camera_note"].startswith("switched on")


def test_no_footage_takes_no_judgement(db):
    (stop_id,) = stops(db, "PC101")
    with db.begin() as session, pytest.raises(ReviewError) as caught:
        update_review(
            session,
            stop_id,
            "lead",
            {"status": "no_footage", "no_footage_reason": "not worn", "grade": "concern"},
        )
    assert caught.value.errors == {"grade": "grade cannot be given when there is no footage"}


def test_the_officer_acknowledges_the_findings_and_a_correction_asks_again(db):
    first, other = stops(db, "PC101", "PC202")
    with db.begin() as session, pytest.raises(ReviewError, match="not completed"):
        acknowledge(session, first, "PC101", "pc101")
    with db.begin() as session:
        update_review(session, first, "lead", {**DONE, "findings": "Explain the grounds first."})
    with db.begin() as session, pytest.raises(ReviewError, match="only the officer"):
        acknowledge(session, first, "PC202", "pc202")
    with db.begin() as session:
        acknowledge(session, first, "PC101", "pc101")
    with db() as session:
        review = review_of(session, first)
        assert review.acknowledged_by == "pc101" and review.acknowledged_at is not None
    assert [(a, s) for a, s, _ in actions_audited(db, "bwv_review.acknowledge")] == [
        ("pc101", f"stop {first}")
    ]
    # The findings change: the officer has not read these ones.
    with db.begin() as session:
        update_review(session, first, "lead", {"findings": "Explain the grounds and the power."})
    with db() as session:
        assert review_of(session, first).acknowledged_at is None
        assert other  # the other officer's stop is untouched
        assert review_of(session, other).status == "pending"


def test_a_sample_is_reviewed_again_by_someone_else_and_agreement_is_reported(db):
    ids = stops(db, "PC101", "PC101", "PC202")
    with db.begin() as session:
        for stop_id, grade in zip(ids, ("good_practice", "learning", "concern"), strict=True):
            update_review(
                session, stop_id, "lead", {**DONE, "grade": grade}, second_review_rate=1.0
            )
    with db.begin() as session, pytest.raises(ReviewError, match="someone else"):
        second_review(session, ids[0], "lead", "good_practice", None)
    with db.begin() as session:
        second_review(session, ids[0], "second", "good_practice", None)  # agrees
        second_review(session, ids[1], "second", "concern", "the grounds were not enough")
    with db() as session:
        quality = review_quality(stops_frame(session), actions_frame(session), date(2019, 6, 20))
    assert quality["second_reviews_drawn"] == 3
    assert quality["second_reviews_done"] == 2
    assert quality["second_review_agreement_pct"] == 50.0
    assert quality["grades"] == {"good_practice": 1, "learning": 1, "concern": 1}
    after = actions_audited(db, "bwv_review.second")[-1][2]
    assert after == {
        "second_reviewer": "second",
        "second_grade": "concern",
        "second_note": "the grounds were not enough",
    }


def test_a_review_not_drawn_for_a_second_look_takes_none(db):
    (stop_id,) = stops(db, "PC101")
    with db.begin() as session:
        update_review(session, stop_id, "lead", DONE, second_review_rate=0.0)
    with db.begin() as session, pytest.raises(ReviewError, match="not drawn"):
        second_review(session, stop_id, "second", "good_practice", None)


def test_the_second_review_sample_is_reproducible_and_about_its_rate(db):
    ids = stops(db, *(["PC101"] * 9))
    with db.begin() as session:
        for stop_id in ids:
            update_review(session, stop_id, "lead", DONE, second_review_rate=0.5)
    with db() as session:
        drawn = [review_of(session, i).second_sampled for i in ids]
    assert 1 <= sum(drawn) <= 8
    # Correcting a completed review does not draw it again.
    with db.begin() as session:
        for stop_id in ids:
            update_review(session, stop_id, "lead", {"findings": "ok"}, second_review_rate=1.0)
    with db() as session:
        assert [review_of(session, i).second_sampled for i in ids] == drawn


def test_actions_have_an_owner_and_a_due_date_and_fall_overdue(db):
    (stop_id,) = stops(db, "PC101")
    with db.begin() as session, pytest.raises(ReviewError) as caught:
        add_action(session, stop_id, "lead", "Debrief on GOWISELY", "", "2019-13-01")
    assert set(caught.value.errors) == {"owner", "due_date"}
    with db.begin() as session:
        add_action(session, stop_id, "lead", "Debrief on GOWISELY", "Sgt Patel", "2019-07-01")
        add_action(
            session, stop_id, "lead", "Refresher training", "Training unit", date(2019, 8, 1)
        )
    with db() as session:
        first, _ = actions_of(session, stop_id)
        quality = review_quality(stops_frame(session), actions_frame(session), date(2019, 7, 15))
    assert (first.owner, first.due_date, first.status) == ("Sgt Patel", date(2019, 7, 1), "open")
    assert (quality["actions_open"], quality["actions_overdue"]) == (2, 1)
    with db.begin() as session:
        set_action_status(session, first.id, "done", "sgt.patel")
    with db() as session:
        quality = review_quality(stops_frame(session), actions_frame(session), date(2019, 7, 15))
        assert actions_of(session, stop_id)[0].done_at is not None
    assert (quality["actions_open"], quality["actions_overdue"]) == (1, 0)
    with db.begin() as session, pytest.raises(ReviewError, match="status must be one of"):
        set_action_status(session, first.id, "cancelled", "sgt.patel")
    assert [a for a, _, _ in actions_audited(db, "review_action.add")] == ["lead", "lead"]
    assert actions_audited(db, "review_action.update")[0][2] == {
        "action": first.id,
        "status": "done",
    }


def test_coverage_counts_the_reviews_already_due_and_overdue_ones_by_age(db):
    # Three stops on 1-3 June 2019, due 29 June to 1 July; one reviewed.
    ids = stops(db, "PC101", "PC101", "PC202")
    with db.begin() as session:
        update_review(session, ids[0], "lead", DONE)
    with db() as session:
        frame, actions = stops_frame(session), actions_frame(session)
    on_30_june = review_quality(frame, actions, date(2019, 6, 30))
    assert (on_30_june["due"], on_30_june["completed_of_due"]) == (2, 1)
    assert on_30_june["coverage_of_due_pct"] == 50.0
    assert on_30_june["overdue_by_age"] == {"1-7 days": 0, "8-28 days": 0, "over 28 days": 0}
    later = review_quality(frame, actions, date(2019, 7, 20))
    assert (later["due"], later["completed_of_due"]) == (3, 1)
    # Stop 2 due 30 June is 20 days late; stop 3 due 1 July, 19 days.
    assert later["overdue_by_age"] == {"1-7 days": 0, "8-28 days": 2, "over 28 days": 0}
    assert later["awaiting_acknowledgement"] == 1
