"""Command-line options shared by several commands.

Kept apart from `tracker.cli` so that the ingester's receiving process, which has to stay
small, can offer the same --db option without importing every command.
"""

from datetime import date

import click

from tracker import parsing


class Day(click.ParamType):
    """A YYYY-MM-DD date within the dates the tracker handles (tracker.parsing)."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx) -> date:
        if isinstance(value, date):
            return value
        try:
            return parsing.parse_day(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


db_option = click.option(
    "--db", "db_url", default=None, metavar="URL",
    help="SQLAlchemy database URL (default: TRACKER_DATABASE_URL, then embedded SQLite).",
)
