"""Ground truth: officers' continuous movement, and the dosage it really gave.

A path is piecewise linear in (lon, lat) with a time at every vertex: between two vertices
the officer moves straight at constant speed (standing still when both are the same
point). True presence is then exact interval arithmetic on the legs: the parts of each
leg inside each hot spot (edges inside, holes outside), as times, with no sampling. The
figures follow from those spans by the dosage rules that do not depend on pings (union,
sum, visits, local days), so truth and measurement differ only in how spans are found.

Movement (deterministic for a seed): officers on foot (1.2-1.6 m/s) or in vehicles
(6-11 m/s) go from hot spot to hot spot as along streets (legs east-west and north-south,
so routes cut through and clip other hot spots), linger in a hot spot for
5-25 minutes (walking between random points inside it, with pauses), sometimes pass
through without stopping, and attend calls away from hot spots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from tracker.dosage.engine import (
    DEVICE_ID,
    HOTSPOT_ID,
    SPAN_COLUMNS,
    DosageParams,
    DosageResult,
    dosage_from_spans,
)
from tracker.dosage.geofence import METRES_PER_DEGREE, HotSpotSet
from tracker.foundation.clock import US_PER_S, instant_us
from tracker.simulation.fleet import point_in

FOOT_SPEED_M_S = (1.2, 1.6)
VEHICLE_SPEED_M_S = (6.0, 11.0)
STREET_SPACING_M = 90.0  # routes follow a grid of streets this far apart


@dataclass(frozen=True)
class Path:
    """One device's true movement: vertex times (UTC microseconds) and positions."""

    device_id: str
    mode: str  # "foot" or "vehicle"
    t_us: np.ndarray
    lon: np.ndarray
    lat: np.ndarray

    def position(self, t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (lon, lat) at the given instants (inside the path's time range)."""
        return np.interp(t_us, self.t_us, self.lon), np.interp(t_us, self.t_us, self.lat)


class _Walker:
    """Builds one path vertex by vertex, moving in metres on a local flat projection."""

    def __init__(self, rng: np.random.Generator, lon: float, lat: float, t_us: int):
        self.rng = rng
        self.cos_lat = math.cos(math.radians(lat))
        self.t = [t_us]
        self.lon = [lon]
        self.lat = [lat]

    @property
    def now(self) -> int:
        return self.t[-1]

    def go(self, lon: float, lat: float, speed_m_s: float) -> None:
        """Move straight to (lon, lat) at a constant speed."""
        dx = (lon - self.lon[-1]) * METRES_PER_DEGREE * self.cos_lat
        dy = (lat - self.lat[-1]) * METRES_PER_DEGREE
        seconds = math.hypot(dx, dy) / speed_m_s
        if seconds > 0:
            self._vertex(self.now + round(seconds * US_PER_S), lon, lat)

    def wait(self, seconds: float) -> None:
        """Stand still."""
        self._vertex(self.now + round(seconds * US_PER_S), self.lon[-1], self.lat[-1])

    def route(self, lon: float, lat: float, speed_m_s: float) -> None:
        """Travel as along streets: to a street up to half a block away (STREET_SPACING_M
        apart), along it east-west or north-south, then straight to the destination."""
        spacing_lon = STREET_SPACING_M / (METRES_PER_DEGREE * self.cos_lat)
        street_lat = self.lat[-1] + self.rng.uniform(-0.5, 0.5) * STREET_SPACING_M / (
            METRES_PER_DEGREE
        )
        if self.rng.random() < 0.5:
            self.go(self.lon[-1], street_lat, speed_m_s)
            self.go(lon, street_lat, speed_m_s)
        else:
            street_lon = self.lon[-1] + self.rng.uniform(-0.5, 0.5) * spacing_lon
            self.go(street_lon, self.lat[-1], speed_m_s)
            self.go(street_lon, lat, speed_m_s)
        self.go(lon, lat, speed_m_s)

    def _vertex(self, t_us: int, lon: float, lat: float) -> None:
        self.t.append(t_us)
        self.lon.append(lon)
        self.lat.append(lat)

    def path(self, device_id: str, mode: str) -> Path:
        return Path(
            device_id,
            mode,
            np.array(self.t, dtype=np.int64),
            np.array(self.lon, dtype=float),
            np.array(self.lat, dtype=float),
        )


def shift_path(
    hot_spots: HotSpotSet,
    device_id: str,
    mode: str,
    start: datetime,
    hours: float,
    rng: np.random.Generator,
) -> Path:
    """Return one officer's true movement over a shift starting in a random hot spot."""
    spots = list(hot_spots)
    centres = np.array([(h.geometry.centroid.x, h.geometry.centroid.y) for h in spots])
    here = int(rng.integers(len(spots)))
    walker = _Walker(rng, *point_in(spots[here], rng, tries=200), instant_us(start))
    end = walker.now + round(hours * 3600 * US_PER_S)
    speeds = FOOT_SPEED_M_S if mode == "foot" else VEHICLE_SPEED_M_S
    while walker.now < end:
        # Linger: walk between points inside the hot spot, pausing now and then.
        linger_end = walker.now + round(rng.uniform(5, 25) * 60 * US_PER_S)
        while walker.now < min(linger_end, end):
            if rng.random() < 0.35:
                walker.wait(rng.uniform(20, 180))
            else:
                walker.go(*point_in(spots[here], rng, tries=200), rng.uniform(*FOOT_SPEED_M_S))
        if rng.random() < 0.15:  # a call away from the hot spots
            lon, lat = walker.lon[-1], walker.lat[-1]
            away = rng.uniform(300, 1200) / (METRES_PER_DEGREE * walker.cos_lat)
            walker.route(lon + rng.choice((-1, 1)) * away, lat, rng.uniform(*speeds))
            walker.wait(rng.uniform(5, 15) * 60)
        # On to another hot spot, mostly a near one; sometimes straight through it.
        distance = np.hypot(*(centres - centres[here]).T)
        nearby = np.argsort(distance)[1:6]
        here = int(rng.choice(nearby)) if rng.random() < 0.85 else int(rng.integers(len(spots)))
        walker.route(*point_in(spots[here], rng, tries=200), rng.uniform(*speeds))
        if rng.random() < 0.2:
            here = int(rng.choice(np.argsort(np.hypot(*(centres - centres[here]).T))[1:4]))
            walker.route(*point_in(spots[here], rng, tries=200), rng.uniform(*speeds))
    return walker.path(device_id, mode)


def simulate_paths(
    hot_spots: HotSpotSet,
    officers: int,
    days: int,
    start: datetime,
    seed: int,
    shift_hours: float = 8.0,
    vehicle_share: float = 0.35,
) -> list[Path]:
    """Return the true paths of `officers` over `days` days: one shift each per day, starting
    between 08:00 and 16:00 after `start`'s midnight, a share of them in vehicles."""
    rng = np.random.default_rng(seed)
    paths = []
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(officers):
        mode = "vehicle" if n < round(officers * vehicle_share) else "foot"
        for day in range(days):
            begins = midnight + pd.Timedelta(days=day, hours=float(rng.uniform(8, 16)))
            device = f"sim-{n + 1:03d}"
            paths.append(shift_path(hot_spots, device, mode, begins, shift_hours, rng))
    return paths


def true_spans(paths: list[Path], hot_spots: HotSpotSet) -> pd.DataFrame:
    """Return the exact spans (SPAN_COLUMNS) each device spent in each hot spot."""
    frames = []
    ids = np.asarray(hot_spots.ids, dtype=object)
    for path in paths:
        a = np.arange(len(path.t_us) - 1)
        x0, y0, x1, y1 = path.lon[a], path.lat[a], path.lon[a + 1], path.lat[a + 1]
        still = (x0 == x1) & (y0 == y1)
        # Moving: the parts of each leg inside each hot spot it may meet.
        leg, spot = hot_spots.segment_candidates(x0, y0, x1, y1)
        leg, spot = leg[~still[leg]], spot[~still[leg]]
        row, f_start, f_end = hot_spots.inside_fractions(x0[leg], y0[leg], x1[leg], y1[leg], spot)
        moved, dt = leg[row], path.t_us[leg[row] + 1] - path.t_us[leg[row]]
        # Standing still: the whole wait, in every hot spot that covers the point.
        waits = np.flatnonzero(still)
        point, inside = hot_spots.classify(x0[waits], y0[waits])
        frames.append(
            pd.DataFrame(
                {
                    HOTSPOT_ID: ids[np.concatenate([spot[row], inside])],
                    DEVICE_ID: path.device_id,
                    "start_us": np.concatenate(
                        [
                            path.t_us[moved] + np.rint(f_start * dt).astype(np.int64),
                            path.t_us[waits[point]],
                        ]
                    ),
                    "end_us": np.concatenate(
                        [
                            path.t_us[moved] + np.rint(f_end * dt).astype(np.int64),
                            path.t_us[waits[point] + 1],
                        ]
                    ),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=SPAN_COLUMNS)
    return pd.concat(frames, ignore_index=True)[SPAN_COLUMNS]


def true_dosage(paths: list[Path], hot_spots: HotSpotSet, params: DosageParams) -> DosageResult:
    """Return the dosage the paths really gave: presence, officer minutes and visits per hot
    spot and local day, by the same rules as measured dosage after crediting."""
    return dosage_from_spans(true_spans(paths, hot_spots), params)
