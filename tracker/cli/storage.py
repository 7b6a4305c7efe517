"""`tracker storage`: the pings table's monthly partitions on PostgreSQL (docs/operations.md)."""

from __future__ import annotations

import sys

import click

from tracker.cli.options import db_option, format_option, open_database
from tracker.dosage.partitions import ensure_partitions, is_partitioned, partitions_table
from tracker.foundation.tables import write_table


@click.group()
def storage() -> None:
    """How the pings are stored: monthly partitions on PostgreSQL."""


@storage.command("partitions")
@db_option
@format_option
def partitions(db_url, fmt) -> None:
    """List the partitions of pings: UTC days covered, estimated rows and size."""
    factory = open_database(db_url)
    with factory() as session:
        if not is_partitioned(session):
            raise click.ClickException("pings is not partitioned here (only on PostgreSQL)")
        write_table(partitions_table(session), fmt, sys.stdout)


@storage.command("maintain")
@db_option
def maintain(db_url) -> None:
    """Make the partitions of this month and the next ones now (the ingesters do it hourly),
    moving rows out of the default partition."""
    factory = open_database(db_url)
    with factory.begin() as session:
        made = ensure_partitions(session)
    click.echo(f"made {', '.join(made)}" if made else "every partition needed is there")
