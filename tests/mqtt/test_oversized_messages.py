"""Large messages cannot fill the ingester's memory (docs/ingest.md, security finding 4).

A payload over TRACKER_MAX_PAYLOAD_BYTES, or a topic longer than any device's topic, can only
become a dead letter: the receiving process keeps only what the dead letter keeps (the first
bytes and the sizes), not the message, and acknowledges it once the writer process has
committed the dead letter, like any other message. What waits in the receiver and what it
sends the writer is bounded in bytes, not only in messages, so that a flood of messages just
within the limit cannot fill memory either.

The end-to-end tests run `ingest_mqtt.py` as a process against a Mosquitto of their own (the
floods are large, and the shared broker is not burdened with them) and PostgreSQL, and read
the peak resident memory of the receiver and the writer from /proc. Idle, the two take about
150 MB (the writer 125 MB of it); paho itself holds about three copies of a message while it
decodes it, so the receiver's peak also grows with the largest single message.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select, text

from tests.mqtt.test_ingest_mqtt import (
    Harness,
    Totals,
    dead_letters,
    native_topic,
    now_s,
    ping_count,
    unique,
    wait_until,
)
from tests.servers import BrokerUnderTest, PrivateMosquitto, descendants
from tracker.dosage import ingest, store
from tracker.dosage.engine import DosageParams
from tracker.dosage.payloads import Limits, decode_message
from tracker.foundation.models import DeadLetter
from tracker.mqtt import ingester as receiver

MB = 1024 * 1024
PEAK_MEMORY_LIMIT_MB = 200  # the receiver and the writer together
DEFAULT_LIMIT = 262144  # TRACKER_MAX_PAYLOAD_BYTES
IN_LE01 = (52.6371, -1.1333)


@pytest.fixture
def private_harness(database_url, tmp_path):
    """A harness on a Mosquitto of the test's own, with every queued message kept."""
    broker = PrivateMosquitto(tmp_path / "broker").start()
    harness = Harness(
        BrokerUnderTest("private", broker.url, "5", redelivers_unacked=True), database_url, tmp_path
    )
    try:
        yield harness
    finally:
        harness.close()
        broker.stop()


def peak_memory_mb(pid: int) -> tuple[float, float]:
    """The peak resident memory (the kernel's VmHWM) of the receiver and of its writer.

    A high-water mark since each process started, so reading it once, after the flood, is
    enough; their sum is at least the peak of their total.
    """
    pids = [pid, *descendants(pid)]
    assert len(pids) == 2, "the ingester is a receiving and a writing process"
    peaks = []
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks[0], peaks[1]


def assert_memory_bounded(ingester) -> None:
    receiver_mb, writer_mb = peak_memory_mb(ingester.process.pid)
    print(f"peak memory: receiver {receiver_mb:.0f} MB, writer {writer_mb:.0f} MB")
    assert receiver_mb + writer_mb < PEAK_MEMORY_LIMIT_MB, (
        f"the receiver peaked at {receiver_mb:.0f} MB and the writer at {writer_mb:.0f} MB"
    )


def position(t_s: int) -> bytes:
    return json.dumps({"ts": t_s, "lat": IN_LE01[0], "lon": IN_LE01[1], "acc": 10}).encode()


def valid_backlog(t_s: int, size: int) -> bytes:
    """A JSON array of good positions, padded with whitespace to exactly `size` bytes."""
    element = position(t_s)
    body = b"[" + b",".join([element] * ((size - 2) // (len(element) + 1))) + b"]"
    return body[:-1] + b" " * (size - len(body)) + b"]"


def cut_payload(payload: bytes) -> str:
    """What a dead letter keeps of a payload the receiver cut short."""
    marker = f"... [{len(payload)} bytes in all]"
    return payload[: store.MAX_DEAD_LETTER_PAYLOAD - len(marker)].decode() + marker


def stored_letters(db) -> list[tuple[str, str, str]]:
    with db() as session:
        rows = session.execute(
            select(DeadLetter.topic, DeadLetter.reason, DeadLetter.payload).order_by(DeadLetter.id)
        )
        return [tuple(row) for row in rows]


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_flood_of_oversized_messages_becomes_dead_letters_without_filling_memory(
    private_harness, db
):
    harness = private_harness
    topic = native_topic(unique("big"))
    t0 = now_s() - 600
    # Twenty messages of 6 MB, 24 times the limit, valid but for their size. (Of 10 MB, as
    # in the finding, the receiver peaks at about 65 MB: paho's own copies of one message.)
    big = [valid_backlog(t0, 6 * MB + n) for n in range(20)]
    assert json.loads(big[0])[0]["ts"] == t0
    good = [position(t0 + n) for n in range(21)]
    messages = [(topic, good[0])]
    for n, payload in enumerate(big):
        messages += [(topic, payload), (topic, good[n + 1])]
    ingester = harness.start(unique("ingest"), [topic])
    harness.wait_subscribed(ingester, 1)

    harness.publisher().publish(messages)

    wait_until(
        lambda: ping_count(db) == 21 and dead_letters(db) == 20,
        "21 pings and 20 dead letters",
        [ingester],
    )
    assert_memory_bounded(ingester)
    assert harness.stop(ingester) == 0
    assert ingester.final_totals() == Totals(messages=41, pings=21, dead_letters=20, ignored=0)
    assert stored_letters(db) == [
        (topic, f"payload of {len(p)} bytes exceeds the {DEFAULT_LIMIT} byte limit", cut_payload(p))
        for p in big
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_flood_of_overlong_topics_becomes_dead_letters_without_filling_memory(
    private_harness, db
):
    harness = private_harness
    run = unique("long")
    t0 = now_s() - 600
    # '+' matches a topic level of any length, up to the 65,535 bytes of a whole MQTT topic.
    long_topics = [native_topic(f"{run}-{n:04d}-" + "x" * 60_000) for n in range(3000)]
    messages = [(topic, position(t0 + n)) for n, topic in enumerate(long_topics)]
    good_topic = native_topic(f"{run}-good")
    messages[::300] = [(good_topic, position(t0 + n)) for n in range(10)]
    ingester = harness.start(unique("ingest"), ["patrol/+/location"])
    harness.wait_subscribed(ingester, 1)

    harness.publisher().publish(messages)

    wait_until(
        lambda: ping_count(db) == 10 and dead_letters(db) == 2990,
        "10 pings and 2990 dead letters",
        [ingester],
    )
    assert_memory_bounded(ingester)
    assert harness.stop(ingester) == 0
    assert ingester.final_totals() == Totals(messages=3000, pings=10, dead_letters=2990, ignored=0)
    assert stored_letters(db) == [
        (
            topic[:256],
            f"topic of {len(topic)} characters exceeds the 256 character limit",
            payload.decode(),
        )
        for topic, payload in messages
        if topic != good_topic
    ]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_flood_of_messages_just_within_the_limit_does_not_fill_memory(private_harness, db):
    # Receive Maximum lets the broker have 4,000 messages in flight: at 256 KB each, 1 GB
    # that once waited in the receiver and went to the writer 500 at a time.
    harness = private_harness
    topic = native_topic(unique("full"))
    messages = [(topic, b"x" * (DEFAULT_LIMIT - n)) for n in range(3000)]
    ingester = harness.start(unique("ingest"), [topic])
    harness.wait_subscribed(ingester, 1)

    harness.publisher().publish(messages)

    wait_until(lambda: dead_letters(db) == 3000, "3000 dead letters", [ingester])
    assert_memory_bounded(ingester)
    assert harness.stop(ingester) == 0
    assert ingester.final_totals() == Totals(messages=3000, pings=0, dead_letters=3000, ignored=0)
    assert {reason for _topic, reason, _payload in stored_letters(db)} == {
        "payload is not valid JSON (Expecting value: line 1 column 1 (char 0))"
    }


class DeadLettersTableAway:
    """A database outage for dead letters: their table renamed away, then back."""

    def __init__(self, db) -> None:
        self.db = db

    def _rename(self, old: str, new: str) -> None:
        with self.db.begin() as session:
            session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    def __enter__(self) -> DeadLettersTableAway:
        self._rename("dead_letters", "dead_letters_away")
        return self

    def __exit__(self, *_exc) -> None:
        self._rename("dead_letters_away", "dead_letters")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_oversized_message_is_acknowledged_only_once_its_dead_letter_is_committed(
    private_harness, db
):
    harness = private_harness
    topic = native_topic(unique("held"))
    oversized = valid_backlog(now_s() - 600, 5000)
    client_id = unique("ingest")
    # The receiver reads its limit from the same setting as the writer.
    limit = {"TRACKER_MAX_PAYLOAD_BYTES": "1024"}
    ingester = harness.start(client_id, [topic], **limit)
    harness.wait_subscribed(ingester, 1)

    with DeadLettersTableAway(db):
        harness.publisher().publish([(topic, oversized)])
        wait_until(
            lambda: "database error, batch of 1 not acknowledged" in ingester.log(),
            "the writer to fail to store the dead letter",
            [ingester],
        )
        assert harness.stop(ingester, signal.SIGTERM) == 0
    assert ingester.final_totals() == Totals(0, 0, 0, 0)
    assert dead_letters(db) == 0

    # Not acknowledged, so the broker delivers it again.
    again = harness.start(client_id, [topic], **limit)
    wait_until(lambda: dead_letters(db) == 1, "the dead letter", [again])
    assert harness.stop(again) == 0
    assert stored_letters(db) == [
        (topic, "payload of 5000 bytes exceeds the 1024 byte limit", cut_payload(oversized))
    ]
    assert again.final_totals() == Totals(messages=1, pings=0, dead_letters=1, ignored=0)


# --- the receiving process, in process -----------------------------------------------------------


def test_the_receiver_keeps_what_a_dead_letter_keeps_and_no_more():
    # Repeated in the receiver, which does not import the database libraries.
    assert receiver.DEAD_LETTER_BYTES == store.MAX_DEAD_LETTER_PAYLOAD
    assert receiver.MAX_TOPIC_LENGTH == ingest.MAX_TOPIC_LENGTH


def test_the_receiver_reads_the_payload_limit_from_the_setting(monkeypatch):
    monkeypatch.setenv("TRACKER_MAX_PAYLOAD_BYTES", "4096")

    config = receiver.IngestConfig(
        broker=receiver.BrokerAddress.parse("mqtt://127.0.0.1:1"), client_id="c", topics=["t"]
    )

    assert config.max_payload_bytes == 4096


def received(ingester, topic: str, payload: bytes) -> tuple:
    """Hand a message to the receiver's paho callback; return the item it queued."""
    message = mqtt.MQTTMessage(mid=7, topic=topic.encode())
    message.qos = 1
    message.payload = payload
    ingester._on_message(ingester.client, None, message)
    item = ingester._inbox.get()
    assert ingester._inbox.get() is None
    return item


def make_ingester(max_payload_bytes: int = DEFAULT_LIMIT) -> receiver.Ingester:
    return receiver.Ingester(
        receiver.IngestConfig(
            broker=receiver.BrokerAddress.parse("mqtt://127.0.0.1:1"),
            client_id="c",
            topics=["patrol/+/location"],
            max_payload_bytes=max_payload_bytes,
        )
    )


def test_a_message_over_a_limit_is_queued_as_its_dead_letter_record_only():
    ingester = make_ingester()
    topic = "patrol/radio-1/location"

    mid, qos, record, _at, size = received(ingester, topic, b"x" * (DEFAULT_LIMIT + 1))
    assert (mid, qos) == (7, 1)
    assert record == (topic, b"x" * 2048, DEFAULT_LIMIT + 1, None)
    assert size == len(topic) + 2048

    exactly = b"x" * DEFAULT_LIMIT
    assert received(ingester, topic, exactly)[2] == (topic, exactly)

    long_topic = "patrol/" + "r" * 1000 + "/location"
    assert received(ingester, long_topic, b"{}")[2] == (long_topic[:256], b"{}", None, 1016)


def test_the_inbox_and_each_batch_are_bounded_in_bytes():
    inbox = receiver._Inbox(max_items=10, max_bytes=100)
    assert inbox.put(("a", 0, None, 0.0, 150), timeout=0)  # an empty inbox takes anything
    assert not inbox.put(("b", 0, None, 0.0, 1), timeout=0)
    assert inbox.get()[0] == "a"
    assert inbox.put(("c", 0, None, 0.0, 60), timeout=0)
    assert not inbox.put(("d", 0, None, 0.0, 41), timeout=0.01)
    assert inbox.put(("e", 0, None, 0.0, 40), timeout=0)
    assert len(inbox) == 2

    assert receiver.BATCH_BYTES == 2 * MB
    ingester = make_ingester()
    for mid in range(5):
        assert ingester._inbox.put((mid, 1, ("t", b""), 0.0, MB), timeout=0)
    assert [item[0] for item in ingester._next_batch()] == [0, 1]
    assert [item[0] for item in ingester._drain()] == [2, 3]
    assert [item[0] for item in ingester._drain()] == [4]


# --- the writer's side ----------------------------------------------------------------------------


def test_a_message_cut_short_is_stored_as_the_dead_letter_it_would_have_been(db):
    payload = ("é" * 3000).encode()  # two bytes a character: a cut at 2049 splits one
    messages = [
        ingest.Message("patrol/r/location", payload[:2049], payload_size=len(payload)),
        ingest.Message("patrol/r/battery", payload[:2048], payload_size=len(payload)),
        ingest.Message("patrol/" + "r" * 249, b"{}", topic_length=300),
        ingest.Message("patrol/" + "r" * 300 + "/location", b"{}"),
    ]

    with db.begin() as session:
        outcome = ingest.store_messages(
            session, messages, DosageParams(), Limits(max_payload_bytes=4096), now_s() * 10**6
        )

    assert outcome == ingest.BatchOutcome(messages=4, pings=0, dead_letters=4, ignored=0)
    marker = "... [6000 bytes in all]"
    kept = "é" * 1024 + marker
    assert stored_letters(db) == [
        ("patrol/r/location", "payload of 6000 bytes exceeds the 4096 byte limit", kept),
        # The topic is checked first, as for a whole message.
        (
            "patrol/r/battery",
            "topic 'patrol/r/battery' is neither "
            "patrol/<device_id>/location nor owntracks/<user>/<device>",
            kept,
        ),
        ("patrol/" + "r" * 249, "topic of 300 characters exceeds the 256 character limit", "{}"),
        ("patrol/" + "r" * 249, "topic of 316 characters exceeds the 256 character limit", "{}"),
    ]


def test_a_payload_cut_short_within_the_limit_is_never_decoded():
    with pytest.raises(ValueError, match="2048 bytes of a payload of 3000 cannot be decoded"):
        decode_message("patrol/r/location", b"[" * 2048, 0, Limits(), size=3000)
