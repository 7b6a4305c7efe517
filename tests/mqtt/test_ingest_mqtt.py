"""The MQTT ingester end to end: `ingest_mqtt.py` as a process, real brokers, real databases.

The tests run against Mosquitto (MQTT 5) and the embedded broker (MQTT 3.1.1), and a
SQLite file or a PostgreSQL schema (tests/servers.py). Tests publish with paho 2 at QoS 1
and then poll the database until the expected rows are there, with a timeout: no test waits
by sleeping for a fixed time, and none asserts on timing.

Topics and client ids are unique per test, because the Mosquitto broker is shared: an
ingester only subscribes to the devices of its own test.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from pathlib import Path
from typing import IO, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select, text

from tests.servers import BrokerUnderTest, PrivateMosquitto, alive, descendants, unavailable
from tracker import cli
from tracker.dosage.engine import configured_params
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.pings import Ping, format_timestamp
from tracker.dosage.recompute import replace_hot_spots
from tracker.dosage.reports import daily_report
from tracker.dosage.store import dead_letter_count
from tracker.foundation.models import DeadLetter, PingRow
from tracker.foundation.tables import write_table
from tracker.simulation.fleet import fleet

ROOT = Path(__file__).resolve().parents[2]
DEMO_PATH = ROOT / "geofences" / "leicestershire_demo.geojson"
DEMO = load_hot_spots(DEMO_PATH)
LONDON = ZoneInfo("Europe/London")
WAIT_S = 90.0  # a generous bound on any one wait; tests normally take a few seconds
POLL_S = 0.05
# A stream of messages rather than a burst, so that a signal lands while messages are in
# flight: received by the ingester, not yet committed or acknowledged.
STREAM_EVERY_S = 0.004
PAHO_PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
# The night the clocks went back in 2026: a shift across local midnight and a 25-hour day.
NIGHT_SHIFT = datetime(2026, 10, 24, 23, 20, tzinfo=LONDON)
IN_LE01 = (52.6371, -1.1333)  # Clock Tower and Haymarket


# The two ways the tracker is deployed: production (Mosquitto and PostgreSQL) and the
# embedded defaults (amqtt and SQLite). Tests whose subject does not depend on the pairing run
# on these two; the others run on every broker and database.
DEPLOYMENTS = pytest.mark.parametrize(
    ("mqtt_broker", "database_url"),
    [("mosquitto", "postgresql"), ("embedded", "sqlite")],
    indirect=True,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- ingester processes --------------------------------------------------------------------------


class Totals(NamedTuple):
    messages: int
    pings: int
    dead_letters: int
    ignored: int


FINAL_LINE = re.compile(
    r"final: (\d+) msgs \([^)]*\), (\d+) pings, (\d+) dead letters, (\d+) ignored"
)


@dataclass
class IngesterProcess:
    """One `ingest_mqtt.py` process, its output going to a log file."""

    client_id: str
    process: subprocess.Popen
    log_path: Path
    log_file: IO[bytes]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def final_totals(self) -> Totals:
        """Return what the ingester's final status line says it committed."""
        found = FINAL_LINE.findall(self.log())
        assert len(found) == 1, f"no single final status line in:\n{self.log()}"
        return Totals(*map(int, found[0]))


class Harness:
    """Starts ingesters and publishers for one test, and cleans up whatever is left."""

    def __init__(self, broker, database_url: str, tmp_path: Path) -> None:
        self.broker = broker
        self.database_url = database_url
        self.tmp_path = tmp_path
        parts = urlsplit(broker.url)
        self.host, self.port = parts.hostname, parts.port or 1883
        self.ingesters: list[IngesterProcess] = []
        self.publishers: list[mqtt.Client] = []

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env.update(
            {
                "TRACKER_INGEST_LOG_S": "1",
                "TRACKER_RECOMPUTE_S": "0.5",
                # Small, frequent batches: a test's stream is committed as it arrives, and a
                # broker that limits unacknowledged messages (Mosquitto's max_inflight_messages)
                # does not leave each batch waiting for messages that cannot come yet.
                "TRACKER_INGEST_FLUSH_S": "0.05",
                # If a test's clean-up cannot delete its Mosquitto session, it expires soon.
                "TRACKER_MQTT_SESSION_EXPIRY_S": "600",
            }
        )
        env.update(overrides)
        return env

    def command(self, client_id: str, topics: Iterable[str], *extra: str) -> list[str]:
        args = [
            sys.executable,
            "ingest_mqtt.py",
            "--mqtt-url",
            self.broker.url,
            "--db",
            self.database_url,
            "--client-id",
            client_id,
            "--protocol",
            self.broker.protocol,
        ]
        for topic in topics:
            args += ["--topic", topic]
        return [*args, *extra]

    def start(
        self, client_id: str, topics: Iterable[str], *extra: str, **env: str
    ) -> IngesterProcess:
        """Start an ingester (without waiting for it: see `wait_subscribed`)."""
        log_path = self.tmp_path / f"ingester-{len(self.ingesters) + 1}-{client_id}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            self.command(client_id, topics, *extra),
            cwd=ROOT,
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        ingester = IngesterProcess(client_id, process, log_path, log_file)
        self.ingesters.append(ingester)
        return ingester

    def wait_subscribed(self, ingester: IngesterProcess, filters: int) -> None:
        """Wait until the broker has granted every topic filter of the ingester."""
        wait_until(
            lambda: ingester.log().count("subscribed to ") >= filters,
            f"{ingester.client_id} to subscribe",
            [ingester],
        )
        assert "refused" not in ingester.log()

    def stop(self, ingester: IngesterProcess, sig: int = signal.SIGTERM) -> int:
        """Send a signal and return the exit code."""
        ingester.process.send_signal(sig)
        try:
            return ingester.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{ingester.client_id} did not exit on signal {sig}:\n{ingester.log()}")

    def publisher(self) -> Publisher:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=unique("test-pub"),
            protocol=PAHO_PROTOCOLS[self.broker.protocol],
        )
        self.publishers.append(client)
        return Publisher(client, self.host, self.port)

    def close(self) -> None:
        for ingester in self.ingesters:
            if ingester.running():
                ingester.process.kill()
            ingester.process.wait(timeout=WAIT_S)
            ingester.log_file.close()
        for client in self.publishers:
            client.disconnect()
            client.loop_stop()
        # The shared Mosquitto keeps sessions; a test's private one is discarded with them.
        if self.broker.protocol == "5" and self.broker.name != "private":
            for client_id in {i.client_id for i in self.ingesters}:
                delete_session(self.host, self.port, client_id)


def delete_session(host: str, port: int, client_id: str) -> None:
    """End a persistent MQTT v5 session on the broker (clean start, session expiry 0)."""
    connected = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.on_connect = lambda *_args: connected.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(host, port, clean_start=True, properties=properties)
    client.loop_start()
    try:
        connected.wait(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


class Publisher:
    """A paho 2 client publishing at QoS 1 and waiting until the broker has each message."""

    def __init__(self, client: mqtt.Client, host: str, port: int) -> None:
        self.client = client
        connected = threading.Event()
        client.on_connect = lambda *_args: connected.set()
        client.connect(host, port)
        client.loop_start()
        assert connected.wait(WAIT_S), "the publisher could not connect"

    def publish(self, messages: Iterable[tuple[str, bytes]], every_s: float = 0.0) -> int:
        """Publish, as fast as possible or as a stream with `every_s` between messages."""
        infos = []
        for topic, payload in messages:
            infos.append(self.client.publish(topic, payload, qos=1))
            if every_s:
                time.sleep(every_s)
        for info in infos:
            info.wait_for_publish(timeout=WAIT_S)
            assert info.is_published(), "the broker did not acknowledge a message"
        return len(infos)


@pytest.fixture
def harness(mqtt_broker, database_url, tmp_path):
    running = Harness(mqtt_broker, database_url, tmp_path)
    try:
        yield running
    finally:
        running.close()


class Background:
    """A function run in a thread; `join` re-raises whatever it raised."""

    def __init__(self, target: Callable[[], object]) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                target()
            except BaseException as exc:  # handed to the test thread by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "a background publisher did not finish"
        if self.error is not None:
            raise self.error


# --- waiting and reading the database --------------------------------------------------------


def wait_until(
    condition: Callable[[], object], what: str, ingesters: Iterable[IngesterProcess] = ()
) -> object:
    """Poll until `condition()` is truthy; fail early if an ingester died, or at WAIT_S."""
    ingesters = list(ingesters)
    deadline = time.monotonic() + WAIT_S
    while True:
        value = condition()
        if value:
            return value
        for ingester in ingesters:
            if not ingester.running():
                pytest.fail(
                    f"waiting for {what}: {ingester.client_id} exited with "
                    f"{ingester.process.returncode}:\n{ingester.log()}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {i.client_id}\n{i.log()[-4000:]}" for i in ingesters)
            pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}\n{logs}")
        time.sleep(POLL_S)


def ping_count(db) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(PingRow))


def dead_letters(db) -> int:
    with db() as session:
        return dead_letter_count(session)


def stored_pings(db) -> set[Ping]:
    with db() as session:
        return {
            Ping(*row)
            for row in session.execute(
                select(
                    PingRow.device_id,
                    PingRow.t_us,
                    PingRow.lat,
                    PingRow.lon,
                    PingRow.accuracy_m,
                    PingRow.speed_kmh,
                )
            )
        }


def stored_report_csv(db) -> str:
    """The stored daily dosage as the `report` command prints it, without bringing it up to
    date: what the ingester itself has computed so far."""
    with db() as session:
        out = StringIO()
        write_table(daily_report(session), "csv", out)
        return out.getvalue()


def load_demo_hot_spots(db) -> None:
    with db.begin() as session:
        replace_hot_spots(session, DEMO, configured_params())


def tracker_command(*args: str) -> str:
    """Run `python -m tracker ...` and return its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def offline_dosage_csv(pings: Iterable[Ping], tmp_path: Path) -> str:
    """The offline `dosage` command's CSV for the pings, written to a CSV file first."""
    path = tmp_path / "pings.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["device_id", "timestamp", "lat", "lon", "accuracy_m", "speed_kmh"])
        for p in sorted(pings):
            writer.writerow(
                [
                    p.device_id,
                    format_timestamp(p.t_us),
                    repr(p.lat),
                    repr(p.lon),
                    "" if p.accuracy_m is None else repr(p.accuracy_m),
                    "" if p.speed_kmh is None else repr(p.speed_kmh),
                ]
            )
    result = CliRunner().invoke(
        cli.main, ["dosage", "--pings", str(path), "--geofences", str(DEMO_PATH), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


# --- messages ----------------------------------------------------------------------------------


def native_topic(device_id: str) -> str:
    return f"patrol/{device_id}/location"


def timestamp_text(t_us: int, style: int) -> str:
    """The same instant three ways: ISO-8601 UTC, ISO-8601 local time, epoch seconds."""
    if style == 0:
        return format_timestamp(t_us).replace("+00:00", "Z")
    if style == 1:
        return (
            datetime.fromtimestamp(t_us / 1e6, LONDON)
            .replace(microsecond=t_us % 1_000_000)
            .isoformat()
        )
    return f"{t_us // 1_000_000}.{t_us % 1_000_000:06d}"


def ping_body(p: Ping, style: int = 0) -> dict:
    body = {"ts": timestamp_text(p.t_us, style), "lat": p.lat, "lon": p.lon}
    if p.accuracy_m is not None:
        body["acc"] = p.accuracy_m
    if p.speed_kmh is not None:
        body["speed"] = p.speed_kmh
    return body


def single_messages(pings: Iterable[Ping]) -> list[tuple[str, bytes]]:
    return [
        (native_topic(p.device_id), json.dumps(ping_body(p, n % 3)).encode())
        for n, p in enumerate(pings)
    ]


def backlog_messages(pings: Iterable[Ping], size: int) -> list[tuple[str, bytes]]:
    """Each device's pings as JSON arrays of `size` consecutive pings, devices interleaved."""
    by_device: dict[str, list[Ping]] = {}
    for p in sorted(pings):
        by_device.setdefault(p.device_id, []).append(p)
    messages = []
    for device_id, track in sorted(by_device.items()):
        for start in range(0, len(track), size):
            chunk = track[start : start + size]
            messages.append(
                (
                    native_topic(device_id),
                    json.dumps(
                        [ping_body(p, (start + n) % 3) for n, p in enumerate(chunk)]
                    ).encode(),
                )
            )
    return messages


def simulated_fleet(
    run: str, devices: int, hours: float, seed: int, start: datetime = NIGHT_SHIFT
) -> list[Ping]:
    """A fleet over the demo hot spots, its device ids unique to this test run."""
    return [
        p._replace(device_id=f"{run}-{p.device_id}")
        for p in fleet(DEMO, devices=devices, start=start, hours=hours, seed=seed)
    ]


def device_ids(pings: Iterable[Ping]) -> list[str]:
    return sorted({p.device_id for p in pings})


def now_s() -> int:
    return int(time.time())


# --- (a) malformed messages --------------------------------------------------------------------


@DEPLOYMENTS
def test_malformed_messages_are_dead_letters_and_the_stream_goes_on(harness, db):
    run = unique("bad")
    good, bad = f"{run}-good", f"{run}-bad"
    ingester = harness.start(
        unique("ingest"), [native_topic(good), f"patrol/{bad}/#"], TRACKER_MAX_PAYLOAD_BYTES="1024"
    )
    t0 = now_s() - 600
    oversized = json.dumps(
        [{"ts": t0 + n, "lat": 52.6371, "lon": -1.1333} for n in range(40)]
    ).encode()
    assert len(oversized) > 1024
    latin1 = '{"ts": 1, "lat": "é"}'.encode("latin-1")
    # Deeper than json.loads can go (it gives up on the way down, before the missing "]"s),
    # within the 1024-byte limit.
    too_deep = b"[" * 1020

    def valid(n: int) -> tuple[str, bytes]:
        return native_topic(good), json.dumps(
            {"ts": t0 + n, "lat": 52.6371, "lon": -1.1333, "acc": 10}
        ).encode()

    def body(**fields) -> tuple[str, bytes]:
        return native_topic(bad), json.dumps(fields).encode()

    messages = [
        valid(0),
        (native_topic(bad), b"lat=52.6371&lon=-1.1333"),
        valid(1),
        body(lat=52.6371, lon=-1.1333),
        body(ts=t0, lat=52.6371),
        valid(2),
        body(ts=t0, lat=95.5, lon=-1.1333),
        body(ts=t0, lat=52.6371, lon=-190),
        body(ts=t0, lat=0, lon=0),
        valid(3),
        body(ts=now_s() + 86_400, lat=52.6371, lon=-1.1333),
        (native_topic(bad), oversized),
        (native_topic(bad), latin1),
        (native_topic(bad), too_deep),
        (f"patrol/{bad}/battery", b'{"percent": 80}'),
        (native_topic(bad), b"[]"),
        (
            native_topic(good),
            json.dumps(
                [
                    {"ts": t0 + 4, "lat": 52.6371, "lon": -1.1333},
                    {"ts": t0 + 5, "lat": 52.6371},
                    {"ts": t0 + 6, "lat": 52.6371, "lon": -1.1333},
                ]
            ).encode(),
        ),
        valid(7),
    ]
    expected_letters = {
        (
            native_topic(bad),
            "payload is not valid JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        (native_topic(bad), "missing timestamp"),
        (native_topic(bad), "missing lon"),
        (native_topic(bad), "lat 95.5 is out of range [-90, 90]"),
        (native_topic(bad), "lon -190.0 is out of range [-180, 180]"),
        (native_topic(bad), "position (0, 0) is a GPS fix failure, not a location"),
        (native_topic(bad), f"payload of {len(oversized)} bytes exceeds the 1024 byte limit"),
        (
            native_topic(bad),
            f"payload is not UTF-8 text (invalid byte 0xe9 at offset {latin1.index(0xE9)})",
        ),
        (
            native_topic(bad),
            "payload is not valid JSON (arrays or objects nested too deeply: "
            "line 1 column 1 (char 0))",
        ),
        (
            f"patrol/{bad}/battery",
            f"topic 'patrol/{bad}/battery' is neither "
            "patrol/<device_id>/location nor owntracks/<user>/<device>",
        ),
        (native_topic(bad), "payload is an empty array"),
        (native_topic(good), "element 2: missing lon"),
    }
    harness.wait_subscribed(ingester, 2)

    harness.publisher().publish(messages)

    wait_until(
        lambda: ping_count(db) == 7 and dead_letters(db) == 13,
        "7 pings and 13 dead letters",
        [ingester],
    )
    listed = json.loads(
        tracker_command("dead-letters", "--db", harness.database_url, "--format", "json")
    )
    assert ingester.running(), "bad input must never stop the ingester"
    assert harness.stop(ingester) == 0
    assert {p.t_us // 1_000_000 - t0 for p in stored_pings(db)} == {0, 1, 2, 3, 4, 6, 7}
    assert {p.device_id for p in stored_pings(db)} == {good}
    assert {row["source"] for row in listed} == {"mqtt"}
    reasons = [(row["topic"], row["reason"]) for row in listed]
    future = [r for r in reasons if "is in the future" in r[1]]
    assert len(future) == 1
    assert future[0][1].endswith("(more than 300 s ahead of the server clock)")
    assert set(reasons) - set(future) == expected_letters
    assert len(reasons) == 13
    payloads = {row["reason"]: row["payload"] for row in listed}
    assert payloads["missing lon"] == json.dumps({"ts": t0, "lat": 52.6371})
    oversized_reason = f"payload of {len(oversized)} bytes exceeds the 1024 byte limit"
    assert payloads[oversized_reason] == oversized.decode()[:120] + "…"
    assert ingester.final_totals() == Totals(messages=18, pings=7, dead_letters=13, ignored=0)


# --- (b) OwnTracks ------------------------------------------------------------------------------


def owntracks_location(tst: int, lat: float, lon: float) -> dict:
    """A location message as the OwnTracks apps publish it."""
    return {
        "_type": "location",
        "acc": 12,
        "alt": 80,
        "batt": 76,
        "bs": 1,
        "conn": "m",
        "created_at": tst + 10,
        "lat": lat,
        "lon": lon,
        "m": 1,
        "t": "u",
        "tid": "ab",
        "tst": tst,
        "vac": 3,
        "vel": 4,
    }


@DEPLOYMENTS
def test_owntracks_messages(harness, db):
    user = unique("ot")
    ingester = harness.start(unique("ingest"), [f"owntracks/{user}/+", f"owntracks/{user}/+/+"])
    base = f"owntracks/{user}/phone"
    # Eleven fixes 30 s apart in LE01 on 2026-11-20: five minutes of presence, one visit.
    first = int(datetime(2026, 11, 20, 10, 0, tzinfo=LONDON).timestamp())
    track = [
        (base, json.dumps(owntracks_location(first + 30 * n, *IN_LE01)).encode()) for n in range(11)
    ]
    others = [
        (
            f"{base}/event",
            {
                "_type": "transition",
                "wtst": first - 900,
                "lat": IN_LE01[0],
                "lon": IN_LE01[1],
                "tst": first,
                "acc": 14,
                "tid": "ab",
                "event": "enter",
                "desc": "Clock Tower",
                "t": "c",
            },
        ),
        (
            f"{base}/waypoint",
            {
                "_type": "waypoint",
                "desc": "Clock Tower",
                "lat": IN_LE01[0],
                "lon": IN_LE01[1],
                "rad": 150,
                "tst": first - 900,
            },
        ),
        (base, {"_type": "lwt", "tst": first - 3600}),
        (f"{base}/info", {"_type": "card", "name": "PC Alice", "tid": "ab"}),
        (f"{base}/status", {"_type": "status", "android": {"hib": 1, "bo": 1, "loc": 0}}),
    ]
    missing_time = (base, {"_type": "location", "lat": IN_LE01[0], "lon": IN_LE01[1]})
    messages = [
        *track[:5],
        *[(t, json.dumps(b).encode()) for t, b in others],
        (missing_time[0], json.dumps(missing_time[1]).encode()),
        *track[5:],
    ]
    load_demo_hot_spots(db)
    harness.wait_subscribed(ingester, 2)

    harness.publisher().publish(messages)

    wait_until(
        lambda: ping_count(db) == 11 and dead_letters(db) == 1,
        "11 OwnTracks pings and 1 dead letter",
        [ingester],
    )
    # The ingester keeps dosage current by itself (TRACKER_RECOMPUTE_S).
    expected_report = (
        "hotspot_id,date,presence_minutes,officer_minutes,visits\nLE01,2026-11-20,5.00,5.00,1\n"
    )
    wait_until(lambda: stored_report_csv(db) == expected_report, "LE01's dosage", [ingester])
    assert harness.stop(ingester) == 0
    assert stored_pings(db) == {
        Ping(f"{user}/phone", (first + 30 * n) * 1_000_000, *IN_LE01, 12.0, 4.0) for n in range(11)
    }
    with db() as session:
        letter = session.execute(select(DeadLetter.topic, DeadLetter.reason)).one()
    assert tuple(letter) == (base, "missing timestamp")
    assert ingester.final_totals() == Totals(messages=17, pings=11, dead_letters=1, ignored=5)


# --- (c) backlogs out of order ---------------------------------------------------------------


def test_backlogs_out_of_order_give_the_offline_dosage(harness, db, tmp_path):
    run = unique("backlog")
    pings = simulated_fleet(run, devices=3, hours=1.5, seed=3)
    ingester = harness.start(unique("ingest"), [native_topic(d) for d in device_ids(pings)])
    messages = backlog_messages(pings, size=12)
    rng = random.Random(17)
    rng.shuffle(messages)
    messages += rng.sample(messages, 5)  # a device resending part of its backlog
    expected = offline_dosage_csv(pings, tmp_path)
    assert expected.count("\n") > 8
    assert ",2026-10-24," in expected
    assert ",2026-10-25," in expected
    load_demo_hot_spots(db)
    harness.wait_subscribed(ingester, 3)

    harness.publisher().publish(messages)

    wait_until(lambda: ping_count(db) == len(pings), f"{len(pings)} pings", [ingester])
    wait_until(
        lambda: stored_report_csv(db) == expected,
        "the ingester's own dosage to match the offline command",
        [ingester],
    )
    assert tracker_command("report", "--db", harness.database_url, "--format", "csv") == expected
    assert stored_pings(db) == set(pings)
    assert harness.stop(ingester) == 0


# --- (d) SIGTERM ------------------------------------------------------------------------------


@DEPLOYMENTS
def test_sigterm_finishes_the_batch_and_exits_0(harness, db):
    run = unique("term")
    pings = simulated_fleet(run, devices=2, hours=2, seed=5)[:400]
    topics = [native_topic(d) for d in device_ids(pings)]
    client_id = unique("ingest")
    ingester = harness.start(client_id, topics)
    harness.wait_subscribed(ingester, len(topics))
    publisher = harness.publisher()
    streaming = Background(lambda: publisher.publish(single_messages(pings), STREAM_EVERY_S))
    try:
        wait_until(lambda: ping_count(db) >= 100, "the first 100 pings", [ingester])
        code = harness.stop(ingester, signal.SIGTERM)
    finally:
        streaming.join()

    assert code == 0
    totals = ingester.final_totals()
    # Everything the ingester counted was committed: no batch was left half done.
    assert ping_count(db) == totals.pings >= 100
    assert stored_pings(db) <= set(pings)
    if harness.broker.redelivers_unacked:
        # What it had not acknowledged is still with the broker, for the same client id.
        again = harness.start(client_id, topics)
        wait_until(lambda: ping_count(db) == len(pings), "the rest of the stream", [again])
        assert "(session resumed)" in again.log()
        assert stored_pings(db) == set(pings)
        assert harness.stop(again) == 0


# --- (e) kill -9 -------------------------------------------------------------------------------


# Only on Mosquitto: the embedded broker (amqtt) forgets unacknowledged QoS 1 messages when
# a client drops, so no ingester can survive kill -9 there (tests/mqtt/test_broker.py shows it).
@pytest.mark.parametrize("mqtt_broker", ["mosquitto"], indirect=True)
def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(harness, db, tmp_path):
    run = unique("kill")
    pings = simulated_fleet(run, devices=8, hours=3, seed=9)[:3000]
    assert len(pings) == 3000
    topics = [native_topic(d) for d in device_ids(pings)]
    # Arrays of 10: the broker queues the whole stream for the offline session (Mosquitto
    # keeps at most 1000 queued messages per client by default).
    messages = backlog_messages(pings, size=10)
    random.Random(23).shuffle(messages)
    half = len(messages) // 2
    client_id = unique("ingest")
    ingester = harness.start(client_id, topics)
    expected = offline_dosage_csv(pings, tmp_path)
    load_demo_hot_spots(db)
    harness.wait_subscribed(ingester, len(topics))
    publisher = harness.publisher()
    killed = threading.Event()

    def stream() -> None:
        publisher.publish(messages[:half], STREAM_EVERY_S)
        killed.wait(WAIT_S)  # the rest is published while the ingester is dead
        publisher.publish(messages[half:])

    streaming = Background(stream)
    try:
        wait_until(lambda: ping_count(db) >= 300, "a few hundred pings", [ingester])
        writers = descendants(ingester.process.pid)
        assert len(writers) == 1, "the ingester is a receiving and a writing process"
        assert harness.stop(ingester, signal.SIGKILL) == -signal.SIGKILL
        # The writer cannot acknowledge anything without the receiver, and leaves too.
        wait_until(lambda: not alive(writers[0]), "the orphaned writer process to exit")
        stored_at_kill = ping_count(db)
    finally:
        killed.set()
        streaming.join()
    assert 300 <= stored_at_kill < len(pings)
    assert "final:" not in ingester.log()  # it really died, without a chance to clean up

    again = harness.start(client_id, topics)
    wait_until(lambda: ping_count(db) == len(pings), f"all {len(pings)} pings", [again])

    assert "(session resumed)" in again.log()
    assert stored_pings(db) == set(pings)  # each exactly once: (device, time) is unique
    assert tracker_command("report", "--db", harness.database_url, "--format", "csv") == expected
    assert harness.stop(again) == 0
    assert ping_count(db) == len(pings)


@pytest.mark.parametrize("mqtt_broker", ["mosquitto"], indirect=True)
def test_a_killed_writer_stops_the_ingester_and_a_restart_loses_nothing(harness, db):
    run = unique("writer")
    pings = simulated_fleet(run, devices=4, hours=3, seed=17)[:1500]
    topics = [native_topic(d) for d in device_ids(pings)]
    # Arrays of 10, as in the kill -9 test: Mosquitto queues at most 1000 messages by default
    # for the session while no ingester is connected.
    messages = backlog_messages(pings, size=10)
    random.Random(31).shuffle(messages)
    client_id = unique("ingest")
    ingester = harness.start(client_id, topics)
    harness.wait_subscribed(ingester, len(topics))
    publisher = harness.publisher()
    streaming = Background(lambda: publisher.publish(messages, STREAM_EVERY_S))
    try:
        wait_until(lambda: ping_count(db) >= 300, "a few hundred pings", [ingester])
        [writer] = descendants(ingester.process.pid)
        os.kill(writer, signal.SIGKILL)
        # Nothing more can be committed, so the receiver must not go on taking messages.
        assert ingester.process.wait(timeout=WAIT_S) == 1
    finally:
        streaming.join()
    assert "the writer process ended unexpectedly" in ingester.log()
    assert ping_count(db) < len(pings)

    again = harness.start(client_id, topics)
    wait_until(lambda: ping_count(db) == len(pings), f"all {len(pings)} pings", [again])
    assert stored_pings(db) == set(pings)
    assert harness.stop(again) == 0


@pytest.mark.parametrize("mqtt_broker", ["embedded"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_uninitialised_database_stops_the_ingester_before_it_connects(harness, tmp_path):
    harness.database_url = f"sqlite:///{tmp_path / 'never-initialised.db'}"
    command = harness.command(unique("ingest"), ["patrol/+/location"])

    done = subprocess.run(
        command,
        cwd=ROOT,
        env=harness.env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )

    assert done.returncode == 1
    assert (
        "Error: the database schema is missing or old: run `python -m tracker init` first"
        in done.stderr
    )
    assert "connected to" not in done.stderr
    assert "Traceback" not in done.stderr


def test_the_receiving_process_does_without_the_database_and_dosage_libraries():
    # The receiver holds up to Receive Maximum messages beside paho; the writer process
    # carries the heavy libraries. Both count towards the ingester's memory.
    code = (
        "import sys, tracker.mqtt.run; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'alembic', 'pandas', 'numpy', 'shapely', 'amqtt'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=True,
    )
    assert done.stdout.strip() == "[]"


class PingsTableAway:
    """A database outage as the ingester sees it: the pings table renamed away and back.

    Every write of a batch then fails at once with an SQL error, on SQLite and PostgreSQL
    alike, and works again when the table is back.
    """

    def __init__(self, db) -> None:
        self.db = db

    def _rename(self, old: str, new: str) -> None:
        with self.db.begin() as session:
            session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    def __enter__(self) -> PingsTableAway:
        self._rename("pings", "pings_away")
        return self

    def __exit__(self, *_exc) -> None:
        self._rename("pings_away", "pings")

    def rows(self) -> int:
        with self.db() as session:
            return session.scalar(text("SELECT count(*) FROM pings_away"))


@DEPLOYMENTS
def test_a_database_outage_holds_messages_unacknowledged_until_it_ends(harness, db):
    run = unique("outage")
    pings = simulated_fleet(run, devices=2, hours=1, seed=37)[:200]
    topics = [native_topic(d) for d in device_ids(pings)]
    ingester = harness.start(unique("ingest"), topics)
    harness.wait_subscribed(ingester, len(topics))

    with PingsTableAway(db) as away:
        harness.publisher().publish(single_messages(pings))
        wait_until(
            lambda: "database error, batch of" in ingester.log(),
            "the ingester to meet the outage",
            [ingester],
        )
        assert away.rows() == 0
    wait_until(lambda: ping_count(db) == len(pings), "the pings after the outage", [ingester])

    assert harness.stop(ingester) == 0
    assert stored_pings(db) == set(pings)
    assert ingester.final_totals() == Totals(len(pings), len(pings), 0, 0)


@pytest.mark.parametrize("mqtt_broker", ["mosquitto"], indirect=True)
def test_sigterm_during_a_database_outage_exits_0_and_leaves_the_messages_queued(harness, db):
    run = unique("outage-term")
    pings = simulated_fleet(run, devices=2, hours=1, seed=41)[:200]
    topics = [native_topic(d) for d in device_ids(pings)]
    client_id = unique("ingest")
    ingester = harness.start(client_id, topics)
    harness.wait_subscribed(ingester, len(topics))

    with PingsTableAway(db):
        # A stream, so that more batches wait behind the one the writer cannot commit.
        harness.publisher().publish(single_messages(pings), STREAM_EVERY_S)
        wait_until(
            lambda: "database error, batch of" in ingester.log(),
            "the ingester to meet the outage",
            [ingester],
        )
        assert harness.stop(ingester) == 0
    # Nothing was committed, so nothing was acknowledged: the broker still has it all.
    assert ingester.final_totals() == Totals(0, 0, 0, 0)
    assert ping_count(db) == 0

    again = harness.start(client_id, topics)
    wait_until(lambda: ping_count(db) == len(pings), "the queued pings", [again])
    assert stored_pings(db) == set(pings)
    assert harness.stop(again) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_ingester_reconnects_after_a_broker_restart_and_resumes_its_session(
    database_url, db, tmp_path
):
    # Persistence on, as in production: the session and its queue survive the restart.
    folder = tmp_path / "broker"
    broker = PrivateMosquitto(folder, "persistence true", f"persistence_location {folder}/")
    broker.start()
    harness = Harness(
        BrokerUnderTest("private", broker.url, "5", redelivers_unacked=True), database_url, tmp_path
    )
    try:
        run = unique("restart")
        pings = simulated_fleet(run, devices=2, hours=1, seed=43)[:200]
        topics = [native_topic(d) for d in device_ids(pings)]
        ingester = harness.start(unique("ingest"), topics)
        harness.wait_subscribed(ingester, len(topics))
        messages = single_messages(pings)
        harness.publisher().publish(messages[:100])
        wait_until(lambda: ping_count(db) == 100, "the pings before the restart", [ingester])

        broker.stop()
        wait_until(
            lambda: "reconnecting" in ingester.log(), "the ingester to lose the broker", [ingester]
        )
        broker.start()
        # Published by a new client once the broker is back; the ingester gets them when
        # it has reconnected, through the session the broker kept for it.
        harness.publisher().publish(messages[100:])

        wait_until(lambda: ping_count(db) == len(pings), "every ping", [ingester])
        assert ingester.log().count("(session resumed)") == 1
        assert stored_pings(db) == set(pings)
        assert harness.stop(ingester) == 0
    finally:
        harness.close()
        broker.stop()


def make_certificates(folder: Path) -> tuple[Path, Path, Path, Path]:
    """Return (CA, server certificate for 127.0.0.1, its key, another CA) made with openssl."""
    if shutil.which("openssl") is None:
        unavailable("the openssl program")
    folder.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=WAIT_S
        )

    for name in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=tracker test {name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
        )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )
    return (
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "other-ca.pem",
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mqtts_with_the_brokers_ca_ingests_and_with_another_ca_says_why_it_cannot(
    database_url, db, tmp_path
):
    ca, certificate, key, other_ca = make_certificates(tmp_path / "tls")
    broker = PrivateMosquitto(
        tmp_path / "broker", f"cafile {ca}", f"certfile {certificate}", f"keyfile {key}", tls=True
    ).start()
    harness = Harness(
        BrokerUnderTest("private", broker.url, "5", redelivers_unacked=True), database_url, tmp_path
    )
    try:
        assert broker.url.startswith("mqtts://")
        pings = simulated_fleet(unique("tls"), devices=2, hours=1, seed=47)[:50]
        topics = [native_topic(d) for d in device_ids(pings)]
        refused = harness.start(unique("ingest"), topics, "--ca-file", str(other_ca))
        trusted = harness.start(unique("ingest"), topics, "--ca-file", str(ca))
        harness.wait_subscribed(trusted, len(topics))
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=unique("test-pub"), protocol=mqtt.MQTTv5
        )
        client.tls_set(ca_certs=str(ca))
        harness.publishers.append(client)

        Publisher(client, "127.0.0.1", broker.port).publish(single_messages(pings))

        wait_until(lambda: ping_count(db) == len(pings), "the pings sent over TLS", [trusted])
        assert f"connected to {broker.url}" in trusted.log()
        wait_until(
            lambda: "CERTIFICATE_VERIFY_FAILED" in refused.log(),
            "the other ingester to say why it cannot connect",
            [refused],
        )
        assert f"cannot connect to {broker.url} ([SSL: CERTIFICATE_VERIFY_FAILED]" in refused.log()
        assert "connected to" not in refused.log()
        assert harness.stop(refused) == 0  # still running, retrying, and stops cleanly
        assert harness.stop(trusted) == 0
    finally:
        harness.close()
        broker.stop()


# --- (f) shared subscriptions ------------------------------------------------------------------


@pytest.mark.parametrize("mqtt_broker", ["mosquitto"], indirect=True)
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_shared_group_splits_the_load_between_two_ingesters(harness, db, tmp_path):
    run = unique("shared")
    pings = simulated_fleet(run, devices=4, hours=1.5, seed=13)
    topics = [native_topic(d) for d in device_ids(pings)]
    group = unique("g")
    messages = backlog_messages(pings, size=5)
    random.Random(29).shuffle(messages)
    ingesters = [harness.start(unique("ingest"), topics, "--shared-group", group) for _ in range(2)]
    expected = offline_dosage_csv(pings, tmp_path)
    load_demo_hot_spots(db)
    for ingester in ingesters:
        harness.wait_subscribed(ingester, len(topics))
        assert f"subscribed to $share/{group}/{topics[0]}" in ingester.log()

    harness.publisher().publish(messages)

    wait_until(lambda: ping_count(db) == len(pings), f"{len(pings)} pings", ingesters)
    assert tracker_command("report", "--db", harness.database_url, "--format", "csv") == expected
    assert [harness.stop(i) for i in ingesters] == [0, 0]
    totals = [i.final_totals() for i in ingesters]
    assert all(t.messages > 0 for t in totals), totals
    # Together they received every message exactly once.
    assert sum(t.messages for t in totals) == len(messages)
    assert sum(t.pings for t in totals) == len(pings)
    assert stored_pings(db) == set(pings)


@pytest.mark.parametrize("mqtt_broker", ["embedded"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_shared_group_is_refused_on_mqtt_3_1_1(harness):
    command = harness.command(unique("ingest"), ["patrol/+/location"], "--shared-group", "g")

    done = subprocess.run(
        command,
        cwd=ROOT,
        env=harness.env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )

    assert done.returncode == 2  # a usage error, before any connection
    assert "shared subscriptions ($share/...) need an MQTT v5 broker" in done.stderr
    assert "connected to" not in done.stderr
