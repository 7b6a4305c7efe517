"""The partners' view and the board report in a real headless Chromium, served by waitress
on a copy of the demo database with the demo's problem-solving plans: a partner signs in,
lands on its own view, updates its agency's action through the form; a supervisor opens a
board report whose charts draw from the document itself. Nothing leaves the machine and
the console shows no errors (a CSP violation is one).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from tests.servers import launch_chromium, served_by_waitress
from tests.web.test_browser import TIMEOUT_MS, BrowserSession, record_traffic
from tests.web.test_web import Demo, demo_database
from tracker.accounts.users import create_user
from tracker.foundation.database import make_engine, session_factory
from tracker.partnership.demo_plans import DEMO_PARTNER_AGENCY, seed_demo_plans
from tracker.partnership.models import SaraAction, SaraActionUpdate
from tracker.plan.models import OperationHotSpot
from tracker.plan.storage import find_operation
from web import create_app

pytestmark = pytest.mark.browser
PARTNER, PASSWORD = "council-partner", "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[str, Demo]]:
    demo = demo_database(tmp_path_factory)
    copy = tmp_path_factory.mktemp("browser-partners") / "demo.db"
    shutil.copyfile(demo.url.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        operation = find_operation(session)
        spots = session.scalars(
            select(OperationHotSpot.hotspot_id).where(OperationHotSpot.operation_id == operation.id)
        ).all()
        seed_demo_plans(session, sorted(spots), operation.start_date, operation.tz)
        create_user(session, PARTNER, "partner", PASSWORD, agency=DEMO_PARTNER_AGENCY)
    engine.dispose()
    app = create_app({"DATABASE_URL": url})
    with served_by_waitress(app) as base:
        yield base, Demo(url, demo.passwords)
    app.extensions["tracker.sessions"].kw["bind"].dispose()


@pytest.fixture(scope="module")
def browser(site):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def signed_in(browser, base: str, username: str, password: str) -> Iterator[BrowserSession]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    session = BrowserSession(page, base)
    record_traffic(context, page, session)
    session.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form:not(.signout) button[type=submit]")
    page.wait_for_load_state()
    yield session
    context.close()


def test_a_partner_updates_its_agencys_action_in_the_browser(browser, site):
    base, demo = site
    for session in signed_in(browser, base, PARTNER, PASSWORD):
        page = session.page
        assert urlsplit(page.url).path == "/partners"
        assert page.locator("#partner-hotspots tbody tr").count() == 25
        page.click("#partner-hotspots a[href='/partners/hotspots/LE01']")
        page.wait_for_url("**/partners/hotspots/LE01")
        form = page.locator("form.sara-update").first
        action_id = int(form.locator("input[name=action_id]").get_attribute("value"))
        form.locator("select[name=status]").select_option("done")
        form.locator("textarea[name=note]").fill("Lighting repaired and tested")
        form.locator("button[type=submit]").click()
        page.wait_for_url("**/partners/hotspots/LE01")
        assert page.locator(".flash").inner_text() == f"Action {action_id} is updated."
        action = page.locator(f"#action-{action_id}")
        assert "Done" in action.locator("[data-field=status]").inner_text()
        assert page.locator(f"#action-{action_id} .sara-updates").count() == 1
        session.assert_clean()
    engine = make_engine(demo.url)
    with session_factory(engine)() as db:
        assert db.get(SaraAction, action_id).status == "done"
        notes = db.scalars(
            select(SaraActionUpdate.note).where(SaraActionUpdate.action_id == action_id)
        ).all()
    engine.dispose()
    assert notes[-1] == "Lighting repaired and tested"


def test_a_supervisor_opens_a_board_report_whose_charts_are_in_the_document(browser, site):
    base, demo = site
    for session in signed_in(browser, base, "supervisor", demo.passwords["supervisor"]):
        page = session.page
        session.goto("/board")
        link = page.locator(".board-months a", has_text="HTML").first
        link.click()
        page.wait_for_load_state()
        assert urlsplit(page.url).path == "/board/report"
        assert "board report" in page.title()
        widths = page.eval_on_selector_all("img.chart", "images => images.map(i => i.naturalWidth)")
        assert len(widths) >= 2 and all(w > 300 for w in widths)
        assert page.locator("#headline-table tbody tr").count() == 25
        session.assert_clean()
