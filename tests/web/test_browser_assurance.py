"""The BWV review form in a real headless Chromium, against the app served by waitress."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.servers import console_problems, served_by_waitress
from tests.web.test_web_assurance import PASSWORD, make_app, seed
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.stops.models import GOWISELY, BwvReview

pytestmark = pytest.mark.browser


@pytest.fixture
def database(tmp_path):
    """A migrated, seeded SQLite database: its session factory and the stops' ids."""
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        ids = seed(session)
    yield url, sessions, ids
    engine.dispose()


@pytest.fixture
def live_server(database):
    """The app served by waitress on a free loopback port; yields its base URL."""
    url, _, _ = database
    with served_by_waitress(make_app(url)) as base:
        yield base


def test_review_a_pending_stop_in_the_browser(chromium, live_server, database):
    _, sessions, ids = database
    stop_id = ids["S3"]  # pending, not yet overdue
    page = chromium.new_page()
    requests: list[str] = []
    problems = console_problems(page)  # a script blocked by the CSP is reported there
    failed: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "response",
        lambda response: (
            failed.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )

    page.goto(f"{live_server}/login")
    page.fill("input[name=username]", "assurance")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/assurance/")
    # The dashboard's map (Leaflet served locally, scripts carrying the CSP nonce) is drawn.
    page.wait_for_selector("#stops-map .leaflet-container canvas", state="attached")

    page.click(f"#queue a[href='/assurance/stops/{stop_id}']")
    page.wait_for_url(f"{live_server}/assurance/stops/{stop_id}")
    assert page.get_attribute("#review-status", "data-status") == "pending"

    page.select_option("#field-status", "reviewed")
    page.select_option("#field-outcome", "learning_identified")
    for name in GOWISELY:
        page.select_option(f"#field-{name}", "partly" if name == "warrant_card" else "yes")
    # The encounter judged: grounds, what the camera caught, conduct, a grade.
    page.select_option("#field-grounds_reasonable", "yes")
    page.select_option("#field-camera", "stopped_early")
    page.fill("#field-camera_note", "Battery ran out before the search ended.")
    for name in ("respectful", "explained", "de_escalated"):
        page.select_option(f"#field-conduct_{name}", "yes")
    page.select_option("#field-grade", "learning")
    page.select_option("#field-rag", "amber")
    page.fill("#field-findings", "Warrant card shown only when asked.")
    page.click("#review-form button[type=submit]")
    page.wait_for_url(f"{live_server}/assurance/stops/{stop_id}")

    assert page.get_attribute("#review-status", "data-status") == "reviewed"
    assert page.inner_text("#review-status").startswith("Reviewed")
    assert page.inner_text("#review-reviewer").startswith("assurance")
    assert "saved: reviewed (learning identified)" in page.inner_text(".flash")
    assert "Pending → Reviewed" in page.inner_text("#audit-trail")
    with sessions() as session:
        review = session.scalar(select(BwvReview).where(BwvReview.stop_id == stop_id))
    assert (review.status, review.outcome, review.rag, review.warrant_card, review.reviewer) == (
        "reviewed",
        "learning_identified",
        "amber",
        "partly",
        "assurance",
    )
    assert review.findings == "Warrant card shown only when asked."
    assert (review.camera, review.grade) == ("stopped_early", "learning")
    assert page.inner_text("#review-camera").startswith("Switched off early: Battery ran out")
    assert page.inner_text("#review-grade") == "Learning"

    # An action for the officer's supervisor, then marked done.
    page.fill("#field-description", "Debrief on showing the warrant card")
    page.fill("#field-owner", "Sgt Patel")
    page.fill("#field-due_date", "2031-01-31")
    page.click("#action-form button[type=submit]")
    page.wait_for_url(f"{live_server}/assurance/stops/{stop_id}")
    assert "Sgt Patel, due 2031-01-31: open" in page.inner_text("#review-actions")
    page.click("#review-actions button[type=submit]")
    page.wait_for_url(f"{live_server}/assurance/stops/{stop_id}")
    assert ": done" in page.inner_text("#review-actions")

    assert requests, "the page made no requests"
    outside = [url for url in requests if not url.startswith("http://127.0.0.1")]
    assert outside == []
    assert failed == []
    assert problems == []  # no CSP violation, no script error
