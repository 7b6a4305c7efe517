"""One ingest batch: decode MQTT messages and store their pings and dead letters together.

Free of any MQTT library; `tracker.mqtt.ingester` feeds it and acknowledges the messages
only after the transaction that holds this batch has committed.
"""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tracker.dosage.engine import DosageParams
from tracker.dosage.monitoring import dead_letter_class
from tracker.dosage.payloads import Limits, decode_message
from tracker.dosage.store import MAX_DEAD_LETTER_PAYLOAD, store_dead_letters, store_pings

SOURCE = "mqtt"
# A longer topic is a dead letter, whatever its payload: more than any device's topic (a
# device id has at most 128 characters), and as much of it as a dead letter keeps.
MAX_TOPIC_LENGTH = 256
# Dead letters of one message (one a bad element), the last counting the rest.
MAX_LETTERS_PER_MESSAGE = 10


@dataclass(frozen=True)
class Message:
    """A received message: topic, raw payload and the token to acknowledge it by.

    A message over a limit can only be a dead letter, and the receiving process passes on
    only what that keeps (`tracker.mqtt.ingester.cut_short`): then `payload` holds only the
    first bytes of a payload of `payload_size` bytes, or `topic` only the first
    MAX_TOPIC_LENGTH characters of a topic of `topic_length` characters.
    """

    topic: str
    payload: bytes
    token: Any = None
    payload_size: int | None = None  # set when `payload` is cut short
    topic_length: int | None = None  # set when `topic` is cut short


@dataclass
class BatchOutcome:
    """What one stored batch held: messages, pings, dead letters and ignored messages."""

    messages: int = 0
    pings: int = 0
    dead_letters: int = 0
    ignored: int = 0
    # Dead letters by class of reason (tracker.dosage.monitoring), for the ingester's metrics.
    reasons: Counter[str] = field(default_factory=Counter, compare=False)

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(
            self.messages + other.messages,
            self.pings + other.pings,
            self.dead_letters + other.dead_letters,
            self.ignored + other.ignored,
            self.reasons + other.reasons,
        )


def store_messages(
    session: Session, messages: Sequence[Message], params: DosageParams, limits: Limits, now_us: int
) -> BatchOutcome:
    """Decode and store a batch (pings and dead letters) in the caller's transaction."""
    outcome = BatchOutcome(messages=len(messages))
    pings = []
    letters = []
    for message in messages:
        topic_length = message.topic_length or len(message.topic)
        if topic_length > MAX_TOPIC_LENGTH:
            reason = (
                f"topic of {topic_length} characters exceeds the {MAX_TOPIC_LENGTH} character limit"
            )
            letters.append((message.topic, reason, dead_letter_payload(message)))
            continue
        if message.payload_size is None:
            decoded = decode_message(message.topic, message.payload, now_us, limits)
        else:  # only its first bytes are here
            decoded = decode_message(
                message.topic, message.payload, now_us, limits, size=message.payload_size
            )
        pings.extend(decoded.pings)
        if decoded.errors:
            payload = dead_letter_payload(message)
            letters.extend((message.topic, reason, payload) for reason in _bounded(decoded.errors))
        outcome.ignored += decoded.ignored
    store_pings(session, pings, params, source=SOURCE)
    store_dead_letters(session, SOURCE, letters)
    outcome.pings, outcome.dead_letters = len(pings), len(letters)
    outcome.reasons.update(dead_letter_class(reason) for _topic, reason, _payload in letters)
    return outcome


def _bounded(errors: list[str]) -> list[str]:
    """Return at most MAX_LETTERS_PER_MESSAGE reasons, the last saying how many more there
    were: each dead letter keeps the payload, so 2 KB of bad array elements must not become
    a thousand dead letters."""
    if len(errors) <= MAX_LETTERS_PER_MESSAGE:
        return errors
    kept = errors[: MAX_LETTERS_PER_MESSAGE - 1]
    return [*kept, f"and {len(errors) - len(kept)} more bad elements in this message"]


def dead_letter_payload(message: Message) -> bytes | str:
    """Return the payload to keep with a dead letter of the message.

    The whole payload, which `store_dead_letters` caps; or, when the receiver kept only its
    first bytes, those (leniently decoded, a character cut in two left out) and its size.
    """
    if message.payload_size is None:
        return message.payload
    marker = f"... [{message.payload_size} bytes in all]"
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(message.payload)
    return text[: MAX_DEAD_LETTER_PAYLOAD - len(marker)] + marker
