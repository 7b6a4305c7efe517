"""`tracker plan ...`: load and show the operation plan, print compliance."""

from __future__ import annotations

import sys

import click

from tracker.cli.options import Day, configured, db_option, format_option, open_database
from tracker.foundation import settings
from tracker.foundation.tables import write_table
from tracker.plan.compliance import compliance_table, configured_thresholds
from tracker.plan.reader import read_plan, require_dosage_tz
from tracker.plan.storage import find_operation, load_plan, plan_table, stored_plan
from tracker.plan.targets import PlanError
from tracker.stops.records import relink_stops

operation_option = click.option(
    "--operation",
    "operation_name",
    default=None,
    metavar="NAME",
    help="Operation name (default: the one running today, else the latest).",
)


@click.group()
def plan() -> None:
    """The operation plan: targets per hot spot and compliance with them."""


@plan.command("load")
@click.argument("path", type=click.Path(dir_okay=False))
@db_option
def plan_load(path, db_url) -> None:
    """Load a YAML plan, creating the operation or replacing its plan (audited)."""
    dosage_tz = settings.get("TRACKER_TZ")
    try:
        new_plan = read_plan(path, default_tz=dosage_tz)
        require_dosage_tz(new_plan, dosage_tz, source=path)
    except PlanError as exc:
        raise click.ClickException(f"nothing loaded:\n{exc}") from exc
    try:
        with open_database(db_url).begin() as session:
            operation = load_plan(session, new_plan, actor="cli")
            relink_stops(session, new_plan.tz)  # stops now fall in other operation dates
    except PlanError as exc:
        raise click.ClickException(f"nothing loaded:\n{exc}") from exc
    click.echo(
        f"loaded the plan of {operation.name}: {len(new_plan.hotspot_ids)} hot spots, "
        f"{len(new_plan.phases)} phases, {new_plan.start_date} to {new_plan.end_date}"
    )


@plan.command("show")
@operation_option
@db_option
@format_option
def plan_show(operation_name, db_url, fmt) -> None:
    """Print the plan's phases: dates and targets per hot spot."""
    with open_database(db_url)() as session:
        try:
            operation = find_operation(session, operation_name)
        except PlanError as exc:
            raise click.ClickException(str(exc)) from exc
        table = plan_table(stored_plan(session, operation))
    write_table(table, fmt, sys.stdout)


@plan.command("compliance")
@click.option(
    "--date",
    "reference",
    type=Day(),
    default=None,
    help="Reference local date (default: today in the operation's time zone).",
)
@operation_option
@db_option
@format_option
def plan_compliance(reference, operation_name, db_url, fmt) -> None:
    """Print compliance per hot spot for the day, week, month and operation to date."""
    with open_database(db_url)() as session:
        try:
            operation = find_operation(session, operation_name)
        except PlanError as exc:
            raise click.ClickException(str(exc)) from exc
        table = compliance_table(session, operation, reference, configured(configured_thresholds))
    write_table(table, fmt, sys.stdout)
