"""One ingest batch: decode MQTT messages and store their pings and dead letters together.

Free of any MQTT library; `tracker.mqtt.ingester` feeds it and acknowledges the messages
only after the transaction that holds this batch has committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tracker.dosage.engine import DosageParams
from tracker.dosage.payloads import Limits, decode_message
from tracker.dosage.store import store_dead_letters, store_pings

SOURCE = "mqtt"


@dataclass(frozen=True)
class Message:
    """A received message: topic, raw payload and the token to acknowledge it by."""

    topic: str
    payload: bytes
    token: Any = None


@dataclass
class BatchOutcome:
    """What one stored batch held: messages, pings, dead letters and ignored messages."""

    messages: int = 0
    pings: int = 0
    dead_letters: int = 0
    ignored: int = 0


def store_messages(
    session: Session, messages: Sequence[Message], params: DosageParams, limits: Limits, now_us: int
) -> BatchOutcome:
    """Decode and store a batch (pings and dead letters) in the caller's transaction."""
    outcome = BatchOutcome(messages=len(messages))
    pings = []
    letters = []
    for message in messages:
        decoded = decode_message(message.topic, message.payload, now_us, limits)
        pings.extend(decoded.pings)
        letters.extend((message.topic, reason, message.payload) for reason in decoded.errors)
        outcome.ignored += decoded.ignored
    store_pings(session, pings, params, source=SOURCE)
    store_dead_letters(session, SOURCE, letters)
    outcome.pings, outcome.dead_letters = len(pings), len(letters)
    return outcome
