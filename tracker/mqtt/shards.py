"""Sharded subscriptions: ingester K of N subscribes to the topics of its share of the devices.

Why not a shared subscription ($share/group/...): Mosquitto 2.0.11 (Debian 12's) does not
restore shared subscriptions from its persistence file, so after a broker restart the
devices' messages match nothing and are dropped until an ingester has subscribed again
(BENCHMARKS.md, "Soak under faults"). A plain subscription of a persistent session is
restored, and the broker queues its messages while the ingester is away. So each device's
topics are subscribed by name, each by one ingester: the one whose shard the device id's
CRC-32 falls in. The device ids come from the devices table (the writer process reads them);
a device that is not in it is not subscribed to (docs/ingest.md, "Sharded subscriptions").

Free of paho and of the database, like the rest of the receiving process. The topic
prefixes repeat tracker.dosage.payloads' (tests/mqtt/test_shards.py checks that they agree).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NATIVE_PREFIX = "patrol"
OWNTRACKS_PREFIX = "owntracks"
# A device id holding one of these cannot be a topic level: '+' and '#' are wildcards in a
# filter, and control characters (NUL included) are refused by brokers or by the decoder.
UNSAFE = frozenset("+#") | frozenset(chr(c) for c in range(32)) | {"\x7f"}


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1 to `count`) of the devices."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index} of {self.count}: it must be 1 to {self.count}")

    def owns(self, device_id: str) -> bool:
        # CRC-32, not hash(): the same on every machine and in every process, run after run.
        return zlib.crc32(device_id.encode("utf-8")) % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def device_topic(device_id: str) -> str | None:
    """Return the topic a device publishes on, or None if its id cannot make one.

    A native id `radio-7` publishes on patrol/radio-7/location, an OwnTracks id
    `alice/phone` on owntracks/alice/phone (tracker.dosage.payloads.device_for_topic is the
    inverse).
    """
    if not device_id or UNSAFE & set(device_id):
        return None
    parts = device_id.split("/")
    if len(parts) == 1:
        return f"{NATIVE_PREFIX}/{device_id}/location"
    if len(parts) == 2 and all(parts):
        return f"{OWNTRACKS_PREFIX}/{device_id}"
    return None


def narrow(topic_filter: str, topic: str) -> str | None:
    """Return the part of `topic_filter` that matches `topic` or its sub-topics, as a filter.

    The filter's levels over the topic's are replaced by the topic's (None if one differs),
    the rest kept: patrol/+/location over patrol/radio-7/location is that topic;
    owntracks/# over owntracks/alice/phone is owntracks/alice/phone/# (the topic and its
    sub-topics); owntracks/+/+/+ is owntracks/alice/phone/+.
    """
    levels, wanted = topic.split("/"), topic_filter.split("/")
    for n, level in enumerate(levels):
        if n == len(wanted):
            return None
        if wanted[n] == "#":
            return f"{topic}/#"
        if wanted[n] not in ("+", level):
            return None
    return "/".join(levels + wanted[len(levels) :])


def shard_filters(
    device_ids: Iterable[str], topics: Sequence[str], shard: Shard
) -> tuple[list[str], list[str]]:
    """Return (the topic filters of the shard's devices, sorted; device ids that make none).

    Each of the shard's devices gets the configured filters narrowed to its topic
    (TRACKER_MQTT_TOPICS: by default patrol/+/location and owntracks/+/+, so one filter per
    device).
    """
    filters: set[str] = set()
    unusable = []
    for device_id in device_ids:
        if not shard.owns(device_id):
            continue
        topic = device_topic(device_id)
        if topic is None:
            unusable.append(device_id)
            continue
        filters.update(f for f in (narrow(t, topic) for t in topics) if f is not None)
    return sorted(filters), sorted(unusable)
