"""A synthetic recorded-crime history (docs/harm.md, "Synthetic history"), for the demo, the
tests and the benchmark: invented crimes, never to be mistaken for real ones.

Crimes arise month by month as Poisson counts from three kinds of source:

- the given hot spots, each with its own rate, a mix of types heavy in violence, and,
  during the operation, its rate times `effect` (the planted effect);
- a few dozen other small places (discs of 60-120 m) with raised rates, so that harm is
  concentrated beyond the hot spots too, as it is in real cities;
- a background spread around town centres (Gaussian clusters) and thinly over the whole
  area, with the police.uk mix of types (what falls outside the area is not recorded).

Every rate follows a seasonal cycle (a summer peak of +12%). A share of crimes is published
without a location, as police.uk does. Generation is vectorised and seeded: the same call
gives the same crimes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import shapely
from sqlalchemy.orm import Session

from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.store import insert_ignoring_duplicates
from tracker.foundation.models import utc_now
from tracker.harm.crimes import stored_keys
from tracker.harm.evaluate import add_months
from tracker.harm.identify import geometry_to_grid, to_wgs84
from tracker.harm.models import POLICE_UK, RecordedCrime

SYNTHETIC_FORCE = "Synthetic demonstration data (not real crime)"
NO_LOCATION = "No Location"
# Shares of police.uk street-level types, roughly as a county force records them.
BACKGROUND_MIX: Mapping[str, float] = {
    "Anti-social behaviour": 0.11,
    "Bicycle theft": 0.02,
    "Burglary": 0.08,
    "Criminal damage and arson": 0.10,
    "Drugs": 0.025,
    "Other crime": 0.02,
    "Other theft": 0.085,
    "Possession of weapons": 0.006,
    "Public order": 0.09,
    "Robbery": 0.01,
    "Shoplifting": 0.045,
    "Theft from the person": 0.01,
    "Vehicle crime": 0.095,
    "Violence and sexual offences": 0.304,
}
# Hot spots: town-centre streets and the night-time economy.
HOT_SPOT_MIX: Mapping[str, float] = {
    "Anti-social behaviour": 0.06,
    "Criminal damage and arson": 0.05,
    "Drugs": 0.04,
    "Other theft": 0.08,
    "Possession of weapons": 0.01,
    "Public order": 0.14,
    "Robbery": 0.04,
    "Shoplifting": 0.10,
    "Theft from the person": 0.05,
    "Violence and sexual offences": 0.43,
}
STREETS = (
    "High Street", "Church Street", "Station Road", "Victoria Road", "Mill Lane",
    "London Road", "Park Road", "Queen Street", "King Street", "New Street", "Green Lane",
    "Market Street", "Chapel Street", "Main Street", "Albert Road", "Manor Road",
    "Grove Road", "West Street", "North Street", "South Street", "School Lane",
    "Forest Road", "Belgrave Road", "Narborough Road", "Melton Road", "Aylestone Road",
    "Uppingham Road", "Welford Road", "Hinckley Road", "Loughborough Road", "Parking Area",
    "Supermarket", "Petrol Station", "Shopping Area", "Sports/Recreation Area", "Nightclub",
)  # fmt: skip
SEASONAL_AMPLITUDE = 0.12
PEAK_MONTH = 7


@dataclass(frozen=True)
class HistorySettings:
    """How much crime, where, and the planted effect; the defaults give a city and its
    surroundings about the size of the demo's."""

    background_per_month: float = 2_500.0
    hot_spot_per_month: float = 20.0  # each hot spot, before the operation
    other_places: int = 40
    other_place_per_month: float = 5.0
    town_centres: int = 6
    clustered_share: float = 0.7  # of the background: around town centres, the rest spread
    extent_m: float = 12_000.0  # the area reaches this far beyond the hot spots each way
    unlocated_share: float = 0.07
    effect: float = 0.75  # hot spots' rate during the operation, as a share of before
    seed: int = 20191001


def months_between(first: date, last: date) -> list[date]:
    """Return the first days of the months from `first` to `last` (inclusive)."""
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = add_months(month, 1)
    return months


def _draw_types(rng: np.random.Generator, mix: Mapping[str, float], n: int) -> np.ndarray:
    names = np.array(list(mix), dtype=object)
    shares = np.array(list(mix.values()), dtype=float)
    return names[rng.choice(len(names), size=n, p=shares / shares.sum())]


def _points_in(rng: np.random.Generator, geometry_m, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return n points uniformly inside a polygon (metres), by rejection from its box."""
    min_x, min_y, max_x, max_y = geometry_m.bounds
    shapely.prepare(geometry_m)
    xs, ys = [], []
    while n > 0:
        x = rng.uniform(min_x, max_x, 4 * n + 16)
        y = rng.uniform(min_y, max_y, 4 * n + 16)
        inside = shapely.contains_xy(geometry_m, x, y)
        xs.append(x[inside][:n])
        ys.append(y[inside][:n])
        n -= len(xs[-1])
    return np.concatenate(xs), np.concatenate(ys)


def synthetic_crimes(
    hot_spots: HotSpotSet,
    months: Sequence[date],
    operation_months: Sequence[date] = (),
    settings: HistorySettings = HistorySettings(),
) -> pd.DataFrame:
    """Return invented crimes: month, crime_type, offence_code (none), longitude, latitude
    (NaN when unlocated), location and source (hot spot id, "place", or "background").

    The hot spots' rate is `settings.effect` times its usual rate in `operation_months`.
    """
    rng = np.random.default_rng(settings.seed)
    metric = [geometry_to_grid(h.geometry) for h in hot_spots]
    union = shapely.union_all(metric)
    min_x, min_y, max_x, max_y = union.bounds
    min_x, min_y = min_x - settings.extent_m, min_y - settings.extent_m
    max_x, max_y = max_x + settings.extent_m, max_y + settings.extent_m
    # Town centres: the hot spots' own centre first (the city), then smaller towns around.
    towns_x = np.concatenate(
        [[union.centroid.x], rng.uniform(min_x, max_x, settings.town_centres - 1)]
    )
    towns_y = np.concatenate(
        [[union.centroid.y], rng.uniform(min_y, max_y, settings.town_centres - 1)]
    )
    town_weight = np.concatenate([[3.0], rng.uniform(0.5, 1.5, settings.town_centres - 1)])
    town_spread = np.concatenate(
        [[2_500.0], rng.uniform(800.0, 1_500.0, settings.town_centres - 1)]
    )
    # Other concentrated places: near the town centres, where crime concentrates.
    place_town = rng.choice(
        settings.town_centres, settings.other_places, p=town_weight / town_weight.sum()
    )
    place_x = (
        towns_x[place_town] + rng.normal(0, 1, settings.other_places) * town_spread[place_town]
    )
    place_y = (
        towns_y[place_town] + rng.normal(0, 1, settings.other_places) * town_spread[place_town]
    )
    place_radius = rng.uniform(60.0, 120.0, settings.other_places)
    place_rate = rng.gamma(2.0, settings.other_place_per_month / 2.0, settings.other_places)
    hot_spot_rate = rng.gamma(4.0, settings.hot_spot_per_month / 4.0, len(metric))
    in_operation = set(operation_months)

    parts: list[pd.DataFrame] = []
    for month in months:
        season = 1 + SEASONAL_AMPLITUDE * np.cos(2 * np.pi * (month.month - PEAK_MONTH) / 12)
        effect = settings.effect if month in in_operation else 1.0
        xs, ys, kinds, sources = [], [], [], []
        # Hot spots.
        counts = rng.poisson(hot_spot_rate * season * effect)
        for hot_spot, geometry_m, n in zip(hot_spots, metric, counts, strict=True):
            if n:
                x, y = _points_in(rng, geometry_m, int(n))
                xs.append(x)
                ys.append(y)
                kinds.append(_draw_types(rng, HOT_SPOT_MIX, int(n)))
                sources.append(np.full(int(n), hot_spot.id, dtype=object))
        # Other concentrated places.
        counts = rng.poisson(place_rate * season)
        n = int(counts.sum())
        which = np.repeat(np.arange(settings.other_places), counts)
        angle, distance = (
            rng.uniform(0, 2 * np.pi, n),
            place_radius[which] * np.sqrt(rng.uniform(0, 1, n)),
        )
        xs.append(place_x[which] + distance * np.cos(angle))
        ys.append(place_y[which] + distance * np.sin(angle))
        kinds.append(_draw_types(rng, HOT_SPOT_MIX, n))
        sources.append(np.full(n, "place", dtype=object))
        # Background: clustered around towns, and spread thinly.
        n = int(rng.poisson(settings.background_per_month * season))
        clustered = rng.uniform(0, 1, n) < settings.clustered_share
        town = rng.choice(settings.town_centres, n, p=town_weight / town_weight.sum())
        x = np.where(
            clustered,
            towns_x[town] + rng.normal(0, 1, n) * town_spread[town],
            rng.uniform(min_x, max_x, n),
        )
        y = np.where(
            clustered,
            towns_y[town] + rng.normal(0, 1, n) * town_spread[town],
            rng.uniform(min_y, max_y, n),
        )
        # What falls outside the area falls outside the force: it is not recorded here.
        inside = (x >= min_x) & (x <= max_x) & (y >= min_y) & (y <= max_y)
        n = int(inside.sum())
        xs.append(x[inside])
        ys.append(y[inside])
        kinds.append(_draw_types(rng, BACKGROUND_MIX, n))
        sources.append(np.full(n, "background", dtype=object))

        x, y = np.concatenate(xs), np.concatenate(ys)
        lon, lat = to_wgs84(x, y)
        total = len(x)
        unlocated = rng.uniform(0, 1, total) < settings.unlocated_share
        street = np.array(STREETS, dtype=object)[rng.integers(0, len(STREETS), total)]
        location = np.where(unlocated, NO_LOCATION, "On or near " + street.astype(str))
        parts.append(
            pd.DataFrame(
                {
                    "month": month,
                    "crime_type": np.concatenate(kinds),
                    "offence_code": None,
                    "longitude": np.where(unlocated, np.nan, np.round(lon, 6)),
                    "latitude": np.where(unlocated, np.nan, np.round(lat, 6)),
                    "location": location,
                    "source": np.concatenate(sources),
                }
            )
        )
    columns = ["month", "crime_type", "offence_code", "longitude", "latitude", "location", "source"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def store_synthetic_history(
    session: Session,
    hot_spots: HotSpotSet,
    first_month: date,
    last_month: date,
    operation_start: date | None = None,
    operation_end: date | None = None,
    settings: HistorySettings = HistorySettings(),
) -> int:
    """Generate a history from `first_month` to `last_month` with the planted effect in the
    operation's months, and store it as police.uk crimes; return how many were new.

    Crime IDs are derived from the seed and the row, so calling again adds nothing.
    """
    months = months_between(first_month, last_month)
    operation_months = (
        months_between(operation_start, operation_end)
        if operation_start is not None and operation_end is not None
        else []
    )
    crimes = synthetic_crimes(hot_spots, months, operation_months, settings)
    now = utc_now()
    rows = []
    asb = crimes["crime_type"].to_numpy() == "Anti-social behaviour"
    for i, crime in enumerate(crimes.itertuples(index=False)):
        key = hashlib.sha256(f"synthetic#{settings.seed}#{i}#{crime.month}".encode()).hexdigest()
        located = crime.longitude == crime.longitude  # NaN is unlocated
        rows.append(
            {
                "import_key": key,
                "source": POLICE_UK,
                # police.uk gives anti-social behaviour no Crime ID.
                "crime_ref": None if asb[i] else key,
                "month": crime.month,
                "crime_type": crime.crime_type,
                "longitude": float(crime.longitude) if located else None,
                "latitude": float(crime.latitude) if located else None,
                "location": crime.location,
                "reported_by": SYNTHETIC_FORCE,
                "falls_within": SYNTHETIC_FORCE,
                "source_file": "synthetic",
                "created_at": now,
            }
        )
    present = stored_keys(session, [row["import_key"] for row in rows])
    new = [row for row in rows if row["import_key"] not in present]
    for start in range(0, len(new), 5000):
        insert_ignoring_duplicates(session, RecordedCrime.__table__, new[start : start + 5000])
    return len(new)
