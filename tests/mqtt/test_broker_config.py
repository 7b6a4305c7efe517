"""`tracker broker config`: per-device credentials and ACLs, checked on a real Mosquitto.

The end-to-end tests start Mosquitto on a free loopback port with exactly the files the
command wrote, as the runbook installs them (docs/operations.md): started as root, Mosquitto
drops to its own user, so the folder and the passwd and acl files get its group, as in
production. The ingester is `ingest_mqtt.py` with the ingester's credentials from
credentials.csv, in a shared group, into PostgreSQL.
"""

from __future__ import annotations

import csv
import grp
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select

from tests.mqtt.test_ingest_mqtt import WAIT_S, Harness, unique, wait_until
from tests.servers import BrokerUnderTest, port_open, unavailable
from tracker.cli import main
from tracker.dosage.broker_config import (
    INGESTER_USERNAME,
    BrokerConfigError,
    Credential,
    acl_text,
    device_grants,
    plan_credentials,
)
from tracker.dosage.payloads import Limits, decode_message
from tracker.foundation.models import DeadLetter, Device, PingRow

NOW_S = 1_795_680_000
NOW_US = NOW_S * 1_000_000


def add_devices(db, *device_ids: str) -> None:
    with db.begin() as session:
        session.add_all(Device(id=device_id) for device_id in device_ids)


def run_config(database_url: str, out: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main, ["broker", "config", "--out", str(out), "--db", database_url, *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def read_credentials(out: Path) -> dict[str, tuple[str, str]]:
    """{username: (password, role)} from credentials.csv."""
    rows = csv.DictReader(io.StringIO((out / "credentials.csv").read_text()))
    return {row["username"]: (row["password"], row["role"]) for row in rows}


# --- which broker users get which topics -------------------------------------------------------


def test_each_device_may_publish_only_on_its_own_topics():
    grants, skipped = device_grants(["radio-1", "alice/phone", "alice/tablet", "radio-2"])
    assert grants == {
        "radio-1": ["patrol/radio-1/location"],
        "radio-2": ["patrol/radio-2/location"],
        # OwnTracks apps log in with the user name they put in their topic.
        "alice": [
            "owntracks/alice/phone",
            "owntracks/alice/phone/+",
            "owntracks/alice/tablet",
            "owntracks/alice/tablet/+",
        ],
    }
    assert skipped == []
    acl = acl_text(grants)
    assert "user radio-1\ntopic write patrol/radio-1/location\n" in acl
    assert acl.endswith(
        f"user {INGESTER_USERNAME}\ntopic read patrol/+/location\ntopic read owntracks/#\n"
    )
    assert "readwrite" not in acl and "pattern" not in acl


@pytest.mark.parametrize(
    "device_id",
    ["radio+1", "radio#", "a:b", "two words", "tab\tid", "a/b/c", "/phone", "alice/", ""],
)
def test_a_device_id_that_would_widen_a_grant_gets_no_credentials(device_id):
    grants, skipped = device_grants([device_id, "radio-1"])
    assert grants == {"radio-1": ["patrol/radio-1/location"]}
    assert [found for found, _why in skipped] == [device_id]


def test_a_device_that_would_share_a_broker_user_gets_no_credentials():
    grants, skipped = device_grants(["alice", "alice/phone", INGESTER_USERNAME])
    assert grants == {"alice": ["patrol/alice/location"]}
    assert sorted(found for found, _why in skipped) == ["alice/phone", INGESTER_USERNAME]


def test_passwords_are_kept_unless_rotated_and_removed_users_are_dropped():
    grants = {"radio-1": [], "radio-2": [], "alice": []}
    existing = {
        "radio-1": Credential("radio-1", "one", "device"),
        "alice": Credential("alice", "two", "device"),
        "radio-9": Credential("radio-9", "gone", "device"),
        INGESTER_USERNAME: Credential(INGESTER_USERNAME, "reader", "ingester"),
    }
    credentials, outcome = plan_credentials(grants, existing, rotate=["alice/phone"])
    passwords = {c.username: c.password for c in credentials}
    assert passwords["radio-1"] == "one"
    assert passwords[INGESTER_USERNAME] == "reader"
    assert passwords["alice"] not in ("two", "")
    assert len(passwords["radio-2"]) == 32
    assert [c.username for c in credentials] == ["alice", "radio-1", "radio-2", INGESTER_USERNAME]
    assert outcome.new == ["radio-2"]
    assert outcome.rotated == ["alice"]
    assert outcome.removed == ["radio-9"]
    with pytest.raises(BrokerConfigError, match="no such device"):
        plan_credentials(grants, existing, rotate=["radio-7"])


# --- the payload's own device against its topic ------------------------------------------------


def decode(topic: str, body) -> tuple[list[str], list[str]]:
    decoded = decode_message(topic, json.dumps(body).encode(), NOW_US, Limits())
    return [p.device_id for p in decoded.pings], decoded.errors


def test_a_native_payload_naming_another_device_is_a_dead_letter():
    fix = {"ts": NOW_S - 5, "lat": 52.6371, "lon": -1.1333}
    topic = "patrol/radio-1/location"
    assert decode(topic, {**fix, "device_id": "radio-1"}) == (["radio-1"], [])
    assert decode(topic, {**fix, "device_id": None}) == (["radio-1"], [])
    assert decode(topic, {**fix, "device_id": "radio-2"}) == (
        [],
        ["device_id 'radio-2' in the payload is not the topic's device 'radio-1'"],
    )
    assert decode(topic, [fix, {**fix, "ts": NOW_S - 4, "device_id": 7}]) == (
        ["radio-1"],
        ["element 2: device_id 7 in the payload is not the topic's device 'radio-1'"],
    )


def test_an_owntracks_payload_naming_another_device_is_a_dead_letter():
    fix = {"_type": "location", "tst": NOW_S - 5, "lat": 52.6371, "lon": -1.1333}
    topic = "owntracks/alice/phone"
    assert decode(topic, {**fix, "topic": "owntracks/alice/phone"}) == (["alice/phone"], [])
    assert decode(topic, fix) == (["alice/phone"], [])
    assert decode(topic, {**fix, "topic": "owntracks/bob/phone"}) == (
        [],
        ["topic 'owntracks/bob/phone' in the payload is not the topic's device "
         "'owntracks/alice/phone'"],
    )  # fmt: skip


# --- the command -------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_writes_hashed_passwords_and_keeps_them_on_a_rerun(db, database_url, tmp_path):
    if shutil.which("mosquitto_passwd") is None:
        unavailable("the mosquitto_passwd program")
    add_devices(db, "radio-1", "radio-2", "alice/phone", "bad+id")
    out = tmp_path / "broker"
    result = CliRunner().invoke(
        main, ["broker", "config", "--out", str(out), "--db", database_url, "--port", "18830"]
    )
    assert result.exit_code == 0, result.output
    assert "no credentials for device 'bad+id'" in result.stderr
    assert "3 device users and the ingester: 4 new, 0 rotated, 0 removed" in result.stdout

    first = read_credentials(out)
    assert set(first) == {"radio-1", "radio-2", "alice", INGESTER_USERNAME}
    assert first[INGESTER_USERNAME][1] == "ingester"
    assert {role for name, (_pw, role) in first.items() if name != INGESTER_USERNAME} == {"device"}
    assert stat.S_IMODE((out / "credentials.csv").stat().st_mode) == 0o600
    passwd = (out / "passwd").read_text()
    for name, (password, _role) in first.items():
        # Mosquitto's own PBKDF2-SHA512 format ($7$), and no password in clear anywhere else.
        assert f"{name}:$7$" in passwd
        for written in ("passwd", "acl", "mosquitto.conf"):
            assert password not in (out / written).read_text()
        assert password not in result.output
    conf = (out / "mosquitto.conf").read_text()
    for line in (
        "allow_anonymous false",
        "persistence true",
        "max_queued_messages 0",
        f"password_file {out.resolve() / 'passwd'}",
        f"acl_file {out.resolve() / 'acl'}",
        "listener 18830",
    ):
        assert line in conf.splitlines()
    assert sorted(p.name for p in out.iterdir()) == [
        "acl",
        "credentials.csv",
        "mosquitto.conf",
        "passwd",
    ]

    with db.begin() as session:
        session.execute(delete(Device).where(Device.id == "radio-2"))
    output = run_config(database_url, str(out), "--rotate", "radio-1")
    assert "2 device users and the ingester: 0 new, 1 rotated, 1 removed (radio-2)" in output
    second = read_credentials(out)
    assert set(second) == {"radio-1", "alice", INGESTER_USERNAME}
    assert second["alice"] == first["alice"]
    assert second[INGESTER_USERNAME] == first[INGESTER_USERNAME]
    assert second["radio-1"][0] != first["radio-1"][0]
    assert "radio-2" not in (out / "passwd").read_text()
    assert "radio-2" not in (out / "acl").read_text()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_refuses_half_a_tls_setting_and_an_unknown_rotation(database_url, tmp_path):
    key = tmp_path / "server.key"
    key.write_text("not used")
    out = tmp_path / "broker"
    result = CliRunner().invoke(
        main, ["broker", "config", "--out", str(out), "--db", database_url, "--tls-key", str(key)]
    )
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together" in result.output
    result = CliRunner().invoke(
        main, ["broker", "config", "--out", str(out), "--db", database_url, "--rotate", "radio-7"]
    )
    assert result.exit_code == 1
    assert "cannot rotate 'radio-7'" in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tls_settings_go_into_the_listener(database_url, tmp_path):
    if shutil.which("mosquitto_passwd") is None:
        unavailable("the mosquitto_passwd program")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_text("certificate")
    key.write_text("key")
    out = tmp_path / "broker"
    run_config(database_url, out, "--tls-cert", str(cert), "--tls-key", str(key))
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert "listener 8883" in conf
    assert f"certfile {cert.resolve()}" in conf
    assert f"keyfile {key.resolve()}" in conf


# --- on a real Mosquitto -----------------------------------------------------------------------


class GeneratedMosquitto:
    """Mosquitto started with the files `tracker broker config` wrote, and nothing else."""

    def __init__(self, out: Path, log: Path) -> None:
        self.config = out / "mosquitto.conf"
        self.log = log
        self.port = int(
            next(
                line.split()[1]
                for line in self.config.read_text().splitlines()
                if line.startswith("listener ")
            )
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> GeneratedMosquitto:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + WAIT_S
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Mosquitto did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        return self

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads passwd and acl again, as `systemctl reload` does."""
        marker = self.log.read_text().count("Reloading config")
        self.process.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log.read_text().count("Reloading config") > marker, "a reload")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mosquitto_group() -> int | None:
    """The group Mosquitto runs as when started by root (it drops to its user), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        return None


@pytest.fixture
def broker_folder():
    """A folder Mosquitto's own user can reach (pytest's tmp_path is private to root)."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        unavailable("the mosquitto and mosquitto_passwd programs")
    folder = Path(tempfile.mkdtemp(prefix="tracker-broker-"))
    group = mosquitto_group()
    data = folder / "data"
    data.mkdir()
    if group is not None:
        os.chown(folder, -1, group)
        os.chmod(folder, 0o750)
        os.chown(data, -1, group)
        os.chmod(data, 0o770)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def install_for_mosquitto(out: Path) -> None:
    """What the runbook does once: give Mosquitto's group the folder, passwd and acl."""
    group = mosquitto_group()
    if group is not None:
        for path in (out, out / "passwd", out / "acl"):
            os.chown(path, -1, group)


class Connection:
    """A paho 2 MQTT v5 client connecting with (or without) a user name and password."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=unique("device"), protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.answered = threading.Event()
        self.reason = None
        self.subscribed = threading.Event()
        self.received: list[str] = []

        def on_connect(_client, _userdata, _flags, reason_code, _properties):
            self.reason = reason_code
            self.answered.set()

        def on_subscribe(_client, _userdata, _mid, _reason_codes, _properties):
            self.subscribed.set()

        def on_publish(_client, _userdata, mid, reason_code, _properties):
            self.acknowledged[mid] = reason_code

        self.acknowledged: dict = {}
        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_publish = on_publish
        self.client.on_message = lambda _c, _u, message: self.received.append(message.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.answered.wait(WAIT_S), "the broker did not answer CONNECT"

    @property
    def accepted(self) -> bool:
        return not self.reason.is_failure

    def publish(self, topic: str, body) -> None:
        info = self.client.publish(topic, json.dumps(body).encode(), qos=1)
        info.wait_for_publish(timeout=WAIT_S)
        assert not self.acknowledged[info.mid].is_failure

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refused_publish(port: int, username: str, password: str, topic: str, body) -> bool:
    """Publish once at QoS 1 on a connection of its own; return whether the broker refused.

    Mosquitto answers a denied PUBLISH with PUBACK "Not authorized" and forwards nothing;
    paho 2 then drops the connection, hence a connection per such message.
    """
    connection = Connection(port, username, password)
    try:
        assert connection.accepted
        info = connection.client.publish(topic, json.dumps(body).encode(), qos=1)
        wait_until(lambda: info.mid in connection.acknowledged, "the broker's PUBACK")
        return connection.acknowledged[info.mid].is_failure
    finally:
        connection.close()


def refused(port: int, username: str | None, password: str | None) -> bool:
    connection = Connection(port, username, password)
    try:
        return connection.reason.is_failure
    finally:
        connection.close()


def stored_devices(db) -> dict[str, int]:
    with db() as session:
        return dict(
            session.execute(
                select(PingRow.device_id, func.count()).group_by(PingRow.device_id)
            ).all()
        )


def dead_letter_reasons(db) -> list[str]:
    with db() as session:
        return list(session.scalars(select(DeadLetter.reason).order_by(DeadLetter.id)))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_devices_reach_only_their_own_topics_on_a_broker_configured_by_the_command(
    db, database_url, broker_folder, tmp_path
):
    add_devices(db, "radio-a", "radio-b", "alice/phone")
    out = broker_folder / "broker"
    run_config(
        database_url,
        out,
        "--port",
        str(free_port()),
        "--listen-address",
        "127.0.0.1",
        "--data-dir",
        str(broker_folder / "data"),
    )
    install_for_mosquitto(out)
    credentials = read_credentials(out)
    broker = GeneratedMosquitto(out, tmp_path / "mosquitto.log").start()
    port = broker.port
    reader = credentials[INGESTER_USERNAME][0]
    harness = Harness(
        BrokerUnderTest(
            "private", f"mqtt://{INGESTER_USERNAME}:{reader}@127.0.0.1:{port}", "5", True
        ),
        database_url,
        tmp_path,
    )
    devices: list[Connection] = []
    try:
        # Nobody without a valid password gets in.
        assert refused(port, None, None)
        assert refused(port, "radio-a", "not-the-password")
        assert refused(port, "radio-a", credentials["radio-b"][0])
        assert refused(port, "nobody", "whatever")

        ingester = harness.start(
            unique("ingest"), ["patrol/+/location", "owntracks/+/+"], "--shared-group", "fleet"
        )
        harness.wait_subscribed(ingester, filters=2)

        a = Connection(port, "radio-a", credentials["radio-a"][0])
        b = Connection(port, "radio-b", credentials["radio-b"][0])
        alice = Connection(port, "alice", credentials["alice"][0])
        devices += [a, b, alice]
        assert a.accepted and b.accepted and alice.accepted

        # A device cannot read other devices' positions: Mosquitto 2.0 grants the
        # subscription and then checks the ACL on each message, so it receives none.
        a.client.subscribe("patrol/+/location", qos=1)
        assert a.subscribed.wait(WAIT_S)

        t0 = int(time.time()) - 60
        fix = {"lat": 52.6371, "lon": -1.1333, "acc": 8}
        # A on B's topic, and on Alice's: refused by the broker, before A's own ping below.
        key_a = credentials["radio-a"][0]
        assert refused_publish(port, "radio-a", key_a, "patrol/radio-b/location", {**fix, "ts": t0})
        owntracks_fix = {**fix, "_type": "location", "tst": t0}
        assert refused_publish(port, "radio-a", key_a, "owntracks/alice/phone", owntracks_fix)
        assert refused_publish(
            port, "alice", credentials["alice"][0], "patrol/radio-b/location", {**fix, "ts": t0}
        )
        a.publish("patrol/radio-a/location", {**fix, "ts": t0 + 1})
        b.publish("patrol/radio-b/location", {**fix, "ts": t0 + 2})
        alice.publish("owntracks/alice/phone", {**owntracks_fix, "tst": t0 + 3})
        # A payload naming another device than its topic is a dead letter, even on the
        # device's own topic.
        a.publish("patrol/radio-a/location", {**fix, "ts": t0 + 5, "device_id": "radio-b"})
        wait_until(
            lambda: (
                stored_devices(db) == {"radio-a": 1, "radio-b": 1, "alice/phone": 1}
                and len(dead_letter_reasons(db)) == 1
            ),
            "each device's own ping and one dead letter",
            [ingester],
        )
        assert dead_letter_reasons(db) == [
            "device_id 'radio-b' in the payload is not the topic's device 'radio-a'"
        ]
        assert a.received == []

        # radio-b leaves the devices table and radio-a's password is rotated: after a re-run
        # and a reload, B and A's old password are refused, A's new password works.
        with db.begin() as session:
            session.execute(delete(Device).where(Device.id == "radio-b"))
        run_config(
            database_url,
            out,
            "--port",
            str(port),
            "--listen-address",
            "127.0.0.1",
            "--data-dir",
            str(broker_folder / "data"),
            "--rotate",
            "radio-a",
        )
        rotated = read_credentials(out)
        assert "radio-b" not in rotated
        broker.reload()
        # Mosquitto checks connected clients again on a reload: B is cut off at once.
        wait_until(lambda: not b.client.is_connected(), "B to be disconnected")
        assert refused(port, "radio-b", credentials["radio-b"][0])
        assert refused(port, "radio-a", credentials["radio-a"][0])
        a2 = Connection(port, "radio-a", rotated["radio-a"][0])
        devices.append(a2)
        assert a2.accepted
        a2.publish("patrol/radio-a/location", {**fix, "ts": t0 + 6})
        wait_until(lambda: stored_devices(db).get("radio-a") == 2, "A's ping after rotation")
        # The ingester kept its session and password through all this.
        assert ingester.running()
        assert "refused" not in ingester.log()
    finally:
        for connection in devices:
            connection.close()
        harness.close()
        broker.stop()
