"""Every TRACKER_ setting, declared once with its default and help.

Values come from the environment, then from an optional config file (`TRACKER_CONFIG`,
KEY=VALUE lines), then from the default. The README documents each setting; a test
fails when one is undocumented.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracker.foundation import parsing

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Setting:
    """One configuration variable: its name, default, type and what it is for."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "TRACKER_ENV",
        "development",
        "'development' or 'production'; production refuses missing secrets and debug.",
    ),
    Setting("TRACKER_CONFIG", "", "Optional file of KEY=VALUE lines read after the environment."),
    Setting(
        "TRACKER_INSTANCE_PATH",
        str(PROJECT_ROOT / "instance"),
        "Folder for the embedded SQLite database and other local state.",
    ),
    Setting(
        "TRACKER_DATABASE_URL",
        "",
        "SQLAlchemy URL; empty means SQLite (WAL) at <instance>/tracker.db. "
        "Production: postgresql+psycopg://user@host/db.",
    ),
    Setting("TRACKER_TZ", "Europe/London", "Operation time zone; dosage days are local days."),
    Setting("TRACKER_MAX_GAP_S", 180.0, "Longest gap between pings that credits a span.", float),
    Setting(
        "TRACKER_MAX_ACCURACY_M", 100.0, "Pings less accurate than this credit nothing.", float
    ),
    Setting("TRACKER_VISIT_MERGE_GAP_S", 60.0, "Breaks up to this long do not end a visit.", float),
    Setting("TRACKER_MIN_VISIT_S", 120.0, "Visits shorter than this are not counted.", float),
    Setting(
        "TRACKER_CROSSING_RULE",
        "interpolate",
        "How a span between two pings is credited: 'interpolate' (the time of the part of "
        "the straight path inside each hot spot) or 'endpoints' (the whole span, only to "
        "hot spots containing both pings; the earlier rule, to reproduce its figures).",
    ),
    Setting(
        "TRACKER_EDGE_TOLERANCE_M",
        30.0,
        "With the interpolate rule: a device whose pings step outside a hot spot by at most "
        "this many metres and come back inside within max_gap_s is taken to have stayed "
        "(0: off).",
        float,
    ),
    Setting(
        "TRACKER_MAX_SPEED_KMH",
        None,
        "If set, faster spans credit nothing (empty: off).",
        _optional_float,
    ),
    Setting(
        "TRACKER_MQTT_URL",
        "",
        "mqtt://[user:pass@]host:port or mqtts://...; empty starts the embedded broker "
        "(development only).",
    ),
    Setting("TRACKER_MQTT_CA_FILE", "", "CA certificate file for mqtts:// brokers."),
    Setting(
        "TRACKER_MQTT_CLIENT_ID",
        "tracker-ingest-1",
        "Stable MQTT client id; the broker keeps this ingester's session under it.",
    ),
    Setting(
        "TRACKER_MQTT_TOPICS",
        ("patrol/+/location", "owntracks/+/+"),
        "Comma-separated topic filters to subscribe to.",
        _list,
    ),
    Setting(
        "TRACKER_MQTT_SHARED_GROUP",
        "",
        "If set, subscribe as $share/<group>/<filter> so several ingesters share the load "
        "(MQTT v5 brokers).",
    ),
    Setting(
        "TRACKER_MQTT_SHARDS",
        0,
        "If N > 0, ingester --shard K of N subscribes by name to the topics of its share of "
        "the devices table's devices (subscriptions that survive a broker restart); 0: off.",
        int,
    ),
    Setting(
        "TRACKER_MQTT_SESSION_EXPIRY_S",
        7 * 24 * 3600,
        "How long the broker keeps the ingester's session and queued messages.",
        int,
    ),
    Setting(
        "TRACKER_MAX_FUTURE_S",
        300.0,
        "Pings more than this far in the future are dead letters.",
        float,
    ),
    Setting("TRACKER_MAX_PAYLOAD_BYTES", 262144, "Larger MQTT payloads are dead letters.", int),
    Setting("TRACKER_INGEST_BATCH", 500, "Messages committed per database transaction.", int),
    Setting(
        "TRACKER_INGEST_FLUSH_S",
        0.2,
        "Longest a received message waits before its batch is committed.",
        float,
    ),
    Setting("TRACKER_INGEST_LOG_S", 10.0, "Seconds between the ingester's status lines.", float),
    Setting(
        "TRACKER_RECOMPUTE_S",
        2.0,
        "Seconds between the ingester's passes over pending dosage.",
        float,
    ),
    Setting(
        "TRACKER_INGEST_METRICS_PORT",
        0,
        "Port of the ingester's Prometheus metrics and health checks (/metrics, /healthz, "
        "/readyz); 0: none.",
        int,
    ),
    Setting(
        "TRACKER_INGEST_METRICS_ADDRESS",
        "127.0.0.1",
        "Address the ingester's metrics listen on (0.0.0.0: every interface).",
    ),
    Setting(
        "TRACKER_PROXY_HOPS",
        0,
        "Reverse proxies in front of the web app whose X-Forwarded-For and X-Forwarded-Proto "
        "are believed (1 behind deploy/'s nginx); 0 believes none, as any client can send them.",
        int,
    ),
    Setting(
        "TRACKER_METRICS_TOKEN",
        "",
        "Bearer token for the web app's /metrics; empty: only requests made on this machine, "
        "not through a proxy.",
    ),
    Setting(
        "TRACKER_RETENTION_DAYS",
        0,
        "Raw pings older than this are purged (aggregates stay); 0 keeps them.",
        int,
    ),
    Setting("TRACKER_RAG_GREEN", 0.9, "Compliance at or above this is green.", float),
    Setting(
        "TRACKER_RAG_AMBER", 0.6, "Compliance at or above this (and below green) is amber.", float
    ),
    Setting(
        "TRACKER_REVIEW_DUE_DAYS",
        28,
        "A stop's BWV review falls due this many days after the stop.",
        int,
    ),
    Setting(
        "TRACKER_REVIEW_SAMPLE_RATE",
        1.0,
        "Share of stops selected for BWV review (1 = all; a sample is reproducible).",
        float,
    ),
    Setting(
        "TRACKER_SECOND_REVIEW_RATE",
        0.1,
        "Share of completed BWV reviews drawn for a second reviewer (reproducible per stop).",
        float,
    ),
    Setting(
        "TRACKER_STOP_BUFFER_M",
        0.0,
        "A stop outside every hot spot is linked to one within this many metres (published "
        "points are moved to a nearby map point; 0: inside only).",
        float,
    ),
    Setting(
        "TRACKER_POPULATION_FILE",
        "",
        "Optional population for rates per 1,000 and disproportionality ratios on the "
        "assurance dashboard: a group,population CSV of the five broad groups (or a JSON "
        "object by full self-defined ethnicity, for the detailed table).",
    ),
    Setting(
        "TRACKER_SECRET_KEY",
        "",
        "Flask session key; required in production (development generates one per run).",
    ),
    Setting(
        "TRACKER_MAP_TILES",
        "",
        "Map tile URL template; empty draws the polygons on a plain background.",
        str,
    ),
    Setting(
        "TRACKER_LOGIN_RATE_LIMIT",
        "5 per minute",
        "Failed log-ins allowed per client address and user name.",
    ),
    Setting(
        "TRACKER_RATELIMIT_STORAGE_URI",
        "memory://",
        "Where log-in attempts are counted; use redis://... when running several web processes.",
    ),
    Setting("TRACKER_DEBUG", False, "Flask debug mode; refused in production.", _flag),
)
BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


class SettingsError(ValueError):
    """A setting with a value that cannot be used."""


def _config_file_values(environ: Mapping[str, str]) -> dict[str, str]:
    path = environ.get("TRACKER_CONFIG", "")
    if not path:
        return {}
    values: dict[str, str] = {}
    lines = parsing.read_text(path, SettingsError, label="TRACKER_CONFIG ").splitlines()
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in BY_NAME:
            raise SettingsError(f"TRACKER_CONFIG {path}: line {number}: unknown setting {key!r}")
        values[key] = value.strip()
    return values


def get(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """Return the parsed value of one setting."""
    environ = os.environ if environ is None else environ
    setting = BY_NAME[name]
    raw = environ.get(name)
    if raw is None:
        raw = _config_file_values(environ).get(name)
    if raw is None:
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r}: {exc}") from exc


def is_production(environ: Mapping[str, str] | None = None) -> bool:
    """Return whether TRACKER_ENV says production."""
    return str(get("TRACKER_ENV", environ)).strip().lower() == "production"


def database_url(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Return --db, else TRACKER_DATABASE_URL, else the embedded SQLite file."""
    if explicit:
        return explicit
    url = get("TRACKER_DATABASE_URL", environ)
    if url:
        return url
    instance = Path(get("TRACKER_INSTANCE_PATH", environ))
    return f"sqlite:///{instance / 'tracker.db'}"
