"""The pings a device would send along a true path: a fixed interval, GPS error, missed
fixes and coverage gaps.

The error model (GpsErrorModel, all distances in metres):

- each fix is off by a horizontal error drawn from a 2-D normal distribution whose
  standard deviation per axis is `sigma_m` (5 m: a median error of 5.9 m, a 95% radius
  of 12 m, the 5-20 m typical of phones and radios in streets), or `canyon_sigma_m`
  (12 m) inside the hot spots chosen as urban canyons (`canyon_share` 20% of them, at
  random);
- successive errors are correlated (AR(1) with `correlation_s` 20 s), as a receiver's
  filtered position drifts rather than jumps;
- a share `outlier_rate` (1%) of fixes are outliers, off by a further 50-300 m;
- the reported accuracy is 1.5 x the error's standard deviation times a log-normal
  factor (sigma 0.3), and is wrong for outliers: most (`outlier_hidden` 60%) report an
  ordinary accuracy, the rest 150-400 m (which the dosage rules then ignore);
- a share `missed_rate` (2%) of fixes is never sent, and coverage gaps (on average one
  every `gap_every_h` 4 hours, each 1-10 minutes) send nothing at all;
- the fix times jitter by up to `jitter_s` (1 s) around the schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from tracker.dosage.geofence import METRES_PER_DEGREE, HotSpotSet
from tracker.dosage.pings import ACCURACY_M, DEVICE_ID, LAT, LON, PING_COLUMNS, TIMESTAMP
from tracker.foundation.clock import US_PER_S
from tracker.simulation.truth import Path


@dataclass(frozen=True)
class GpsErrorModel:
    """How far and how often fixes are wrong (see the module docstring)."""

    sigma_m: float = 5.0
    canyon_sigma_m: float = 12.0
    canyon_share: float = 0.2
    correlation_s: float = 20.0
    outlier_rate: float = 0.01
    outlier_m: tuple[float, float] = (50.0, 300.0)
    outlier_hidden: float = 0.6
    missed_rate: float = 0.02
    gap_every_h: float = 4.0
    gap_minutes: tuple[float, float] = (1.0, 10.0)
    jitter_s: float = 1.0

    @classmethod
    def exact(cls) -> GpsErrorModel:
        """No error, no missed fixes, no gaps: every scheduled fix exactly on the path."""
        return cls(0.0, 0.0, 0.0, 20.0, 0.0, (0.0, 0.0), 0.0, 0.0, math.inf, (0.0, 0.0), 0.0)

    @classmethod
    def only(cls, part: str) -> GpsErrorModel:
        """The documented model reduced to one part: "noise" (the normal error, with its
        urban canyons), "outliers" (with their reported accuracy) or "gaps" (missed fixes
        and coverage gaps); the rest exact."""
        documented, exact = cls(), cls.exact()
        fields = {
            "noise": ("sigma_m", "canyon_sigma_m", "canyon_share", "correlation_s"),
            "outliers": ("outlier_rate", "outlier_m", "outlier_hidden"),
            "gaps": ("missed_rate", "gap_every_h", "gap_minutes"),
        }[part]
        return replace(exact, **{name: getattr(documented, name) for name in fields})


def sample_pings(
    paths: list[Path],
    hot_spots: HotSpotSet,
    interval_s: float,
    model: GpsErrorModel,
    seed: int,
) -> pd.DataFrame:
    """Return the pings (PING_COLUMNS) the devices on `paths` would send every `interval_s`."""
    rng = np.random.default_rng(seed)
    canyon = rng.random(len(hot_spots)) < model.canyon_share
    frames = []
    for path in paths:
        first, last = int(path.t_us[0]), int(path.t_us[-1])
        step = round(interval_s * US_PER_S)
        t_us = np.arange(first + int(rng.integers(step)), last, step, dtype=np.int64)
        if model.jitter_s:
            jitter = rng.uniform(-model.jitter_s, model.jitter_s, len(t_us)) * US_PER_S
            t_us = np.clip(t_us + jitter.astype(np.int64), first, last)
        sent = rng.random(len(t_us)) >= model.missed_rate
        for _ in range(rng.poisson((last - first) / US_PER_S / 3600 / model.gap_every_h)):
            begins = rng.uniform(first, last)
            ends = begins + rng.uniform(*model.gap_minutes) * 60 * US_PER_S
            sent &= (t_us < begins) | (t_us >= ends)
        t_us = t_us[sent]
        lon, lat = path.position(t_us)
        sigma = np.full(len(t_us), model.sigma_m)
        point, spot = hot_spots.classify(lon, lat)
        sigma[point[canyon[spot]]] = model.canyon_sigma_m
        east, north = _correlated_errors(t_us, rng, model.correlation_s)
        east, north = east * sigma, north * sigma
        # Without normal error a device reports no accuracy, as for an exact fix.
        accuracy = np.where(sigma > 0, 1.5 * sigma * rng.lognormal(0.0, 0.3, len(t_us)), np.nan)
        outlier = rng.random(len(t_us)) < model.outlier_rate
        if outlier.any():
            size = rng.uniform(*model.outlier_m, outlier.sum())
            angle = rng.uniform(0, 2 * math.pi, outlier.sum())
            east[outlier] += size * np.cos(angle)
            north[outlier] += size * np.sin(angle)
            flagged = outlier.copy()
            flagged[outlier] = rng.random(outlier.sum()) >= model.outlier_hidden
            accuracy[flagged] = rng.uniform(150, 400, flagged.sum())
        cos_lat = np.cos(np.radians(lat))
        frames.append(
            pd.DataFrame(
                {
                    DEVICE_ID: path.device_id,
                    TIMESTAMP: pd.to_datetime(t_us, unit="us", utc=True),
                    LAT: lat + north / METRES_PER_DEGREE,
                    LON: lon + east / (METRES_PER_DEGREE * cos_lat),
                    ACCURACY_M: np.round(accuracy, 1),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame.reindex(columns=PING_COLUMNS)


def _correlated_errors(
    t_us: np.ndarray, rng: np.random.Generator, correlation_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return unit-variance AR(1) errors east and north at the given instants."""
    errors = rng.standard_normal((2, len(t_us)))
    if len(t_us) < 2:
        return errors[0], errors[1]
    rho = np.exp(-np.diff(t_us) / US_PER_S / correlation_s)
    out = np.empty_like(errors)
    out[:, 0] = errors[:, 0]
    scale = np.sqrt(1 - rho**2)
    for i in range(1, len(t_us)):  # sequential by nature; a shift has a few thousand fixes
        out[:, i] = rho[i - 1] * out[:, i - 1] + scale[i - 1] * errors[:, i]
    return out[0], out[1]
