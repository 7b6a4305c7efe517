"""Benchmark of the dosage engine (issue 2): point classification and compute_dosage.

    .venv/bin/python bench/bench_dosage.py [--pings 1000000] [--runs 3]

For two hot spot sets -- the 25-cell Leicestershire demo set
(geofences/leicestershire_demo.geojson, or 25 generated ~150 m cells around Leicester
when the file is absent) and 10,000 generated ~150 m grid cells over 40 km x 40 km --
it generates synthetic patrols (fixed seed, vectorised), then reports the median of
--runs runs of:

  (a) HotSpotSet.classify(lon, lat) over all pings, in points/s;
  (b) the whole compute_dosage(frame, hot_spots, DosageParams()), in pings/s, with the
      default crossing rule (interpolate, 30 m edge tolerance) and, as baselines of its
      cost, with the endpoint rule and with no edge tolerance;
  (c) a naive baseline (a Python loop per point over every hot spot with shapely
      `covers`) on a subsample, in points/s, and the speed-up of (a) over it;
  (d) the peak RSS (ru_maxrss) of a fresh subprocess that loads the pings and runs
      compute_dosage once.

It prints a Markdown table and the machine and library versions.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Point

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from tracker.dosage.engine import ENDPOINTS, DosageParams, compute_dosage  # noqa: E402
from tracker.dosage.geofence import HotSpot, HotSpotSet, load_hot_spots  # noqa: E402
from tracker.dosage.pings import PING_COLUMNS  # noqa: E402

DEMO_GEOJSON = ROOT / "geofences" / "leicestershire_demo.geojson"
SEED = 20250314
LEICESTER_LAT, LEICESTER_LON = 52.63, -1.13
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LEICESTER_LAT))
CELL_M = 150.0
START = datetime(2025, 3, 14, 6, 0, tzinfo=UTC)  # a Friday, no DST change nearby
BEAT_RADIUS_M = 2_500.0

TARGETS = {
    "classify_25": 2_000_000,
    "classify_10000": 1_500_000,
    "dosage": 500_000,
    "peak_mb": 1024,
}


# --------------------------------------------------------------------------- hot spots


def _cells(x0: np.ndarray, y0: np.ndarray, prefix: str) -> HotSpotSet:
    """Return ~150 m square cells with south-west corners (lon, lat) as a HotSpotSet."""
    dx, dy = CELL_M / M_PER_DEG_LON, CELL_M / M_PER_DEG_LAT
    boxes = shapely.box(x0, y0, x0 + dx, y0 + dy)
    width = len(str(len(boxes)))
    return HotSpotSet(
        [HotSpot(f"{prefix}{i:0{width}d}", f"Cell {i}", geom, {}) for i, geom in enumerate(boxes)]
    )


def demo_hot_spots() -> tuple[HotSpotSet, str]:
    """The demo set from geofences/ if present, else 25 generated cells around Leicester."""
    if DEMO_GEOJSON.exists():
        return load_hot_spots(DEMO_GEOJSON), str(DEMO_GEOJSON.relative_to(ROOT))
    rng = np.random.default_rng(SEED + 1)
    # 25 cells scattered over ~6 km x 6 km of the city, snapped to a 150 m grid.
    cells = rng.choice(40 * 40, size=25, replace=False)
    i, j = np.divmod(cells, 40)
    x0 = LEICESTER_LON + (j - 20) * CELL_M / M_PER_DEG_LON
    y0 = LEICESTER_LAT + (i - 20) * CELL_M / M_PER_DEG_LAT
    return _cells(x0, y0, "LDEMO-"), "generated (demo file absent)"


def grid_hot_spots(
    n: int = 10_000,
    overlapping: float = 0.05,
    city_share: float = 0.4,
    city_sigma_m: float = 10_000,
) -> HotSpotSet:
    """n ~150 m grid cells over 40 km x 40 km around Leicester, denser in the city.

    Cells of the grid share edges; a fraction `overlapping` are shifted by half a cell,
    so each overlaps up to four others.
    """
    rng = np.random.default_rng(SEED + 2)
    side = int(40_000 // CELL_M)  # 266 cells a side
    n_grid = n - int(n * overlapping)
    chosen = np.zeros(0, dtype=np.int64)
    while len(chosen) < n_grid:
        k = 2 * n
        city = rng.normal(side / 2, city_sigma_m / CELL_M, size=(k, 2))
        county = rng.uniform(0, side, size=(k, 2))
        pick = np.where(rng.random((k, 1)) < city_share, city, county).astype(np.int64)
        pick = pick[((pick >= 0) & (pick < side)).all(axis=1)]
        flat = pick[:, 0] * side + pick[:, 1]
        _, first = np.unique(np.concatenate([chosen, flat]), return_index=True)
        merged = np.concatenate([chosen, flat])
        chosen = merged[np.sort(first)][:n_grid]
    i, j = np.divmod(chosen, side)
    shifted = rng.choice(n_grid, size=n - n_grid, replace=False)
    fi = np.concatenate([i, i[shifted] + 0.5]).astype(float)
    fj = np.concatenate([j, j[shifted] + 0.5]).astype(float)
    x0 = LEICESTER_LON + (fj - side / 2) * CELL_M / M_PER_DEG_LON
    y0 = LEICESTER_LAT + (fi - side / 2) * CELL_M / M_PER_DEG_LAT
    return _cells(x0, y0, "HS")


# --------------------------------------------------------------------------- pings


def generate_pings(
    hot_spots: HotSpotSet, n_pings: int, n_devices: int = 200, seed: int = SEED
) -> pd.DataFrame:
    """Synthetic patrols, vectorised: each device walks (or drives) between the hot spots
    of its beat and lingers inside each for 3-15 minutes, one ping every 15-30 s.

    3% of the rows are exact duplicates (re-sent messages) and 3% have accuracy > 100 m
    (with correspondingly large position errors). Rows are in arrival (timestamp) order.
    """
    rng = np.random.default_rng(seed)
    bounds = shapely.bounds(np.array([h.geometry for h in hot_spots], dtype=object))
    centre_x = (bounds[:, 0] + bounds[:, 2]) / 2
    centre_y = (bounds[:, 1] + bounds[:, 3]) / 2

    n_dup = int(n_pings * 0.03)
    n_base = n_pings - n_dup
    per_device = np.full(n_devices, n_base // n_devices)
    per_device[: n_base % n_devices] += 1
    dev = np.repeat(np.arange(n_devices), per_device)
    first_row = np.cumsum(per_device) - per_device

    # Ping times: whole seconds, 15-30 s apart, from a per-device start in the first 4 h.
    dt = rng.integers(15, 31, size=n_base).astype(np.int64)
    dt[first_row] = 0
    t_rel = np.cumsum(dt)
    t_rel -= t_rel[first_row][dev]
    duration = t_rel[first_row + per_device - 1] + 1
    start_s = rng.integers(0, 4 * 3600, size=n_devices)

    # Beats: k hot spots drawn from those within BEAT_RADIUS_M of a random anchor hot spot
    # (at least the anchor and its nearest neighbour).
    k = 8
    anchor = rng.integers(0, len(hot_spots), size=n_devices)
    dist = np.hypot(
        (centre_x[None, :] - centre_x[anchor, None]) * M_PER_DEG_LON,
        (centre_y[None, :] - centre_y[anchor, None]) * M_PER_DEG_LAT,
    )
    nearest = np.argsort(dist, axis=1)[:, :2]
    near = dist <= BEAT_RADIUS_M
    near[np.arange(n_devices)[:, None], nearest] = True
    order = np.argsort(np.where(near, rng.random(near.shape), np.inf), axis=1)
    count = near.sum(axis=1)
    beat = order[np.arange(n_devices)[:, None], np.arange(k)[None, :] % count[:, None]]
    speed_ms = np.where(
        rng.random(n_devices) < 0.7,
        rng.uniform(1.1, 1.7, n_devices),
        rng.uniform(4.0, 8.0, n_devices),
    )  # on foot or in a car

    # Visits: enough for the longest patrol (a visit lasts at least 3 minutes).
    n_visits = int(duration.max() // 180) + 2
    step = rng.integers(1, k, size=(n_devices, n_visits))
    step[:, 0] = rng.integers(0, k, size=n_devices)
    spot = beat[np.arange(n_devices)[:, None], np.cumsum(step, axis=1) % k]
    linger = rng.uniform(180, 900, size=(n_devices, n_visits))
    # Entry and exit points: random points of the hot spot's interior.
    pool_x, pool_y = _interior_points(hot_spots, rng)
    pick = rng.integers(0, pool_x.shape[1], size=(2, *spot.shape))
    in_x, in_y = pool_x[spot, pick[0]], pool_y[spot, pick[0]]
    out_x, out_y = pool_x[spot, pick[1]], pool_y[spot, pick[1]]
    walk_m = np.hypot(
        (in_x[:, 1:] - out_x[:, :-1]) * M_PER_DEG_LON, (in_y[:, 1:] - out_y[:, :-1]) * M_PER_DEG_LAT
    )
    walk_s = walk_m / speed_ms[:, None]
    # Waypoints in, out, in, out, ... with their times; positions between are interpolated.
    seg = np.empty((n_devices, 2 * n_visits))
    seg[:, 0::2] = linger
    seg[:, 1:-1:2] = walk_s
    seg[:, -1] = 1.0
    wp_t = np.concatenate([np.zeros((n_devices, 1)), np.cumsum(seg, axis=1)[:, :-1]], axis=1)
    wp_x = np.stack([in_x, out_x], axis=2).reshape(n_devices, -1)
    wp_y = np.stack([in_y, out_y], axis=2).reshape(n_devices, -1)
    assert (wp_t[:, -1] > duration).all()

    offset = float(10 ** int(np.ceil(np.log10(wp_t.max() + 1))))  # devices never overlap
    flat_t = (wp_t + np.arange(n_devices)[:, None] * offset).ravel()
    query = t_rel + dev * offset
    lon = np.interp(query, flat_t, wp_x.ravel())
    lat = np.interp(query, flat_t, wp_y.ravel())
    segment = np.searchsorted(flat_t, query, side="right") - 1
    seg_flat = seg.ravel()
    seg_dist = np.zeros_like(seg)
    seg_dist[:, 1:-1:2] = walk_m
    speed_kmh = seg_dist.ravel()[segment] / seg_flat[segment] * 3.6
    speed_kmh += rng.uniform(0, 1.5, n_base)  # stationary Doppler noise

    # GPS error: ~3-20 m normally, 3% of fixes with accuracy > 100 m and errors to match.
    accuracy = np.clip(rng.lognormal(np.log(8), 0.5, n_base), 3, 60)
    poor = rng.random(n_base) < 0.03
    accuracy[poor] = rng.uniform(101, 500, int(poor.sum()))
    sigma = accuracy / 2
    lon += rng.normal(0, 1, n_base) * sigma / M_PER_DEG_LON
    lat += rng.normal(0, 1, n_base) * sigma / M_PER_DEG_LAT

    t_us = (START.timestamp() + start_s[dev] + t_rel).astype(np.int64) * 1_000_000
    rows = np.concatenate([np.arange(n_base), rng.choice(n_base, size=n_dup, replace=False)])
    rows = rows[np.argsort(t_us[rows], kind="stable")]
    names = np.array([f"LE-PC{i:04d}" for i in range(n_devices)], dtype=object)
    frame = pd.DataFrame(
        {
            "device_id": names[dev[rows]],
            "timestamp": pd.DatetimeIndex(t_us[rows].astype("datetime64[us]")).tz_localize("UTC"),
            "lat": lat[rows],
            "lon": lon[rows],
            "accuracy_m": accuracy[rows],
            "speed_kmh": np.round(speed_kmh[rows], 1),
        }
    )
    frame["device_id"] = frame["device_id"].astype(object)
    return frame[list(PING_COLUMNS)]


def _interior_points(
    hot_spots: HotSpotSet, rng: np.random.Generator, per_spot: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, y) arrays of shape (hot spots, per_spot) of points strictly inside each
    hot spot, by rejection from its bounding box (a point on the surface as fallback)."""
    geoms = np.array([h.geometry for h in hot_spots], dtype=object)
    bounds = shapely.bounds(geoms)
    tries = 8 * per_spot
    u = rng.random((2, len(geoms), tries))
    x = bounds[:, 0, None] + u[0] * (bounds[:, 2] - bounds[:, 0])[:, None]
    y = bounds[:, 1, None] + u[1] * (bounds[:, 3] - bounds[:, 1])[:, None]
    inside = shapely.contains_xy(np.repeat(geoms, tries).reshape(x.shape), x, y)
    surface = shapely.get_coordinates(shapely.point_on_surface(geoms))
    # Inside candidates first (stable), then fall back to the point on the surface.
    order = np.argsort(~inside, axis=1, kind="stable")[:, :per_spot]
    rows = np.arange(len(geoms))[:, None]
    ok = inside[rows, order]
    px = np.where(ok, x[rows, order], surface[:, 0, None])
    py = np.where(ok, y[rows, order], surface[:, 1, None])
    return px, py


# --------------------------------------------------------------------------- measuring


def median_time(fn: Callable[[], object], runs: int) -> tuple[float, object, list[float]]:
    """Median wall time of `runs` calls (each after a collection), the last result and
    every run's [wall times, CPU times] (CPU time is less disturbed by other load)."""
    times = []
    cpu = []
    result = None
    for _ in range(runs):
        result = None
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), result, [times, cpu]


def naive_classify(geometries: list, lon: np.ndarray, lat: np.ndarray) -> list[tuple[int, int]]:
    """The baseline: for each point, for each hot spot, polygon.covers(Point).

    The geometries are those of the HotSpotSet, which prepares them in place, so this
    loop gets GEOS prepared-geometry speed too; what it lacks is vectorisation.
    """
    pairs = []
    for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist(), strict=True)):
        point = Point(x, y)
        for j, polygon in enumerate(geometries):
            if polygon.covers(point):
                pairs.append((i, j))
    return pairs


def peak_memory_mb(frame: pd.DataFrame, set_name: str) -> dict[str, float]:
    """Run compute_dosage once in a fresh interpreter on these pings; return its RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pings.npz"
        codes, names = pd.factorize(frame["device_id"])
        np.savez(
            path,
            device=codes,
            names=np.asarray(names, dtype=str),
            t_us=frame["timestamp"].dt.as_unit("us").astype("int64").to_numpy(),
            **{c: frame[c].to_numpy() for c in ("lat", "lon", "accuracy_m", "speed_kmh")},
        )
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(path), set_name],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_child(path: str, set_name: str) -> None:
    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def current_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    hot_spots = demo_hot_spots()[0] if set_name == "demo" else grid_hot_spots()
    data = np.load(path)
    names = data["names"].astype(object)
    frame = pd.DataFrame(
        {
            "device_id": names[data["device"]],
            "timestamp": pd.DatetimeIndex(data["t_us"].astype("datetime64[us]")).tz_localize("UTC"),
            **{c: data[c] for c in ("lat", "lon", "accuracy_m", "speed_kmh")},
        }
    )[list(PING_COLUMNS)]
    del data, names
    gc.collect()
    before = current_mb()
    compute_dosage(frame, hot_spots, DosageParams())
    print(json.dumps({"before_mb": before, "peak_mb": peak_mb()}))


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def run_case(name: str, hot_spots: HotSpotSet, args: argparse.Namespace, n_naive: int) -> dict:
    """Measure (a)-(d) for one hot spot set; return a row of the table."""
    frame = generate_pings(hot_spots, args.pings, args.devices)
    lon = frame["lon"].to_numpy()
    lat = frame["lat"].to_numpy()

    t_cls, (point, _), cls_times = median_time(lambda: hot_spots.classify(lon, lat), args.runs)
    inside = len(np.unique(point)) / len(lon)
    print(f"[{name}] classify {t_cls:.3f} s", file=sys.stderr)

    rng = np.random.default_rng(SEED + 3)
    sample = np.sort(rng.choice(len(lon), size=min(n_naive, len(lon)), replace=False))
    geometries = [h.geometry for h in hot_spots]
    t_naive, naive_pairs, _ = median_time(
        lambda: naive_classify(geometries, lon[sample], lat[sample]), args.runs
    )
    p_s, h_s = hot_spots.classify(lon[sample], lat[sample])
    if list(zip(p_s.tolist(), h_s.tolist(), strict=True)) != naive_pairs:
        raise SystemExit(f"[{name}] classify disagrees with the naive covers loop")
    print(f"[{name}] naive {t_naive:.3f} s for {len(sample):,} points", file=sys.stderr)

    params = DosageParams()
    t_dose, result, dose_times = median_time(
        lambda: compute_dosage(frame, hot_spots, params), args.runs
    )
    print(f"[{name}] compute_dosage {t_dose:.3f} s", file=sys.stderr)
    endpoints = replace(params, crossing_rule=ENDPOINTS)
    t_ends, _, ends_times = median_time(
        lambda: compute_dosage(frame, hot_spots, endpoints), args.runs
    )
    print(f"[{name}] compute_dosage, endpoint rule {t_ends:.3f} s", file=sys.stderr)
    untolerant = replace(params, edge_tolerance_m=0.0)
    t_untolerant, _, untolerant_times = median_time(
        lambda: compute_dosage(frame, hot_spots, untolerant), args.runs
    )
    print(f"[{name}] compute_dosage, no edge tolerance {t_untolerant:.3f} s", file=sys.stderr)
    memory = None if args.no_memory else peak_memory_mb(frame, name)
    return {
        "set": f"{len(hot_spots):,} ({'demo' if name == 'demo' else 'generated'})",
        "inside": inside,
        "spans": result.counts["credited_spans"],
        "cls": len(lon) / t_cls,
        "naive": len(sample) / t_naive,
        "n_naive": len(sample),
        "dose": len(frame) / t_dose,
        "t_dose": t_dose,
        "dose_endpoints": len(frame) / t_ends,
        "ends_times": ends_times,
        "dose_untolerant": len(frame) / t_untolerant,
        "untolerant_times": untolerant_times,
        "memory": memory,
        "cls_times": cls_times,
        "dose_times": dose_times,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak memory runs")
    parser.add_argument("--memory-child", nargs=2, metavar=("NPZ", "SET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(*args.memory_child)
        return 0

    info = machine_info("numpy", "pandas", "shapely")
    info.append(("GEOS", shapely.geos_version_string))
    demo, demo_source = demo_hot_spots()
    cases = [
        ("demo", demo, demo_source, 5_000, TARGETS["classify_25"]),
        (
            "grid",
            grid_hot_spots(),
            "generated 150 m grid, 5% shifted",
            200,
            TARGETS["classify_10000"],
        ),
    ]
    rows = []
    verdicts = []
    for name, hot_spots, source, n_naive, classify_target in cases:
        print(
            f"[{name}] {len(hot_spots):,} hot spots ({source}): generating "
            f"{args.pings:,} pings ...",
            file=sys.stderr,
        )
        row = run_case(name, hot_spots, args, n_naive)
        rows.append(row)
        label = f"{len(hot_spots):,} hot spots"
        verdicts.append(
            (
                f"classify, {label}",
                f"≥ {_fmt(classify_target)} points/s",
                _fmt(row["cls"]),
                row["cls"] >= classify_target,
            )
        )
        verdicts.append(
            (
                f"compute_dosage, {label}",
                f"≥ {_fmt(TARGETS['dosage'])} pings/s",
                _fmt(row["dose"]),
                row["dose"] >= TARGETS["dosage"],
            )
        )
        if row["memory"]:
            peak = row["memory"]["peak_mb"]
            verdicts.append(
                (
                    f"peak memory, {label}",
                    f"< {TARGETS['peak_mb']:,} MB",
                    f"{peak:,.0f} MB",
                    peak < TARGETS["peak_mb"],
                )
            )

    print(
        f"\nDosage engine benchmark: {args.pings:,} pings from {args.devices} devices, "
        f"median of {args.runs} runs\n"
    )
    for key, value in info:
        print(f"- {key}: {value}")
    print(f"- Demo hot spots: {demo_source}")
    print()
    print(
        "| Hot spots | Pings in a hot spot | Credited spans | classify (points/s) "
        "| Naive covers loop (points/s, sample) | classify / naive "
        "| compute_dosage (pings/s) | compute_dosage (s) | endpoint rule (pings/s) "
        "| default / endpoint time | no edge tolerance (pings/s) | default / no tolerance time "
        "| Peak RSS (MB) |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        mem = (
            "-"
            if not r["memory"]
            else (f"{r['memory']['peak_mb']:,.0f} (input loaded: {r['memory']['before_mb']:,.0f})")
        )
        print(
            f"| {r['set']} | {r['inside']:.1%} | {r['spans']:,} | {_fmt(r['cls'])} "
            f"| {_fmt(r['naive'])} ({r['n_naive']:,}) | {r['cls'] / r['naive']:,.0f}× "
            f"| {_fmt(r['dose'])} | {r['t_dose']:.2f} | {_fmt(r['dose_endpoints'])} "
            f"| {r['dose_endpoints'] / r['dose']:.2f} | {_fmt(r['dose_untolerant'])} "
            f"| {r['dose_untolerant'] / r['dose']:.2f} | {mem} |"
        )
    print()
    for r in rows:
        for what, (wall, cpu) in (
            ("classify", r["cls_times"]),
            ("compute_dosage", r["dose_times"]),
            ("compute_dosage, endpoint rule", r["ends_times"]),
            ("compute_dosage, no edge tolerance", r["untolerant_times"]),
        ):
            print(
                f"- {r['set']}, {what}: wall {', '.join(f'{t:.3f}' for t in wall)} s; "
                f"CPU {', '.join(f'{t:.3f}' for t in cpu)} s "
                f"(median CPU rate {args.pings / statistics.median(cpu):,.0f}/s)"
            )
    print()
    print("| Target | Required | Measured | Met |")
    print("|---|---|--:|---|")
    for what, required, measured, met in verdicts:
        print(f"| {what} | {required} | {measured} | {'yes' if met else '**no**'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
