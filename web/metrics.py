"""Prometheus metrics and health checks of the web app: /metrics, /healthz, /readyz.

/healthz (liveness) and /readyz (readiness: the database answers) are open to anyone and
say nothing else. /metrics is for Prometheus only: with TRACKER_METRICS_TOKEN set, a request
must carry it as a bearer token; without, only a request made on this machine and not
through a proxy is answered (a proxy connects from this machine too, so a request with a
forwarding header is refused). docs/operations.md lists the metrics and the alerts.
"""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tracker.dosage.monitoring import ingest_figures
from tracker.foundation import settings
from web.database import get_db

blueprint = Blueprint("metrics", __name__)
LOOPBACK = frozenset({"127.0.0.1", "::1"})
# Headers a reverse proxy adds: their presence means the request came from elsewhere.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _DatabaseFigures:
    """Reads the ingest figures (queue depths, ping ages) from the database on each scrape."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):
        reachable = GaugeMetricFamily(
            "tracker_web_database_reachable", "1 if the database answered this scrape."
        )
        try:
            with self.app.extensions["tracker.sessions"]() as session:
                samples = ingest_figures(session).samples()
        except SQLAlchemyError:
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield reachable
        families: dict[str, GaugeMetricFamily] = {}
        for name, help_text, label_name, label, value in samples:
            if name not in families:
                families[name] = GaugeMetricFamily(name, help_text, labels=[label_name])
            families[name].add_metric([label], value)
        yield from families.values()


class WebMetrics:
    """The app's own registry (tests create many apps in one process)."""

    def __init__(self, app: Flask) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tracker_web_requests",
            "Requests answered, by method and status code.",
            ["method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "tracker_web_request_seconds",
            "Time to answer a request.",
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DatabaseFigures(app))


def _allowed() -> bool:
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    return request.remote_addr in LOOPBACK and not any(
        name in request.headers for name in FORWARDING_HEADERS
    )


@blueprint.get("/metrics")
def metrics():
    """Prometheus metrics (text format), for Prometheus only (see the module's docstring)."""
    if not _allowed():
        status = 401 if current_app.config["METRICS_TOKEN"] else 403
        return Response("metrics are for Prometheus only\n", status, mimetype="text/plain")
    body = generate_latest(current_app.extensions["tracker.metrics"].registry)
    return Response(body, 200, content_type=CONTENT_TYPE_LATEST)


@blueprint.get("/healthz")
def healthz():
    """Liveness: the process answers requests."""
    return Response("ok\n", 200, mimetype="text/plain")


@blueprint.get("/readyz")
def readyz():
    """Readiness: the database answers."""
    try:
        get_db().execute(text("SELECT 1"))
    except SQLAlchemyError:
        return jsonify({"database": "unreachable"}), 503
    return jsonify({"database": "reachable"})


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count(response):
    measured = current_app.extensions["tracker.metrics"]
    measured.requests.labels(request.method, str(response.status_code)).inc()
    if "metrics_started" in g:
        measured.seconds.observe(time.perf_counter() - g.metrics_started)
    return response


def init_app(app: Flask) -> None:
    app.config.setdefault("METRICS_TOKEN", settings.get("TRACKER_METRICS_TOKEN"))
    app.extensions["tracker.metrics"] = WebMetrics(app)
    app.before_request(_start_timer)
    app.after_request(_count)
    app.register_blueprint(blueprint)
