"""The ingester's Prometheus metrics and its health checks, served on `--metrics-port`.

`/metrics` (Prometheus text format), `/healthz` (liveness: the process answers and its
writer is alive) and `/readyz` (readiness: connected to the broker and the database
answering). The receiving process counts what passes through it; the figures that come
from the database (queue depths, ping ages) are read by the writer process, which holds
the database, and sent here (tracker.mqtt.writer). Names and alerts: docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

log = logging.getLogger("tracker.ingest")

# Seconds; a commit of 500 pings takes 20-60 ms on the benchmark machine (BENCHMARKS.md).
COMMIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Seconds from a message's arrival to its acknowledgement; the alert is at 60 s.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports: ready only when both are true."""

    broker_connected: bool
    database_reachable: bool

    @property
    def ready(self) -> bool:
        return self.broker_connected and self.database_reachable


class _DatabaseFigures:
    """A collector of the latest figures the writer read from the database: samples of
    (gauge name, help, label name, label value, value), tracker.dosage.monitoring."""

    def __init__(self) -> None:
        self._samples: list[tuple[str, str, str, str, float]] = []

    def update(self, samples: Iterable[tuple[str, str, str, str, float]]) -> None:
        self._samples = list(samples)  # replaced whole: a scrape sees one set or the other

    def collect(self):
        families: dict[str, GaugeMetricFamily] = {}
        for name, help_text, label_name, label, value in self._samples:
            if name not in families:
                families[name] = GaugeMetricFamily(name, help_text, labels=[label_name])
            families[name].add_metric([label], value)
        yield from families.values()


class IngestMetrics:
    """The metrics of one ingester (its own registry, so tests may make several)."""

    def __init__(
        self,
        inbox_size: Callable[[], float],
        oldest_unacknowledged_s: Callable[[], float],
        readiness: Callable[[], Readiness],
        alive: Callable[[], bool],
    ) -> None:
        self.registry = registry = CollectorRegistry()
        self.readiness = readiness
        self.alive = alive
        self.received = Counter(
            "tracker_ingest_messages_received",
            "Messages received from the broker and taken into a batch.",
            registry=registry,
        )
        self.committed = Counter(
            "tracker_ingest_messages_committed",
            "Messages committed to the database and acknowledged to the broker.",
            registry=registry,
        )
        self.pings = Counter(
            "tracker_ingest_pings_stored",
            "Valid pings written (a redelivered ping counts again; the table keeps it once).",
            registry=registry,
        )
        self.dead_letters = Counter(
            "tracker_ingest_dead_letters",
            "Dead letters stored, by class of reason (docs/ingest.md).",
            ["reason"],
            registry=registry,
        )
        self.ignored = Counter(
            "tracker_ingest_messages_ignored",
            "OwnTracks messages that carry no position (acknowledged, not stored).",
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "tracker_ingest_batch_commit_seconds",
            "Time to store and commit one batch in the database.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.ack_lag_seconds = Histogram(
            "tracker_ingest_ack_lag_seconds",
            "From the arrival of a batch's first message to the batch's acknowledgement.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        Gauge(
            "tracker_ingest_oldest_unacknowledged_seconds",
            "Age of the oldest message received and not yet acknowledged (0 when none).",
            registry=registry,
        ).set_function(oldest_unacknowledged_s)
        Gauge(
            "tracker_ingest_inbox_messages",
            "Messages received and not yet sent to the writer.",
            registry=registry,
        ).set_function(inbox_size)
        Gauge(
            "tracker_ingest_broker_connected", "1 while connected to the broker.", registry=registry
        ).set_function(lambda: float(readiness().broker_connected))
        Gauge(
            "tracker_ingest_database_reachable",
            "1 while the writer's last database operation succeeded.",
            registry=registry,
        ).set_function(lambda: float(readiness().database_reachable))
        self.shards = Gauge(
            "tracker_ingest_shards",
            "N for ingester K of N (--shard K, TRACKER_MQTT_SHARDS); 0 when not sharded.",
            registry=registry,
        )
        self.device_topics = Gauge(
            "tracker_ingest_device_topics",
            "Topic filters of this shard's devices subscribed to (0 when not sharded).",
            registry=registry,
        )
        self.figures = _DatabaseFigures()
        registry.register(self.figures)

    def record_batch(self, counts: dict, lag_s: float) -> None:
        """Count a batch the writer committed, as its reply reports it."""
        self.committed.inc(counts["messages"])
        self.pings.inc(counts["pings"])
        self.ignored.inc(counts["ignored"])
        for reason, number in counts.get("reasons", {}).items():
            self.dead_letters.labels(reason).inc(number)
        self.commit_seconds.observe(counts.get("commit_s", 0.0))
        self.ack_lag_seconds.observe(lag_s)

    def serve(self, address: str, port: int) -> MetricsServer:
        """Start answering /metrics, /healthz and /readyz in a thread of their own."""
        return MetricsServer(self, address, port)


class MetricsServer:
    """A small HTTP server (the standard library's) for one ingester's metrics and health."""

    def __init__(self, metrics: IngestMetrics, address: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = generate_latest(metrics.registry)
                    self._answer(200, CONTENT_TYPE_LATEST, body)
                elif path == "/healthz":
                    ok = metrics.alive()
                    self._answer(200 if ok else 503, "text/plain", b"ok\n" if ok else b"dead\n")
                elif path == "/readyz":
                    state = metrics.readiness()
                    body = {
                        "broker": "connected" if state.broker_connected else "disconnected",
                        "database": "reachable" if state.database_reachable else "unreachable",
                    }
                    self._answer(
                        200 if state.ready else 503,
                        "application/json",
                        json.dumps(body).encode() + b"\n",
                    )
                else:
                    self._answer(404, "text/plain", b"not found\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass  # a scrape every 15 s would fill the ingester's log

        self._http = ThreadingHTTPServer((address, port), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (and /healthz, /readyz)", address, self.port)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)
