"""The command line, `tracker ...` (or `python -m tracker ...`): an edge around the core.

Each area's commands live in their own module; core errors become click exceptions there.
"""

from __future__ import annotations

import gc

import click
from sqlalchemy.exc import SQLAlchemyError

from tracker.cli import broker, dosage, harm, partnership, plan, stops, storage, users, validity
from tracker.cli.options import db_option, open_database
from tracker.dosage.partitions import ensure_partitions
from tracker.foundation import settings
from tracker.foundation.database import make_engine, session_factory, upgrade


@click.group()
def main() -> None:
    """Hot spot patrol dosage tracker."""


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
            with session_factory(engine).begin() as session:
                ensure_partitions(session)  # this month's and the next (PostgreSQL)
        finally:
            engine.dispose()  # or PostgreSQL sees the pooled connection dropped at exit
    except (SQLAlchemyError, CommandError, OSError) as exc:
        raise click.ClickException(f"cannot initialise {url}: {exc}") from exc
    click.echo(f"database ready: {engine.url.render_as_string(hide_password=True)}")


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


@main.command("demo")
@click.option("--port", default=5000, show_default=True, type=int, help="Web app port.")
def demo_command(port) -> None:
    """Run everything on embedded defaults with demo data and a simulated fleet."""
    from tracker.demo import run

    run(port=port)


for command in (
    dosage.dosage,
    dosage.geofences,
    dosage.devices,
    dosage.pings,
    dosage.recompute,
    partnership.report_group(dosage.report),
    dosage.dead_letters,
    dosage.purge,
    storage.storage,
    plan.plan,
    stops.stops,
    users.users,
    users.tokens,
    validity.validity,
    broker.broker,
    harm.crimes,
    harm.hotspots,
    harm.harm,
    partnership.sara,
):
    main.add_command(command)
