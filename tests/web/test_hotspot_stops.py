"""Stop and search on a hot spot's page (issue 12, item 2): the operation's searches linked to
it, their positive outcomes, searches per patrol hour and a map of where they were, with the
definitions of `tracker stops figures`."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from tests.web import test_web
from tracker.foundation.models import DailyDosage
from tracker.plan.models import Operation
from tracker.stops.models import StopSearch

app, demo, sessions, signed_in = test_web.app, test_web.demo, test_web.sessions, test_web.signed_in
DEMO_OPERATION = "Operation Guardian (DEMONSTRATION)"


def test_a_hot_spot_page_shows_its_searches_against_its_patrol_hours(sessions, signed_in):
    with sessions() as session:
        operation = session.scalars(select(Operation).where(Operation.name == DEMO_OPERATION)).one()
        in_operation = StopSearch.operation_id == operation.id
        hotspot_id, searches = session.execute(
            select(StopSearch.hotspot_id, func.count())
            .where(in_operation, StopSearch.hotspot_id.is_not(None))
            .group_by(StopSearch.hotspot_id)
            .order_by(func.count().desc(), StopSearch.hotspot_id)
        ).first()
        presence_us = session.scalar(
            select(func.sum(DailyDosage.presence_us)).where(
                DailyDosage.hotspot_id == hotspot_id, DailyDosage.day >= operation.start_date
            )
        )
    page = signed_in("supervisor").get(f"/hotspots/{hotspot_id}").text
    section = " ".join(page.split('id="stops"', 1)[1].split())
    assert f'<div class="figure">{searches}</div>searches' in section
    per_hour = searches / (presence_us / 3_600_000_000)
    shown = re.search(r'id="searches-per-patrol-hour">([\d.]+)<', section).group(1)
    assert float(shown) == round(per_hour, 2)
    assert 'id="hotspot-stops-map"' in section and page.count("L.circleMarker(") >= 1
