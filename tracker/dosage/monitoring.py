"""Figures for monitoring ingest from the database, for the web app's and each ingester's
Prometheus metrics (docs/operations.md), and the classes of dead letter reasons.

Free of any metrics library: the edges turn these samples into Prometheus gauges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from tracker.dosage.payloads import NATIVE_PREFIX, OWNTRACKS_PREFIX
from tracker.foundation.models import Assignment, Device, DirtyDeviceDay, DirtyHotSpotDay

# A device is silent during its shift when it is assigned to an officer now, was heard
# within the last shift (10 hours) and not for SILENT_AFTER_S: at one ping every 10 s, 30
# missed pings. Assignments loaded per shift (their starts and ends) make this exact; with
# open-ended assignments, a radio switched off at the end of a shift counts as silent until
# SHIFT_S after its last ping (docs/operations.md).
SILENT_AFTER_S = 300
SHIFT_S = 10 * 3600
DEVICE_CLASSES = (NATIVE_PREFIX, OWNTRACKS_PREFIX)

# name: (help, label). Every sample of `IngestFigures.samples` has one of these names.
GAUGES: dict[str, tuple[str, str]] = {
    "tracker_dosage_queue_depth": (
        "Entries waiting in the dosage rebuild queues (device-days, hot spot-days).",
        "queue",
    ),
    "tracker_devices": ("Devices known, by device class (topic format).", "device_class"),
    "tracker_last_ping_age_seconds": (
        "Seconds since the newest ping of any device of the class (device time).",
        "device_class",
    ),
    "tracker_devices_silent": (
        f"Devices assigned to an officer now, heard from within the last {SHIFT_S // 3600} "
        f"hours and silent for more than {SILENT_AFTER_S} s.",
        "device_class",
    ),
}


def device_class(device_id: str) -> str:
    """'owntracks' for an OwnTracks user/device id, else 'patrol' (the native topic)."""
    return OWNTRACKS_PREFIX if "/" in device_id else NATIVE_PREFIX


@dataclass(frozen=True)
class IngestFigures:
    """What the database says about ingest at one instant."""

    queue_depth: dict[str, int]
    devices: dict[str, int]
    last_ping_age_s: dict[str, float]  # only classes with at least one ping
    silent_devices: dict[str, int]

    def samples(self) -> list[tuple[str, str, str, str, float]]:
        """Return (gauge name, help, label name, label value, value) for every figure:
        all that a metrics registry needs, in plain types (sent between processes)."""
        found: list[tuple[str, str, float]] = [
            ("tracker_dosage_queue_depth", queue, depth)
            for queue, depth in self.queue_depth.items()
        ]
        for kind in DEVICE_CLASSES:
            found.append(("tracker_devices", kind, self.devices.get(kind, 0)))
            if kind in self.last_ping_age_s:
                found.append(("tracker_last_ping_age_seconds", kind, self.last_ping_age_s[kind]))
            found.append(("tracker_devices_silent", kind, self.silent_devices.get(kind, 0)))
        return [(name, *GAUGES[name], label, float(value)) for name, label, value in found]


def ingest_figures(session: Session, now: datetime | None = None) -> IngestFigures:
    """Return queue depths and each device class's ping ages, in three small queries."""
    now = now or datetime.now(UTC)
    queue_depth = {
        "device_days": session.scalar(select(func.count()).select_from(DirtyDeviceDay)) or 0,
        "hot_spot_days": session.scalar(select(func.count()).select_from(DirtyHotSpotDay)) or 0,
    }
    kind = case((Device.id.contains("/"), OWNTRACKS_PREFIX), else_=NATIVE_PREFIX)
    on_duty = (
        select(Assignment.id)
        .where(
            Assignment.device_id == Device.id,
            Assignment.starts <= now,
            or_(Assignment.ends.is_(None), Assignment.ends > now),
        )
        .exists()
    )
    silent = case(
        (
            on_duty
            & (Device.last_seen < now - timedelta(seconds=SILENT_AFTER_S))
            & (Device.last_seen >= now - timedelta(seconds=SHIFT_S)),
            1,
        ),
        else_=0,
    )
    devices, ages, silent_devices = {}, {}, {}
    rows = session.execute(
        select(kind, func.count(), func.max(Device.last_seen), func.sum(silent)).group_by(kind)
    )
    for name, count, newest, silent_count in rows:
        devices[name] = count
        silent_devices[name] = int(silent_count or 0)
        if newest is not None:
            newest = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
            ages[name] = max(0.0, (now - newest).total_seconds())
    return IngestFigures(queue_depth, devices, ages, silent_devices)


# Dead letter reasons (docs/ingest.md) by class, for the counter of dead letters by reason:
# the first pattern that matches the reason, an "element N: " prefix aside, names its class.
_REASON_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("topic", r"^topic '.*' is neither "),
        ("payload_too_large", r"^payload of \d+ bytes exceeds"),
        ("topic_too_long", r"^topic of \d+ characters exceeds"),
        ("device_mismatch", r" in the payload is not the topic's device "),
        ("not_utf8", r"^payload is not UTF-8"),
        ("not_json", r"^payload is not valid JSON"),
        ("not_an_object", r"^payload is an empty array|^expected a JSON object|^OwnTracks payload"),
        ("missing_field", r"^missing "),
        ("future", r" is in the future "),
        ("too_old", r" retention period "),
        ("bad_timestamp", r"^(epoch )?timestamp "),
        ("bad_position", r"^(lat|lon|position) "),
        ("bad_accuracy_or_speed", r"^(accuracy_m|speed_kmh) "),
        ("device_id", r"^device_id "),
        ("more_elements", r"^and \d+ more bad elements"),
        ("unprocessable", r"^could not be processed"),
    )
)
_ELEMENT = re.compile(r"^element \d+: ")


def dead_letter_class(reason: str) -> str:
    """Return the class of a dead letter reason ('other' for one not known here)."""
    reason = _ELEMENT.sub("", reason, count=1)
    for name, pattern in _REASON_CLASSES:
        if pattern.search(reason):
            return name
    return "other"
