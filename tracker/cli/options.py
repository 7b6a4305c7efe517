"""Options shared by several commands, and the translation of core errors into usage errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar

import click
from sqlalchemy.orm import Session, sessionmaker

from tracker.foundation import database, parsing, settings
from tracker.foundation.tables import FORMATS

T = TypeVar("T")


class Day(click.ParamType):
    """A YYYY-MM-DD date within the dates the tracker handles (tracker.foundation.parsing)."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx) -> date:
        if isinstance(value, date):
            return value
        try:
            return parsing.parse_day(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


db_option = click.option(
    "--db",
    "db_url",
    default=None,
    metavar="URL",
    help="SQLAlchemy database URL (default: TRACKER_DATABASE_URL, then embedded SQLite).",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="csv",
    show_default=True,
    help="Output format.",
)
from_option = click.option(
    "--from", "from_day", type=Day(), default=None, help="First local date (YYYY-MM-DD)."
)
to_option = click.option(
    "--to", "to_day", type=Day(), default=None, help="Last local date (YYYY-MM-DD)."
)


def configured(read: Callable[[], T]) -> T:
    """Return read() (one of the core's configured_* functions), or fail naming the bad
    setting."""
    try:
        return read()
    except settings.SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def open_database(db_url: str | None) -> sessionmaker[Session]:
    """Return a session factory for an initialised database, or fail with what to run."""
    try:
        factory = database.open_database(db_url)
    except database.DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from exc
    # Close pooled connections when the command ends (PostgreSQL would otherwise see them
    # dropped, and tests running many commands in one process would leak them).
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(factory.kw["bind"].dispose)
    return factory
