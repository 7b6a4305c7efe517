"""Database engines, sessions and schema upgrades (Alembic), for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tracker.foundation import settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


class DatabaseNotReady(Exception):
    """The database cannot be reached, or its schema is missing or older than the code."""


def make_engine(url: str) -> Engine:
    """Return an engine; SQLite gets WAL, foreign keys and a busy timeout, its folder created.

    Database errors never quote the statement's parameters (officers' devices and
    positions), so logs that print an error hold none of them.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers (the web app, reports) run beside the single writer.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory; objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine):
    """Return the Alembic configuration for our migrations, bound to `engine`."""
    from alembic.config import Config  # Alembic is slow to import; only migrations need it

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration, keeping all data."""
    from alembic import command

    command.upgrade(alembic_config(engine), "heads")


def schema_is_current(engine: Engine) -> bool:
    """Return whether the database has the tables of the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        current = MigrationContext.configure(connection).get_current_heads()
    heads = ScriptDirectory.from_config(alembic_config(engine)).get_heads()
    return set(current) == set(heads)


def open_database(db_url: str | None = None) -> sessionmaker[Session]:
    """Return a session factory for an initialised database (--db, else the settings).

    Raises DatabaseNotReady saying what to do; the caller disposes of the engine
    (`factory.kw["bind"].dispose()`) when it is done with it.
    """
    try:
        engine = make_engine(settings.database_url(db_url))
        current = schema_is_current(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseNotReady(f"cannot open the database: {exc}") from exc
    if not current:
        engine.dispose()
        raise DatabaseNotReady(
            "the database schema is missing or old: run `python -m tracker init` first"
        )
    return session_factory(engine)
