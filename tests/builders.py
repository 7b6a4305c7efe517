"""Small builders for test data: hot spot GeoJSON, pings and ping tracks.

Positions are given as (lat, lon) to pings, like a GPS fix; GeoJSON rings are built here
as (lon, lat) and wound as RFC 7946 asks (exterior anticlockwise, holes clockwise).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from tracker.dosage.engine import DosageParams, DosageResult, compute_dosage
from tracker.dosage.geofence import HotSpotSet, parse_hot_spots
from tracker.dosage.pings import Ping, make_ping, parse_timestamp, pings_frame

METRES_PER_DEGREE_LAT = 111_320.0

Box = tuple[float, float, float, float]  # (west, south, east, north) in degrees

# The test geography, in central London. A and B are rectangles of 0.002 degrees that
# overlap in the strip -0.100 <= lon <= -0.099; H, further west, has a hole in its middle.
BOX_A: Box = (-0.101, 51.499, -0.099, 51.501)
BOX_B: Box = (-0.100, 51.499, -0.098, 51.501)
BOX_H: Box = (-0.201, 51.499, -0.199, 51.501)
HOLE_H: Box = (-0.2005, 51.4995, -0.1995, 51.5005)
IN_A = (51.5, -0.1005)  # (lat, lon) in A only
IN_A_AND_B = (51.5, -0.0995)
OUTSIDE = (51.51, -0.1)  # about 1 km north of A: in no hot spot
BETWEEN_SPOTS = (51.5, -0.15)  # inside the bounding box of A, B and H, in none of them
IN_H_RING = (51.49925, -0.2)  # in H, between its outer ring and its hole
IN_HOLE = (51.5, -0.2)
ON_HOLE_EDGE = (HOLE_H[1], -0.2)


def box_ring(west: float, south: float, east: float, north: float, *, clockwise=False) -> list:
    """Return a closed rectangular ring of (lon, lat) positions."""
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return ring[::-1] if clockwise else ring


def polygon_feature(hot_spot_id: str, outer: Box, holes: tuple[Box, ...] = ()) -> dict:
    """Return a GeoJSON Feature for a rectangle, optionally with rectangular holes."""
    rings = [box_ring(*outer)] + [box_ring(*hole, clockwise=True) for hole in holes]
    return {
        "type": "Feature",
        "properties": {"id": hot_spot_id, "name": f"Hot spot {hot_spot_id}"},
        "geometry": {"type": "Polygon", "coordinates": rings},
    }


def square_feature(hot_spot_id: str, lat: float, lon: float, size_m: float) -> dict:
    """Return a square hot spot of side size_m metres centred on (lat, lon)."""
    half_lat = size_m / 2 / METRES_PER_DEGREE_LAT
    half_lon = half_lat / math.cos(math.radians(lat))
    return polygon_feature(
        hot_spot_id, (lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat)
    )


def feature_collection(*features: dict) -> dict:
    """Return a GeoJSON FeatureCollection of the features."""
    return {"type": "FeatureCollection", "features": list(features)}


def hot_spot_set(*features: dict) -> HotSpotSet:
    """Return the parsed, validated HotSpotSet of the features."""
    return parse_hot_spots(feature_collection(*features))


def at(start: str, seconds: float) -> str:
    """Return the ISO-8601 instant `seconds` after `start`, in the same UTC offset."""
    return (datetime.fromisoformat(start) + timedelta(seconds=seconds)).isoformat()


def ping(device: str, when: Any, lat: float, lon: float, accuracy_m: float | None = None) -> Ping:
    """Return one validated ping (`when`: ISO-8601 with offset, or epoch seconds)."""
    return make_ping(device, when, lat, lon, accuracy_m=accuracy_m)


def raw_ping(
    device: str, when: Any, lat: float, lon: float, accuracy_m: float | None = None
) -> Ping:
    """Return a ping without validating its position, as the engine may still be given one."""
    return Ping(device, parse_timestamp(when), lat, lon, accuracy_m)


def track(
    device: str,
    start: str,
    every_s: float,
    n: int,
    lat: float,
    lon: float,
    accuracy_m: float | None = None,
) -> list[Ping]:
    """Return n pings of one device at one position, every_s seconds apart from start."""
    return [ping(device, at(start, i * every_s), lat, lon, accuracy_m) for i in range(n)]


def dosage(pings: list[Ping], hot_spots: HotSpotSet, **params: Any) -> DosageResult:
    """Run the dosage engine on a list of pings with DosageParams(**params)."""
    return compute_dosage(pings_frame(pings), hot_spots, DosageParams(**params))
