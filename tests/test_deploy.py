"""The deployment (deploy/, docs/operations.md): a backup restored into a fresh database gives
the same report, and the shipped files name only commands, options and metrics that exist.

The restore test works in PostgreSQL databases of its own, created and dropped here, with
the installed pg_dump and pg_restore, as the runbook does.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.servers import DEFAULT_POSTGRES_URL, port_open, unavailable
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.monitoring import GAUGES
from tracker.dosage.pings import format_timestamp
from tracker.foundation.database import make_engine
from tracker.mqtt.metrics import IngestMetrics, Readiness
from tracker.simulation.fleet import fleet

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DEMO_PATH = ROOT / "geofences" / "leicestershire_demo.geojson"
PLAN_PATH = ROOT / "geofences" / "demo_plan.yaml"
TIMEOUT_S = 300


def tracker(*args: str, stdin: str | None = None) -> str:
    """Run `python -m tracker ...` as the runbook does; return its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")},
    )
    assert done.returncode == 0, f"tracker {' '.join(args)}:\n{done.stderr}"
    return done.stdout


@pytest.fixture
def databases():
    """Make fresh PostgreSQL databases on the test server; drop them all afterwards.

    Yields a function name -> SQLAlchemy URL; `libpq(url)` gives what pg_dump takes.
    """
    base = os.environ.get("TRACKER_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)
    parts = urlsplit(base)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        unavailable(f"PostgreSQL at {parts.hostname}:{parts.port or 5432}")
    for program in ("pg_dump", "pg_restore"):
        if shutil.which(program) is None:
            unavailable(f"the {program} program")
    admin = make_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make(purpose: str) -> str:
        name = f"tracker_{purpose}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return urlunsplit(parts._replace(path=f"/{name}", query=""))

    try:
        yield make
    finally:
        with admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def libpq(url: str) -> str:
    """The libpq URL of a SQLAlchemy one (pg_dump and pg_restore know no driver names)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def populate(url: str, folder: Path) -> None:
    """An operation as the runbook loads it, with two nights of a simulated fleet."""
    tracker("init", "--db", url)
    tracker("geofences", "load", str(DEMO_PATH), "--db", url)
    tracker("plan", "load", str(PLAN_PATH), "--db", url)
    devices = folder / "devices.csv"
    devices.write_text(
        "device_id,officer_id,officer_name,starts,ends,label\n"
        "radio-001,PC101,Alice Smith,2026-01-01T00:00:00Z,,Radio one\n"
        "radio-002,PC102,Bob Jones,2026-01-01T00:00:00Z,2026-03-06T02:00:00Z,\n"
        "radio-002,PC103,Carol White,2026-03-06T02:00:00Z,,\n"
    )
    tracker("devices", "load", str(devices), "--db", url)
    hot_spots = load_hot_spots(DEMO_PATH)
    london = ZoneInfo("Europe/London")
    pings = [
        p
        for night in (5, 6)
        for p in fleet(hot_spots, 3, datetime(2026, 3, night, 20, tzinfo=london), 6, seed=night)
    ]
    path = folder / "pings.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["device_id", "timestamp", "lat", "lon", "accuracy_m", "speed_kmh"])
        for p in pings:
            writer.writerow(
                [p.device_id, format_timestamp(p.t_us), p.lat, p.lon, p.accuracy_m, p.speed_kmh]
            )
        writer.writerow(["radio-001", "2026-03-05T21:00:00", "52.6", "-1.1", "", ""])  # a bad row
    tracker("pings", "import", str(path), "--db", url)
    tracker("users", "create", "supervisor1", "--role", "supervisor", "--password-stdin",
            "--db", url, stdin="correct horse battery staple 42\n")  # fmt: skip


def test_a_restored_dump_gives_the_same_report(databases, tmp_path):
    original = databases("original")
    populate(original, tmp_path)
    report = tracker("report", "--db", original, "--format", "csv")
    assert report.count("\n") > 10, report  # a header and many hot spot-days
    dead_letters = tracker("dead-letters", "--db", original, "--format", "csv")
    assert "has no UTC offset" in dead_letters

    dump = tmp_path / "tracker.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={dump}", libpq(original)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    restored = databases("restored")
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq(restored)}", str(dump)],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )

    # The runbook's checks: already at the newest schema, and the same figures.
    assert "database ready" in tracker("init", "--db", restored)
    assert tracker("report", "--db", restored, "--format", "csv") == report
    assert tracker("dead-letters", "--db", restored, "--format", "csv") == dead_letters
    assert tracker("plan", "show", "--db", restored) == tracker("plan", "show", "--db", original)
    # And it takes new data: the sequences came back with the rows.
    extra = tmp_path / "extra.csv"
    extra.write_text("device_id,timestamp,lat,lon\nradio-009,2026-03-07T01:00:00Z,52.63,-1.13\n")
    assert "imported 1 pings" in tracker("pings", "import", str(extra), "--db", restored)


# --- the shipped files -------------------------------------------------------------------------


def exec_lines(unit: Path) -> list[list[str]]:
    return [
        line.split("=", 1)[1].split()
        for line in unit.read_text().splitlines()
        if line.startswith("ExecStart=") and line != "ExecStart="
    ]


def options_of(command: list[str]) -> set[str]:
    return {word.split("=")[0] for word in command if word.startswith("--")}


def help_text(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_the_systemd_units_run_commands_with_options_that_exist():
    web = exec_lines(DEPLOY / "systemd" / "tracker-web.service")
    assert [command[:2] for command in web] == [["/opt/tracker/.venv/bin/tracker", "serve"]]
    serve_help = help_text("-m", "tracker", "serve")
    assert options_of(web[0]) <= set(re.findall(r"--[a-z-]+", serve_help))

    ingest = exec_lines(DEPLOY / "systemd" / "tracker-ingest@.service")
    assert ingest[0][1] == "/opt/tracker/ingest_mqtt.py"
    ingest_help = help_text("ingest_mqtt.py")
    assert options_of(ingest[0]) <= set(re.findall(r"--[a-z-]+", ingest_help))
    # Instance N is shard N (of TRACKER_MQTT_SHARDS), under client id tracker-ingest-N.
    assert ingest[0][ingest[0].index("--shard") + 1] == "%i" and "tracker-ingest-%i" in ingest[0]

    env = (DEPLOY / "tracker.env").read_text()
    assert re.search(r"^TRACKER_MQTT_SHARDS=[1-9]$", env, re.MULTILINE)
    assert not re.search(r"^TRACKER_MQTT_SHARED_GROUP=", env, re.MULTILINE)  # it excludes shards
    names = re.findall(r"^#? ?(TRACKER_[A-Z_]+)=", env, re.MULTILINE)
    settings_table = (ROOT / "README.md").read_text()
    assert names and all(f"`{name}`" in settings_table for name in names)


def test_the_alerts_watch_only_metrics_the_tracker_exports():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "tracker-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in alerts} >= {
        "TrackerIngesterDown",
        "TrackerIngestLag",
        "TrackerDosageQueueGrowing",
        "TrackerDeviceSilentDuringShift",
    }
    ingest = IngestMetrics(lambda: 0, lambda: 0.0, lambda: Readiness(True, True), lambda: True)
    ingest.record_batch(
        {"messages": 1, "pings": 0, "dead_letters": 1, "ignored": 0, "reasons": {"not_json": 1}},
        0.1,
    )
    exported = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(ingest.registry).decode())
        for sample in family.samples
    }
    # The database's figures, Prometheus's own `up`, and the web app's (tests/web/test_metrics.py)
    exported |= {*GAUGES, "up", "tracker_web_database_reachable", "tracker_web_requests_total"}
    for rule in alerts:
        used = set(re.findall(r"\b(up|tracker_[a-z_]+)\b", rule["expr"]))
        assert used, rule["alert"]
        assert used <= exported, (rule["alert"], used - exported)


def test_the_proxy_keeps_metrics_off_the_internet():
    config = (DEPLOY / "nginx" / "tracker.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;", config)
    assert "proxy_pass http://127.0.0.1:5000;" in config
    assert "X-Forwarded-For" in config  # which the app's /metrics refuses
    assert "ssl_certificate " in config
