"""`tracker validity study`: how far measured dosage is from the truth (docs/validity.md)."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import GeofenceError, load_hot_spots
from tracker.foundation.settings import PROJECT_ROOT
from tracker.foundation.tables import write_table
from tracker.simulation.validity import (
    StudyDesign,
    measurements,
    rule_label,
    size_classes,
    summarise,
)

DEMO_HOT_SPOTS = PROJECT_ROOT / "geofences" / "leicestershire_demo.geojson"


def _numbers(text: str, zero_allowed: bool = False) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected numbers separated by commas") from None
    if not values or min(values) < 0 or (min(values) == 0 and not zero_allowed):
        kind = "numbers of 0 or more" if zero_allowed else "positive numbers"
        raise click.BadParameter(f"{text!r}: expected {kind} separated by commas")
    return values


@click.group()
def validity() -> None:
    """Measurement validity: simulated truth against measured dosage."""


@validity.command("study")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the tables and charts (created).",
)
@click.option(
    "--geofences",
    "geofences_path",
    default=str(DEMO_HOT_SPOTS),
    type=click.Path(dir_okay=False),
    show_default=True,
    help="Hot spots to patrol.",
)
@click.option(
    "--intervals",
    default="5,10,30,60,120",
    show_default=True,
    help="Ping intervals to measure, in seconds.",
)
@click.option(
    "--max-gaps",
    default="60,120,180,300,600",
    show_default=True,
    help="max_gap_s values to measure, in seconds.",
)
@click.option(
    "--tolerances",
    default="0,30",
    show_default=True,
    help="Edge tolerances of the interpolate rule to measure, in metres.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="First random seed.")
@click.option(
    "--runs",
    default=3,
    show_default=True,
    type=click.IntRange(1),
    help="Simulations, with seeds --seed, --seed + 1, ...",
)
@click.option("--officers", default=12, show_default=True, type=click.IntRange(1))
@click.option("--days", default=3, show_default=True, type=click.IntRange(1))
def study(
    out_dir, geofences_path, intervals, max_gaps, tolerances, seed, runs, officers, days
) -> None:
    """Simulate officers' true movement, measure it at each ping interval with each crediting
    rule, edge tolerance and max_gap_s, and write the errors against the truth (tables and
    charts)."""
    try:
        hot_spots = load_hot_spots(geofences_path)
    except GeofenceError as exc:
        raise click.ClickException(str(exc)) from exc
    design = StudyDesign(
        intervals_s=_numbers(intervals),
        max_gaps_s=_numbers(max_gaps),
        tolerances_m=_numbers(tolerances, zero_allowed=True),
        seeds=tuple(range(seed, seed + runs)),
        officers=officers,
        days=days,
        base=DosageParams(),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = measurements(hot_spots, design)
    summary = summarise(rows, size_classes(hot_spots))
    summary["rule"] = [
        rule_label(rule, tolerance)
        for rule, tolerance in zip(summary.crossing_rule, summary.edge_tolerance_m, strict=True)
    ]
    for name, table in (("measurements", rows), ("summary", summary)):
        with (out / f"{name}.csv").open("w", encoding="utf-8", newline="") as stream:
            write_table(table, "csv", stream)  # the one CSV writer: safe in a spreadsheet
    _charts(summary, out)
    click.echo(
        f"wrote {len(rows)} hot spot-day comparisons and {len(summary)} summary rows to {out}"
    )
    headline = summary[
        (summary["size"] == "all")
        & (summary["max_gap_s"] == DosageParams.max_gap_s)
        & (summary["figure"] != "officer")
    ]
    click.echo(
        headline.pivot_table(
            index=["gps", "interval_s"], columns=["figure", "rule"], values="bias_pct"
        ).to_string()
    )


def _charts(summary: pd.DataFrame, out: Path) -> None:
    """Bias against ping interval (per figure), against max_gap_s, and per hot spot size."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    every = summary[summary["size"] == "all"]
    default_gap = every[
        (every["max_gap_s"] == DosageParams.max_gap_s) & every["gps"].isin(("exact", "documented"))
    ]
    for figure in ("presence", "visits", "officer"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for (gps, rule), part in default_gap[default_gap["figure"] == figure].groupby(
            ["gps", "rule"]
        ):
            ax.plot(part["interval_s"], part["bias_pct"], marker="o", label=f"{rule}, {gps} GPS")
        _finish(
            ax,
            "ping interval (s)",
            f"{figure}: measured vs true (%)",
            f"{figure} against ping interval (max_gap_s {DosageParams.max_gap_s:g})",
        )
        fig.savefig(out / f"{figure}_by_interval.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    gaps = every[(every["figure"] == "presence") & (every["gps"] == "documented")]
    for (interval, rule), part in gaps.groupby(["interval_s", "rule"]):
        if interval in (10, 30, 60):
            ax.plot(
                part["max_gap_s"], part["bias_pct"], marker="o", label=f"{rule}, {interval:g} s"
            )
    _finish(
        ax,
        "max_gap_s",
        "presence: measured vs true (%)",
        "presence against max_gap_s (documented GPS error)",
    )
    fig.savefig(out / "presence_by_max_gap.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    sized = summary[
        (summary["size"] != "all")
        & (summary["figure"] == "presence")
        & (summary["gps"] == "documented")
        & (summary["max_gap_s"] == DosageParams.max_gap_s)
    ]
    for (size, rule), part in sized.groupby(["size", "rule"]):
        ax.plot(part["interval_s"], part["bias_pct"], marker="o", label=f"{rule}, {size}")
    _finish(
        ax,
        "ping interval (s)",
        "presence: measured vs true (%)",
        "presence by hot spot size (area terciles, documented GPS error)",
    )
    fig.savefig(out / "presence_by_size.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
