"""The web app's /metrics (for Prometheus only), /healthz and /readyz."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tracker.foundation.models import Assignment, Device, DirtyDeviceDay, Officer
from web import create_app

TOKEN = "s3cret-metrics-token-for-tests"


@pytest.fixture
def make_app():
    """Create apps on a database URL; their engines are closed after the test."""
    apps = []

    def make(database_url: str, **config):
        apps.append(create_app({"DATABASE_URL": database_url, "TESTING": True, **config}))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["tracker.sessions"].kw["bind"].dispose()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_health_checks_answer_anyone(database_url, make_app):
    client = make_app(database_url).test_client()
    response = client.get("/healthz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert (response.status_code, response.text) == (200, "ok\n")
    response = client.get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 200
    assert response.json == {"database": "reachable"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_fails_while_the_database_does_not_answer(make_app):
    app = make_app(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/tracker")
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"database": "unreachable"}
    assert client.get("/healthz").status_code == 200
    found = samples(client.get("/metrics").text)
    assert found[("tracker_web_database_reachable", ())] == 0


def test_metrics_give_requests_and_the_ingest_figures_from_this_machine(db, database_url, make_app):
    now = datetime.now(UTC)
    with db.begin() as session:
        session.add_all(
            [
                Device(id="radio-1", last_seen=now - timedelta(seconds=30)),
                Device(id="alice/phone", last_seen=now - timedelta(minutes=20)),
                Officer(id="PC1"),
                DirtyDeviceDay(device_id="radio-1", day=now.date()),
            ]
        )
    with db.begin() as session:
        session.add_all(
            Assignment(device_id=device, officer_id="PC1", starts=now - timedelta(hours=2))
            for device in ("radio-1", "alice/phone")
        )
    client = make_app(database_url).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/overview").status_code == 302  # to the log-in page

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    found = samples(response.text)
    assert found[("tracker_web_requests_total", (("method", "GET"), ("status", "200")))] == 1
    assert found[("tracker_web_requests_total", (("method", "GET"), ("status", "302")))] == 1
    assert found[("tracker_web_request_seconds_count", ())] == 2
    assert found[("tracker_web_database_reachable", ())] == 1
    assert found[("tracker_dosage_queue_depth", (("queue", "device_days"),))] == 1
    assert found[("tracker_dosage_queue_depth", (("queue", "hot_spot_days"),))] == 0
    assert found[("tracker_devices", (("device_class", "patrol"),))] == 1
    assert found[("tracker_devices", (("device_class", "owntracks"),))] == 1
    assert 30 <= found[("tracker_last_ping_age_seconds", (("device_class", "patrol"),))] < 300
    assert found[("tracker_devices_silent", (("device_class", "owntracks"),))] == 1
    assert found[("tracker_devices_silent", (("device_class", "patrol"),))] == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "environ, headers",
    [
        ({"REMOTE_ADDR": "203.0.113.9"}, {}),
        ({}, {"X-Forwarded-For": "203.0.113.9"}),  # through the reverse proxy on this machine
        ({}, {"Forwarded": "for=203.0.113.9"}),
        ({}, {"X-Real-IP": "203.0.113.9"}),
    ],
)
def test_without_a_token_metrics_are_refused_to_requests_from_elsewhere(
    database_url, environ, headers, make_app
):
    client = make_app(database_url).test_client()
    response = client.get("/metrics", environ_base=environ, headers=headers)
    assert response.status_code == 403
    assert "tracker_" not in response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_with_a_token_metrics_need_it_from_anywhere(database_url, make_app):
    client = make_app(database_url, METRICS_TOKEN=TOKEN).test_client()
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics").status_code == 401  # this machine too
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.get("/metrics", environ_base=remote, headers=wrong).status_code == 401
    right = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "203.0.113.9"}
    response = client.get("/metrics", environ_base=remote, headers=right)
    assert response.status_code == 200
    assert "tracker_web_requests_total" in response.text


def test_the_token_setting_reaches_the_app(database_url, monkeypatch, make_app):
    monkeypatch.setenv("TRACKER_METRICS_TOKEN", TOKEN)
    client = make_app(database_url).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
