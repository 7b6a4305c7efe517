"""The MQTT ingester (docs/ingest.md): paho-mqtt 2, QoS 1, acknowledged after commit.

This process receives: paho's network thread queues each message, the main thread sends
them in batches to the writer process (`tracker.mqtt.writer`), and a third thread
acknowledges each message (manual acks) once the writer says its batch has committed. So
a crash of either process at any moment leaves every unacknowledged message with the
broker for redelivery, and redelivery is harmless because pings are unique by (device,
timestamp). This module imports only what receiving needs, to keep the process small.

What is held here is bounded in bytes as well as in messages. A message over a limit (a
payload over TRACKER_MAX_PAYLOAD_BYTES, a topic longer than any device's) can only become a
dead letter, so paho's thread keeps only what the dead letter keeps (the first bytes and
the sizes) and lets go of the rest before the callback returns; the dead letter is then
committed and acknowledged like any other message.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tracker.foundation import settings
from tracker.mqtt.metrics import IngestMetrics, MetricsServer, Readiness
from tracker.mqtt.shards import Shard, shard_filters

log = logging.getLogger("tracker.ingest")

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
INBOX_BATCHES = 8
WRITER_BATCHES = 2  # batches sent to the writer and not yet answered: one committing, one next
WRITER_START_S = 120.0  # opening the database may wait for a migration lock, not forever
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython: 700)
MAX_RECEIVE_MAXIMUM = 65535  # the largest value MQTT v5 allows
# Received and not yet sent to the writer: at most this many bytes of topics and payloads
# (and at most Receive Maximum messages). Without it, 4,000 messages just under the 256 KB
# payload limit would hold 1 GB here.
INBOX_BYTES = 8 * 1024 * 1024
# A batch ends at batch_size messages or once it holds this many bytes, so that the batches
# the writer holds (WRITER_BATCHES) stay small however large the messages.
BATCH_BYTES = 2 * 1024 * 1024
# A message over a limit is cut to what its dead letter keeps: the first DEAD_LETTER_BYTES of
# its payload (tracker.dosage.store.MAX_DEAD_LETTER_PAYLOAD) and the first MAX_TOPIC_LENGTH
# characters of its topic (tracker.dosage.ingest.MAX_TOPIC_LENGTH, more than any device's
# topic). Repeated rather than imported, which would bring the database libraries into this
# process; tests/mqtt/test_oversized_messages.py checks that they agree.
DEAD_LETTER_BYTES = 2048
MAX_TOPIC_LENGTH = 256
# Topic filters per SUBSCRIBE packet: a shard of thousands of devices is subscribed in
# several packets, each well under any broker's packet size limit.
SUBSCRIBE_CHUNK = 500


class WriterError(RuntimeError):
    """The writer process could not start (its message says why) or stopped unexpectedly."""


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """Keep the garbage collector's cost per message small for a long-running loop.

    Each message makes a dozen short-lived objects (in paho alone), and each default young
    collection (every 700 allocations) that promotes the queued ones brings the next full
    collection nearer, which walks every object of the process (libraries, hot spots). At
    5,000 messages/s that was 29% of the CPU time (BENCHMARKS.md). So what is loaded by now
    lives as long as the process and is frozen out of the collector's reach, and young
    collections run every GC_YOUNG_THRESHOLD allocations.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


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
            raise ValueError(
                f"MQTT URL {url!r} must look like mqtt://host:1883 or mqtts://host:8883"
            )
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
    shard: Shard | None = None  # subscribe by name to this shard's devices' topics
    drop_other_shards: bool = False  # and unsubscribe from every other shard's (after a change)
    ca_file: str = ""
    session_expiry_s: int = 7 * 24 * 3600
    batch_size: int = 500
    flush_s: float = 0.2
    log_every_s: float = 10.0
    recompute_every_s: float = 2.0
    db_url: str | None = None  # None: TRACKER_DATABASE_URL, then embedded SQLite
    metrics_port: int = 0  # 0: no metrics server
    metrics_address: str = "127.0.0.1"
    # Checked here, before a message is queued; the writer is given the same limit.
    max_payload_bytes: int = field(
        default_factory=lambda: settings.get("TRACKER_MAX_PAYLOAD_BYTES")
    )

    def subscriptions(self) -> list[str]:
        """Return the topic filters, as shared subscriptions when a group is set.

        Empty when sharded: the shard's filters follow the devices table (`shard_filters`).
        """
        if self.shared_group and self.shard:
            raise ValueError(
                "a shard (--shard, TRACKER_MQTT_SHARDS) and a shared group (--shared-group, "
                "TRACKER_MQTT_SHARED_GROUP) exclude each other: set one of them"
            )
        if self.shared_group and self.protocol != "5":
            raise ValueError(
                "shared subscriptions ($share/...) need an MQTT v5 broker such as "
                "Mosquitto 2; the embedded broker speaks MQTT 3.1.1 only"
            )
        if self.shard:
            return []
        if self.shared_group:
            return [f"$share/{self.shared_group}/{topic}" for topic in self.topics]
        return list(self.topics)


@dataclass
class _Stats:
    """Batch outcomes added up over a time window, with the worst arrival-to-commit lag."""

    messages: int = 0
    pings: int = 0
    dead_letters: int = 0
    ignored: int = 0
    max_lag_s: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def add(self, counts: dict, lag_s: float) -> None:
        for name in ("messages", "pings", "dead_letters", "ignored"):
            setattr(self, name, getattr(self, name) + counts[name])
        self.max_lag_s = max(self.max_lag_s, lag_s)


def cut_short(topic: str, payload: bytes) -> tuple[str, bytes, int | None, int | None]:
    """Return the record of a message over a limit: all that its dead letter needs.

    (first MAX_TOPIC_LENGTH characters of the topic, first DEAD_LETTER_BYTES of the payload,
    the payload's size if it was cut or None, the topic's length if it was cut or None); the
    writer turns it into a `tracker.dosage.ingest.Message` cut short. Nothing in it refers to
    the payload received, which is freed when paho's callback returns.
    """
    return (
        topic[:MAX_TOPIC_LENGTH],
        bytes(payload[:DEAD_LETTER_BYTES]),
        len(payload) if len(payload) > DEAD_LETTER_BYTES else None,
        len(topic) if len(topic) > MAX_TOPIC_LENGTH else None,
    )


class _Inbox:
    """Messages received and not yet sent to the writer, bounded in number and in bytes.

    paho's network thread puts, the main thread gets. An item is (mid, qos, record, arrival,
    size): `record` is what goes to the writer, (topic, payload) or a `cut_short` record, and
    `size` its bytes. When the inbox is full, paho's thread waits and the broker, not this
    process, holds the backlog. An empty inbox takes one message whatever its size.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: deque[tuple] = deque()
        self._bytes = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)

    def __len__(self) -> int:
        return len(self._items)

    def _has_room(self, size: int) -> bool:
        items = self._items
        return not items or (len(items) < self._max_items and self._bytes + size <= self._max_bytes)

    def put(self, item: tuple, timeout: float) -> bool:
        """Add an item, waiting up to `timeout` seconds for room; return whether it was added."""
        size = item[4]
        with self._not_full:
            if not self._has_room(size) and not self._not_full.wait_for(
                lambda: self._has_room(size), timeout
            ):
                return False
            self._items.append(item)
            self._bytes += size
            self._not_empty.notify()
        return True

    def oldest_arrival(self) -> float | None:
        """The arrival (time.monotonic()) of the oldest item, or None when empty."""
        with self._not_empty:
            return self._items[0][3] if self._items else None

    def get(self, timeout: float = 0.0) -> tuple | None:
        """Take the oldest item, waiting up to `timeout` seconds for one; None if none came."""
        with self._not_empty:
            if not self._items and (
                timeout <= 0 or not self._not_empty.wait_for(lambda: self._items, timeout)
            ):
                return None
            item = self._items.popleft()
            self._bytes -= item[4]
            self._not_full.notify()
        return item


@dataclass(frozen=True)
class _SentBatch:
    """A batch the writer has not answered yet: what to acknowledge, and its first arrival."""

    acks: list[tuple[int, int]]  # (mid, qos) of each message
    first_arrival: float  # time.monotonic(), as paho stamps each message on arrival


class _WriterProcess:
    """The writer process (`python -m tracker.mqtt.writer`) and the pipes to and from it."""

    def __init__(self, config: IngestConfig) -> None:
        # Three pipes, inherited by descriptor: batches in, replies out, and a stop request
        # (which the writer also reads as EOF if this process dies). A plain subprocess
        # rather than multiprocessing, whose "spawn" adds a resource tracker process and
        # re-imports the parent's __main__.
        batches_in, batches = os.pipe()
        replies, replies_out = os.pipe()
        stop_in, stop = os.pipe()
        inherited = (batches_in, replies_out, stop_in)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(settings.PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        try:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "tracker.mqtt.writer", *map(str, inherited)],
                pass_fds=inherited,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            # Only the writer holds its ends now, so each side reads EOF when the other goes.
            for fd in inherited:
                os.close(fd)
        self._batches = Connection(batches, readable=False)
        self.replies = Connection(replies, writable=False)
        self._stop = Connection(stop, readable=False)
        self._stopping = False
        try:
            # Through the pipe, not the command line: the URL may hold a database password.
            self._batches.send(
                {
                    "db_url": config.db_url,
                    "log_level": log.getEffectiveLevel(),
                    "recompute_every_s": config.recompute_every_s,
                    "max_payload_bytes": config.max_payload_bytes,
                    "devices": config.shard is not None,  # send the device ids, for the shard
                }
            )
            reply = self.replies.recv() if self.replies.poll(WRITER_START_S) else ("silent",)
        except (EOFError, OSError):
            reply = ("exited",)
        if reply[0] != "ready":
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            if reply[0] == "error":
                raise WriterError(reply[1])
            if reply[0] == "exited":
                raise WriterError(
                    f"the writer process ended (exit code "
                    f"{self.process.returncode}) before it was ready"
                )
            raise WriterError(f"the writer process was not ready within {WRITER_START_S:.0f} s")

    def send(self, batch: list[tuple]) -> None:
        self._batches.send(batch)

    def stop(self) -> None:
        """Tell the writer to give up batches that wait for the database to come back."""
        if not self._stopping:
            self._stopping = True
            with contextlib.suppress(OSError):
                self._stop.send(True)

    def finish(self) -> None:
        """Tell the writer that no more batches come; it answers ("finished",) and exits."""
        self._batches.send(None)
        self.process.wait()


class Ingester:
    """Subscribe, commit in batches (in the writer), acknowledge after commit."""

    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        # Bounded: when the database falls behind, paho's thread blocks here and the
        # broker, not this process, holds the backlog.
        self._inbox = _Inbox(config.batch_size * INBOX_BATCHES, INBOX_BYTES)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._sent: deque[_SentBatch] = deque()
        self._slots = threading.Semaphore(WRITER_BATCHES)
        self._stats_lock = threading.Lock()
        self.totals = _Stats()
        self._window = _Stats()
        self._writer_failed = False
        self._database_reachable = True  # the writer says when this changes
        self._pending_subscriptions: dict[int, list[str]] = {}
        self._pending_unsubscriptions: dict[int, list[str]] = {}
        # Held from sending a (UN)SUBSCRIBE until its filters are noted, so that an
        # acknowledgement that comes back first (paho's thread) still finds them.
        self._pending_lock = threading.Lock()
        # What to subscribe to on every connection: the configured filters, or when sharded
        # the shard's devices' topics, which the writer's device lists update (from the
        # acknowledging thread, while paho's thread may be connecting: hence the lock).
        self._filters_lock = threading.Lock()
        self._filters: list[str] = config.subscriptions()
        # Filters to unsubscribe from on every connection: those of devices gone from the
        # table, and with drop_other_shards those of every other shard's devices.
        self._dropped: set[str] = set()
        self._subscribing = False  # connected, so a change of filters is sent at once
        self._unusable: set[str] = set()  # device ids already logged as unusable
        self._said_empty = False  # "no device in this shard" said once
        self.client = self._make_client()
        self.metrics = IngestMetrics(
            lambda: len(self._inbox),
            self.oldest_unacknowledged_s,
            self.readiness,
            alive=lambda: not self._writer_failed,
        )
        self.metrics.shards.set(config.shard.count if config.shard else 0)

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
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    # paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.config.broker, reason_code)
            return
        resumed = getattr(flags, "session_present", False)
        log.info(
            "connected to %s as %s (session %s)",
            self.config.broker,
            self.config.client_id,
            "resumed" if resumed else "new",
        )
        # Subscribing here re-subscribes after every reconnect.
        with self._filters_lock:
            filters, dropped = list(self._filters), sorted(self._dropped)
            self._subscribing = True
        if filters:
            self._subscribe(filters)
        if dropped:
            self._unsubscribe(dropped)
        self._connected.set()

    def _subscribe(self, filters: list[str]) -> None:
        qos = SubscribeOptions(qos=1) if self.config.protocol == "5" else 1
        self._in_packets(
            filters,
            lambda chunk: self.client.subscribe([(t, qos) for t in chunk]),
            self._pending_subscriptions,
        )

    def _unsubscribe(self, filters: list[str]) -> None:
        self._in_packets(filters, self.client.unsubscribe, self._pending_unsubscriptions)

    def _in_packets(self, filters: list[str], send, pending: dict[int, list[str]]) -> None:
        """(Un)subscribe SUBSCRIBE_CHUNK filters per packet (a shard may have thousands),
        each packet's filters noted under its mid before its acknowledgement can come back.

        Not connected (paho refuses), nothing is sent: the next connection sends them all.
        """
        for start in range(0, len(filters), SUBSCRIBE_CHUNK):
            chunk = filters[start : start + SUBSCRIBE_CHUNK]
            with self._pending_lock:
                result, mid = send(chunk)
                if result != mqtt.MQTT_ERR_SUCCESS:
                    return
                pending[mid] = chunk

    def update_devices(self, device_ids: list[str]) -> None:
        """Follow the devices table (sharded): subscribe to new devices' topics, drop gone ones.

        A device of another shard is never unsubscribed from unless asked (drop_other_shards):
        after a change of the number of shards its new ingester may not have subscribed yet,
        and a message published in between would be lost. Until then it reaches both.
        """
        shard = self.config.shard
        filters, unusable = shard_filters(device_ids, self.config.topics, shard)
        others: set[str] = set()
        if self.config.drop_other_shards:
            everyone, _unusable = shard_filters(device_ids, self.config.topics, Shard(1, 1))
            others = set(everyone).difference(filters)
        with self._filters_lock:
            before = set(self._filters)
            added = [f for f in filters if f not in before]
            removed = sorted(before.difference(filters))
            to_drop = sorted(others.union(removed).difference(self._dropped))
            self._filters = filters
            self._dropped = self._dropped.union(removed, others).difference(filters)
            subscribing = self._subscribing
        for device_id in sorted(set(unusable) - self._unusable):
            log.warning(
                "shard %s: device id %r cannot be a topic; not subscribed", shard, device_id
            )
        self._unusable.update(unusable)
        self.metrics.device_topics.set(len(filters))
        if added or removed:
            log.info(
                "shard %s: %d topic filters for its devices (%d new, %d removed)",
                shard,
                len(filters),
                len(added),
                len(removed),
            )
        elif not filters and not self._said_empty:
            log.warning(
                "shard %s: no device of the devices table is in this shard; its devices' "
                "topics are subscribed to once `tracker devices load` adds them",
                shard,
            )
        self._said_empty = not filters
        if subscribing:
            if added:
                self._subscribe(added)
            if to_drop:
                self._unsubscribe(to_drop)

    def _on_connect_fail(self, _client, _userdata) -> None:
        # paho retries on its own and says why only at debug level; a broker that cannot
        # be reached (down, wrong address, a TLS certificate refused) must show in the log.
        # paho calls this while it handles the error, so the error is still at hand.
        error = sys.exc_info()[1]
        log.warning(
            "cannot connect to %s (%s); retrying", self.config.broker, error or "connection failed"
        )

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        # A refused filter (an ACL, a broker without shared subscriptions) would otherwise
        # leave the ingester connected and silently receiving nothing.
        with self._pending_lock:
            filters = self._pending_subscriptions.pop(mid, [])
        granted = []
        for topic, reason_code in zip(filters, reason_codes, strict=False):
            if reason_code.is_failure:
                log.error(
                    "broker %s refused the subscription to %s: %s",
                    self.config.broker,
                    topic,
                    reason_code,
                )
            else:
                granted.append((topic, reason_code.value))
        if self.config.shard and granted:  # a shard's devices: one line, not one per device
            log.info(
                "subscribed to %d topic filters, %s to %s (QoS %s)",
                len(granted),
                granted[0][0],
                granted[-1][0],
                "/".join(str(q) for q in sorted({q for _t, q in granted})),
            )
        else:
            for topic, qos in granted:
                log.info("subscribed to %s (QoS %d)", topic, qos)

    def _on_unsubscribe(self, _client, _userdata, mid, _reason_codes, _properties) -> None:
        with self._pending_lock:
            filters = self._pending_unsubscriptions.pop(mid, [])
        # "No subscription existed" is no failure: a filter dropped on every connection.
        log.info("unsubscribed from %d topic filters", len(filters))

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        with self._filters_lock:
            self._subscribing = False
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.config.broker, reason_code)

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        # Only what is needed is kept: a paho message with its MQTT v5 properties is
        # several KB, and up to Receive Maximum of them wait here.
        topic, payload = message.topic, message.payload
        if len(payload) <= self.config.max_payload_bytes and len(topic) <= MAX_TOPIC_LENGTH:
            record: tuple = (topic, payload)
        else:
            # Over a limit, it can only become a dead letter: only what that keeps is kept,
            # however large the message (twenty of 10 MB, queued and sent whole, once took
            # this process and the writer past 500 MB).
            record = cut_short(topic, payload)
            if len(topic) > MAX_TOPIC_LENGTH:
                # paho matches every topic against its filtered callbacks with a closure
                # that refers to itself (paho.mqtt.matcher.MQTTMatcher.iter_match), a
                # reference cycle that keeps the topic's levels until the next collection of
                # young objects: with GC_YOUNG_THRESHOLD, hundreds of messages later. A flood
                # of 60 KB topics piled up 90 MB of them here; collecting now frees them.
                gc.collect(0)
        item = (
            message.mid,
            message.qos,
            record,
            message.timestamp,
            len(record[0]) + len(record[1]),
        )
        while not self._stop.is_set():
            if self._inbox.put(item, timeout=0.5):
                return

    # the receiving process's own threads ----------------------------------------------

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
        """Ask the loop to finish its current batches, acknowledge them and return."""
        self._stop.set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def readiness(self) -> Readiness:
        """Connected to the broker, and the database answering the writer."""
        return Readiness(
            self._connected.is_set(), self._database_reachable and not self._writer_failed
        )

    def oldest_unacknowledged_s(self) -> float:
        """How long the oldest message received and not yet acknowledged has waited."""
        arrivals = []
        with contextlib.suppress(IndexError):  # the acknowledging thread may empty it now
            arrivals.append(self._sent[0].first_arrival)
        if (arrival := self._inbox.oldest_arrival()) is not None:
            arrivals.append(arrival)
        return max(0.0, time.monotonic() - min(arrivals)) if arrivals else 0.0

    def run(self) -> int:
        """Ingest until stopped; return the process exit code.

        Raises WriterError, before connecting to the broker, if the writer process cannot
        open the database.
        """
        writer = _WriterProcess(self.config)
        server: MetricsServer | None = None
        if self.config.metrics_port:
            try:
                server = self.metrics.serve(self.config.metrics_address, self.config.metrics_port)
            except OSError as exc:
                writer.finish()
                raise WriterError(
                    f"cannot serve metrics on {self.config.metrics_address}:"
                    f"{self.config.metrics_port}: {exc}"
                ) from None
        self.connect()
        acknowledger = threading.Thread(
            target=self._acknowledge, args=(writer,), name="acknowledge", daemon=True
        )
        acknowledger.start()
        next_log = time.monotonic() + self.config.log_every_s
        try:
            with quiet_collector():
                while not self._stop.is_set():
                    if batch := self._next_batch():
                        self.metrics.received.inc(len(batch))
                        self._send(writer, batch)
                    if time.monotonic() >= next_log:
                        self._log_status(self._take_window())
                        next_log = time.monotonic() + self.config.log_every_s
                # A batch still waiting for the database is given up, not acknowledged.
                writer.stop()
                # Whatever paho already queued is committed and acknowledged before leaving.
                while not self._writer_failed and (batch := self._drain()):
                    self._send(writer, batch)
                if not self._writer_failed:
                    writer.finish()
                    acknowledger.join()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if server is not None:
                server.close()
            self._log_status(self.totals, final=True)
        return 1 if self._writer_failed else 0

    def _next_batch(self) -> list[tuple]:
        first = self._inbox.get(timeout=self.config.flush_s)
        if first is None:
            return []
        batch, size = [first], first[4]
        deadline = time.monotonic() + self.config.flush_s
        while len(batch) < self.config.batch_size and size < BATCH_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = self._inbox.get(timeout=remaining)
            if item is None:
                break
            batch.append(item)
            size += item[4]
        return batch

    def _drain(self) -> list[tuple]:
        batch, size = [], 0
        while len(batch) < self.config.batch_size and size < BATCH_BYTES:
            item = self._inbox.get()
            if item is None:
                break
            batch.append(item)
            size += item[4]
        return batch

    def _send(self, writer: _WriterProcess, batch: list[tuple]) -> None:
        """Hand a batch to the writer once it has room (at most WRITER_BATCHES unanswered)."""
        while not self._slots.acquire(timeout=0.5):
            if self._writer_failed:
                return
            if self._stop.is_set():
                # Asked to stop while the writer waits for the database: it gives up the
                # batches it holds (unacknowledged, so the broker keeps them) and makes room.
                writer.stop()
        self._sent.append(
            _SentBatch([(mid, qos) for mid, qos, *_ in batch], min(item[3] for item in batch))
        )
        with contextlib.suppress(OSError):  # the writer has gone: the acknowledger says so
            writer.send([record for _mid, _qos, record, _at, _size in batch])

    def _acknowledge(self, writer: _WriterProcess) -> None:
        """Acknowledge each batch's messages when the writer reports it committed."""
        while True:
            try:
                reply = writer.replies.recv()
            except EOFError:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    writer.process.wait(5)
                log.error(
                    "the writer process ended unexpectedly (exit code %s); nothing more "
                    "is acknowledged, the broker keeps the rest",
                    writer.process.returncode,
                )
                self._writer_failed = True
                self._stop.set()
                return
            if reply[0] == "finished":
                return
            if reply[0] == "figures":
                self.metrics.figures.update(reply[1])
                continue
            if reply[0] == "database":
                self._database_reachable = reply[1]
                continue
            if reply[0] == "devices":
                if self.config.shard:
                    self.update_devices(reply[1])
                continue
            batch = self._sent.popleft()
            if reply[0] == "stored":
                for mid, qos in batch.acks:
                    if qos > 0:
                        self.client.ack(mid, qos)
                lag_s = time.monotonic() - batch.first_arrival
                with self._stats_lock:
                    self.totals.add(reply[1], lag_s)
                    self._window.add(reply[1], lag_s)
                self.metrics.record_batch(reply[1], lag_s)
            self._slots.release()

    def _take_window(self) -> _Stats:
        with self._stats_lock:
            window, self._window = self._window, _Stats()
        return window

    def _log_status(self, stats: _Stats, final: bool = False) -> None:
        elapsed = max(time.monotonic() - stats.since, 1e-9)
        log.info(
            "%s%d msgs (%.0f/s), %d pings, %d dead letters, %d ignored, max lag %.2f s, inbox %d",
            "final: " if final else "",
            stats.messages,
            stats.messages / elapsed,
            stats.pings,
            stats.dead_letters,
            stats.ignored,
            stats.max_lag_s,
            len(self._inbox),
        )


def install_signal_handlers(ingester: Ingester) -> None:
    """SIGTERM and SIGINT finish the current batch, acknowledge it and exit 0."""
    signal.signal(signal.SIGTERM, ingester.stop)
    signal.signal(signal.SIGINT, ingester.stop)
