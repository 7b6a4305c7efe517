"""The dosage commands: offline dosage from files, hot spots, devices, pings, recompute, reports."""

from __future__ import annotations

import sys

import click
from sqlalchemy.orm import Session, sessionmaker

from tracker.cli.options import (
    configured,
    db_option,
    format_option,
    from_option,
    open_database,
    to_option,
)
from tracker.dosage.devices import AssignmentError, load_assignments, parse_assignments
from tracker.dosage.engine import (
    CROSSING_RULES,
    DAILY_COLUMNS,
    DosageParams,
    compute_dosage,
    configured_params,
)
from tracker.dosage.geofence import GeofenceError, load_hot_spots
from tracker.dosage.pings import PingFileError, parse_gpx, parse_ping_records, read_pings
from tracker.dosage.recompute import bring_up_to_date, enqueue_all_device_days, replace_hot_spots
from tracker.dosage.reports import daily_report, dead_letter_report
from tracker.dosage.store import purge_pings, store_dead_letters, store_pings, stored_hot_spots
from tracker.foundation import parsing, settings
from tracker.foundation.tables import write_table
from tracker.stops.records import relink_stops


def dosage_params_options(command):
    """Add one flag per parameter of docs/dosage.md."""
    defaults = DosageParams()
    options = [
        click.option(
            "--tz",
            default=defaults.tz,
            show_default=True,
            help="Operation time zone (IANA name); days are local days.",
        ),
        click.option(
            "--max-gap-s",
            type=float,
            default=defaults.max_gap_s,
            show_default=True,
            help="Longest gap between two pings that still credits the span.",
        ),
        click.option(
            "--max-accuracy-m",
            type=float,
            default=defaults.max_accuracy_m,
            show_default=True,
            help="Pings less accurate than this credit nothing.",
        ),
        click.option(
            "--visit-merge-gap-s",
            type=float,
            default=defaults.visit_merge_gap_s,
            show_default=True,
            help="Breaks up to this long do not end a visit.",
        ),
        click.option(
            "--min-visit-s",
            type=float,
            default=defaults.min_visit_s,
            show_default=True,
            help="Visits shorter than this are not counted.",
        ),
        click.option(
            "--crossing-rule",
            type=click.Choice(CROSSING_RULES),
            default=defaults.crossing_rule,
            show_default=True,
            help="How a span between two pings is credited (docs/dosage.md, rule 4).",
        ),
        click.option(
            "--edge-tolerance-m",
            type=float,
            default=defaults.edge_tolerance_m,
            show_default=True,
            help="Pings this close outside a hot spot, between two inside, do not end a stay.",
        ),
        click.option(
            "--max-speed-kmh",
            type=float,
            default=None,
            help="If set, spans faster than this credit nothing (off by default).",
        ),
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


def _catch_up(factory: sessionmaker[Session], params: DosageParams) -> int:
    with factory() as session:
        hot_spots = stored_hot_spots(session)
    return bring_up_to_date(factory.begin, hot_spots, params)


@click.command()
@click.option(
    "--pings",
    "pings_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CSV (device_id,timestamp,lat,lon[,accuracy_m,speed_kmh]) or JSON lines.",
)
@click.option(
    "--geofences",
    "geofences_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="GeoJSON FeatureCollection of hot spot polygons.",
)
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
    write_table(result.daily[DAILY_COLUMNS], fmt, sys.stdout)
    if bad_rows:
        click.echo(f"{pings_path}: skipped {len(bad_rows)} bad rows", err=True)


@click.group()
def geofences() -> None:
    """Hot spot polygons."""


@geofences.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@db_option
def geofences_load(path, db_url) -> None:
    """Load or replace the hot spot set from a GeoJSON file, then recompute dosage."""
    try:
        hot_spots = load_hot_spots(path)
    except GeofenceError as exc:
        raise click.ClickException(str(exc)) from exc
    factory = open_database(db_url)
    params = configured(configured_params)
    with factory.begin() as session:
        queued = replace_hot_spots(session, hot_spots, params)
        relink_stops(session, params.tz)  # stops now fall in other hot spots
    _catch_up(factory, params)
    click.echo(f"loaded {len(hot_spots)} hot spots; recomputed {queued} device-days")


@click.group()
def devices() -> None:
    """Devices and their assignment to officers."""


@devices.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@db_option
def devices_load(path, db_url) -> None:
    """Load assignments (device_id,officer_id,officer_name,starts,ends[,label]) from CSV."""
    text = parsing.read_text(path, click.ClickException)
    try:
        rows = parse_assignments(text, source=path)
    except AssignmentError as exc:
        raise click.ClickException(f"nothing loaded:\n{exc}") from exc
    factory = open_database(db_url)
    with factory.begin() as session:
        count = load_assignments(session, rows, actor="cli")
    click.echo(f"loaded {count} assignments for {len({r.device_id for r in rows})} devices")


@click.group()
def pings() -> None:
    """Stored GPS pings."""


@pings.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--device",
    "device_id",
    default=None,
    help="Device id for a GPX file (CSV and JSON lines carry their own).",
)
@db_option
def pings_import(path, device_id, db_url) -> None:
    """Import historic pings (CSV, JSON lines or GPX) through the live ingest path."""
    text = parsing.read_text(path, click.ClickException)
    try:
        if path.lower().endswith(".gpx") or text.lstrip().startswith("<"):
            if not device_id:
                raise click.UsageError("a GPX file needs --device ID")
            records, bad_rows = parse_gpx(text, device_id, source=path)
        else:
            records, bad_rows = parse_ping_records(text, source=path)
    except PingFileError as exc:
        raise click.ClickException(str(exc)) from exc
    for bad in bad_rows:
        click.echo(f"{path}: {bad}", err=True)
    factory = open_database(db_url)
    params = configured(configured_params)
    batch = 20_000
    for start in range(0, len(records), batch):
        with factory.begin() as session:
            store_pings(session, records[start : start + batch], params, source="import")
    if bad_rows:
        lines = text.split("\n")
        with factory.begin() as session:
            store_dead_letters(
                session,
                "import",
                [
                    (
                        f"{path}:{bad.line}",
                        bad.reason,
                        lines[bad.line - 1]
                        if bad.unit == "line" and bad.line <= len(lines)
                        else "",
                    )
                    for bad in bad_rows
                ],
            )
    _catch_up(factory, params)
    click.echo(f"imported {len(records)} pings from {path}; skipped {len(bad_rows)} bad rows")
    if bad_rows and not records:
        raise click.ClickException(f"{path}: no valid pings")


@click.command()
@from_option
@to_option
@db_option
def recompute(from_day, to_day, db_url) -> None:
    """Rebuild stored dosage from the stored pings (all days, or a range of local dates)."""
    factory = open_database(db_url)
    params = configured(configured_params)
    with factory.begin() as session:
        queued = enqueue_all_device_days(session, params, from_day, to_day)
    processed = _catch_up(factory, params)
    click.echo(f"recomputed {queued} device-days ({processed} queue entries)")


@click.command()
@from_option
@to_option
@db_option
@format_option
def report(from_day, to_day, db_url, fmt) -> None:
    """Print stored dosage per hot spot and day, brought up to date with every stored ping."""
    factory = open_database(db_url)
    _catch_up(factory, configured(configured_params))
    with factory() as session:
        table = daily_report(session, from_day, to_day)
    write_table(table, fmt, sys.stdout)


@click.command("dead-letters")
@db_option
@format_option
@click.option("--limit", type=int, default=None, help="Only the newest N.")
def dead_letters(db_url, fmt, limit) -> None:
    """List dead letters: when, source, topic, reason and the payload (shortened)."""
    factory = open_database(db_url)
    with factory() as session:
        write_table(dead_letter_report(session, limit), fmt, sys.stdout)


@click.command()
@click.option(
    "--days", type=int, default=None, help="Retention in days (default TRACKER_RETENTION_DAYS)."
)
@db_option
def purge(days, db_url) -> None:
    """Delete raw pings older than the retention period; dosage figures stay."""
    days = settings.get("TRACKER_RETENTION_DAYS") if days is None else days
    if days <= 0:
        raise click.UsageError("no retention period: set --days or TRACKER_RETENTION_DAYS")
    factory = open_database(db_url)
    with factory.begin() as session:
        count = purge_pings(session, days, configured(configured_params))
    click.echo(f"purged {count} pings older than {days} days")
