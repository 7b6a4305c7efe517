"""`tracker users ...` and `tracker tokens ...`: accounts and API tokens."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
import pandas as pd
from sqlalchemy import select

from tracker.accounts.users import (
    READ_SCOPE,
    ROLES,
    SCOPES,
    UserError,
    create_user,
    issue_token,
    revoke_token,
    tokens_table,
)
from tracker.cli.options import db_option, format_option, open_database
from tracker.foundation.models import User, utc_now
from tracker.foundation.tables import write_table


@click.group()
def users() -> None:
    """Web app accounts."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option(
    "--officer",
    "officer_id",
    default=None,
    help="The officer's collar or staff number (required for --role officer).",
)
@click.option(
    "--agency",
    default=None,
    help="The partner's organisation (required for --role partner); it may update the "
    "problem-solving actions this agency owns.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
@db_option
def users_create(username, role, officer_id, agency, password_stdin, db_url) -> None:
    """Create a user; the password comes from a prompt or stdin, never the command line."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    factory = open_database(db_url)
    try:
        with factory.begin() as session:
            create_user(session, username, role, password, officer_id, agency=agency)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {role} {username}")


@users.command("list")
@db_option
@format_option
def users_list(db_url, fmt) -> None:
    """List users and their roles (never their password hashes)."""
    factory = open_database(db_url)
    with factory() as session:
        rows = session.execute(
            select(
                User.username, User.role, User.officer_id, User.active, User.last_login
            ).order_by(User.username)
        ).all()
    frame = pd.DataFrame(rows, columns=["username", "role", "officer_id", "active", "last_login"])
    write_table(frame, fmt, sys.stdout)


@click.group()
def tokens() -> None:
    """API tokens for BI tools (Authorization: Bearer ...)."""


@tokens.command("issue")
@click.argument("username")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default=READ_SCOPE,
    show_default=True,
    help="read: figures only (GET); full: everything the user's role may do.",
)
@click.option(
    "--expires-in-days",
    type=click.IntRange(1, 3650),
    default=None,
    help="The token stops working after this many days (default: until revoked).",
)
@db_option
def tokens_issue(username, name, scope, expires_in_days, db_url) -> None:
    """Issue a token acting as USERNAME (with that user's role); it is shown once."""
    expires_at = None
    if expires_in_days is not None:
        expires_at = utc_now() + timedelta(days=expires_in_days)
    factory = open_database(db_url)
    try:
        with factory.begin() as session:
            token = issue_token(session, username, name, scope=scope, expires_at=expires_at)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(token)


@tokens.command("list")
@db_option
@format_option
def tokens_list(db_url, fmt) -> None:
    """Every token: owner, name, scope, issued, expires, last used, state (never the token)."""
    factory = open_database(db_url)
    with factory() as session:
        frame = pd.DataFrame(tokens_table(session))
    write_table(frame, fmt, sys.stdout)


@tokens.command("revoke")
@click.argument("username")
@click.argument("name")
@db_option
def tokens_revoke(username, name, db_url) -> None:
    """Revoke USERNAME's tokens called NAME."""
    factory = open_database(db_url)
    with factory.begin() as session:
        count = revoke_token(session, username, name)
    if not count:
        raise click.ClickException(f"no active token {name!r} for {username!r}")
    click.echo(f"revoked {count} token(s)")
