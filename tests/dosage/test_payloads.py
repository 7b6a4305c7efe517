"""MQTT payloads to pings (docs/ingest.md): native objects and backlog arrays, OwnTracks,
and a clear dead letter reason for every kind of bad message."""

from __future__ import annotations

import json

import pytest

from tracker.dosage.payloads import Decoded, Limits, decode_message
from tracker.dosage.pings import Ping

# 2026-11-26T07:59:50Z, a few seconds before the server clock NOW_US below.
T_S = 1_795_679_990
T_US = T_S * 1_000_000
NOW_US = 1_795_680_000 * 1_000_000
LIMITS = Limits()

NATIVE_TOPIC = "patrol/radio-007/location"
OWNTRACKS_TOPIC = "owntracks/alice/phone"

# A location message exactly as the OwnTracks apps publish it (booklet, "_type=location").
OWNTRACKS_LOCATION = {
    "_type": "location",
    "acc": 12,
    "alt": 80,
    "batt": 76,
    "bs": 1,
    "conn": "m",
    "created_at": 1795680000,
    "lat": 52.6366,
    "lon": -1.1339,
    "m": 1,
    "t": "u",
    "tid": "ab",
    "tst": T_S,
    "vac": 3,
    "vel": 4,
}


def encode(body) -> bytes:
    return json.dumps(body).encode()


def decode(body, topic: str = NATIVE_TOPIC, limits: Limits = LIMITS) -> Decoded:
    payload = body if isinstance(body, bytes) else encode(body)
    return decode_message(topic, payload, NOW_US, limits)


def only_error(decoded: Decoded) -> str:
    """Return the one dead letter reason of a message that yielded no ping."""
    assert decoded.pings == []
    assert not decoded.ignored
    assert len(decoded.errors) == 1, decoded.errors
    return decoded.errors[0]


# --- native messages ---------------------------------------------------------------------------


def test_native_object_becomes_one_ping_of_the_topic_device():
    decoded = decode(
        {
            "ts": "2026-11-26T07:59:50Z",
            "lat": 52.6366,
            "lon": -1.1339,
            "acc": 8.5,
            "speed": 4.2,
            "heading": 270,
        }
    )

    assert decoded == Decoded(pings=[Ping("radio-007", T_US, 52.6366, -1.1339, 8.5, 4.2)])


def test_native_optional_fields_may_be_absent():
    decoded = decode({"ts": T_S, "lat": 52.6366, "lon": -1.1339})

    assert decoded.pings == [Ping("radio-007", T_US, 52.6366, -1.1339, None, None)]
    assert decoded.errors == []


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-26T07:59:50Z",
        "2026-11-26T07:59:50+00:00",
        "2026-11-26T08:59:50+01:00",
        "2026-11-26T02:59:50-05:00",
        T_S,
        float(T_S),
        str(T_S),
    ],
)
def test_native_timestamp_formats_give_the_same_instant(ts):
    decoded = decode({"ts": ts, "lat": 52.6366, "lon": -1.1339})

    assert [p.t_us for p in decoded.pings] == [T_US]


def test_native_fractional_epoch_seconds_keep_their_microseconds():
    decoded = decode({"ts": T_S + 0.123456, "lat": 52.6366, "lon": -1.1339})

    assert [p.t_us for p in decoded.pings] == [T_US + 123_456]


def test_backlog_array_gives_every_ping_in_its_order():
    backlog = [
        {"ts": T_S - 60 * n, "lat": lat, "lon": -1.1339}
        for n, lat in ((3, 52.6369), (1, 52.6367), (2, 52.6368))
    ]

    decoded = decode(backlog)

    assert decoded.errors == []
    assert [(p.device_id, p.t_us, p.lat) for p in decoded.pings] == [
        ("radio-007", T_US - 180_000_000, 52.6369),
        ("radio-007", T_US - 60_000_000, 52.6367),
        ("radio-007", T_US - 120_000_000, 52.6368),
    ]


def test_backlog_weeks_old_is_accepted():
    six_weeks_s = 6 * 7 * 24 * 3600

    decoded = decode([{"ts": T_S - six_weeks_s, "lat": 52.6366, "lon": -1.1339}])

    assert [p.t_us for p in decoded.pings] == [T_US - six_weeks_s * 1_000_000]
    assert decoded.errors == []


def test_array_with_one_bad_element_keeps_the_good_ones_and_names_the_bad_one():
    backlog = [
        {"ts": T_S - 30, "lat": 52.6366, "lon": -1.1339},
        {"ts": T_S - 20, "lat": 95.0, "lon": -1.1339},
        {"ts": T_S - 10, "lat": 52.6367, "lon": -1.1338},
    ]

    decoded = decode(backlog)

    assert [p.t_us for p in decoded.pings] == [T_US - 30_000_000, T_US - 10_000_000]
    assert decoded.errors == ["element 2: lat 95.0 is out of range [-90, 90]"]


def test_array_element_that_is_not_an_object_is_named():
    decoded = decode([{"ts": T_S, "lat": 52.6366, "lon": -1.1339}, [52.6, -1.1]])

    assert len(decoded.pings) == 1
    assert decoded.errors == ["element 2: expected a JSON object with ts, lat, lon"]


# --- OwnTracks ---------------------------------------------------------------------------------


def test_owntracks_location_as_the_apps_publish_it():
    decoded = decode(OWNTRACKS_LOCATION, topic=OWNTRACKS_TOPIC)

    # tst (not created_at) is the time of the fix; vel is km/h and acc metres already.
    assert decoded == Decoded(pings=[Ping("alice/phone", T_US, 52.6366, -1.1339, 12.0, 4.0)])


def test_owntracks_location_without_optional_fields():
    body = {"_type": "location", "lat": 52.6366, "lon": -1.1339, "tst": T_S, "tid": "ab"}

    decoded = decode(body, topic="owntracks/bob/radio")

    assert decoded.pings == [Ping("bob/radio", T_US, 52.6366, -1.1339, None, None)]


@pytest.mark.parametrize(
    "topic, body",
    [
        (
            "owntracks/alice/phone/event",
            {
                "_type": "transition",
                "wtst": 1795600000,
                "lat": 52.6366,
                "lon": -1.1339,
                "tst": T_S,
                "acc": 14,
                "tid": "ab",
                "event": "enter",
                "desc": "Clock Tower",
                "t": "c",
            },
        ),
        (
            "owntracks/alice/phone/waypoint",
            {
                "_type": "waypoint",
                "desc": "Clock Tower",
                "lat": 52.6366,
                "lon": -1.1339,
                "rad": 150,
                "tst": 1795600000,
            },
        ),
        ("owntracks/alice/phone", {"_type": "lwt", "tst": T_S}),
        ("owntracks/alice/phone/info", {"_type": "card", "name": "Alice", "tid": "ab"}),
        (
            "owntracks/alice/phone/status",
            {"_type": "status", "iOS": {"version": "17.3.1", "locationManager": ["Always"]}},
        ),
        # The same types on the base topic, as a bridge or an older app may send them.
        (
            "owntracks/alice/phone",
            {"_type": "transition", "lat": 52.6366, "lon": -1.1339, "tst": T_S, "event": "leave"},
        ),
        (
            "owntracks/alice/phone",
            {"_type": "waypoint", "desc": "x", "lat": 52.6, "lon": -1.1, "rad": 50, "tst": T_S},
        ),
        ("owntracks/alice/phone", {"_type": "card", "name": "Alice"}),
        ("owntracks/alice/phone", {"_type": "status"}),
    ],
)
def test_other_owntracks_types_are_ignored_not_errors(topic, body):
    decoded = decode(body, topic=topic)

    assert decoded == Decoded(ignored=True)


@pytest.mark.parametrize(
    "body, reason",
    [
        ([OWNTRACKS_LOCATION], "OwnTracks payload is not a JSON object"),
        ({"lat": 52.6366, "lon": -1.1339, "tst": T_S}, "OwnTracks payload has no _type"),
        ({"_type": "location", "lat": 52.6366, "lon": -1.1339}, "missing timestamp"),
        ({**OWNTRACKS_LOCATION, "lat": 0, "lon": 0}, "position (0, 0) is a GPS fix failure"),
        ({**OWNTRACKS_LOCATION, "vel": -1}, "speed_kmh -1.0 is negative"),
    ],
)
def test_bad_owntracks_messages_are_dead_letters(body, reason):
    assert only_error(decode(body, topic=OWNTRACKS_TOPIC)).startswith(reason)


# --- a clear reason for every bad kind ---------------------------------------------------------


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"lat": 52.6366, "lon": -1.1339}, "missing timestamp"),
        ({"ts": T_S, "lon": -1.1339}, "missing lat"),
        ({"ts": T_S, "lat": 52.6366}, "missing lon"),
        ({"ts": "", "lat": 52.6366, "lon": -1.1339}, "missing timestamp"),
        (
            {"ts": "2026-11-26T07:59:50", "lat": 52.6366, "lon": -1.1339},
            "timestamp '2026-11-26T07:59:50' has no UTC offset and is ambiguous",
        ),
        (
            {"ts": "yesterday", "lat": 52.6366, "lon": -1.1339},
            "timestamp 'yesterday' is not ISO-8601 or epoch seconds",
        ),
        (
            {"ts": T_S * 1000, "lat": 52.6366, "lon": -1.1339},
            f"epoch timestamp {T_S * 1000} is out of range",
        ),
        ({"ts": T_S, "lat": "north", "lon": -1.1339}, "lat 'north' is not a number"),
        ({"ts": T_S, "lat": 90.0001, "lon": -1.1339}, "lat 90.0001 is out of range [-90, 90]"),
        ({"ts": T_S, "lat": -91, "lon": -1.1339}, "lat -91.0 is out of range [-90, 90]"),
        ({"ts": T_S, "lat": 52.6366, "lon": 180.5}, "lon 180.5 is out of range [-180, 180]"),
        ({"ts": T_S, "lat": 52.6366, "lon": -200}, "lon -200.0 is out of range [-180, 180]"),
        ({"ts": T_S, "lat": 0, "lon": 0}, "position (0, 0) is a GPS fix failure, not a location"),
        ({"ts": T_S, "lat": 0.0, "lon": -0.0}, "position (0, 0) is a GPS fix failure"),
        ({"ts": T_S, "lat": 52.6366, "lon": -1.1339, "acc": -5}, "accuracy_m -5.0 is negative"),
        (
            {"ts": T_S, "lat": 52.6366, "lon": -1.1339, "acc": "good"},
            "accuracy_m 'good' is not a number",
        ),
        ("scalar", "expected a JSON object with ts, lat, lon"),
        (None, "expected a JSON object with ts, lat, lon"),
    ],
)
def test_bad_native_fields_have_a_clear_reason(body, reason):
    payload = encode(42 if body == "scalar" else body)

    assert only_error(decode(payload)).startswith(reason)


def test_non_finite_numbers_are_rejected():
    # Python's json reads NaN and Infinity, which no GPS fix can be.
    payload = b'{"ts": 1795679990, "lat": NaN, "lon": -1.1339}'

    assert only_error(decode(payload)) == "lat nan is not a finite number"


@pytest.mark.parametrize(
    "payload",
    [
        b"lat=52.6366,lon=-1.1339",
        b'{"ts": 1795679990, "lat": 52.6366, "lon": -1.1339',
        b"",
        b"   ",
    ],
)
def test_payload_that_is_not_json(payload):
    assert only_error(decode(payload)).startswith("payload is not valid JSON (")


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"ts": 1795679990, "lat": 52.6366, "lon": -1.1339, "x": '
        + b"[" * 5_000
        + b"]" * 5_000
        + b"}",
    ],
)
def test_payload_nested_too_deeply_is_a_dead_letter_not_a_crash(payload):
    # json.loads raises RecursionError here, which would crash the ingester's writer on
    # every redelivery of the message.
    assert only_error(decode(payload)) == (
        "payload is not valid JSON (arrays or objects nested too deeply: line 1 column 1 (char 0))"
    )


@pytest.mark.parametrize(
    "payload, byte, offset",
    [
        (
            '{"ts": 1795679990, "lat": 52.6366, "lon": -1.1339, "n": "é"}'.encode("latin-1"),
            "0xe9",
            57,
        ),
        # UTF-16 with a byte order mark: json.loads(bytes) would silently guess it.
        ('{"ts": 1795679990, "lat": 52.6366, "lon": -1.1339}'.encode("utf-16"), "0xff", 0),
        (b"\xc3\x28", "0xc3", 0),
    ],
)
def test_payload_that_is_not_utf8(payload, byte, offset):
    assert only_error(decode(payload)) == (
        f"payload is not UTF-8 text (invalid byte {byte} at offset {offset})"
    )


def test_utf8_text_in_a_valid_message_is_fine():
    payload = '{"ts": 1795679990, "lat": 52.6366, "lon": -1.1339, "note": "Café"}'.encode()

    assert len(decode(payload).pings) == 1


def test_far_future_timestamp_is_a_dead_letter_beyond_the_tolerance():
    limits = Limits(max_future_s=60)
    now_s = NOW_US // 1_000_000
    at_limit = {"ts": now_s + 60, "lat": 52.6366, "lon": -1.1339}
    beyond = {"ts": now_s + 61, "lat": 52.6366, "lon": -1.1339}

    assert len(decode(at_limit, limits=limits).pings) == 1
    assert only_error(decode(beyond, limits=limits)) == (
        "timestamp 2026-11-26T08:01:01+00:00 is in the future "
        "(more than 60 s ahead of the server clock)"
    )


def test_default_future_tolerance_is_limits_max_future_s():
    now_s = NOW_US // 1_000_000
    future_s = now_s + int(LIMITS.max_future_s) + 1
    body = {"_type": "location", "lat": 52.6366, "lon": -1.1339, "tst": future_s}

    reason = only_error(decode(body, topic=OWNTRACKS_TOPIC))

    assert "is in the future" in reason
    assert f"more than {LIMITS.max_future_s:g} s ahead" in reason


def test_oversized_payload_is_a_dead_letter_however_valid():
    limits = Limits(max_payload_bytes=200)
    ping = encode({"ts": T_S, "lat": 52.6366, "lon": -1.1339})
    exactly = ping + b" " * (200 - len(ping))
    over = exactly + b" "

    assert len(decode(exactly, limits=limits).pings) == 1
    assert only_error(decode(over, limits=limits)) == (
        "payload of 201 bytes exceeds the 200 byte limit"
    )


def test_default_payload_limit_applies_to_backlogs():
    backlog = [{"ts": T_S - n, "lat": 52.6366, "lon": -1.1339} for n in range(10_000)]
    payload = encode(backlog)
    assert len(payload) > LIMITS.max_payload_bytes

    assert only_error(decode(payload)) == (
        f"payload of {len(payload)} bytes exceeds the {LIMITS.max_payload_bytes} byte limit"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "patrol/radio-007/status",
        "patrol/location",
        "patrol//location",
        "patrol/radio-007/location/extra",
        "owntracks/alice",
        "owntracks//phone",
        "owntracks/alice/phone/unknown",
        "gps/radio-007/location",
        "",
    ],
)
def test_unknown_topic_is_a_dead_letter(topic):
    reason = only_error(decode({"ts": T_S, "lat": 52.6366, "lon": -1.1339}, topic=topic))

    assert reason == (
        f"topic {topic!r} is neither patrol/<device_id>/location nor owntracks/<user>/<device>"
    )


def test_empty_array_is_a_dead_letter():
    assert only_error(decode([])) == "payload is an empty array"


def test_every_bad_element_of_an_array_is_reported_with_its_number():
    backlog = [
        {"ts": T_S, "lat": 0, "lon": 0},
        {"ts": T_S - 10, "lat": 52.6366, "lon": -1.1339},
        {"lat": 52.6366, "lon": -1.1339},
        "junk",
    ]

    decoded = decode(backlog)

    assert [p.t_us for p in decoded.pings] == [T_US - 10_000_000]
    assert decoded.errors == [
        "element 1: position (0, 0) is a GPS fix failure, not a location",
        "element 3: missing timestamp",
        "element 4: expected a JSON object with ts, lat, lon",
    ]


def test_device_id_from_a_topic_that_is_too_long_is_rejected():
    topic = f"patrol/{'x' * 200}/location"

    reason = only_error(decode({"ts": T_S, "lat": 52.6366, "lon": -1.1339}, topic=topic))

    assert reason.startswith("device_id 'xxxx")
    assert "too long" in reason
