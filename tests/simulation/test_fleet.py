"""The simulated fleet: officers left alone patrol as their seed says, and an officer sent to
the most needed hot spot goes there, stays, and then patrols freely again."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import islice

import shapely

from tracker.dosage.geofence import METRES_PER_DEGREE, load_hot_spots
from tracker.foundation.clock import US_PER_S
from tracker.foundation.settings import PROJECT_ROOT
from tracker.simulation.fleet import TASKED_LINGER_MINUTES, Patroller, TaskedFleet, fleet

DEMO = load_hot_spots(PROJECT_ROOT / "geofences" / "leicestershire_demo.geojson")
BY_ID = {h.id: h for h in DEMO}
START = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)


def through(stream, end: datetime) -> list:
    """Take pings from the stream up to and including the first at or after `end` (the one
    whose turn makes the fleet read the list again, if that is due)."""
    pings = []
    for ping in stream:
        pings.append(ping)
        if ping.t_us >= end.timestamp() * US_PER_S:
            break
    return pings


def inside(hotspot_id: str, ping) -> bool:
    return shapely.intersects_xy(BY_ID[hotspot_id].geometry, ping.lon, ping.lat)


def test_a_fleet_nobody_sends_anywhere_patrols_as_its_seed_says():
    tasked = TaskedFleet(DEMO, 4, START, ranked_ids=lambda _moment: [], seed=5)
    end = START + timedelta(hours=2)
    pings = [p for p in through(tasked.pings(), end) if p.t_us < end.timestamp() * US_PER_S]
    assert pings == fleet(DEMO, 4, START, hours=2, seed=5)
    assert all(p.idle for p in tasked.patrollers)


def test_the_nearest_idle_officer_goes_to_the_top_hot_spot_then_patrols_freely():
    asked = []

    def ranked_ids(moment: datetime) -> list[str]:
        asked.append(moment)
        # Loughborough, far from where anyone patrols, then Leicester; then nothing, so
        # that no one is sent again.
        return ["LE16", "LE01"] if len(asked) <= 2 else []

    tasked = TaskedFleet(DEMO, 6, START, ranked_ids, every_s=600, seed=3)
    stream = tasked.pings()
    pings = [next(stream)]  # the first dispatch comes before the first ping
    assert asked == [START]
    (sent,) = [p for p in tasked.patrollers if not p.idle]
    assert sent.tasked_to.id == "LE16"
    away = {p.device_id: metres_to("LE16", p.position) for p in tasked.patrollers}
    assert away[sent.device_id] == min(away.values())

    # Ten minutes on the list is read again: LE16 has its officer, so LE01 gets another.
    pings += through(stream, START + timedelta(minutes=10))
    assert asked == [START, START + timedelta(minutes=10)]
    (second,) = [p for p in tasked.patrollers if not p.idle and p is not sent]
    assert second.tasked_to.id == "LE01"

    pings += through(stream, START + timedelta(hours=3))
    own = [p for p in pings if p.device_id == sent.device_id]
    arrived = next(n for n, p in enumerate(own) if inside("LE16", p))
    left = next(n for n, p in enumerate(own[arrived:], start=arrived) if not inside("LE16", p))
    stayed_s = (own[left - 1].t_us - own[arrived].t_us) / US_PER_S
    assert stayed_s >= TASKED_LINGER_MINUTES[0] * 60 - 30  # up to one ping interval short
    assert sent.idle and second.idle  # having stayed, they patrol freely again


def metres_to(hotspot_id: str, position: tuple[float, float]) -> float:
    """Metres from (lon, lat) to the hot spot's centroid, as the dispatcher measures them."""
    centre = BY_ID[hotspot_id].geometry.centroid
    lon, lat = position
    dx = (centre.x - lon) * METRES_PER_DEGREE * math.cos(math.radians(lat))
    return math.hypot(dx, (centre.y - lat) * METRES_PER_DEGREE)


def test_an_officer_sent_elsewhere_on_the_way_turns_from_where_they_are():
    officer = Patroller(DEMO, "radio-001", seed=11)
    stream = officer.pings(START)
    walked = list(islice(stream, 200))
    officer.send_to(BY_ID["LE16"])
    assert not officer.idle and officer.tasked_to.id == "LE16"
    turned = next(stream)
    assert math.dist((turned.lon, turned.lat), (walked[-1].lon, walked[-1].lat)) < 0.01
    arrival = next(p for p in stream if inside("LE16", p))
    assert arrival.t_us - turned.t_us < 3600 * US_PER_S  # driven there: it is 15 km away
