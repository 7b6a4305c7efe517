"""Sharded ingesters (`--shard K --shards N`): each subscribes by name to its devices' topics.

The end-to-end tests run `ingest_mqtt.py` against a private Mosquitto with persistence on,
as in production (so that it can be restarted), into PostgreSQL, and against the embedded
broker (MQTT 3.1.1) into SQLite. Device ids are chosen so that every shard has devices.
"""

from __future__ import annotations

import itertools
import re
import threading
import urllib.request

import click
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import func, select

from tests.mqtt import test_ingest_mqtt
from tests.mqtt.test_ingest_mqtt import (
    WAIT_S,
    Harness,
    IngesterProcess,
    dead_letters,
    ping_count,
    simulated_fleet,
    single_messages,
    stored_pings,
    unique,
    wait_until,
)
from tests.servers import BrokerUnderTest, PrivateMosquitto
from tracker.dosage import payloads
from tracker.dosage.pings import Ping
from tracker.foundation.models import Device, PingRow
from tracker.mqtt import shards
from tracker.mqtt.broker import free_tcp_port
from tracker.mqtt.run import build_config
from tracker.mqtt.shards import Shard, device_topic, narrow, shard_filters

# The ingest tests' fixture: an ingester harness on each broker and database asked for.
harness = test_ingest_mqtt.harness

DEFAULT_TOPICS = ("patrol/+/location", "owntracks/+/+")


# --- which ingester subscribes to what ---------------------------------------------------------


def test_every_device_is_in_exactly_one_shard_whatever_the_count():
    device_ids = [f"radio-{n}" for n in range(200)] + [f"user{n}/phone" for n in range(50)]
    for count in (1, 2, 3, 5):
        owners = [[k for k in range(1, count + 1) if Shard(k, count).owns(d)] for d in device_ids]
        assert all(len(found) == 1 for found in owners), count
        if count > 1:  # and the devices are spread over the shards
            assert {found[0] for found in owners} == set(range(1, count + 1))


def test_a_device_s_shard_does_not_depend_on_the_process():
    # CRC-32 of the id, not Python's hash(), which changes from one process to the next.
    assert [Shard(k, 4).owns("radio-7") for k in (1, 2, 3, 4)] == [False, False, True, False]


def test_a_shard_must_be_one_of_the_count():
    for index, count in ((0, 2), (3, 2), (1, 0)):
        with pytest.raises(ValueError, match="must be 1 to"):
            Shard(index, count)


@pytest.mark.parametrize(
    ("device_id", "topic"),
    [
        ("radio-7", "patrol/radio-7/location"),
        ("Radio 7 (spare)", "patrol/Radio 7 (spare)/location"),
        ("alice/phone", "owntracks/alice/phone"),
        ("ü/$phone", "owntracks/ü/$phone"),
    ],
)
def test_a_device_s_topic_is_the_one_the_decoder_reads_back(device_id, topic):
    assert device_topic(device_id) == topic
    kind = "owntracks" if "/" in device_id else "native"
    assert payloads.device_for_topic(topic) == (kind, device_id)


@pytest.mark.parametrize(
    "device_id", ["", "radio+7", "radio#", "a/b/c", "/phone", "alice/", "bad\x00id", "tab\tid"]
)
def test_a_device_id_that_cannot_be_a_topic_level_gets_no_subscription(device_id):
    assert device_topic(device_id) is None
    shard = Shard(1, 1)
    assert shard_filters([device_id, "radio-1"], DEFAULT_TOPICS, shard) == (
        ["patrol/radio-1/location"],
        [device_id],
    )


def test_the_prefixes_are_the_decoder_s():
    # Repeated in tracker.mqtt.shards, which the receiving process imports without
    # tracker.dosage (its libraries stay in the writer process).
    assert (shards.NATIVE_PREFIX, shards.OWNTRACKS_PREFIX) == (
        payloads.NATIVE_PREFIX,
        payloads.OWNTRACKS_PREFIX,
    )


@pytest.mark.parametrize(
    ("topic_filter", "topic", "narrowed"),
    [
        ("patrol/+/location", "patrol/radio-7/location", "patrol/radio-7/location"),
        ("patrol/+/location", "owntracks/alice/phone", None),
        ("owntracks/+/+", "owntracks/alice/phone", "owntracks/alice/phone"),
        ("owntracks/#", "owntracks/alice/phone", "owntracks/alice/phone/#"),
        ("owntracks/+/+/+", "owntracks/alice/phone", "owntracks/alice/phone/+"),
        ("owntracks/+/+/event", "owntracks/alice/phone", "owntracks/alice/phone/event"),
        ("owntracks/bob/+", "owntracks/alice/phone", None),
        ("owntracks/+", "owntracks/alice/phone", None),
        ("#", "patrol/radio-7/location", "patrol/radio-7/location/#"),
    ],
)
def test_a_configured_filter_is_narrowed_to_one_device(topic_filter, topic, narrowed):
    assert narrow(topic_filter, topic) == narrowed


def test_a_shard_s_filters_are_its_devices_topics_within_the_configured_filters():
    device_ids = ["radio-1", "radio-2", "alice/phone", "bob/tablet"]
    mine = [d for d in device_ids if Shard(1, 2).owns(d)]
    filters, unusable = shard_filters(device_ids, ["patrol/+/location"], Shard(1, 2))
    assert filters == sorted(device_topic(d) for d in mine if device_topic(d).startswith("patrol/"))
    assert unusable == []
    everything, _ = shard_filters(device_ids, ["patrol/+/location", "owntracks/#"], Shard(1, 1))
    assert everything == [
        "owntracks/alice/phone/#",
        "owntracks/bob/tablet/#",
        "patrol/radio-1/location",
        "patrol/radio-2/location",
    ]


def config(**flags):
    return build_config("mqtt://127.0.0.1:1883", "c", (), None, None, "5", "sqlite://", **flags)


def test_shard_options_are_checked_before_anything_starts(monkeypatch):
    monkeypatch.delenv("TRACKER_MQTT_SHARDS", raising=False)
    monkeypatch.delenv("TRACKER_MQTT_SHARED_GROUP", raising=False)
    assert config().shard is None
    assert config(shard=2, shards=3).shard == Shard(2, 3)
    monkeypatch.setenv("TRACKER_MQTT_SHARDS", "2")
    assert config(shard=2).shard == Shard(2, 2)
    assert config(shards=0).shard is None  # the flag overrides the setting
    for flags, message in (
        ({}, "give this ingester's --shard, 1 to 2"),
        ({"shard": 3}, "shard 3 of 2: it must be 1 to 2"),
        ({"shard": 1, "shards": 0}, "--shard needs the number of shards"),
    ):
        with pytest.raises(click.UsageError, match=re.escape(message)):
            config(**flags)
    monkeypatch.setenv("TRACKER_MQTT_SHARED_GROUP", "tracker")
    with pytest.raises(click.UsageError, match="exclude each other"):
        config(shard=1)


# --- end to end --------------------------------------------------------------------------------


def devices_by_shard(run: str, count: int, per_shard: int) -> list[list[str]]:
    """Device ids unique to the run, `per_shard` of them in each of `count` shards."""
    found: list[list[str]] = [[] for _ in range(count)]
    for n in itertools.count():
        device_id = f"{run}-{n:03d}"
        owner = next(k for k in range(count) if Shard(k + 1, count).owns(device_id))
        if len(found[owner]) < per_shard:
            found[owner].append(device_id)
        if all(len(ids) == per_shard for ids in found):
            return found


def pings_of(device_ids: list[str], seed: int, per_device: int = 30) -> list[Ping]:
    """`per_device` pings of a simulated fleet for each device id."""
    fleet = simulated_fleet("x", devices=len(device_ids), hours=1, seed=seed)
    by_device: dict[str, list[Ping]] = {}
    for p in sorted(fleet):
        by_device.setdefault(p.device_id, []).append(p)
    return [
        p._replace(device_id=device_id)
        for device_id, track in zip(device_ids, sorted(by_device.values()), strict=True)
        for p in track[:per_device]
    ]


def register(db, *device_ids: str) -> None:
    with db.begin() as session:
        session.add_all(Device(id=device_id) for device_id in device_ids)


def pings_per_device(db) -> dict[str, int]:
    with db() as session:
        return dict(
            session.execute(
                select(PingRow.device_id, func.count()).group_by(PingRow.device_id)
            ).all()
        )


def shard_args(index: int, count: int) -> tuple[str, ...]:
    return ("--shard", str(index), "--shards", str(count))


def wait_shard_subscribed(ingester: IngesterProcess, filters: int) -> None:
    """Wait until the broker has granted the shard's `filters` device topics."""
    wait_until(
        lambda: f"subscribed to {filters} topic filters" in ingester.log(),
        f"{ingester.client_id} to subscribe to its {filters} devices' topics",
        [ingester],
    )
    assert "refused" not in ingester.log()


@pytest.fixture
def persistent_broker(tmp_path):
    """A private Mosquitto with persistence on, as `tracker broker config` writes it."""
    folder = tmp_path / "broker"
    broker = PrivateMosquitto(folder, "persistence true", f"persistence_location {folder}/")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_harness(persistent_broker, database_url, tmp_path):
    broker = BrokerUnderTest("private", persistent_broker.url, "5", redelivers_unacked=True)
    running = Harness(broker, database_url, tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_sharded_ingesters_store_each_ping_once_and_follow_the_devices_table(
    private_harness, db
):
    harness = private_harness
    run = unique("shard")
    first, second = devices_by_shard(run, 2, per_shard=5)
    late = first.pop()  # in shard 1, added to the table while the ingesters run
    stranger = f"{run}-stranger"  # never in the table
    register(db, *first, *second)
    pings = pings_of([*first, *second], seed=61)
    late_pings = pings_of([late], seed=62)
    ingesters = [harness.start(unique("ingest"), [], *shard_args(k, 2)) for k in (1, 2)]
    wait_shard_subscribed(ingesters[0], len(first))
    wait_shard_subscribed(ingesters[1], len(second))
    publisher = harness.publisher()

    # Nobody subscribes to a device missing from the table: the broker drops its message.
    publisher.publish(single_messages(pings_of([stranger], seed=63)[:1]))
    publisher.publish(single_messages(pings))
    wait_until(lambda: ping_count(db) == len(pings), f"{len(pings)} pings", ingesters)

    register(db, late)
    wait_until(
        lambda: "(1 new, 0 removed)" in ingesters[0].log(),
        "ingester 1 to subscribe to the new device",
        ingesters,
    )
    publisher.publish(single_messages(late_pings))
    wait_until(
        lambda: ping_count(db) == len(pings) + len(late_pings), "the new device's pings", ingesters
    )

    assert [harness.stop(i) for i in ingesters] == [0, 0]
    assert stored_pings(db) == set(pings) | set(late_pings)
    assert dead_letters(db) == 0
    # Each received its own devices' messages, once, and nothing else.
    totals = [i.final_totals() for i in ingesters]
    in_first = sum(p.device_id in first for p in pings)
    assert [t.messages for t in totals] == [in_first + len(late_pings), len(pings) - in_first]
    assert stranger not in pings_per_device(db)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_broker_restart_while_the_ingesters_are_away_loses_nothing(
    private_harness, persistent_broker, db
):
    harness = private_harness
    run = unique("restart")
    first, second = devices_by_shard(run, 2, per_shard=4)
    register(db, *first, *second)
    pings = pings_of([*first, *second], seed=67)
    client_ids = [unique("ingest"), unique("ingest")]
    ingesters = [harness.start(c, [], *shard_args(k, 2)) for k, c in enumerate(client_ids, 1)]
    wait_shard_subscribed(ingesters[0], len(first))
    wait_shard_subscribed(ingesters[1], len(second))
    assert [harness.stop(i) for i in ingesters] == [0, 0]

    # Stopped (SIGTERM saves the persistence file) and started again, with no ingester
    # connected: only the subscriptions restored from that file can take these messages.
    persistent_broker.stop()
    persistent_broker.start()
    harness.publisher().publish(single_messages(pings))

    again = [harness.start(c, [], *shard_args(k, 2)) for k, c in enumerate(client_ids, 1)]
    wait_until(lambda: ping_count(db) == len(pings), f"all {len(pings)} pings", again)
    assert stored_pings(db) == set(pings)
    assert all("(session resumed)" in i.log() for i in again)
    assert [harness.stop(i) for i in again] == [0, 0]


def committed(port: int) -> float:
    """tracker_ingest_messages_committed_total from an ingester's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return float(re.search(r"^tracker_ingest_messages_committed_total (\S+)$", text, re.M)[1])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_after_a_change_of_shards_devices_reach_old_and_new_ingesters_until_dropped(
    private_harness, db
):
    harness = private_harness
    run = unique("reshard")
    first, second = devices_by_shard(run, 2, per_shard=4)
    register(db, *first, *second)
    batches = [pings_of([*first, *second], seed=seed) for seed in (73, 74)]
    batches[1] = [p._replace(t_us=p.t_us + 3_600_000_000) for p in batches[1]]  # an hour on
    ids, ports = [unique("ingest"), unique("ingest")], [free_tcp_port(), free_tcp_port()]

    def start(k: int, count: int, *extra: str) -> IngesterProcess:
        args = [*shard_args(k, count), "--metrics-port", str(ports[k - 1]), *extra]
        return harness.start(ids[k - 1], [], *args)

    # One ingester had every device (1 of 1); now there are two shards.
    alone = start(1, 1)
    wait_shard_subscribed(alone, len(first) + len(second))
    assert harness.stop(alone) == 0
    ingesters = [start(1, 2), start(2, 2)]
    wait_shard_subscribed(ingesters[0], len(first))
    wait_shard_subscribed(ingesters[1], len(second))

    # Ingester 1 keeps shard 2's subscriptions: both receive those devices (stored once).
    harness.publisher().publish(single_messages(batches[0]))
    in_second = sum(p.device_id in second for p in batches[0])
    wait_until(
        lambda: [committed(port) for port in ports] == [len(batches[0]), in_second],
        "ingester 1 to commit every message and ingester 2 its shard's",
        ingesters,
    )
    assert harness.stop(ingesters[0]) == 0

    # Once every shard has subscribed, --drop-other-shards ends that.
    dropping = start(1, 2, "--drop-other-shards")
    wait_until(
        lambda: f"unsubscribed from {len(second)} topic filters" in dropping.log(),
        "ingester 1 to unsubscribe from shard 2's devices",
        [dropping],
    )
    harness.publisher().publish(single_messages(batches[1]))
    wait_until(
        lambda: ping_count(db) == len(batches[0]) + len(batches[1]),
        "every ping",
        [dropping, ingesters[1]],
    )
    assert harness.stop(dropping) == 0 and harness.stop(ingesters[1]) == 0
    assert stored_pings(db) == set(batches[0]) | set(batches[1])
    assert dropping.final_totals().messages == sum(p.device_id in first for p in batches[1])
    assert ingesters[1].final_totals().messages == in_second + sum(
        p.device_id in second for p in batches[1]
    )


def test_mosquitto_forgets_shared_subscriptions_over_a_restart(persistent_broker):
    # Why the shards (tracker.mqtt.shards): two persistent sessions, away, one subscribed
    # as $share/g/<filter> and one to <filter>; after a restart only the second gets what
    # is published. If this fails, the installed Mosquitto now restores shared subscriptions
    # and a shared group no longer loses messages over a restart (docs/operations.md).
    topic_filter = "patrol/+/location"
    sessions = {"shared": f"$share/g/{topic_filter}", "plain": topic_filter}
    received = {name: [] for name in sessions}

    def connect(name: str) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"forget-{name}", protocol=mqtt.MQTTv5
        )
        subscribed = threading.Event()
        client.on_message = lambda _c, _u, message: received[name].append(message.payload)
        client.on_subscribe = lambda *_args: subscribed.set()
        client.on_connect = lambda c, *_args: c.subscribe(
            [(sessions[name], SubscribeOptions(qos=1))]
        )
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 600
        client.connect(
            "127.0.0.1", persistent_broker.port, clean_start=False, properties=properties
        )
        client.loop_start()
        assert subscribed.wait(WAIT_S)
        return client

    for client in [connect(name) for name in sessions]:
        client.disconnect()
        client.loop_stop()
    persistent_broker.stop()
    persistent_broker.start()
    publisher = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="forget-pub", protocol=mqtt.MQTTv5
    )
    publisher.connect("127.0.0.1", persistent_broker.port)
    publisher.loop_start()
    publisher.publish("patrol/radio-1/location", b"after the restart", qos=1).wait_for_publish(
        WAIT_S
    )
    publisher.disconnect()
    publisher.loop_stop()

    clients = [connect(name) for name in sessions]  # subscribing again, as the ingester does
    try:
        wait_until(lambda: received["plain"], "the plain session's message")
        assert received == {"shared": [], "plain": [b"after the restart"]}
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()


@pytest.mark.parametrize("mqtt_broker", ["embedded"], indirect=True)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_sharded_ingester_on_mqtt_3_1_1_takes_only_its_shard(harness, db):
    # The embedded broker has persistent sessions (clean session off) but no shared
    # subscriptions; sharding needs only the former.
    run = unique("embedded")
    first, second = devices_by_shard(run, 2, per_shard=5)
    late = second.pop()
    register(db, *first, *second)
    pings = pings_of([*first, *second], seed=71)
    ingester = harness.start(unique("ingest"), [], *shard_args(2, 2))
    wait_shard_subscribed(ingester, len(second))

    harness.publisher().publish(single_messages(pings))
    wait_until(
        lambda: set(pings_per_device(db)) == set(second), "shard 2's devices' pings", [ingester]
    )
    register(db, late)
    wait_until(lambda: "(1 new, 0 removed)" in ingester.log(), "the new device", [ingester])
    harness.publisher().publish(single_messages(pings_of([late], seed=72)))
    wait_until(lambda: late in pings_per_device(db), "the new device's pings", [ingester])

    assert harness.stop(ingester) == 0
    stored = pings_per_device(db)
    assert set(stored) == {*second, late}  # shard 1's devices' messages went to nobody
    assert ingester.final_totals().messages == sum(stored.values())
