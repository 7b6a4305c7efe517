"""The embedded amqtt broker: its lifecycle, and the MQTT behaviour the ingester meets on it.

Each test waits on events with a timeout instead of sleeping. Where a test shows that something
does *not* arrive, it publishes a sentinel afterwards and waits for it: messages to one client
are delivered in order, so once the sentinel is in, anything that was coming would be too.
"""

import gc
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from tracker.mqtt.broker import EMBEDDED_BROKER_MQTT_VERSIONS, EmbeddedBroker, free_tcp_port

TIMEOUT_S = 5.0
SENTINEL = b"sentinel"
PAHO_PROTOCOLS = {"3.1": mqtt.MQTTv31, "3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}


@pytest.fixture
def broker():
    with EmbeddedBroker() as running:
        yield running


def unique_client_id(role: str) -> str:
    return f"test-{role}-{uuid.uuid4().hex[:8]}"


def can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S):
            return True
    except ConnectionRefusedError:
        return False


def broker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("embedded-mqtt-broker")]


class Subscriber:
    """A paho 2 client (network loop in a thread) that records what it receives."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        client_id: str,
        topic_filters: tuple[str, ...],
        *,
        clean_session: bool,
        protocol: int = mqtt.MQTTv311,
    ) -> None:
        self.topic_filters = topic_filters
        self.messages: list[mqtt.MQTTMessage] = []
        self.connect_reason: ReasonCode | None = None
        self.session_present: bool | None = None
        self.connack_received = threading.Event()
        # Set by a CONNACK or by the connection closing, whichever the broker answers with.
        self.answered = threading.Event()
        self.subscribed = threading.Event()
        self._received = threading.Condition()
        options = {} if protocol == mqtt.MQTTv5 else {"clean_session": clean_session}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            # Tests reconnect explicitly; paho's own retry would only delay loop_stop() by ~1 s.
            reconnect_on_failure=False,
            **options,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *_: self.answered.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connect_reason = reason_code
        self.session_present = flags.session_present
        self.connack_received.set()
        self.answered.set()
        # Subscribing here, as the ingester does, re-subscribes after every reconnect.
        if self.topic_filters and not reason_code.is_failure:
            client.subscribe([(topic_filter, 1) for topic_filter in self.topic_filters])

    def _on_message(self, client, userdata, message) -> None:
        with self._received:
            self.messages.append(message)
            self._received.notify_all()

    def wait_subscribed(self) -> "Subscriber":
        assert self.subscribed.wait(TIMEOUT_S), "no SUBACK"
        return self

    def wait_for_payload(self, payload: bytes) -> list[bytes]:
        """Return every payload received up to and including ``payload``."""
        with self._received:
            arrived = self._received.wait_for(
                lambda: any(m.payload == payload for m in self.messages), TIMEOUT_S
            )
            payloads = [m.payload for m in self.messages]
        assert arrived, f"{payload!r} did not arrive; got {payloads!r}"
        return payloads

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(broker: EmbeddedBroker, topic: str, *payloads: bytes, retain: bool = False) -> None:
    """Publish at QoS 1 and return once the broker has acknowledged every message."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique_client_id("publisher"))
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(TIMEOUT_S)
            assert info.is_published(), f"no PUBACK for {payload!r}"
    finally:
        client.disconnect()
        client.loop_stop()


def test_start_stop_twice_on_the_same_port():
    port = free_tcp_port()
    broker = EmbeddedBroker(port)
    for _ in range(2):
        broker.start()
        assert broker.is_running
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        assert can_connect(port)
        broker.stop()
        assert not broker.is_running
        assert not can_connect(port)
        assert broker_threads() == []


def test_port_zero_picks_a_free_port_and_context_manager_stops():
    with EmbeddedBroker() as broker:
        assert broker.port > 0
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert can_connect(broker.port)
    assert not broker.is_running
    assert broker_threads() == []


def test_client_hanging_up_before_connect_leaves_no_open_socket(broker):
    assert can_connect(broker.port)  # connects and hangs up without an MQTT CONNECT
    # The probe must not break the broker for real clients...
    publish(broker, "patrol/unit-7/location", b"still serving")
    broker.stop()
    # ...and nothing of it may be left open: an unclosed socket warns here (warnings are errors).
    gc.collect()


def test_start_on_a_taken_port_raises_a_clear_error():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        broker = EmbeddedBroker(squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match=re.escape("could not listen on mqtt://127.0.0.1:")):
            broker.start()
    assert not broker.is_running
    assert broker_threads() == []


@pytest.mark.parametrize("version", sorted(PAHO_PROTOCOLS))
def test_only_the_documented_mqtt_versions_are_accepted(broker, version):
    client = Subscriber(
        broker,
        unique_client_id("version"),
        (),
        clean_session=True,
        protocol=PAHO_PROTOCOLS[version],
    )
    try:
        # A refused client hears either a CONNACK with a failure code or just a closed socket.
        assert client.answered.wait(TIMEOUT_S)
    finally:
        # loop_stop() also ends paho's automatic reconnect attempts after a refusal.
        client.close()
    accepted = client.connect_reason is not None and not client.connect_reason.is_failure
    assert accepted == (version in EMBEDDED_BROKER_MQTT_VERSIONS)


def test_v5_client_is_refused_with_unsupported_protocol_version(broker):
    client = Subscriber(
        broker, unique_client_id("v5"), (), clean_session=True, protocol=mqtt.MQTTv5
    )
    try:
        assert client.connack_received.wait(TIMEOUT_S)
    finally:
        client.close()
    # amqtt answers with a 3.1.1 CONNACK, return code 1; paho 2 reports it as v5 reason 0x84.
    assert client.connect_reason == "Unsupported protocol version"
    assert client.connect_reason.value == 0x84
    assert not client.client.is_connected()


def test_qos1_round_trip(broker):
    subscriber = Subscriber(
        broker, unique_client_id("round-trip"), ("patrol/+/location",), clean_session=True
    ).wait_subscribed()
    try:
        publish(broker, "patrol/unit-7/location", b'{"lat": 1.0}')
        assert subscriber.wait_for_payload(b'{"lat": 1.0}') == [b'{"lat": 1.0}']
        [message] = subscriber.messages
        assert message.topic == "patrol/unit-7/location"
        assert message.qos == 1
    finally:
        subscriber.close()


@pytest.mark.parametrize(
    ("clean_session", "expected_backlog"),
    [(False, [b"ping-1", b"ping-2", b"ping-3"]), (True, [])],
    ids=["persistent-session", "clean-session"],
)
def test_qos1_messages_published_while_offline(broker, clean_session, expected_backlog):
    client_id = unique_client_id("ingester")
    first = Subscriber(broker, client_id, ("patrol/#",), clean_session=clean_session)
    first.wait_subscribed()
    first.close()

    publish(broker, "patrol/unit-7/location", b"ping-1", b"ping-2", b"ping-3")

    again = Subscriber(broker, client_id, ("patrol/#",), clean_session=clean_session)
    try:
        again.wait_subscribed()
        assert again.session_present is (not clean_session)
        publish(broker, "patrol/unit-7/location", SENTINEL)
        assert again.wait_for_payload(SENTINEL) == [*expected_backlog, SENTINEL]
    finally:
        again.close()


def test_retained_message_reaches_a_later_subscriber(broker):
    publish(broker, "patrol/unit-7/status", b"on duty", retain=True)
    subscriber = Subscriber(
        broker, unique_client_id("late"), ("patrol/+/status",), clean_session=True
    )
    try:
        assert subscriber.wait_for_payload(b"on duty") == [b"on duty"]
        assert subscriber.messages[0].retain
    finally:
        subscriber.close()


def test_shared_subscription_is_granted_but_never_matches(broker):
    subscriber = Subscriber(
        broker,
        unique_client_id("shared"),
        ("$share/ingesters/patrol/+/location", "control/#"),
        clean_session=True,
    ).wait_subscribed()
    try:
        publish(broker, "patrol/unit-7/location", b"for the share group")
        publish(broker, "control/done", SENTINEL)
        assert subscriber.wait_for_payload(SENTINEL) == [SENTINEL]
    finally:
        subscriber.close()


CRASHING_INGESTER = textwrap.dedent(
    """
    import sys
    import paho.mqtt.client as mqtt

    port, client_id = int(sys.argv[1]), sys.argv[2]

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe("patrol/#", qos=1)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
    )
    client.manual_ack_set(True)  # never acknowledged: killed before its "commit"
    client.on_connect = on_connect
    client.on_subscribe = lambda *_: print("subscribed", flush=True)
    client.on_message = lambda c, u, message: print("received", flush=True)
    client.connect("127.0.0.1", port)
    client.loop_forever()
    """
)


def read_line(process: subprocess.Popen) -> str:
    """Return the next line the child prints, failing rather than hanging if it stays silent."""
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT_S)
    assert ready, "the child printed nothing"
    return process.stdout.readline().strip()


def test_unacknowledged_qos1_message_is_not_redelivered_after_kill_9(broker):
    """amqtt forgets an in-flight QoS 1 message when its receiver dies (Mosquitto resends it)."""
    client_id = unique_client_id("crashing")
    ingester = subprocess.Popen(
        [sys.executable, "-c", CRASHING_INGESTER, str(broker.port), client_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert read_line(ingester) == "subscribed"
        publish(broker, "patrol/unit-7/location", b"in flight")
        assert read_line(ingester) == "received"
    finally:
        ingester.send_signal(signal.SIGKILL)
        ingester.wait(TIMEOUT_S)
        ingester.stdout.close()

    restarted = Subscriber(broker, client_id, ("patrol/#",), clean_session=False)
    try:
        restarted.wait_subscribed()
        assert restarted.session_present
        publish(broker, "patrol/unit-7/location", SENTINEL)
        assert restarted.wait_for_payload(SENTINEL) == [SENTINEL]
    finally:
        restarted.close()
