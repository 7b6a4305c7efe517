"""The `stops` commands: import stop-and-search CSVs and export the records with their reviews."""

from __future__ import annotations

import sys

import click

from tracker.cli.options import db_option, format_option, open_database
from tracker.foundation import settings
from tracker.foundation.tables import write_table
from tracker.stops.figures import export_stops
from tracker.stops.records import (
    BadStopRows,
    ReviewPolicy,
    StopFileError,
    import_stops,
    read_stops,
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
