"""`make demo`'s database looks like a running operation: the operation began when its
patrol history begins and runs 12 months, every stop-and-search record is stored and
reviewed in a realistic mix, the ingest-health page keeps loaded history out of the live
rate, and the live fleet's dispatcher follows the tasking list.

Uses the web tests' demo database (tests/web/test_web.py), built once per test session.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.web import test_web
from tests.web.test_web import Demo, make_app, sign_in
from tracker.demo import DEMO_PLAN, DEMO_STOPS, most_needed
from tracker.dosage.engine import DosageParams
from tracker.dosage.ingest import SOURCE as LIVE_SOURCE
from tracker.foundation.clock import instant_us, local_date
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.models import DailyDosage, PingRow
from tracker.plan.compliance import compliance_table, daily_compliance
from tracker.plan.models import Operation
from tracker.plan.reader import read_plan
from tracker.plan.storage import stored_plan
from tracker.plan.tasking import tasking
from tracker.stops.models import BwvReview, StopSearch

demo = test_web.demo
PARAMS = DosageParams()


DEMO_OPERATION = "Operation Guardian (DEMONSTRATION)"


@pytest.fixture(scope="module")
def sessions(demo: Demo) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(demo.url)
    yield session_factory(engine)
    engine.dispose()


def the_operation(session: Session) -> Operation:
    """The demo's operation (the demo also holds a finished pilot, for the harm page)."""
    return session.scalars(select(Operation).where(Operation.name == DEMO_OPERATION)).one()


def test_the_operation_begins_on_the_first_day_of_history_and_runs_twelve_months(sessions):
    with sessions() as session:
        operation = the_operation(session)
        first_ping_us = session.scalar(select(func.min(PingRow.t_us)))
        plan = stored_plan(session, operation)
    start, end = operation.start_date, operation.end_date
    assert start == local_date(first_ping_us, PARAMS.zone)
    assert start < datetime.now(PARAMS.zone).date()
    anniversary = end + timedelta(days=1)
    assert (anniversary.year, anniversary.month, anniversary.day) == (
        start.year + 1,
        start.month,
        start.day,
    ) or ((start.month, start.day) == (2, 29) and anniversary == date(start.year + 1, 3, 1))

    # The file's phases, each as far from the start and as long as written (the last day of
    # the operation stays its last day), with the same targets.
    written = read_plan(DEMO_PLAN)
    assert len(plan.phases) == len(written.phases)
    for stored, phase in zip(plan.phases, written.phases, strict=True):
        assert stored.hotspot_id == phase.hotspot_id
        assert stored.starts - start == phase.starts - written.start_date
        if phase.ends == written.end_date:
            assert stored.ends == end
        else:
            assert stored.ends - stored.starts == phase.ends - phase.starts
        assert stored.presence_target_minutes() == phase.presence_target_minutes()
        assert (stored.visits_per_day, stored.windows) == (phase.visits_per_day, phase.windows)


def test_every_day_of_the_operation_so_far_has_patrols_where_the_plan_asks(sessions):
    today = datetime.now(PARAMS.zone).date()
    with sessions() as session:
        operation = the_operation(session)
        days = daily_compliance(session, operation, reference_date=today - timedelta(days=1))
        to_date = compliance_table(session, operation, reference_date=today)
        patrolled = set(session.scalars(select(DailyDosage.day).where(DailyDosage.presence_us > 0)))
    assert set(days["date"]) == {
        operation.start_date + timedelta(days=n) for n in range((today - operation.start_date).days)
    }
    assert patrolled >= set(days["date"])
    with_target = days[days["target_presence_minutes"] > 0]
    served = with_target[with_target["counted_presence_minutes"] > 0]
    # Hot spots asked for presence get it on most days; a miss now and then is realistic.
    assert (served.groupby("date").size() >= with_target.groupby("date").size() * 0.75).all()

    operation_rows = to_date[
        (to_date["period"] == "operation") & (to_date["target_presence_minutes"] > 0)
    ]
    assert (operation_rows["counted_presence_minutes"] > 0).all()
    status = Counter(operation_rows["presence_status"])
    assert status["green"] >= len(operation_rows) / 2, status


def test_every_demo_stop_is_stored_over_the_operation_with_reviews_in_a_mix(sessions):
    with sessions() as session:
        operation = the_operation(session)
        stops = session.execute(
            select(StopSearch, BwvReview)
            .join(BwvReview, BwvReview.stop_id == StopSearch.id)
            .where(StopSearch.source_file == "demo")
        ).all()
    assert len(stops) == DEMO_STOPS
    assert {s.reference for s, _ in stops} == {f"DEMO-{n:04d}" for n in range(1, DEMO_STOPS + 1)}
    assert len({s.import_key for s, _ in stops}) == DEMO_STOPS
    now = datetime.now(UTC)
    assert all(s.operation_id == operation.id and s.occurred_at < now for s, _ in stops)
    days = {local_date(instant_us(s.occurred_at), PARAMS.zone) for s, _ in stops}
    assert min(days) >= operation.start_date
    assert len(days) >= 10
    hot_spots = Counter(s.hotspot_id for s, _ in stops)
    assert len(hot_spots) - (None in hot_spots) >= 15
    assert hot_spots[None] < DEMO_STOPS / 4  # most stops are in hot spots

    statuses = Counter(r.status for _, r in stops)
    assert set(statuses) == {"pending", "reviewed", "no_footage"}, statuses
    assert statuses["reviewed"] >= DEMO_STOPS / 3
    assert statuses["pending"] >= DEMO_STOPS / 10
    reviewed = [r for _, r in stops if r.status == "reviewed"]
    assert len({r.outcome for r in reviewed}) >= 2
    assert all(r.reviewer == "assurance" for r in reviewed)


def figure(page: str, label: str) -> int:
    """Return the number on the health page's card with this label."""
    match = re.search(r'<div class="figure">([\d,]+)</div>' + re.escape(label), page)
    assert match, label
    return int(match.group(1).replace(",", ""))


def test_the_health_page_keeps_loaded_history_out_of_the_live_rate(demo, sessions):
    client = sign_in(make_app(demo), demo, "supervisor")
    page = client.get("/health").text
    rates = list(csv.DictReader(io.StringIO(client.get("/health?format=csv&table=rates").text)))
    hour_ago = instant_us(datetime.now(UTC) - timedelta(hours=1))
    with sessions() as session:
        live = session.scalar(
            select(func.count()).where(PingRow.source == LIVE_SOURCE, PingRow.t_us >= hour_ago)
        )
        loaded = session.scalar(select(func.count()).where(PingRow.source != LIVE_SOURCE))

    assert loaded > 100_000  # two weeks of a dozen radios
    assert figure(page, "live pings in the last hour") == live
    assert sum(int(r["pings"]) for r in rates) == live
    assert figure(page, "pings imported in 24 hours") == loaded
    assert sum(int(r["imported_pings"]) for r in rates) == loaded


def test_the_live_fleet_is_sent_down_the_tasking_list(sessions):
    with sessions() as session:
        items = tasking(session, PARAMS).items
    ranked = most_needed(sessions, PARAMS)
    assert ranked == [i.need.hotspot_id for i in items if not i.need.over_max]
    assert len(ranked) >= 20
