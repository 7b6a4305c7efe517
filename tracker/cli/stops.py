"""The `stops` commands: import stop-and-search CSVs and export the records with their reviews."""

from __future__ import annotations

import json
import sys

import click
import pandas as pd

from tracker.cli.options import (
    db_option,
    format_option,
    from_option,
    open_database,
    to_option,
)
from tracker.dosage.store import stored_hot_spots
from tracker.foundation import settings
from tracker.foundation.tables import write_table
from tracker.plan.storage import find_operation
from tracker.plan.targets import PlanError
from tracker.stops.figures import export_stops, stops_frame
from tracker.stops.population import PopulationError, load_group_population
from tracker.stops.records import (
    BadStopRows,
    ReviewPolicy,
    StopFileError,
    hot_spot_ids,
    import_stops,
    read_stops,
)
from tracker.stops.scrutiny import scrutiny_pack
from tracker.stops.search_figures import (
    ETHNICITY_COLUMNS,
    SELF,
    figures_table,
    presence_hours,
    search_figures,
)


@click.group()
def stops() -> None:
    """Stop-and-search records and their BWV reviews."""


@stops.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the valid rows even if some are bad (default: all or nothing).",
)
@click.option(
    "--review-due-days",
    type=int,
    default=lambda: settings.get("TRACKER_REVIEW_DUE_DAYS"),
    help="A BWV review falls due this many days after the stop's local date "
    "(default TRACKER_REVIEW_DUE_DAYS).",
)
@click.option(
    "--review-sample-rate",
    type=float,
    default=lambda: settings.get("TRACKER_REVIEW_SAMPLE_RATE"),
    help="Share of stops selected for BWV review, reproducible per stop "
    "(default TRACKER_REVIEW_SAMPLE_RATE).",
)
@db_option
def stops_import(path, skip_invalid, review_due_days, review_sample_rate, db_url) -> None:
    """Import a stop-and-search CSV (police.uk columns, plus Reference, Officer, Grounds,
    BWV recorded, BWV reference); importing the same file again adds nothing.
    """
    try:
        policy = ReviewPolicy(review_due_days, review_sample_rate, settings.get("TRACKER_TZ"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        records, bad_rows = read_stops(path)
    except StopFileError as exc:
        raise click.ClickException(str(exc)) from exc
    for bad in bad_rows:
        click.echo(f"{path}: {bad}", err=True)
    try:
        with open_database(db_url).begin() as session:
            report = import_stops(
                session,
                records,
                actor="cli",
                source=path,
                policy=policy,
                bad_rows=bad_rows,
                skip_invalid=skip_invalid,
            )
    except BadStopRows as exc:
        raise click.ClickException(
            f"{path}: {len(exc.bad_rows)} of {exc.read} rows are bad; nothing imported "
            "(use --skip-invalid to import the valid rows)"
        ) from exc
    click.echo(
        f"{path}: read {report.read}, imported {report.imported}, "
        f"already present {report.already_present}, skipped {report.skipped}"
    )


@stops.command("export")
@db_option
@format_option
def stops_export(db_url, fmt) -> None:
    """Print every stop with its BWV review, oldest first."""
    with open_database(db_url)() as session:
        table = export_stops(session, tz=settings.get("TRACKER_TZ"))
    write_table(table, fmt, sys.stdout)


@stops.command("figures")
@from_option
@to_option
@click.option("--operation", default=None, help="Only the searches of this operation (by name).")
@click.option(
    "--population",
    "population_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="group,population CSV of the five broad groups (rates per 1,000 and ratios).",
)
@click.option(
    "--ethnicity",
    type=click.Choice(list(ETHNICITY_COLUMNS)),
    default=SELF,
    show_default=True,
    help="Self-defined or officer-defined ethnicity.",
)
@click.option(
    "--buffer-m",
    type=click.FloatRange(0, 1000),
    default=lambda: settings.get("TRACKER_STOP_BUFFER_M"),
    help="Link a search outside every hot spot to one within this many metres "
    "(default TRACKER_STOP_BUFFER_M).",
)
@db_option
@format_option
def stops_figures(
    from_day, to_day, operation, population_path, ethnicity, buffer_m, db_url, fmt
) -> None:
    """Search figures for a scrutiny panel: outcomes, disproportionality, breakdowns and
    searches per patrol hour in each hot spot (docs/stops.md)."""
    population = None
    if population_path:
        try:
            population = load_group_population(population_path)
        except PopulationError as exc:
            raise click.ClickException(str(exc)) from exc
    tz = settings.get("TRACKER_TZ")
    with open_database(db_url)() as session:
        operation_id = None
        if operation is not None:
            try:
                operation_id = find_operation(session, operation).id
            except PlanError as exc:
                raise click.ClickException(str(exc)) from exc
        frame = stops_frame(
            session, tz=tz, operation_id=operation_id, from_day=from_day, to_day=to_day
        )
        spots = hot_spot_ids(
            stored_hot_spots(session), frame["longitude"], frame["latitude"], buffer_m
        )
        figures = search_figures(
            frame,
            ethnicity=ethnicity,
            population=population,
            presence_hours=presence_hours(session, from_day, to_day),
            hotspot_ids=pd.Series(spots, index=frame.index, dtype=object),
        )
    figures["buffer_m"] = buffer_m
    if fmt == "json":
        click.echo(json.dumps(figures))
    else:
        write_table(figures_table(figures), fmt, sys.stdout)


@stops.command("scrutiny-pack")
@click.option("--month", required=True, help="The month of the searches (YYYY-MM, local).")
@click.option("--sample", required=True, type=click.IntRange(1, 1000), help="Encounters to draw.")
@click.option("--seed", default=1, show_default=True, type=int, help="Another seed, another draw.")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write."
)
@db_option
def stops_scrutiny_pack(month, sample, seed, out_dir, db_url) -> None:
    """A random, reproducible sample of a month's reviewed encounters for an external panel,
    without officer or personal identifiers (encounters.csv, encounters.json, README.txt)."""
    try:
        with open_database(db_url)() as session:
            pack = scrutiny_pack(session, month, sample, settings.get("TRACKER_TZ"), seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from exc
    files = pack.write(out_dir)
    click.echo(
        f"{out_dir}: {len(pack.encounters)} of {pack.reviewed} reviewed encounters of {month} "
        f"({', '.join(files)})"
    )
