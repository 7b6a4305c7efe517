"""The command line: `python -m tracker ...`. Domain errors become click exceptions here."""

from __future__ import annotations

import sys

import click

from tracker.dosage import DosageParams, compute_dosage
from tracker.geofence import GeofenceError, load_hot_spots
from tracker.pings import PingFileError, read_pings
from tracker.tables import FORMATS, write_table

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True,
    help="Output format.",
)


def dosage_params_options(command):
    """Add one flag per parameter of DESIGN section 5."""
    defaults = DosageParams()
    options = [
        click.option("--tz", default=defaults.tz, show_default=True,
                     help="Operation time zone (IANA name); days are local days."),
        click.option("--max-gap-s", type=float, default=defaults.max_gap_s, show_default=True,
                     help="Longest gap between two pings that still credits the span."),
        click.option("--max-accuracy-m", type=float, default=defaults.max_accuracy_m,
                     show_default=True, help="Pings less accurate than this credit nothing."),
        click.option("--visit-merge-gap-s", type=float, default=defaults.visit_merge_gap_s,
                     show_default=True, help="Breaks up to this long do not end a visit."),
        click.option("--min-visit-s", type=float, default=defaults.min_visit_s,
                     show_default=True, help="Visits shorter than this are not counted."),
        click.option("--max-speed-kmh", type=float, default=None,
                     help="If set, spans faster than this credit nothing (off by default)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_params(**values) -> DosageParams:
    """Build DosageParams from command-line values, as a usage error when invalid."""
    try:
        return DosageParams(**values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@click.group()
def main() -> None:
    """Hot spot patrol dosage tracker."""


@main.command()
@click.option("--pings", "pings_path", required=True, type=click.Path(dir_okay=False),
              help="CSV (device_id,timestamp,lat,lon[,accuracy_m,speed_kmh]) or JSON lines.")
@click.option("--geofences", "geofences_path", required=True, type=click.Path(dir_okay=False),
              help="GeoJSON FeatureCollection of hot spot polygons.")
@dosage_params_options
@format_option
def dosage(pings_path, geofences_path, fmt, **params) -> None:
    """Compute dosage per hot spot and local day from files, with no database."""
    parameters = make_params(**params)
    try:
        hot_spots = load_hot_spots(geofences_path)
        pings, bad_rows = read_pings(pings_path)
    except (GeofenceError, PingFileError) as exc:
        raise click.ClickException(str(exc)) from exc
    for bad in bad_rows:
        click.echo(f"{pings_path}: {bad}", err=True)
    if bad_rows and pings.empty:
        raise click.ClickException(f"{pings_path}: no valid pings ({len(bad_rows)} bad rows)")
    result = compute_dosage(pings, hot_spots, parameters)
    write_table(result.daily, fmt, sys.stdout)
    if bad_rows:
        click.echo(f"{pings_path}: skipped {len(bad_rows)} bad rows", err=True)
