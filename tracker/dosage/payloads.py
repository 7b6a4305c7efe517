"""MQTT payloads to pings (docs/ingest.md): native `patrol/<device>/location` and OwnTracks.

Pure functions, free of any MQTT library: the ingester hands over topic and bytes and
gets back the pings and, for anything unusable, a dead letter reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tracker.dosage.pings import Ping, PingError, format_timestamp, make_ping
from tracker.foundation import parsing, settings
from tracker.foundation.clock import US_PER_S

NATIVE_PREFIX = "patrol"
OWNTRACKS_PREFIX = "owntracks"
# The field of a native payload that may name its device; if it does, it must be the topic's.
DEVICE_FIELD = "device_id"
# Where the OwnTracks apps publish their other messages (transition, waypoint, status...),
# which a subscription to owntracks/# receives; they carry no position to credit.
OWNTRACKS_SUBTOPICS = frozenset(
    {"event", "waypoint", "waypoints", "status", "step", "beacon", "dump", "cmd", "info"}
)


@dataclass
class Decoded:
    """What one message yielded: pings, dead letter reasons, or nothing (ignored)."""

    pings: list[Ping] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ignored: bool = False


@dataclass(frozen=True)
class Limits:
    """Bounds on what is accepted from devices."""

    max_payload_bytes: int = 262144
    max_future_s: float = 300.0
    max_age_days: int = 0  # the raw-ping retention period; 0 accepts any age


def configured_limits() -> Limits:
    """Return the bounds on accepted payloads (TRACKER_ settings)."""
    return Limits(
        max_payload_bytes=settings.get("TRACKER_MAX_PAYLOAD_BYTES"),
        max_future_s=settings.get("TRACKER_MAX_FUTURE_S"),
        max_age_days=settings.get("TRACKER_RETENTION_DAYS"),
    )


def device_for_topic(topic: str) -> tuple[str, str]:
    """Return (kind, device_id) for a topic, or raise PingError if it is not one of ours."""
    parts = topic.split("/")
    # Shared subscriptions deliver the original topic, so no $share prefix appears here.
    if len(parts) == 3 and parts[0] == NATIVE_PREFIX and parts[2] == "location" and parts[1]:
        return "native", parts[1]
    owntracks_levels = len(parts) == 3 or (len(parts) == 4 and parts[3] in OWNTRACKS_SUBTOPICS)
    if owntracks_levels and parts[0] == OWNTRACKS_PREFIX and parts[1] and parts[2]:
        return "owntracks", f"{parts[1]}/{parts[2]}"
    raise PingError(
        f"topic {topic!r} is neither patrol/<device_id>/location nor owntracks/<user>/<device>"
    )


def decode_message(
    topic: str, payload: bytes, now_us: int, limits: Limits = Limits(), size: int | None = None
) -> Decoded:
    """Decode one MQTT message into validated pings and dead letter reasons.

    `size` is the payload's size when `payload` holds only its first bytes: the ingester's
    receiving process keeps no more of a payload over the limit (tracker.mqtt.ingester).
    """
    decoded = Decoded()
    try:
        kind, device_id = device_for_topic(topic)
        size = len(payload) if size is None else size
        if size > limits.max_payload_bytes:
            raise PingError(
                f"payload of {size} bytes exceeds the {limits.max_payload_bytes} byte limit"
            )
        if size != len(payload):
            # Only a receiver with a lower limit than this one cuts a payload this size.
            raise ValueError(f"{len(payload)} bytes of a payload of {size} cannot be decoded")
        # Decoded explicitly: json.loads(bytes) would guess UTF-16/32 from the first bytes.
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PingError(
                f"payload is not UTF-8 text (invalid byte 0x{payload[exc.start]:02x} "
                f"at offset {exc.start})"
            ) from None
        try:
            body = parsing.json_loads(text)
        except json.JSONDecodeError as exc:
            raise PingError(f"payload is not valid JSON ({exc})") from None
    except PingError as exc:
        decoded.errors.append(str(exc))
        return decoded

    if kind == "owntracks":
        if not isinstance(body, dict):
            decoded.errors.append("OwnTracks payload is not a JSON object")
        elif "_type" not in body:
            decoded.errors.append("OwnTracks payload has no _type")
        elif body["_type"] != "location":
            decoded.ignored = True  # transition, waypoint, card, lwt...: not positions
        elif (mismatch := _owntracks_mismatch(body, topic)) is not None:
            decoded.errors.append(mismatch)
        else:
            _accept(decoded, device_id, _owntracks_fields(body), now_us, limits, where="")
        return decoded

    items = body if isinstance(body, list) else [body]
    if isinstance(body, list) and not body:
        decoded.errors.append("payload is an empty array")
    for number, item in enumerate(items, start=1):
        where = f"element {number}: " if isinstance(body, list) else ""
        if not isinstance(item, dict):
            decoded.errors.append(f"{where}expected a JSON object with ts, lat, lon")
            continue
        claimed = item.get(DEVICE_FIELD)
        if claimed not in (None, "") and claimed != device_id:
            # The broker lets a device publish only on its own topic (its ACL): a payload
            # naming another device is misconfigured or forged, and credits nobody.
            decoded.errors.append(
                f"{where}{DEVICE_FIELD} {_shorten(claimed)} in the payload is not "
                f"the topic's device {device_id!r}"
            )
            continue
        _accept(decoded, device_id, _native_fields(item), now_us, limits, where)
    return decoded


def owntracks_base(topic: str) -> str:
    """Return owntracks/<user>/<device> of an OwnTracks topic, without any sub-topic."""
    return "/".join(topic.split("/")[:3])


def _owntracks_mismatch(body: dict[str, Any], topic: str) -> str | None:
    """The dead letter reason when an OwnTracks payload's `topic` field (which the apps add to
    location messages) names another device than its topic; None when it names none or the
    same one, sub-topics aside."""
    claimed = body.get("topic")
    if claimed in (None, "") or (
        isinstance(claimed, str) and owntracks_base(claimed) == owntracks_base(topic)
    ):
        return None
    base = owntracks_base(topic)
    return f"topic {_shorten(claimed)} in the payload is not the topic's device {base!r}"


def _shorten(value: Any) -> str:
    """The value as a dead letter reason quotes it: repr, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _native_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": item.get("ts"),
        "lat": item.get("lat"),
        "lon": item.get("lon"),
        "accuracy_m": item.get("acc"),
        "speed_kmh": item.get("speed"),
    }


def _owntracks_fields(item: dict[str, Any]) -> dict[str, Any]:
    # OwnTracks: tst epoch seconds, acc metres, vel km/h (Recorder's JSON format).
    return {
        "timestamp": item.get("tst"),
        "lat": item.get("lat"),
        "lon": item.get("lon"),
        "accuracy_m": item.get("acc"),
        "speed_kmh": item.get("vel"),
    }


def _accept(
    decoded: Decoded,
    device_id: str,
    fields: dict[str, Any],
    now_us: int,
    limits: Limits,
    where: str,
) -> None:
    try:
        ping = make_ping(device_id, **fields)
    except PingError as exc:
        decoded.errors.append(f"{where}{exc}")
        return
    if ping.t_us > now_us + limits.max_future_s * US_PER_S:
        decoded.errors.append(
            f"{where}timestamp {format_timestamp(ping.t_us)} is in the future "
            f"(more than {limits.max_future_s:g} s ahead of the server clock)"
        )
        return
    if limits.max_age_days and ping.t_us < now_us - limits.max_age_days * 86400 * US_PER_S:
        decoded.errors.append(
            f"{where}timestamp {format_timestamp(ping.t_us)} is older than the "
            f"{limits.max_age_days}-day retention period for raw positions"
        )
        return
    decoded.pings.append(ping)
