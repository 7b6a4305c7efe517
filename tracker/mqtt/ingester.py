"""The MQTT ingester (DESIGN section 4): paho-mqtt 2, QoS 1, acknowledged after commit.

paho's network thread only queues messages; the ingester's own thread commits them in
batches and then acknowledges each one (manual acks), so a crash at any moment leaves
every unacknowledged message with the broker for redelivery, and redelivery is harmless
because pings are unique by (device, timestamp).
"""

from __future__ import annotations

import gc
import logging
import queue
import signal
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tracker.dosage import DosageParams
from tracker.ingest import BatchOutcome, Message, store_messages
from tracker.payloads import Limits
from tracker.recompute import rebuild_device_days, rebuild_hot_spot_days
from tracker.store import hot_spot_fingerprint, purge_pings, stored_hot_spots

log = logging.getLogger("tracker.ingest")

PURGE_EVERY_S = 3600
PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
INBOX_BATCHES = 8
RECOMPUTE_SHARE = 0.25  # the most of the ingest thread's time that dosage passes may take
RECOMPUTE_MAX_DEFER = 15  # while backlogged, a pass at least every this many intervals
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython: 700)
MAX_RECEIVE_MAXIMUM = 65535  # the largest value MQTT v5 allows


def receive_maximum(batch_size: int) -> int:
    """Return the MQTT v5 Receive Maximum the ingester asks for: what its inbox holds.

    Messages stay unacknowledged until their batch commits, so the broker must be allowed
    to have at least a batch or two in flight. Without this property Mosquitto 2 keeps its
    max_inflight_messages (20 by default) in flight, and every batch would stop at 20
    messages and wait flush_s for more that cannot come (about 100 messages/s).
    """
    return max(1, min(MAX_RECEIVE_MAXIMUM, batch_size * INBOX_BATCHES))


@dataclass(frozen=True)
class BrokerAddress:
    """Where and how to connect: parsed from mqtt://[user:pass@]host:port or mqtts://."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT URL {url!r} must look like mqtt://host:1883 or mqtts://host:8883")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class IngestConfig:
    broker: BrokerAddress
    client_id: str
    topics: Sequence[str]
    protocol: str = "5"
    shared_group: str = ""
    ca_file: str = ""
    session_expiry_s: int = 7 * 24 * 3600
    batch_size: int = 500
    flush_s: float = 0.2
    log_every_s: float = 10.0
    recompute_every_s: float = 2.0
    limits: Limits = field(default_factory=Limits)

    def subscriptions(self) -> list[str]:
        """Return the topic filters, as shared subscriptions when a group is set."""
        if self.shared_group and self.protocol != "5":
            raise ValueError("shared subscriptions ($share/...) need an MQTT v5 broker such as "
                             "Mosquitto 2; the embedded broker speaks MQTT 3.1.1 only")
        if self.shared_group:
            return [f"$share/{self.shared_group}/{topic}" for topic in self.topics]
        return list(self.topics)


@dataclass
class _Stats(BatchOutcome):
    """Batch outcomes added up over a time window, with the worst arrival-to-commit lag."""

    max_lag_s: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def add(self, outcome: BatchOutcome, lag_s: float) -> None:
        for name in ("messages", "pings", "dead_letters", "ignored"):
            setattr(self, name, getattr(self, name) + getattr(outcome, name))
        self.max_lag_s = max(self.max_lag_s, lag_s)


class Ingester:
    """Subscribe, commit in batches, acknowledge after commit, and keep dosage current."""

    def __init__(self, config: IngestConfig, factory: sessionmaker[Session],
                 params: DosageParams) -> None:
        self.config = config
        self.factory = factory
        self.params = params
        # Bounded: when the database falls behind, paho's thread blocks here and the
        # broker, not this process, holds the backlog.
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue(
            maxsize=config.batch_size * INBOX_BATCHES)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.totals = _Stats()
        self._next_purge = 0.0
        self._pending_subscriptions: dict[int, list[str]] = {}
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        config = self.config
        v5 = config.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=PROTOCOLS[config.protocol],
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if config.broker.username:
            client.username_pw_set(config.broker.username, config.broker.password)
        if config.broker.tls:
            client.tls_set(ca_certs=config.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.config.broker, reason_code)
            return
        resumed = getattr(flags, "session_present", False)
        log.info("connected to %s as %s (session %s)", self.config.broker,
                 self.config.client_id, "resumed" if resumed else "new")
        # Subscribing here re-subscribes after every reconnect.
        filters = self.config.subscriptions()
        if self.config.protocol == "5":
            _result, mid = client.subscribe([(t, SubscribeOptions(qos=1)) for t in filters])
        else:
            _result, mid = client.subscribe([(t, 1) for t in filters])
        self._pending_subscriptions[mid] = filters
        self._connected.set()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        # A refused filter (an ACL, a broker without shared subscriptions) would otherwise
        # leave the ingester connected and silently receiving nothing.
        filters = self._pending_subscriptions.pop(mid, [])
        for topic, reason_code in zip(filters, reason_codes, strict=False):
            if reason_code.is_failure:
                log.error("broker %s refused the subscription to %s: %s", self.config.broker,
                          topic, reason_code)
            else:
                log.info("subscribed to %s (QoS %d)", topic, reason_code.value)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.config.broker,
                        reason_code)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        while not self._stop.is_set():
            try:
                self._inbox.put(message, timeout=0.5)
                return
            except queue.Full:
                continue

    # the ingester's own thread ---------------------------------------------------------

    def connect(self) -> None:
        """Start connecting (paho retries with backoff in its thread)."""
        config = self.config
        properties = None
        if config.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = config.session_expiry_s
            properties.ReceiveMaximum = receive_maximum(config.batch_size)
        kwargs = {"clean_start": False, "properties": properties} if config.protocol == "5" else {}
        self.client.connect_async(config.broker.host, config.broker.port, keepalive=30, **kwargs)
        self.client.loop_start()

    def stop(self, *_args) -> None:
        """Ask the loop to finish its current batch, acknowledge it and return."""
        self._stop.set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def run(self) -> int:
        """Ingest until stopped; return the process exit code."""
        self.connect()
        next_log = time.monotonic() + self.config.log_every_s
        next_recompute = time.monotonic() + self.config.recompute_every_s
        last_recompute = time.monotonic()
        window = _Stats()
        hot_spots = self._hot_spots()  # (fingerprint, set), refreshed by _recompute
        # Each message makes a dozen short-lived objects in paho alone, and each default
        # young collection (every 700 allocations) that promotes the queued ones brings the
        # next full collection nearer, which walks every object of the process (libraries,
        # hot spots: well over 100,000). At 5,000 messages/s that was 29% of the CPU time.
        # So: what is loaded by now lives as long as the process and is frozen out of the
        # collector's reach, and young collections run every GC_YOUNG_THRESHOLD allocations
        # (2.2 s instead of 6.1 s of collection per 100,000 messages; BENCHMARKS.md).
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
        try:
            while not self._stop.is_set():
                batch = self._next_batch()
                if batch:
                    outcome = self._commit(batch)
                    if outcome is None:
                        break  # stopped while the database was unavailable
                    # paho stamps each message with time.monotonic() on arrival.
                    lag_s = time.monotonic() - min(m.timestamp for m in batch)
                    window.add(outcome, lag_s)
                    self.totals.add(outcome, lag_s)
                now = time.monotonic()
                if now >= next_recompute and (now >= last_recompute + self._max_defer_s
                                              or not self._backlogged()):
                    hot_spots = self._recompute(hot_spots)
                    next_recompute = self._next_recompute(now)
                    last_recompute = time.monotonic()
                if now >= next_log:
                    self._log_status(window)
                    window = _Stats()
                    next_log = now + self.config.log_every_s
            # Whatever paho already queued is committed and acknowledged before leaving.
            while batch := self._drain():
                outcome = self._commit(batch)
                if outcome is None:
                    break
                self.totals.add(outcome, time.monotonic() - min(m.timestamp for m in batch))
            self._recompute(hot_spots)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self._log_status(self.totals, final=True)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        return 0

    @property
    def _max_defer_s(self) -> float:
        return self.config.recompute_every_s * RECOMPUTE_MAX_DEFER

    def _backlogged(self) -> bool:
        """Whether a full batch is already waiting: ingest is behind the broker.

        Dosage passes then wait (up to recompute_every_s * RECOMPUTE_MAX_DEFER after the
        last one), so that a burst is acknowledged as fast as it can be committed and the
        broker's queue for this client stays short; the queued device-days are rebuilt
        once the burst is over. At a rate the ingester keeps up with, a batch is never
        waiting and passes keep their interval.
        """
        return self._inbox.qsize() >= self.config.batch_size

    def _next_recompute(self, started: float) -> float:
        """When the next dosage pass may start, given when the last one started.

        The interval counts from the end of a pass, and a pass may take at most
        RECOMPUTE_SHARE of this thread's time: a pass slower than the interval (many
        queued device-days during a burst, on a busy machine) would otherwise run after
        every batch and cut ingest to one batch per pass, while unacknowledged messages
        pile up at the broker. Passes that take less than
        recompute_every_s * RECOMPUTE_SHARE / (1 - RECOMPUTE_SHARE) keep the configured
        interval exactly.
        """
        finished = time.monotonic()
        took = finished - started
        return finished + max(self.config.recompute_every_s,
                              took * (1 - RECOMPUTE_SHARE) / RECOMPUTE_SHARE)

    def _next_batch(self) -> list[mqtt.MQTTMessage]:
        try:
            first = self._inbox.get(timeout=self.config.flush_s)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.flush_s
        while len(batch) < self.config.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _drain(self) -> list[mqtt.MQTTMessage]:
        batch = []
        while len(batch) < self.config.batch_size:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, batch: list[mqtt.MQTTMessage]) -> BatchOutcome | None:
        """Store the batch in one transaction, then acknowledge it; retry on database errors."""
        messages = [Message(m.topic, m.payload, m) for m in batch]
        delay_s = 0.5
        while True:
            try:
                with self.factory.begin() as session:
                    outcome = store_messages(session, messages, self.params,
                                             self.config.limits, time.time_ns() // 1000)
                break
            except SQLAlchemyError as exc:
                # Not acknowledged: the broker keeps the messages until a commit succeeds.
                log.error("database error, batch of %d not acknowledged, retrying in %.1f s: %s",
                          len(batch), delay_s, exc)
                if self._stop.wait(delay_s):
                    return None
                delay_s = min(delay_s * 2, 30)
        for message in batch:
            if message.qos > 0:
                self.client.ack(message.mid, message.qos)
        return outcome

    def _hot_spots(self, cached: tuple | None = None) -> tuple:
        """Return (fingerprint, hot spot set), reloading only when the stored set changed."""
        with self.factory() as session:
            fingerprint = hot_spot_fingerprint(session)
            if cached is not None and cached[0] == fingerprint:
                return cached
            return fingerprint, stored_hot_spots(session)

    def _recompute(self, cached: tuple) -> tuple:
        """One bounded pass over pending dosage, so ingest never stalls behind a rebuild."""
        try:
            cached = self._hot_spots(cached)
            hot_spots = cached[1]
            with self.factory.begin() as session:
                rebuild_device_days(session, hot_spots, self.params, limit=200)
            with self.factory.begin() as session:
                rebuild_hot_spot_days(session, self.params, limit=200)
            retention_days = self.config.limits.max_age_days
            if retention_days and time.monotonic() >= self._next_purge:
                with self.factory.begin() as session:
                    purged = purge_pings(session, retention_days, self.params)
                log.info("purged %d pings older than %d days", purged, retention_days)
                self._next_purge = time.monotonic() + PURGE_EVERY_S
        except SQLAlchemyError as exc:
            log.error("dosage recompute failed, will retry: %s", exc)
        return cached

    def _log_status(self, stats: _Stats, final: bool = False) -> None:
        elapsed = max(time.monotonic() - stats.since, 1e-9)
        log.info(
            "%s%d msgs (%.0f/s), %d pings, %d dead letters, %d ignored, max lag %.2f s, "
            "inbox %d",
            "final: " if final else "", stats.messages, stats.messages / elapsed, stats.pings,
            stats.dead_letters, stats.ignored, stats.max_lag_s, self._inbox.qsize(),
        )


def install_signal_handlers(ingester: Ingester) -> None:
    """SIGTERM and SIGINT finish the current batch, acknowledge it and exit 0."""
    signal.signal(signal.SIGTERM, ingester.stop)
    signal.signal(signal.SIGINT, ingester.stop)
