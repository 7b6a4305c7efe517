"""`tracker sara ...` (the problem-solving plans) and `tracker report board` (the monthly
board report) (docs/partners.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tracker.cli.options import configured, db_option, format_option, open_database
from tracker.dosage.engine import configured_params
from tracker.foundation import settings
from tracker.foundation.clock import local_today
from tracker.foundation.tables import write_table
from tracker.partnership.board import (
    BoardError,
    board_html,
    board_pdf,
    board_report,
    output_format,
    parse_month,
)
from tracker.partnership.sara import export_plans, export_table
from tracker.plan.compliance import configured_thresholds


@click.group()
def sara() -> None:
    """Problem-solving plans (SARA), one per hot spot."""


@sara.command("export")
@click.option("--hotspot", "hotspot_id", default=None, help="Only this hot spot's plan.")
@db_option
@format_option
def sara_export(hotspot_id, db_url, fmt) -> None:
    """Print the plans: CSV one row per action (the plan's texts on each), JSON each plan with
    its actions, their dated updates and its versions."""
    today = local_today(settings.get("TRACKER_TZ"))
    with open_database(db_url)() as session:
        plans = export_plans(session, today, hotspot_id)
    if hotspot_id is not None and not plans:
        raise click.ClickException(f"no problem-solving plan for hot spot {hotspot_id!r}")
    if fmt == "json":
        click.echo(json.dumps(plans, indent=1))
    else:
        write_table(export_table(plans), fmt, sys.stdout)


@click.command("board")
@click.option("--month", required=True, help="The month, YYYY-MM (local).")
@click.option("--operation", default=None, help="The operation's name (default: the current one).")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The file to write: FILE.pdf or FILE.html.",
)
@db_option
def board(month, operation, out_path, db_url) -> None:
    """Write the monthly board report of an operation: dosage against the plan, patrol per
    week, stop and search, crime harm, problem-solving actions and data quality."""
    try:
        fmt = output_format(out_path)
        first = parse_month(month)
    except BoardError as exc:
        raise click.UsageError(str(exc)) from exc
    params = configured(configured_params)
    thresholds = configured(configured_thresholds)
    with open_database(db_url)() as session:
        try:
            report = board_report(
                session,
                first,
                params,
                thresholds,
                operation_name=operation,
                buffer_m=settings.get("TRACKER_STOP_BUFFER_M"),
            )
        except BoardError as exc:
            raise click.ClickException(str(exc)) from exc
    path = Path(out_path)
    if fmt == "pdf":
        path.write_bytes(board_pdf(report))
    else:
        path.write_text(board_html(report), encoding="utf-8")
    click.echo(f"{out_path}: {report.operation}, {report.first} to {report.last} ({report.tz})")


def report_group(daily: click.Command) -> click.Group:
    """`tracker report` as before (the stored daily dosage, with its options), and `tracker
    report board` beside it."""

    @click.group(
        "report",
        invoke_without_command=True,
        params=list(daily.params),
        help=f"{daily.help}\n\n`tracker report board` writes the monthly board report.",
    )
    @click.pass_context
    def report(context: click.Context, **options) -> None:
        if context.invoked_subcommand is None:
            context.invoke(daily.callback, **options)

    report.add_command(board)
    return report
