"""A simulated patrol fleet: officers walking between hot spots and lingering in them, and
going where they are sent.

Used by the demo (history, and live traffic that follows the tasking list) and by tests
that need realistic streams.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import shapely

from tracker.dosage.geofence import METRES_PER_DEGREE, HotSpot, HotSpotSet
from tracker.dosage.pings import Ping

log = logging.getLogger("tracker.simulation.fleet")
WALK_SPEED_M_S = 1.4
DRIVE_SPEED_M_S = 12.0
FREE_LINGER_MINUTES = (5, 25)
# Sent to a hot spot, an officer stays long enough for the visit to count and the ranking
# to move on (the demo plan's visits count from 10 minutes).
TASKED_LINGER_MINUTES = (15, 30)


def patrol(
    hot_spots: HotSpotSet,
    device_id: str,
    start: datetime,
    hours: float,
    seed: int = 0,
    interval_s: tuple[float, float] = (15, 30),
) -> Iterator[Ping]:
    """Yield one device's pings for a shift: visits of 5-25 minutes to nearby hot spots."""
    return Patroller(hot_spots, device_id, seed, interval_s).pings(start, hours)


class Patroller:
    """One officer's simulated patrol, produced as it goes, who can be sent to a hot spot.

    Left alone, the officer lingers 5-25 minutes in a hot spot, drifting within it, then
    walks to one of the nearest four (or, now and then, drives to any). Sent somewhere
    (`send_to`), the officer leaves at once, goes there, stays 15-30 minutes, and then
    patrols freely again. Never sent, the pings are those of the same seed every time.
    """

    def __init__(
        self,
        hot_spots: HotSpotSet,
        device_id: str,
        seed: int = 0,
        interval_s: tuple[float, float] = (15, 30),
    ):
        self.device_id = device_id
        self.position: tuple[float, float] | None = None  # (lon, lat) of the latest ping
        self._rng = random.Random(f"{seed}:{device_id}")  # noqa: S311 (simulation, not security)
        self._spots = list(hot_spots)
        self._interval_s = interval_s
        self._order: HotSpot | None = None  # sent there, not yet on the way
        self._tasked: HotSpot | None = None  # on the way there, or patrolling it as sent

    @property
    def tasked_to(self) -> HotSpot | None:
        """The hot spot the officer has been sent to and not yet finished patrolling."""
        return self._order or self._tasked

    @property
    def idle(self) -> bool:
        """Whether the officer patrols freely and may be sent somewhere."""
        return self.tasked_to is None

    def send_to(self, hot_spot: HotSpot) -> None:
        """Send the officer to `hot_spot`: from the next ping on, the officer heads there."""
        self._order = hot_spot

    def pings(self, start: datetime, hours: float | None = None) -> Iterator[Ping]:
        """Yield the pings from `start` for `hours` (without end if None)."""
        rng, spots, interval_s = self._rng, self._spots, self._interval_s
        here = spots[rng.randrange(len(spots))]
        lon, lat = point_in(here, rng)
        t = start.timestamp()
        end = math.inf if hours is None else t + hours * 3600
        while t < end:
            if self._order is None:
                # Linger inside the hot spot, drifting slowly within it.
                minutes = TASKED_LINGER_MINUTES if self._tasked else FREE_LINGER_MINUTES
                linger_until = t + rng.uniform(*minutes) * 60
                while t < min(linger_until, end) and self._order is None:
                    yield self._ping(t, lat, lon)
                    if rng.random() < 0.3:
                        lon, lat = point_in(here, rng)
                    t += rng.uniform(*interval_s)
            if self._order is not None:
                here = self._tasked = self._order
                self._order = None
            else:
                # Walk to another hot spot near this one (or, rarely, take a car anywhere).
                self._tasked = None
                nearby = sorted(spots, key=lambda h: h.geometry.centroid.distance(here.geometry))
                here = rng.choice(nearby[1:5] if rng.random() < 0.85 else spots)
            to_lon, to_lat = point_in(here, rng)
            metres = _metres(lat, lon, to_lat, to_lon)
            travel_s = metres / (WALK_SPEED_M_S if metres < 3000 else DRIVE_SPEED_M_S)
            steps = max(1, int(travel_s / sum(interval_s) * 2))
            from_lon, from_lat = lon, lat
            lon, lat = to_lon, to_lat
            for step in range(1, steps + 1):
                if t >= end:
                    return
                if self._order is not None:
                    lon, lat = self.position  # sent elsewhere on the way: turn from here
                    break
                f = step / steps
                yield self._ping(
                    t, from_lat + (to_lat - from_lat) * f, from_lon + (to_lon - from_lon) * f
                )
                t += travel_s / steps

    def _ping(self, t: float, lat: float, lon: float) -> Ping:
        ping = _ping(self.device_id, t, lat, lon, self._rng)
        self.position = (ping.lon, ping.lat)
        return ping


def dispatch(patrollers: Sequence[Patroller], hot_spot: HotSpot) -> Patroller | None:
    """Send the idle officer nearest to `hot_spot` there and return them; None if all are
    busy or one is already sent there."""
    if any(p.tasked_to is not None and p.tasked_to.id == hot_spot.id for p in patrollers):
        return None
    centre = hot_spot.geometry.centroid
    idle = [p for p in patrollers if p.idle and p.position is not None]
    if not idle:
        return None
    nearest = min(idle, key=lambda p: _metres(p.position[1], p.position[0], centre.y, centre.x))
    nearest.send_to(hot_spot)
    return nearest


class TaskedFleet:
    """Officers patrolling without end from `start`, sent now and then where most needed.

    Every `every_s` seconds of patrol time it asks `ranked_ids` (given that moment) for hot
    spot ids, most needed first, and sends the idle officer nearest to the first hot spot
    that no officer is already sent to; at most one officer each time, so the fleet keeps
    patrolling freely while the list changes under it.
    """

    def __init__(
        self,
        hot_spots: HotSpotSet,
        devices: int,
        start: datetime,
        ranked_ids: Callable[[datetime], Sequence[str]],
        every_s: float = 180,
        seed: int = 0,
    ):
        self.patrollers = [Patroller(hot_spots, f"radio-{n + 1:03d}", seed) for n in range(devices)]
        self._by_id = {h.id: h for h in hot_spots}
        self._start = start
        self._ranked_ids = ranked_ids
        self._every_s = every_s

    def pings(self) -> Iterator[Ping]:
        """Yield every officer's pings in time order, dispatching as time passes."""
        streams = [p.pings(self._start) for p in self.patrollers]
        heap = [(first.t_us, n, first) for n, first in enumerate(next(s) for s in streams)]
        heapq.heapify(heap)
        next_dispatch_us = int(self._start.timestamp() * 1_000_000)
        while heap:
            t_us, n, ping = heap[0]
            if t_us >= next_dispatch_us:
                self.dispatch(datetime.fromtimestamp(next_dispatch_us / 1_000_000, tz=UTC))
                next_dispatch_us += int(self._every_s * 1_000_000)
            yield ping
            following = next(streams[n], None)
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (following.t_us, n, following))

    def dispatch(self, moment: datetime) -> Patroller | None:
        """Send an idle officer to the most needed hot spot no one is sent to; return them."""
        sent_to = {p.tasked_to.id for p in self.patrollers if p.tasked_to is not None}
        for hotspot_id in self._ranked_ids(moment):
            hot_spot = self._by_id.get(hotspot_id)
            if hot_spot is None or hotspot_id in sent_to:
                continue
            officer = dispatch(self.patrollers, hot_spot)
            if officer is not None:
                log.info("sent %s to %s", officer.device_id, hotspot_id)
            return officer
        return None


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
