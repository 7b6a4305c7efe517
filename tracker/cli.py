"""The command line: `python -m tracker ...`. Domain errors become click exceptions here."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tracker import settings
from tracker.db import make_engine, schema_is_current, session_factory, upgrade
from tracker.devices import AssignmentError, load_assignments, parse_assignments
from tracker.dosage import DAILY_COLUMNS, DosageParams, compute_dosage
from tracker.geofence import GeofenceError, load_hot_spots
from tracker.options import Day, db_option
from tracker.pings import PingFileError, parse_gpx, parse_ping_records, read_pings
from tracker.recompute import bring_up_to_date, enqueue_all_device_days, replace_hot_spots
from tracker.reports import daily_report, dead_letter_report
from tracker.stops import relink_stops
from tracker.store import purge_pings, store_dead_letters, store_pings, stored_hot_spots
from tracker.tables import FORMATS, write_table

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True,
    help="Output format.",
)
from_option = click.option("--from", "from_day", type=Day(), default=None,
                           help="First local date (YYYY-MM-DD).")
to_option = click.option("--to", "to_day", type=Day(), default=None,
                         help="Last local date (YYYY-MM-DD).")


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


def configured_params() -> DosageParams:
    """Return the dosage parameters of the deployment (TRACKER_ settings)."""
    try:
        return DosageParams(
            max_gap_s=settings.get("TRACKER_MAX_GAP_S"),
            max_accuracy_m=settings.get("TRACKER_MAX_ACCURACY_M"),
            visit_merge_gap_s=settings.get("TRACKER_VISIT_MERGE_GAP_S"),
            min_visit_s=settings.get("TRACKER_MIN_VISIT_S"),
            max_speed_kmh=settings.get("TRACKER_MAX_SPEED_KMH"),
            tz=settings.get("TRACKER_TZ"),
        )
    except ValueError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc


def open_database(db_url: str | None) -> sessionmaker[Session]:
    """Return a session factory for an initialised database, or fail with what to run."""
    url = settings.database_url(db_url)
    try:
        engine = make_engine(url)
        current = schema_is_current(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from exc
    # Close pooled connections when the command ends (PostgreSQL would otherwise see them
    # dropped, and tests running many commands in one process would leak them).
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(engine.dispose)
    if not current:
        raise click.ClickException(
            "the database schema is missing or old: run `python -m tracker init` first")
    return session_factory(engine)


def _catch_up(factory: sessionmaker[Session], params: DosageParams) -> int:
    with factory() as session:
        hot_spots = stored_hot_spots(session)
    return bring_up_to_date(factory.begin, hot_spots, params)


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
    write_table(result.daily[DAILY_COLUMNS], fmt, sys.stdout)
    if bad_rows:
        click.echo(f"{pings_path}: skipped {len(bad_rows)} bad rows", err=True)


@main.command()
@db_option
def init(db_url) -> None:
    """Create the database schema, or upgrade it to the newest version keeping all data."""
    from alembic.util import CommandError

    url = settings.database_url(db_url)
    try:
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()  # or PostgreSQL sees the pooled connection dropped at exit
    except (SQLAlchemyError, CommandError, OSError) as exc:
        raise click.ClickException(f"cannot initialise {url}: {exc}") from exc
    click.echo(f"database ready: {engine.url.render_as_string(hide_password=True)}")


@main.group()
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
    params = configured_params()
    with factory.begin() as session:
        queued = replace_hot_spots(session, hot_spots, params)
        relink_stops(session, params.tz)  # stops now fall in other hot spots
    _catch_up(factory, params)
    click.echo(f"loaded {len(hot_spots)} hot spots; recomputed {queued} device-days")


@main.group()
def devices() -> None:
    """Devices and their assignment to officers."""


@devices.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@db_option
def devices_load(path, db_url) -> None:
    """Load assignments (device_id,officer_id,officer_name,starts,ends[,label]) from CSV."""
    try:
        rows = parse_assignments(Path(path).read_text(encoding="utf-8"), source=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read the file: {exc}") from exc
    except AssignmentError as exc:
        raise click.ClickException(f"nothing loaded:\n{exc}") from exc
    factory = open_database(db_url)
    with factory.begin() as session:
        count = load_assignments(session, rows, actor="cli")
    click.echo(f"loaded {count} assignments for {len({r.device_id for r in rows})} devices")


@main.group()
def pings() -> None:
    """Stored GPS pings."""


@pings.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--device", "device_id", default=None,
              help="Device id for a GPX file (CSV and JSON lines carry their own).")
@db_option
def pings_import(path, device_id, db_url) -> None:
    """Import historic pings (CSV, JSON lines or GPX) through the live ingest path."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        if path.lower().endswith(".gpx") or text.lstrip().startswith("<"):
            if not device_id:
                raise click.UsageError("a GPX file needs --device ID")
            records, bad_rows = parse_gpx(text, device_id, source=path)
        else:
            records, bad_rows = parse_ping_records(text, source=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read the file: {exc}") from exc
    except PingFileError as exc:
        raise click.ClickException(str(exc)) from exc
    for bad in bad_rows:
        click.echo(f"{path}: {bad}", err=True)
    factory = open_database(db_url)
    params = configured_params()
    batch = 20_000
    for start in range(0, len(records), batch):
        with factory.begin() as session:
            store_pings(session, records[start:start + batch], params, source="import")
    if bad_rows:
        lines = text.split("\n")
        with factory.begin() as session:
            store_dead_letters(session, "import", [
                (f"{path}:{bad.line}", bad.reason,
                 lines[bad.line - 1] if bad.unit == "line" and bad.line <= len(lines) else "")
                for bad in bad_rows])
    _catch_up(factory, params)
    click.echo(f"imported {len(records)} pings from {path}; skipped {len(bad_rows)} bad rows")
    if bad_rows and not records:
        raise click.ClickException(f"{path}: no valid pings")


@main.command()
@from_option
@to_option
@db_option
def recompute(from_day, to_day, db_url) -> None:
    """Rebuild stored dosage from the stored pings (all days, or a range of local dates)."""
    factory = open_database(db_url)
    params = configured_params()
    with factory.begin() as session:
        queued = enqueue_all_device_days(session, params, from_day, to_day)
    processed = _catch_up(factory, params)
    click.echo(f"recomputed {queued} device-days ({processed} queue entries)")


@main.command()
@from_option
@to_option
@db_option
@format_option
def report(from_day, to_day, db_url, fmt) -> None:
    """Print stored dosage per hot spot and day, brought up to date with every stored ping."""
    factory = open_database(db_url)
    _catch_up(factory, configured_params())
    with factory() as session:
        table = daily_report(session, from_day, to_day)
    write_table(table, fmt, sys.stdout)


@main.command("dead-letters")
@db_option
@format_option
@click.option("--limit", type=int, default=None, help="Only the newest N.")
def dead_letters(db_url, fmt, limit) -> None:
    """List dead letters: when, source, topic, reason and the payload (shortened)."""
    factory = open_database(db_url)
    with factory() as session:
        write_table(dead_letter_report(session, limit), fmt, sys.stdout)




@main.command()
@click.option("--days", type=int, default=None,
              help="Retention in days (default TRACKER_RETENTION_DAYS).")
@db_option
def purge(days, db_url) -> None:
    """Delete raw pings older than the retention period; dosage figures stay."""
    days = settings.get("TRACKER_RETENTION_DAYS") if days is None else days
    if days <= 0:
        raise click.UsageError("no retention period: set --days or TRACKER_RETENTION_DAYS")
    factory = open_database(db_url)
    with factory.begin() as session:
        count = purge_pings(session, days, configured_params())
    click.echo(f"purged {count} pings older than {days} days")

@main.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads.")
def serve(db_url, host, port, threads) -> None:
    """Run the web app on the production WSGI server (waitress)."""
    from waitress import serve as waitress_serve

    from web import ConfigurationError, create_app

    open_database(db_url)  # fail early, with advice, on a missing schema
    try:
        app = create_app({"DATABASE_URL": settings.database_url(db_url)})
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    # Objects alive after start-up live as long as the process: keep them out of the
    # garbage collector's full passes, which otherwise add 30-60 ms to some page views.
    gc.freeze()
    click.echo(f"serving on http://{host}:{port}/")
    waitress_serve(app, host=host, port=port, threads=threads)


@main.command()
@click.option("--port", default=5000, show_default=True, type=int, help="Web app port.")
def demo(port) -> None:
    """Run everything on embedded defaults with demo data and a simulated fleet."""
    from tracker.demo import run

    run(port=port)

# Command groups of other areas register last: they import the options defined above.
from tracker.users_cli import tokens, users  # noqa: E402

main.add_command(users)
main.add_command(tokens)
from tracker.stops_cli import stops  # noqa: E402

main.add_command(stops)
from tracker.plan_cli import plan  # noqa: E402

main.add_command(plan)
