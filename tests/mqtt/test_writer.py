"""The ingester's writer in process: what it does with a batch it cannot store whole.

The writer's normal work (batches from a real broker into real databases, crashes, outages)
is tested end to end in tests/mqtt/test_ingest_mqtt.py; these tests reach a case no known input
triggers any more: a message that makes the code raise, standing in for a future bug.
"""

from __future__ import annotations

import json
import time
from multiprocessing import Pipe

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DataError

from tracker.dosage import ingest
from tracker.dosage.engine import DosageParams
from tracker.dosage.ingest import BatchOutcome
from tracker.dosage.payloads import Limits
from tracker.foundation.models import DeadLetter, PingRow
from tracker.mqtt.writer import Writer

TOPIC = "patrol/radio-1/location"


def position(t_s: int) -> bytes:
    return json.dumps({"ts": t_s, "lat": 52.6371, "lon": -1.1333, "acc": 10}).encode()


@pytest.fixture
def stop():
    """The stop pipe as the writer sees it; send on the other end to ask it to stop."""
    reading, writing = Pipe(duplex=False)
    yield reading, writing
    reading.close()
    writing.close()


@pytest.fixture
def poison(monkeypatch):
    """Make decoding raise for the payload b"poison", as a bug would."""
    decode = ingest.decode_message

    def decode_or_raise(topic, payload, now_us, limits):
        if payload == b"poison":
            raise ZeroDivisionError("division by zero")
        if payload == b"refused":
            raise DataError("INSERT INTO pings ...", {}, Exception("value out of range"))
        if payload.startswith(b"quoted"):
            raise ValueError(f"cannot handle {payload.decode()!s}")  # quotes a NUL byte
        return decode(topic, payload, now_us, limits)

    monkeypatch.setattr(ingest, "decode_message", decode_or_raise)


def count(db, model) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_message_the_code_cannot_handle_is_a_dead_letter_and_the_rest_is_stored(db, stop, poison):
    writer = Writer(db, DosageParams(), Limits(), 2.0, stop[0])
    t = int(time.time()) - 600

    outcome = writer._commit([(TOPIC, position(t)), (TOPIC, b"poison"), (TOPIC, position(t + 30))])

    assert outcome == BatchOutcome(messages=3, pings=2, dead_letters=1, ignored=0)
    assert count(db, PingRow) == 2
    with db() as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert (letter.topic, letter.reason, letter.payload) == (
        TOPIC,
        "could not be processed (ZeroDivisionError: division by zero)",
        "poison",
    )


def test_data_the_database_refuses_is_a_dead_letter_not_a_retry_for_ever(db, stop, poison):
    writer = Writer(db, DosageParams(), Limits(), 2.0, stop[0])
    t = int(time.time()) - 600

    outcome = writer._commit([(TOPIC, position(t)), (TOPIC, b"refused")])

    assert outcome == BatchOutcome(messages=2, pings=1, dead_letters=1, ignored=0)
    with db() as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert letter.reason.startswith("could not be processed (DataError: ")
    assert "value out of range" in letter.reason


def test_an_error_quoting_a_nul_byte_is_stored_on_every_database(db, stop, poison):
    # PostgreSQL text cannot hold NUL: the dead letter itself must not fail to store.
    writer = Writer(db, DosageParams(), Limits(), 2.0, stop[0])

    outcome = writer._commit([(TOPIC, b"quoted \x00 byte")])

    assert outcome == BatchOutcome(messages=1, pings=0, dead_letters=1, ignored=0)
    with db() as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert letter.reason == "could not be processed (ValueError: cannot handle quoted \\0 byte)"
    assert letter.payload == "quoted \\0 byte"


def test_a_database_error_is_never_made_a_dead_letter(db, stop, poison):
    writer = Writer(db, DosageParams(), Limits(), 2.0, stop[0])
    stop[1].send(True)  # so that the writer gives up at the first database error
    with db.begin() as session:
        session.execute(text("ALTER TABLE dead_letters RENAME TO dead_letters_away"))

    outcome = writer._commit([(TOPIC, b"poison")])

    assert outcome is None  # not stored, so the receiver does not acknowledge it
    with db.begin() as session:
        session.execute(text("ALTER TABLE dead_letters_away RENAME TO dead_letters"))
    assert count(db, DeadLetter) == 0
    assert count(db, PingRow) == 0
