"""The ingester's Prometheus metrics and health checks (`--metrics-port`), the figures read
from the database for them, and the classes of dead letter reasons they count by."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.mqtt.test_ingest_mqtt import (
    Harness,
    PingsTableAway,
    native_topic,
    unique,
    wait_until,
)
from tests.servers import BrokerUnderTest, PrivateMosquitto
from tracker.dosage.engine import DosageParams
from tracker.dosage.ingest import Message, store_messages
from tracker.dosage.monitoring import SILENT_AFTER_S, dead_letter_class, ingest_figures
from tracker.dosage.payloads import Limits, decode_message
from tracker.foundation.database import make_engine, upgrade
from tracker.foundation.models import (
    Assignment,
    Device,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    Officer,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())


# --- dead letter reasons by class ---------------------------------------------------------------

# One message for each cause in docs/ingest.md's table of dead letters, and its class.
BAD_MESSAGES = [
    ("patrol/r7/battery", b'{"percent": 80}', "topic"),
    ("patrol/r7/location", b"x" * 300, "payload_too_large"),
    ("patrol/r7/location", b'{"ts": 1, "lat": "\xe9"}', "not_utf8"),
    ("patrol/r7/location", b"lat=52&lon=-1", "not_json"),
    ("patrol/r7/location", b"[" * 200, "not_json"),
    ("patrol/r7/location", b"[]", "not_an_object"),
    ("patrol/r7/location", b"[7]", "not_an_object"),
    ("owntracks/a/p", b"[]", "not_an_object"),
    ("owntracks/a/p", b"{}", "not_an_object"),
    ("patrol/r7/location", b'{"lat": 52, "lon": -1}', "missing_field"),
    ("patrol/r7/location", b'{"ts": "2026-11-26T11:00:00", "lat": 52, "lon": -1}', "bad_timestamp"),
    ("patrol/r7/location", b'{"ts": "tuesday", "lat": 52, "lon": -1}', "bad_timestamp"),
    ("patrol/r7/location", b'{"ts": 1795680000000, "lat": 52, "lon": -1}', "bad_timestamp"),
    ("patrol/r7/location", f'{{"ts": {NOW_S + 3600}, "lat": 52, "lon": -1}}'.encode(), "future"),
    ("patrol/r7/location", f'{{"ts": {NOW_S - 9e6}, "lat": 52, "lon": -1}}'.encode(), "too_old"),
    ("patrol/r7/location", f'{{"ts": {NOW_S}, "lat": "n", "lon": -1}}'.encode(), "bad_position"),
    ("patrol/r7/location", f'{{"ts": {NOW_S}, "lat": 95, "lon": -1}}'.encode(), "bad_position"),
    ("patrol/r7/location", f'{{"ts": {NOW_S}, "lat": 0, "lon": 0}}'.encode(), "bad_position"),
    (
        "patrol/r7/location",
        f'{{"ts": {NOW_S}, "lat": 52, "lon": -1, "acc": -5}}'.encode(),
        "bad_accuracy_or_speed",
    ),
    ("patrol/" + "x" * 130 + "/location", b'{"ts": 1795680000, "lat": 52, "lon": -1}', "device_id"),
    (
        "patrol/r7/location",
        f'{{"ts": {NOW_S}, "lat": 52, "lon": -1, "device_id": "r8"}}'.encode(),
        "device_mismatch",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "payload", "expected"), BAD_MESSAGES)
def test_every_documented_dead_letter_reason_has_its_class(topic, payload, expected):
    limits = Limits(max_payload_bytes=256, max_age_days=90)
    errors = decode_message(topic, payload, NOW_S * 1_000_000, limits).errors
    assert len(errors) == 1, errors
    assert dead_letter_class(errors[0]) == expected, errors[0]


def test_reasons_made_outside_decoding_have_their_class():
    assert dead_letter_class("topic of 60000 characters exceeds the 256 character limit") == (
        "topic_too_long"
    )
    assert dead_letter_class("could not be processed (ZeroDivisionError: x)") == "unprocessable"
    assert dead_letter_class("and 5 more bad elements in this message") == "more_elements"
    assert dead_letter_class("element 3: missing lon") == "missing_field"
    assert dead_letter_class("something new") == "other"


def test_a_stored_batch_counts_its_dead_letters_by_class(db):
    messages = [
        Message("patrol/r7/location", b"not json"),
        Message("patrol/r7/location", b'[{"lat": 1}, {"lat": 2}]'),
        Message("patrol/r7/battery", b"{}"),
    ]
    with db.begin() as session:
        outcome = store_messages(session, messages, DosageParams(), Limits(), NOW_S * 1_000_000)
    assert outcome.dead_letters == 4
    assert outcome.reasons == {"not_json": 1, "missing_field": 2, "topic": 1}


# --- figures from the database ------------------------------------------------------------------


def test_ingest_figures_give_queue_depths_and_each_device_class_s_silence(db):
    with db.begin() as session:
        session.add_all(
            [
                # heard 10 s ago; silent 10 minutes, on and off duty; last heard yesterday
                Device(id="radio-1", last_seen=NOW - timedelta(seconds=10)),
                Device(id="radio-2", last_seen=NOW - timedelta(seconds=SILENT_AFTER_S + 300)),
                Device(id="radio-5", last_seen=NOW - timedelta(seconds=SILENT_AFTER_S + 300)),
                Device(id="radio-3", last_seen=NOW - timedelta(hours=20)),
                Device(id="radio-4"),  # known from the devices file, never heard
                Device(id="alice/phone", last_seen=NOW - timedelta(seconds=SILENT_AFTER_S + 1)),
                Officer(id="PC1"),
                DirtyDeviceDay(device_id="radio-1", day=NOW.date()),
                DirtyHotSpotDay(hotspot_id="A", day=NOW.date()),
                DirtyHotSpotDay(hotspot_id="B", day=NOW.date()),
            ]
        )
    with db.begin() as session:
        # On duty now: radio-1, radio-2, radio-3 (open-ended) and alice; radio-5's shift ended.
        session.add_all(
            [
                Assignment(device_id=d, officer_id="PC1", starts=NOW - timedelta(hours=h), ends=e)
                for d, h, e in [
                    ("radio-1", 8, None),
                    ("radio-2", 8, NOW + timedelta(hours=1)),
                    ("radio-3", 30, None),
                    ("radio-5", 8, NOW - timedelta(minutes=1)),
                    ("alice/phone", 1, None),
                ]
            ]
        )
    with db() as session:
        figures = ingest_figures(session, NOW)
    assert figures.queue_depth == {"device_days": 1, "hot_spot_days": 2}
    assert figures.devices == {"patrol": 5, "owntracks": 1}
    assert figures.last_ping_age_s == {"patrol": 10.0, "owntracks": SILENT_AFTER_S + 1.0}
    assert figures.silent_devices == {"patrol": 1, "owntracks": 1}
    samples = {(name, label): value for name, _help, _l, label, value in figures.samples()}
    assert samples[("tracker_devices_silent", "patrol")] == 1.0
    assert samples[("tracker_dosage_queue_depth", "hot_spot_days")] == 2.0


def test_ingest_figures_of_an_empty_database(db):
    with db() as session:
        figures = ingest_figures(session, NOW)
    assert figures.last_ping_age_s == {}
    names = {name for name, *_rest in figures.samples()}
    assert "tracker_last_ping_age_seconds" not in names  # no ping yet: no age, not 0
    assert {"tracker_dosage_queue_depth", "tracker_devices", "tracker_devices_silent"} <= names


# --- the ingester's endpoints -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the ingester's /metrics."""
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(port: int, name: str, **labels) -> float | None:
    return scrape(port).get((name, tuple(sorted(labels.items()))))


def ready(port: int) -> tuple[int, dict]:
    status, body = get(port, "/readyz")
    return status, json.loads(body)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_ingester_counts_what_it_commits_and_says_when_it_is_not_ready(
    database_url, db, tmp_path
):
    broker = PrivateMosquitto(tmp_path / "broker").start()
    harness = Harness(BrokerUnderTest("private", broker.url, "5", True), database_url, tmp_path)
    port = free_port()
    try:
        device = unique("radio")
        topic = native_topic(device)
        ingester = harness.start(
            unique("ingest"), [topic, "owntracks/+/+"], "--metrics-port", str(port)
        )
        harness.wait_subscribed(ingester, 2)
        assert get(port, "/healthz") == (200, "ok\n")
        assert ready(port) == (200, {"broker": "connected", "database": "reachable"})

        t0 = int(time.time()) - 60
        fix = {"lat": 52.6371, "lon": -1.1333, "acc": 8}
        publisher = harness.publisher()
        publisher.publish(
            [
                (topic, json.dumps({**fix, "ts": t0}).encode()),
                (topic, json.dumps([{**fix, "ts": t0 + 1}, {**fix, "ts": t0 + 2}]).encode()),
                (topic, b"not json"),
                (topic, json.dumps({**fix, "ts": t0 + 3, "device_id": "other"}).encode()),
                ("owntracks/a/p", json.dumps({"_type": "lwt", "tst": t0}).encode()),
            ]
        )
        wait_until(
            lambda: metric(port, "tracker_ingest_messages_committed_total") == 5,
            "five messages committed",
            [ingester],
        )
        found = scrape(port)
        assert found[("tracker_ingest_messages_received_total", ())] == 5
        assert found[("tracker_ingest_pings_stored_total", ())] == 3
        assert found[("tracker_ingest_messages_ignored_total", ())] == 1
        assert found[("tracker_ingest_dead_letters_total", (("reason", "not_json"),))] == 1
        assert found[("tracker_ingest_dead_letters_total", (("reason", "device_mismatch"),))] == 1
        assert found[("tracker_ingest_batch_commit_seconds_count", ())] >= 1
        assert found[("tracker_ingest_ack_lag_seconds_count", ())] >= 1
        assert found[("tracker_ingest_oldest_unacknowledged_seconds", ())] == 0
        assert found[("tracker_ingest_broker_connected", ())] == 1
        # The writer reads the database's figures on its dosage passes (every 0.5 s here).
        wait_until(
            lambda: metric(port, "tracker_devices", device_class="patrol") == 1,
            "the database's figures",
            [ingester],
        )
        age = metric(port, "tracker_last_ping_age_seconds", device_class="patrol")
        assert 55 <= age < 600
        assert metric(port, "tracker_dosage_queue_depth", queue="device_days") is not None

        # The database refuses the next batch: not ready until it is stored.
        with PingsTableAway(db):
            publisher.publish([(topic, json.dumps({**fix, "ts": t0 + 10}).encode())])
            wait_until(lambda: ready(port)[0] == 503, "not ready while the database fails")
            assert ready(port)[1]["database"] == "unreachable"
            wait_until(
                lambda: (metric(port, "tracker_ingest_oldest_unacknowledged_seconds") or 0) > 0,
                "an unacknowledged message",
            )
        wait_until(lambda: ready(port)[0] == 200, "ready once the database answers again")
        assert get(port, "/healthz")[0] == 200

        # The broker goes away: not ready (still alive) until the ingester is back on it.
        broker.stop()
        wait_until(lambda: ready(port)[1]["broker"] == "disconnected", "the broker's absence")
        assert ready(port)[0] == 503
        assert get(port, "/healthz")[0] == 200
        broker.start()
        wait_until(lambda: ready(port)[0] == 200, "ready once reconnected", [ingester])
        assert get(port, "/nothing")[0] == 404
        assert harness.stop(ingester) == 0
    finally:
        harness.close()
        broker.stop()


def test_a_metrics_port_in_use_stops_the_ingester_with_the_reason(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = PrivateMosquitto(tmp_path / "broker").start()
        database_url = f"sqlite:///{tmp_path / 'tracker.db'}"
        upgrade(make_engine(database_url))
        harness = Harness(BrokerUnderTest("private", broker.url, "5", True), database_url, tmp_path)
        try:
            ingester = harness.start(
                unique("ingest"), ["patrol/+/location"], "--metrics-port", str(port)
            )
            assert ingester.process.wait(timeout=60) == 1
            assert f"cannot serve metrics on 127.0.0.1:{port}" in ingester.log()
        finally:
            harness.close()
            broker.stop()
