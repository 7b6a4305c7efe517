"""The supervisors' and assurance leads' web app (Flask application factory)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from tracker.dosage.engine import configured_params
from tracker.foundation import settings
from tracker.foundation.database import make_engine, session_factory
from tracker.plan.compliance import configured_thresholds
from tracker.stops.records import ReviewPolicy

# The largest id every integer column holds: PostgreSQL's INTEGER (the ids of stops, reviews,
# users and operations) is 32 bits; SQLite's and BIGINT's 64.
DATABASE_INT_MAX = 2**31 - 1


class ConfigurationError(RuntimeError):
    """A setting that makes the app unsafe or unable to start."""


class DatabaseIntegerConverter(IntegerConverter):
    """`<int:...>` in every route: an integer the database's integer columns can hold, so a
    larger one is not found (404) rather than an error from the database (500)."""

    def __init__(self, map, fixed_digits=0, min=None, max=DATABASE_INT_MAX, signed=False):
        if signed and min is None:
            min = -DATABASE_INT_MAX - 1
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def create_app(test_config: dict | None = None) -> Flask:
    """Create the app: settings, database, log-in, CSRF, rate limits, headers, blueprints."""
    app = Flask(__name__, instance_path=str(Path(settings.get("TRACKER_INSTANCE_PATH"))))
    # Before any route is added: every <int:...> argument is then one the database can hold.
    app.url_map.converters["int"] = DatabaseIntegerConverter
    try:
        dosage_params = configured_params()
        rag_thresholds = configured_thresholds()
    except settings.SettingsError as exc:
        raise ConfigurationError(str(exc)) from exc
    production = settings.is_production()
    secret_key = settings.get("TRACKER_SECRET_KEY")
    if production and len(secret_key) < 32:
        raise ConfigurationError(
            "TRACKER_SECRET_KEY (32+ random characters) is required in production"
        )
    if production and settings.get("TRACKER_DEBUG"):
        raise ConfigurationError("TRACKER_DEBUG must be off in production")
    app.config.from_mapping(
        # Development only: a fresh random key each start (sessions end on restart).
        SECRET_KEY=secret_key or secrets.token_hex(32),
        DATABASE_URL=settings.database_url(),
        PRODUCTION=production,
        DEBUG=settings.get("TRACKER_DEBUG"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=production,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # No request body over this (413): a plan file is at most 1 MB, a stop a few KB.
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        MAP_TILES=settings.get("TRACKER_MAP_TILES"),
        LOGIN_RATE_LIMIT=settings.get("TRACKER_LOGIN_RATE_LIMIT"),
        RATELIMIT_STORAGE_URI=settings.get("TRACKER_RATELIMIT_STORAGE_URI"),
        DOSAGE_PARAMS=dosage_params,
        RAG_THRESHOLDS=rag_thresholds,
        POPULATION_FILE=settings.get("TRACKER_POPULATION_FILE"),
        REVIEW_POLICY=ReviewPolicy(
            settings.get("TRACKER_REVIEW_DUE_DAYS"),
            settings.get("TRACKER_REVIEW_SAMPLE_RATE"),
            dosage_params.tz,
        ),
        SECOND_REVIEW_RATE=settings.get("TRACKER_SECOND_REVIEW_RATE"),
        PROXY_HOPS=settings.get("TRACKER_PROXY_HOPS"),
        # CSRF is checked in a before_request hook, except for bearer-token API calls.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
    )
    if test_config:
        app.config.update(test_config)
    hops = app.config["PROXY_HOPS"]
    if hops < 0:
        raise ConfigurationError(f"TRACKER_PROXY_HOPS must be 0 or more, not {hops}")
    if hops:
        # Behind a proxy every request comes from the proxy: the client's address (which
        # the log-in rate limit counts by) and scheme are in the headers the proxy sets.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    app.extensions["tracker.sessions"] = session_factory(make_engine(app.config["DATABASE_URL"]))

    from web import (
        admin,
        api,
        assets,
        assurance,
        auth,
        board,
        dashboard,
        database,
        errors,
        harm,
        metrics,
        partners,
        sara,
        security,
        stops_api,
        tasking,
    )

    database.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(assurance.blueprint)
    app.register_blueprint(stops_api.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(assets.blueprint)
    app.register_blueprint(tasking.blueprint)
    app.register_blueprint(harm.blueprint)
    app.register_blueprint(sara.blueprint)
    app.register_blueprint(partners.blueprint)
    app.register_blueprint(board.blueprint)
    # Lets the layout link to areas only when they are installed.
    app.jinja_env.globals["url_rules"] = app.view_functions
    app.jinja_env.globals["link_for"] = link_for
    return app


def link_for(spec: tuple, value) -> str:
    """Return the URL for a table cell link: spec is (endpoint, argument[, other arguments])."""
    endpoint, argument, *extra = spec
    return url_for(endpoint, **{argument: value}, **(extra[0] if extra else {}))
