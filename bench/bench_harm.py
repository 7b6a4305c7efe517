"""Benchmark of hot spot identification by harm (issue 11): 1,000,000 crimes, 150 m cells.

    .venv/bin/python bench/bench_harm.py [--crimes 1000000] [--runs 5]

It generates a year of synthetic crimes over a county (tracker/harm/synthetic.py: the 25
demo hot spots, 40 other concentrated places, six towns and a thin spread over an area of
about 60 km x 60 km around Leicester; fixed seed), then reports the median wall time of
--runs runs of:

  (a) identify(): weigh every crime, project it onto the British National Grid, count the
      harm of every 150 m cell (edges inclusive), rank them, choose the top 25 at least
      300 m apart, and name them;
  (b) a baseline measured in the same run: the same cell harms by a spatial join as a GIS
      would do it (the 150 m cells of the bounding grid as shapely boxes in an STRtree,
      queried with every projected crime point, `intersects`, so edges count for both
      cells), then the same ranking; it must agree with (a) on the chosen cells.

It prints a Markdown table, the runs, and the machine and library versions. The target is
(a) under 10 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402
from tracker.dosage.geofence import load_hot_spots  # noqa: E402
from tracker.harm.identify import greedy_spaced, identify, to_grid  # noqa: E402
from tracker.harm.synthetic import HistorySettings, months_between, synthetic_crimes  # noqa: E402
from tracker.harm.weights import load_weights  # noqa: E402

DEMO_GEOJSON = ROOT / "geofences" / "leicestershire_demo.geojson"
CELL_M = 150
COUNT = 25
SPACING_M = 300.0
TARGET_S = 10.0
MONTHS = months_between(date(2023, 1, 1), date(2023, 12, 1))


def county_crimes(n: int):
    """Return about n synthetic crimes over a year and a county-sized area."""
    per_month = n / len(MONTHS)
    settings = HistorySettings(
        background_per_month=per_month * 0.97,
        hot_spot_per_month=per_month * 0.02 / 25,
        other_places=40,
        other_place_per_month=per_month * 0.01 / 40,
        town_centres=8,
        extent_m=28_000.0,
        seed=11,
    )
    return synthetic_crimes(load_hot_spots(DEMO_GEOJSON), MONTHS, (), settings)


def spatial_join_baseline(crimes, weights) -> list[str]:
    """The cells' harm by an STRtree spatial join of points with box polygons; return the
    chosen cells' ids (ranked and spaced as identify() does)."""
    located = crimes[crimes["longitude"].notna()]
    weight = weights.weigh(located["crime_type"])
    x, y = to_grid(located["longitude"].to_numpy(), located["latitude"].to_numpy())
    col0, row0 = int(np.floor(x.min() / CELL_M)) - 1, int(np.floor(y.min() / CELL_M)) - 1
    nx = int(np.floor(x.max() / CELL_M)) - col0 + 2
    ny = int(np.floor(y.max() / CELL_M)) - row0 + 2
    column, row = np.divmod(np.arange(nx * ny), ny)
    x0, y0 = (col0 + column) * CELL_M, (row0 + row) * CELL_M
    boxes = shapely.box(x0, y0, x0 + CELL_M, y0 + CELL_M)
    tree = shapely.STRtree(boxes)
    point, cell = tree.query(shapely.points(x, y), predicate="intersects")
    harm = np.bincount(cell, weights=weight[point], minlength=len(boxes))
    crimes_in = np.bincount(cell, minlength=len(boxes))
    candidates = np.flatnonzero(harm > 0)
    # Boxes are numbered column-major, like identify()'s cells: the same tie-break.
    order = candidates[np.lexsort((candidates, -crimes_in[candidates], -harm[candidates]))]
    chosen = greedy_spaced(order, x0 + CELL_M / 2, y0 + CELL_M / 2, COUNT, SPACING_M)
    return [f"cell-{int(x0[c])}-{int(y0[c])}" for c in chosen]


def timed(function, runs: int) -> tuple[list[float], list[float], object]:
    """Return the wall and CPU times of `runs` calls, and the last call's result. CPU time
    shows how much of a slow wall time was waiting for a core other processes held."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crimes", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    info = machine_info("numpy", "pandas", "shapely", "pyproj")

    print(f"generating about {args.crimes:,} crimes ...", file=sys.stderr)
    crimes = county_crimes(args.crimes)
    weights = load_weights()
    located = int(crimes["longitude"].notna().sum())
    print(f"{len(crimes):,} crimes ({located:,} located); timing ...", file=sys.stderr)

    ours, ours_cpu, result = timed(
        lambda: identify(crimes, weights, cell_m=CELL_M, count=COUNT, min_spacing_m=SPACING_M),
        args.runs,
    )
    baseline, baseline_cpu, baseline_ids = timed(
        lambda: spatial_join_baseline(crimes, weights), args.runs
    )
    ids = [p.id for p in result.places]
    if ids != baseline_ids:
        print(f"the baseline chose other cells: {baseline_ids} vs {ids}", file=sys.stderr)
        return 1
    median, base_median = statistics.median(ours), statistics.median(baseline)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = result.summary()

    print(
        "| Crimes (located) | Cells of the bounding grid | Occupied cells | identify (s) "
        "| crimes/s | spatial join baseline (s) | baseline / identify | Peak RSS (MB) |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    print(
        f"| {len(crimes):,} ({located:,}) | {result.place_count:,} | {result.candidates:,} "
        f"| {median:.2f} | {len(crimes) / median:,.0f} | {base_median:.2f} "
        f"| {base_median / median:.1f}× | {peak_mb:,.0f} |"
    )
    print()
    for label, walls, cpus in (
        ("identify", ours, ours_cpu),
        ("spatial join baseline", baseline, baseline_cpu),
    ):
        print(
            f"- {label}: wall {', '.join(f'{t:.3f}' for t in walls)} s; "
            f"CPU {', '.join(f'{t:.3f}' for t in cpus)} s (median {statistics.median(cpus):.2f})"
        )
    print(
        f"- the 25 cells chosen: {summary['share_of_harm']:.1%} of harm in "
        f"{summary['share_of_area']:.4%} of the area (PAI {summary['pai']:,.0f}); "
        f"the baseline chose the same cells"
    )
    met = "yes" if median < TARGET_S else "no"
    print()
    print("| Target | Required | Measured | Met |")
    print("|---|---|--:|---|")
    print(f"| identify, 1M crimes, 150 m cells | < {TARGET_S:.0f} s | {median:.2f} s | {met} |")
    print()
    for label, value in info:
        print(f"- {label}: {value}")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
