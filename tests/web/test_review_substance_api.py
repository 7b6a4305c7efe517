"""The review's substance through the JSON API (issue 12, item 3): the new fields accepted
and returned, the officer's acknowledgement, a second review, and actions; roles and the
audit as elsewhere. Uses the crafted assurance database of test_web_assurance (both kinds of
database)."""

from __future__ import annotations

from sqlalchemy import select

from tests.web import test_web_assurance
from tests.web.test_web_assurance import ALL_ANSWERS, login, make_app
from tracker.foundation.models import AuditEvent

templates, database_url, sessions, stop_ids = (
    test_web_assurance.templates,
    test_web_assurance.database_url,
    test_web_assurance.sessions,
    test_web_assurance.stop_ids,
)


def api(client, path: str, body: dict | None = None):
    """POST JSON with the page's CSRF token (a signed-in session needs it)."""
    token = test_web_assurance.csrf_token(client.get("/login").text)
    return client.post(path, json=body or {}, headers={"X-CSRFToken": token})


def test_review_acknowledgement_second_review_and_actions(database_url, sessions, stop_ids):
    app = make_app(database_url, SECOND_REVIEW_RATE=1.0)
    lead, admin = login(app, "assurance"), login(app, "admin")
    officer = login(app, "officer")  # PC1
    stop_id = stop_ids["S1"]  # PC1's, pending

    reviewed = api(
        lead,
        f"/api/stops/{stop_id}/review",
        {
            "status": "reviewed",
            "outcome": "learning_identified",
            "rag": "amber",
            **ALL_ANSWERS,
            "grounds_reasonable": "no",
            "grade": "concern",
            "findings": "No objective grounds were given.",
        },
    )
    assert reviewed.status_code == 400
    assert reviewed.json["error"]["fields"] == {
        "grounds_note": "say what was missing from the grounds"
    }
    reviewed = api(
        lead,
        f"/api/stops/{stop_id}/review",
        {
            "status": "reviewed",
            "outcome": "learning_identified",
            "rag": "amber",
            **ALL_ANSWERS,
            "grounds_reasonable": "no",
            "grounds_note": "a smell of cannabis alone",
            "grade": "concern",
            "findings": "No objective grounds were given.",
        },
    )
    assert reviewed.status_code == 200, reviewed.text
    body = reviewed.json
    assert (body["grounds_reasonable"], body["grade"], body["second_sampled"]) == (
        "no",
        "concern",
        True,
    )
    assert body["acknowledged_at"] is None and body["actions"] == []

    # The officer reads the findings and acknowledges them; only their own stop.
    assert officer.get(f"/api/stops/{stop_id}").json["review_status"] == "reviewed"
    acknowledged = api(officer, f"/api/stops/{stop_id}/acknowledge")
    assert acknowledged.status_code == 200
    assert acknowledged.json["acknowledged_by"] == "officer"
    assert api(officer, f"/api/stops/{stop_ids['S3']}/acknowledge").status_code == 403  # PC2's
    assert api(lead, f"/api/stops/{stop_id}/acknowledge").status_code == 403  # not an officer

    # A second reviewer, not the first, grades it again.
    assert api(lead, f"/api/stops/{stop_id}/second-review", {"grade": "concern"}).status_code == 400
    second = api(admin, f"/api/stops/{stop_id}/second-review", {"grade": "learning", "note": "x"})
    assert second.status_code == 200
    assert (second.json["second_reviewer"], second.json["second_grade"]) == ("admin", "learning")
    assert (
        api(officer, f"/api/stops/{stop_id}/second-review", {"grade": "concern"}).status_code == 403
    )

    # Actions: added, listed with the stop, marked done.
    bad = api(lead, f"/api/stops/{stop_id}/actions", {"description": "Debrief", "owner": ""})
    assert bad.status_code == 400 and set(bad.json["error"]["fields"]) == {"owner", "due_date"}
    added = api(
        lead,
        f"/api/stops/{stop_id}/actions",
        {"description": "Debrief on grounds", "owner": "Sgt Patel", "due_date": "2020-01-31"},
    )
    assert added.status_code == 201
    (action,) = added.json["actions"]
    assert (action["owner"], action["status"], action["overdue"]) == ("Sgt Patel", "open", True)
    done = api(lead, f"/api/stops/{stop_id}/actions/{action['id']}", {"status": "done"})
    assert done.status_code == 200 and done.json["actions"][0]["status"] == "done"
    assert (
        api(
            lead, f"/api/stops/{stop_ids['S2']}/actions/{action['id']}", {"status": "done"}
        ).status_code
        == 404
    )
    assert api(officer, f"/api/stops/{stop_id}/actions", {"description": "x"}).status_code == 403

    with sessions() as session:
        actions = [
            (e.actor, e.action)
            for e in session.scalars(
                select(AuditEvent)
                .where(AuditEvent.subject == f"stop {stop_id}")
                .order_by(AuditEvent.id)
            )
            if e.actor != "seed"
        ]
    assert actions[-5:] == [
        ("assurance", "bwv_review.update"),
        ("officer", "bwv_review.acknowledge"),
        ("admin", "bwv_review.second"),
        ("assurance", "review_action.add"),
        ("assurance", "review_action.update"),
    ]


def form_post(client, path: str, **fields):
    token = test_web_assurance.csrf_token(client.get("/login").text)
    return client.post(path, data={"csrf_token": token, **fields})


def test_the_stop_page_takes_the_acknowledgement_and_the_second_review(
    database_url, sessions, stop_ids
):
    app = make_app(database_url, SECOND_REVIEW_RATE=1.0)
    lead, admin, officer = (login(app, u) for u in ("assurance", "admin", "officer"))
    stop_id = stop_ids["S1"]  # PC1's
    page = f"/assurance/stops/{stop_id}"
    assert "acknowledge-form" not in officer.get(page).text  # nothing to read yet
    saved = form_post(
        lead,
        f"{page}/review",
        status="reviewed",
        outcome="no_issues",
        rag="green",
        findings="Well explained.",
        **ALL_ANSWERS,
    )
    assert saved.status_code == 302, saved.text[:300]

    # The officer sees the findings with a button to confirm reading them.
    mine = officer.get(page).text
    assert "Well explained." in mine and "acknowledge-form" in mine
    assert form_post(officer, f"{page}/acknowledge").status_code == 302
    assert "read the findings (officer," in officer.get(page).text
    assert form_post(lead, f"{page}/acknowledge").status_code == 403

    # The first reviewer is not offered the second review; another reviewer is.
    assert "second-review-form" not in lead.get(page).text
    assert "second-review-form" in admin.get(page).text
    refused = form_post(admin, f"{page}/second-review", second_grade="")
    assert refused.status_code == 400 and "grade: not answered" in refused.text
    assert form_post(admin, f"{page}/second-review", second_grade="learning").status_code == 302
    assert "Learning by admin (disagrees)" in admin.get(page).text
