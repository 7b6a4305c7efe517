"""A simulated patrol fleet: officers walking between hot spots and lingering in them.

Used by the demo (history and live traffic) and by tests that need realistic streams.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime

import shapely

from tracker.dosage.geofence import METRES_PER_DEGREE, HotSpotSet
from tracker.dosage.pings import Ping

WALK_SPEED_M_S = 1.4


def patrol(
    hot_spots: HotSpotSet,
    device_id: str,
    start: datetime,
    hours: float,
    seed: int = 0,
    interval_s: tuple[float, float] = (15, 30),
) -> Iterator[Ping]:
    """Yield one device's pings for a shift: visits of 5-25 minutes to nearby hot spots."""
    rng = random.Random(f"{seed}:{device_id}")  # noqa: S311 (simulation, not security)
    spots = list(hot_spots)
    here = spots[rng.randrange(len(spots))]
    lon, lat = point_in(here, rng)
    t = start.timestamp()
    end = t + hours * 3600
    while t < end:
        # Linger inside the hot spot, drifting slowly within it.
        linger_until = t + rng.uniform(5, 25) * 60
        while t < min(linger_until, end):
            yield _ping(device_id, t, lat, lon, rng)
            if rng.random() < 0.3:
                lon, lat = point_in(here, rng)
            t += rng.uniform(*interval_s)
        # Walk to another hot spot near this one (or, rarely, take a car anywhere).
        nearby = sorted(spots, key=lambda h: h.geometry.centroid.distance(here.geometry))
        here = rng.choice(nearby[1:5] if rng.random() < 0.85 else spots)
        to_lon, to_lat = point_in(here, rng)
        metres = _metres(lat, lon, to_lat, to_lon)
        travel_s = metres / (WALK_SPEED_M_S if metres < 3000 else 12.0)
        steps = max(1, int(travel_s / sum(interval_s) * 2))
        for step in range(1, steps + 1):
            if t >= end:
                return
            f = step / steps
            yield _ping(device_id, t, lat + (to_lat - lat) * f, lon + (to_lon - lon) * f, rng)
            t += travel_s / steps
        lon, lat = to_lon, to_lat


def fleet(
    hot_spots: HotSpotSet, devices: int, start: datetime, hours: float, seed: int = 0
) -> list[Ping]:
    """Return the pings of several devices patrolling from `start`, sorted by time."""
    pings = [
        p
        for n in range(devices)
        for p in patrol(hot_spots, f"radio-{n + 1:03d}", start, hours, seed)
    ]
    return sorted(pings, key=lambda p: (p.t_us, p.device_id))


def point_in(hot_spot, rng, tries: int = 100) -> tuple[float, float]:
    """Return a random (lon, lat) inside a hot spot; `rng` is a random.Random or a numpy
    Generator (both draw with `uniform`)."""
    min_x, min_y, max_x, max_y = hot_spot.geometry.bounds
    for _ in range(tries):
        x, y = rng.uniform(min_x, max_x), rng.uniform(min_y, max_y)
        if shapely.intersects_xy(hot_spot.geometry, x, y):  # edges inside, as `covers`
            return x, y
    point = hot_spot.geometry.representative_point()
    return point.x, point.y


def _ping(device_id: str, t: float, lat: float, lon: float, rng: random.Random) -> Ping:
    accuracy = rng.choice((5.0, 8.0, 12.0, 20.0, 35.0)) if rng.random() > 0.02 else 150.0
    return Ping(device_id, int(t * 1_000_000), round(lat, 6), round(lon, 6), accuracy, None)


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dy = (lat2 - lat1) * METRES_PER_DEGREE
    dx = (lon2 - lon1) * METRES_PER_DEGREE * math.cos(math.radians(lat1))
    return math.hypot(dx, dy)
