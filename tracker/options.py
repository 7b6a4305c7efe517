"""Command-line options shared by several commands.

Kept apart from `tracker.cli` so that the ingester's receiving process, which has to stay
small, can offer the same --db option without importing every command.
"""

import click

db_option = click.option(
    "--db", "db_url", default=None, metavar="URL",
    help="SQLAlchemy database URL (default: TRACKER_DATABASE_URL, then embedded SQLite).",
)
