"""Loading a plan file on the Plan page in a real headless Chromium, against waitress."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.servers import console_problems, served_by_waitress
from tests.web.test_web_assurance import PASSWORD, make_app
from tracker.accounts.users import create_user
from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.recompute import replace_hot_spots
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.foundation.models import AuditEvent
from tracker.plan.models import Operation

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DEMO_PLAN = ROOT / "geofences" / "demo_plan.yaml"


@pytest.fixture
def served(tmp_path):
    """The app on waitress over a database with the demo hot spots, an admin and no plan."""
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        replace_hot_spots(
            session,
            load_hot_spots(ROOT / "geofences" / "leicestershire_demo.geojson"),
            DosageParams(),
        )
        create_user(session, "admin", "admin", PASSWORD, actor="test")
    with served_by_waitress(make_app(url)) as base:
        yield base, sessions
    engine.dispose()


def test_an_administrator_loads_the_first_plan_from_the_plan_page(chromium, served):
    base, sessions = served
    page = chromium.new_page()
    problems = console_problems(page)
    page.goto(f"{base}/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/overview")

    page.goto(f"{base}/plan")
    assert "No operation plan is loaded yet." in page.inner_text("main")
    page.set_input_files("input[name=plan]", str(DEMO_PLAN))
    page.click("form[enctype='multipart/form-data'] button[type=submit]")
    page.wait_for_url(f"{base}/plan")

    assert "Loaded the plan of Operation Guardian (DEMONSTRATION): 25 hot spots" in page.inner_text(
        ".flash"
    )
    assert page.inner_text("h1") == "Plan: Operation Guardian (DEMONSTRATION)"
    assert page.locator("a[href='/hotspots/LE25']").count() >= 1
    assert problems == []
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Operation)) == 1
        assert (
            session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "plan.load"))
            == "admin"
        )
