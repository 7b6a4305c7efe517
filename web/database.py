"""One database session per request, opened lazily and closed at teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session


def get_db() -> Session:
    """Return this request's session (views commit explicitly when they write)."""
    if "db" not in g:
        g.db = current_app.extensions["tracker.sessions"]()
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()  # rolls back anything not committed


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
