"""Benchmark of the MQTT ingester (issue 3, item 7): rate, losses and memory, end to end.

    .venv/bin/python bench/bench_ingest.py [--messages 200000] [--devices 500] [--runs 3]

It generates (fixed seed, vectorised) --messages native JSON pings from --devices devices
patrolling around Leicester, one ping per message on `patrol/<device>/location`, unique by
(device, ts), in fleet time order. Then, in each of --runs runs, it publishes them at full
speed with QoS 1 from --publishers separate publisher processes and measures three
consumers, one after the other, each already connected and subscribed (a persistent MQTT v5
session) before the first publish:

  (a) a counting subscriber: a plain paho 2 client with the ingester's client settings
      (MQTT v5, QoS 1 subscription, clean start off, session expiry, manual acks, the same
      Receive Maximum) that acknowledges each message as soon as it arrives and only
      counts; the baseline;
  (b) the real ingester, `ingest_mqtt.py --mqtt-url ... --db sqlite:///... --client-id ...`,
      as a subprocess with default settings (TRACKER_* variables are left out of its
      environment) into a fresh SQLite file holding the 25 demo hot spots, so that it also
      keeps dosage current as in production;
  (c) the same into a fresh private schema of PostgreSQL (dropped afterwards).

Rate = messages / (last commit-and-ack - first publish), on the wall clock shared by the
processes: "first publish" is the earliest time a publisher process started publishing;
"last commit-and-ack" is, for (a), when the subscriber acknowledged its last message, and
for (b) and (c), the first poll (every --poll-s) that sees all the pings committed in the
database (the ingester acknowledges a batch right after its commit, in the same thread).
That every message was acknowledged is then checked: the consumer is stopped (SIGTERM for
the ingester, which drains, commits and acknowledges what it holds and logs its totals) and
its session is resumed by a checking client, which must receive nothing (the broker
redelivers every unacknowledged message on resume); the check also deletes the session.
The pings table must hold exactly --messages rows and no dead letters.

Peak memory is the ingester's peak RSS: the kernel's high-water mark (VmHWM in
/proc/<pid>/status), read every 50 ms until the process exits, so at most the last 50 ms of
its shutdown escape it, added up over the process and its descendants (the ingester is a
receiving and a writing process), which is at least the peak of their total. CPU is user +
system time (wait4, which counts the writer too, since the receiver waits for it).

By default the benchmark starts a private Mosquitto (the one installed) on a free loopback
port with `max_queued_messages 0` (no cap on the per-client queue), because Mosquitto's
default of 1000 queued messages drops QoS 1 messages for a subscriber that falls more than
Receive Maximum + 1000 messages behind a full-speed publisher; everything else is the
default configuration. --mqtt-url uses an existing broker instead (then each consumer
subscribes to the --devices topics of its own run by name, so other traffic is ignored).

--backlog measures draining instead: each consumer connects and subscribes, disconnects
(its session stays), the publishers publish everything, and the consumer is started again;
the rate is messages / (last commit-and-ack - that start), start-up included, and memory and
CPU are those of the second process. This takes the publishers out of the measurement.

Other options: --consumers picks a subset (and "batched" adds a diagnostic: the counting
subscriber with the ingester's threading, paho's thread queueing and a second thread taking
batches and acknowledging them); --batch sets TRACKER_INGEST_BATCH; --no-hot-spots leaves
the ingester's database without hot spots; --ingester-root runs ingest_mqtt.py from another
checkout (to compare versions); --ingester-wrapper starts it under a command that execs it
(e.g. `taskset -c 1`); --json writes every figure.

It prints a Markdown table, every run, and the machine and library versions. Publishers
keep at most PUBLISH_WINDOW messages unacknowledged: paho numbers outgoing messages 1..65535
and silently overwrites its own queue beyond that.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402

SEED = 20251126
LEICESTER_LAT, LEICESTER_LON = 52.6369, -1.1398
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LEICESTER_LAT))
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEMO_GEOJSON = ROOT / "geofences" / "leicestershire_demo.geojson"
SESSION_EXPIRY_S = 3600
PUBLISH_WINDOW = 10_000
STALL_S = 60.0  # give up when nothing more arrives for this long after publishing ended
TARGET_RATIO = 0.5
TARGET_RSS_MB = 200.0


# --- data -----------------------------------------------------------------------------------


def generate_payloads(
    messages: int, devices: int, seed: int = SEED
) -> tuple[np.ndarray, list[bytes]]:
    """Return (device index per message, JSON payload per message), in fleet time order.

    Each device starts somewhere within 3 km of Leicester's centre and alternates, in
    stretches of about 20 pings, between lingering (a few metres of drift), walking
    (1.4 m/s) and, now and then, driving (10 m/s), with a heading that turns gradually;
    one fix every 15-30 s; GPS jitter of about half the reported accuracy (5-35 m, 2% at
    150 m). Timestamps are ISO-8601 UTC ('Z'), whole seconds, ending a minute ago, so a
    device's timestamps are strictly increasing (at least 15 s apart).
    """
    rng = np.random.default_rng(seed)
    per_device = np.full(devices, messages // devices)
    per_device[: messages % devices] += 1
    device = np.repeat(np.arange(devices), per_device)
    first = np.r_[0, np.cumsum(per_device)[:-1]]
    # Time: cumulative 15-30 s intervals per device (the first one is the device's offset).
    dt = rng.uniform(15.0, 30.0, messages)
    t = np.cumsum(dt)
    t -= np.repeat(t[first] - dt[first], per_device)
    # Motion: stretches of lingering / walking / driving, heading drifting.
    stretch_start = rng.random(messages) < 1 / 20
    stretch_start[first] = True
    stretch = np.cumsum(stretch_start) - 1
    mode = rng.choice(3, size=stretch[-1] + 1, p=[0.45, 0.5, 0.05])[stretch]
    speed_ms = np.choose(mode, [rng.uniform(0.0, 0.15, messages), 1.4, 10.0])
    heading = np.cumsum(rng.normal(0.0, 0.6, messages))
    heading -= np.repeat(heading[first] - rng.uniform(0, 2 * np.pi, devices), per_device)
    step = speed_ms * dt
    step[first] = 0.0
    dx, dy = np.cumsum(step * np.sin(heading)), np.cumsum(step * np.cos(heading))
    dx -= np.repeat(dx[first], per_device)
    dy -= np.repeat(dy[first], per_device)
    r = 3000.0 * np.sqrt(rng.random(devices))
    a = rng.uniform(0, 2 * np.pi, devices)
    x = np.repeat(r * np.sin(a), per_device) + dx
    y = np.repeat(r * np.cos(a), per_device) + dy
    acc = rng.choice([5.0, 8.0, 12.0, 20.0, 35.0], messages)
    acc[rng.random(messages) < 0.02] = 150.0
    x += rng.normal(0.0, acc / 2)
    y += rng.normal(0.0, acc / 2)
    lat = np.round(LEICESTER_LAT + y / M_PER_DEG_LAT, 6)
    lon = np.round(LEICESTER_LON + x / M_PER_DEG_LON, 6)
    moving_kmh = speed_ms * 3.6 * rng.uniform(0.8, 1.2, messages)
    speed_kmh = np.round(np.where(mode == 0, 0.0, moving_kmh), 1)
    heading_deg = np.round(np.degrees(heading) % 360, 0)
    # Whole seconds, the last ping a minute ago: never in the future for the ingester.
    end = int(time.time()) - 60
    ts = end - int(np.ceil(t.max())) + np.floor(t).astype(np.int64)
    order = np.lexsort((device, ts))
    stamps = np.array(ts, dtype="datetime64[s]").astype(str)
    payloads = [
        f'{{"ts":"{stamps[i]}Z","lat":{lat[i]:.6f},"lon":{lon[i]:.6f},"acc":{acc[i]:g},'
        f'"speed":{speed_kmh[i]:g},"heading":{heading_deg[i]:g}}}'.encode()
        for i in order.tolist()
    ]
    return device[order], payloads


def device_ids(devices: int, tag: str) -> list[str]:
    return [f"bench{tag}-{n:03d}" for n in range(1, devices + 1)]


# --- child processes: publisher and counting subscriber -------------------------------------


def _paho():
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    return mqtt, PacketTypes, Properties


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def publisher_main(path: str, host: str, port: int) -> None:
    """Publish every `topic<TAB>payload` line of `path` at QoS 1 once told 'go' on stdin."""
    mqtt, PacketTypes, Properties = _paho()
    with open(path, "rb") as handle:
        items = [line.rstrip(b"\n").split(b"\t", 1) for line in handle]
    items = [(topic.decode(), payload) for topic, payload in items]
    n = len(items)
    done = threading.Event()
    acked = [0]
    # paho numbers outgoing messages 1..65535 and keys its queue by that number, so more
    # than 65,535 unacknowledged messages overwrite each other and are silently lost: keep
    # at most PUBLISH_WINDOW outstanding (the broker only lets 20 be in flight anyway).
    window = threading.BoundedSemaphore(PUBLISH_WINDOW)

    def on_publish(_client, _userdata, _mid, _reason_code, _properties) -> None:
        acked[0] += 1
        window.release()
        if acked[0] == n:
            done.set()

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"benchpub-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv5,
    )
    client.on_publish = on_publish
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0
    client.connect(host, port, keepalive=60, clean_start=True, properties=properties)
    client.loop_start()
    _emit({"ready": True, "messages": n})
    sys.stdin.readline()
    first = time.time()
    for topic, payload in items:
        window.acquire()
        client.publish(topic, payload, qos=1)
    sent = time.time()
    complete = done.wait(STALL_S * 10)
    _emit(
        {
            "first": first,
            "sent": sent,
            "acked": time.time() if complete else float("nan"),
            "messages": n,
            "broker_acks": acked[0],
        }
    )
    client.disconnect()
    client.loop_stop()


def subscriber_main(
    host: str,
    port: int,
    client_id: str,
    filters: list[str],
    expected: int,
    receive_maximum: int,
    batch_size: int = 0,
) -> None:
    """Count messages, acknowledging each at once; report when `expected` have arrived.

    With batch_size, paho's thread only queues the messages and the main thread takes
    them in batches and acknowledges them, like the ingester minus decoding and storing.
    """
    mqtt, PacketTypes, Properties = _paho()
    from paho.mqtt.subscribeoptions import SubscribeOptions

    subscribed = threading.Event()
    counts = {"messages": 0, "dup": 0}
    inbox: queue.Queue = queue.Queue(maxsize=max(batch_size, 1) * 8)

    def count(message) -> None:
        counts["messages"] += 1
        counts["dup"] += message.dup
        if counts["messages"] == expected:
            _emit({"done": time.time(), **counts})

    def on_message(client, _userdata, message) -> None:
        if batch_size:
            inbox.put(message)
            return
        client.ack(message.mid, message.qos)
        count(message)

    def batches() -> None:
        while True:
            batch = [inbox.get()]
            deadline = time.monotonic() + 0.2
            while len(batch) < batch_size:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.005)
            for message in batch:
                client.ack(message.mid, message.qos)
                count(message)

    def on_connect(client, _userdata, _flags, _reason_code, _properties) -> None:
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    if receive_maximum:
        properties.ReceiveMaximum = receive_maximum
    client.connect(host, port, keepalive=30, clean_start=False, properties=properties)
    client.loop_start()
    if batch_size:
        threading.Thread(target=batches, daemon=True).start()
    subscribed.wait()
    _emit({"ready": True})
    sys.stdin.readline()  # 'stop'
    client.disconnect()
    client.loop_stop()
    _emit({"final": True, **counts})


# --- the parent: broker, databases, scenarios ----------------------------------------------------


class Child:
    """A child process whose stdout (JSON lines) and stderr (lines) are read by threads."""

    def __init__(self, argv: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: queue.Queue[dict] = queue.Queue()
        self.stderr: list[str] = []
        self.rusage = None
        self.vm_hwm_kb = 0
        self.thread_cpu_s: dict[str, float] = {}
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        threading.Thread(target=self._sample_memory, daemon=True).start()

    def _sample_memory(self) -> None:
        # VmHWM is the kernel's high-water mark of a process's RSS since its exec. (wait4's
        # ru_maxrss is no use here: it also counts the parent's RSS at the fork.) The
        # ingester is two processes (receiver and writer): the figure is the sum of the
        # high-water marks of the process and of every descendant seen, which is at least
        # the peak of their total.
        root = self.proc.pid
        ticks = os.sysconf("SC_CLK_TCK")
        hwm_kb: dict[int, int] = {}
        task_cpu: dict[tuple[int, int], float] = {}
        from tests.servers import descendants as living_descendants

        descendants: list[int] = []
        next_scan = 0.0
        while self.proc.returncode is None:
            # Walking all of /proc every 50 ms would cost the measured processes CPU; a
            # process found late loses nothing, as VmHWM and CPU times are cumulative.
            if time.monotonic() >= next_scan:
                descendants = living_descendants(root)
                next_scan = time.monotonic() + 1.0
            for pid in [root, *descendants]:
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            hwm_kb[pid] = max(hwm_kb.get(pid, 0), int(line.split()[1]))
                    # CPU seconds per thread; a thread that has ended keeps its last reading.
                    for task in Path(f"/proc/{pid}/task").iterdir():
                        stat = (task / "stat").read_text()
                        fields = stat[stat.rindex(")") + 2 :].split()
                        task_cpu[pid, int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
                except (OSError, ValueError, IndexError):
                    if pid == root and not Path(f"/proc/{root}").exists():
                        return
            self.vm_hwm_kb = sum(hwm_kb.values())
            # The root's main thread, its other threads by CPU time (for the ingester and the
            # subscriber the busiest is paho's network thread), then each child process.
            others = sorted(
                (cpu for (pid, tid), cpu in task_cpu.items() if pid == root and tid != root),
                reverse=True,
            )
            children = sorted({pid for pid, _tid in task_cpu} - {root})
            self.thread_cpu_s = {
                "main": task_cpu.get((root, root), 0.0),
                **{f"other {n}": cpu for n, cpu in enumerate(others, start=1) if cpu},
                **{
                    f"child process {n}": sum(cpu for (p, _t), cpu in task_cpu.items() if p == pid)
                    for n, pid in enumerate(children, start=1)
                },
            }
            time.sleep(0.05)

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.records.put(json.loads(line))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def record(self, timeout: float | None = None) -> dict:
        return self.records.get(timeout=timeout)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def exited(self) -> bool:
        """Whether the process has ended (without reaping it: wait() wants its rusage)."""
        return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def wait(self, timeout: float = 120.0) -> int:
        """Wait for the exit and keep its rusage (peak RSS and CPU time of the child)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.rusage = rusage
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return self.proc.returncode
            if time.monotonic() > deadline:
                self.proc.kill()
                deadline = time.monotonic() + 10
            time.sleep(0.02)

    @property
    def peak_rss_mb(self) -> float:
        return self.vm_hwm_kb / 1024 if self.vm_hwm_kb else float("nan")

    @property
    def cpu_s(self) -> float:
        return self.rusage.ru_utime + self.rusage.ru_stime if self.rusage else float("nan")


def mosquitto_version() -> str:
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].replace("mosquitto version ", "")


def resume_and_clear(host: str, port: int, client_id: str, wait_s: float = 2.0) -> int:
    """Resume a session, return how many messages the broker redelivers, delete the session."""
    mqtt, PacketTypes, Properties = _paho()
    got = [0]
    connected = threading.Event()
    present = [None]

    def on_connect(_client, _userdata, flags, _reason_code, _properties) -> None:
        present[0] = flags.session_present
        connected.set()

    def on_message(client, _userdata, message) -> None:
        got[0] += 1
        client.ack(message.mid, message.qos)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.on_connect = on_connect
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 0  # the session ends with this connection
    client.connect(host, port, keepalive=30, clean_start=False, properties=properties)
    client.loop_start()
    connected.wait(10)
    time.sleep(wait_s)
    client.disconnect()
    client.loop_stop()
    if not present[0]:
        raise RuntimeError(f"session of {client_id} was not present when resumed")
    return got[0]


@dataclass
class Database:
    kind: str
    url: str
    cleanup: callable = None

    def count(self, engine, what: str = "count(*)", table: str = "pings") -> int:
        from sqlalchemy import text

        with engine.connect() as connection:
            return connection.execute(text(f"SELECT {what} FROM {table}")).scalar() or 0


def make_database(kind: str, workdir: Path, pg_url: str, hot_spots: bool) -> Database:
    from sqlalchemy import text

    from tracker.dosage.engine import DosageParams
    from tracker.dosage.geofence import load_hot_spots
    from tracker.dosage.recompute import replace_hot_spots
    from tracker.foundation.database import make_engine, session_factory, upgrade

    cleanup = None
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
    else:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = make_engine(pg_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"

        def cleanup() -> None:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

    engine = make_engine(url)
    upgrade(engine)
    if hot_spots:
        with session_factory(engine).begin() as session:
            replace_hot_spots(session, load_hot_spots(DEMO_GEOJSON), DosageParams())
    engine.dispose()
    return Database(kind, url, cleanup)


@dataclass
class Result:
    consumer: str
    messages: int
    first: float = float("nan")
    end: float = float("nan")
    publish_acked: float = float("nan")
    received: int = 0
    stored: int = 0
    dead_letters: int = 0
    redelivered: int = -1
    peak_rss_mb: float = float("nan")
    cpu_s: float = float("nan")
    load: tuple = ()
    final_log: str = ""
    thread_cpu_s: dict = field(default_factory=dict)
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)
    backlog_published: float = float("nan")  # --backlog: seconds the publishers took

    @property
    def seconds(self) -> float:
        return self.end - self.first

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def publish_seconds(self) -> float:
        backlog = self.backlog_published
        return backlog if backlog == backlog else self.publish_acked - self.first

    @property
    def publish_rate(self) -> float:
        return self.messages / self.publish_seconds

    @property
    def lost(self) -> int:
        counted = self.consumer in ("subscriber", "batched")
        return self.messages - (self.received if counted else self.stored)


class Scenario:
    """One consumer against one fresh set of topics, fed by the publisher processes."""

    def __init__(
        self,
        args,
        workdir: Path,
        host: str,
        port: int,
        device_of: np.ndarray,
        payloads: list[bytes],
    ) -> None:
        self.args, self.workdir, self.host, self.port = args, workdir, host, port
        self.tag = uuid.uuid4().hex[:8]
        self.devices = device_ids(args.devices, self.tag)
        self.n = len(payloads)
        # Each publisher owns every P-th device and keeps the fleet's time order.
        self.files = []
        for p in range(args.publishers):
            path = workdir / f"pub-{self.tag}-{p}.tsv"
            with open(path, "wb") as handle:
                for d, payload in zip(device_of.tolist(), payloads, strict=True):
                    if d % args.publishers == p:
                        topic = f"patrol/{self.devices[d]}/location\t".encode()
                        handle.write(topic + payload + b"\n")
            self.files.append(path)
        # On a private broker the default filter is enough; on a shared one, only ours.
        self.filters = (
            ["patrol/+/location"]
            if args.mqtt_url is None
            else [f"patrol/{d}/location" for d in self.devices]
        )

    def start_publishers(self) -> list[Child]:
        publishers = [
            Child(
                [
                    sys.executable,
                    __file__,
                    "--publisher",
                    str(path),
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ]
            )
            for path in self.files
        ]
        for publisher in publishers:
            publisher.record(timeout=120)  # ready
        return publishers

    def finish_publishers(self, publishers: list[Child], result: Result) -> None:
        reports = [p.record(timeout=None) for p in publishers]
        for publisher in publishers:
            publisher.wait()
        result.first = min(r["first"] for r in reports)
        result.publish_acked = max(r["acked"] for r in reports)

    def publish_backlog(self, result: Result) -> None:
        """--backlog: publish everything while the consumer's session has no connection."""
        publishers = self.start_publishers()
        for publisher in publishers:
            publisher.send("go")
        self.finish_publishers(publishers, result)
        result.backlog_published = result.publish_acked - result.first

    def run_subscriber(self, batched: bool = False) -> Result:
        result = Result("batched" if batched else "subscriber", self.n)
        client_id = f"benchsub-{self.tag}"
        batch = (self.args.batch or self.args.ingester_batch) if batched else 0

        def start() -> Child:
            return Child(
                [
                    sys.executable,
                    __file__,
                    "--subscriber",
                    client_id,
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--expected",
                    str(self.n),
                    "--receive-maximum",
                    str(self.args.receive_maximum),
                    "--batch",
                    str(batch),
                    *self.filters,
                ]
            )

        sub = start()
        sub.record(timeout=60)  # subscribed
        if self.args.backlog:
            sub.send("stop")
            sub.record(timeout=60)
            sub.wait()
            self.publish_backlog(result)
            load_before = os.getloadavg()
            result.first = time.time()
            sub = start()
            sub.record(timeout=60)  # subscribed (again), while the backlog flows in
        else:
            load_before = os.getloadavg()
            publishers = self.start_publishers()
            for publisher in publishers:
                publisher.send("go")
            self.finish_publishers(publishers, result)
        try:
            done = sub.record(timeout=STALL_S)
            result.end = done["done"]
        except queue.Empty:
            result.notes.append("not every message arrived")
        result.load = (load_before, os.getloadavg())
        sub.send("stop")
        final = sub.record(timeout=60)
        result.received = final["messages"]
        result.exit_code = sub.wait()
        result.peak_rss_mb, result.cpu_s = sub.peak_rss_mb, sub.cpu_s
        result.thread_cpu_s = sub.thread_cpu_s
        result.redelivered = resume_and_clear(self.host, self.port, client_id)
        return result

    def run_ingester(self, kind: str) -> Result:
        from tracker.foundation.database import make_engine

        args = self.args
        result = Result(kind, self.n)
        db = make_database(kind, self.workdir, args.pg_url, not args.no_hot_spots)
        engine = make_engine(db.url)
        client_id = f"benchingest-{self.tag}"
        root = Path(args.ingester_root).resolve()
        argv = [
            sys.executable,
            str(root / "ingest_mqtt.py"),
            "--mqtt-url",
            f"mqtt://{self.host}:{self.port}",
            "--db",
            db.url,
            "--client-id",
            client_id,
        ]
        if args.mqtt_url is not None:
            argv += [arg for f in self.filters for arg in ("--topic", f)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        if args.batch:
            env["TRACKER_INGEST_BATCH"] = str(args.batch)
        env["PYTHONPATH"] = str(root)
        if args.ingester_wrapper:
            argv = [*args.ingester_wrapper.split(), *argv]
        ingester = Child(argv, cwd=root, env=env)
        try:
            deadline = time.monotonic() + 60
            while sum("subscribed to" in line for line in ingester.stderr) < len(self.filters):
                if ingester.exited() or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the ingester did not subscribe:\n" + "\n".join(ingester.stderr)
                    )
                time.sleep(0.05)
            if args.backlog:
                ingester.proc.send_signal(signal.SIGTERM)
                ingester.wait()
                self.publish_backlog(result)
                load_before = os.getloadavg()
                result.first = time.time()
                ingester = Child(argv, cwd=root, env=env)
                waiter = threading.Thread(target=lambda: None)
            else:
                load_before = os.getloadavg()
                publishers = self.start_publishers()
                for publisher in publishers:
                    publisher.send("go")
                waiter = threading.Thread(target=self.finish_publishers, args=(publishers, result))
            waiter.start()
            # The last commit: the first poll that sees every ping (max(id) is cheap; the
            # count confirms it, ids can have gaps on PostgreSQL).
            last_change, last_seen = time.monotonic(), -1
            while True:
                top = db.count(engine, "max(id)")
                if top >= self.n:
                    stored = db.count(engine)
                    if stored >= self.n:
                        result.end = time.time()
                        break
                if top != last_seen:
                    last_seen, last_change = top, time.monotonic()
                elif not waiter.is_alive() and time.monotonic() - last_change > STALL_S:
                    result.notes.append("not every ping was committed")
                    break
                time.sleep(args.poll_s)
            waiter.join()
            result.load = (load_before, os.getloadavg())
        finally:
            ingester.proc.send_signal(signal.SIGTERM)
            result.exit_code = ingester.wait()
        result.peak_rss_mb, result.cpu_s = ingester.peak_rss_mb, ingester.cpu_s
        result.thread_cpu_s = ingester.thread_cpu_s
        finals = [line for line in ingester.stderr if "final:" in line]
        result.final_log = finals[-1].split(" tracker.ingest ", 1)[-1] if finals else ""
        if finals:
            result.received = int(result.final_log.split("final: ", 1)[1].split(" msgs", 1)[0])
        errors = [line for line in ingester.stderr if "error" in line.lower()]
        result.notes.extend(errors[:3])
        result.stored = db.count(engine)
        result.dead_letters = db.count(engine, table="dead_letters")
        engine.dispose()
        result.redelivered = resume_and_clear(self.host, self.port, client_id)
        if db.cleanup:
            db.cleanup()
        else:
            Path(db.url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        for path in self.files:
            path.unlink(missing_ok=True)
        return result


# --- reporting --------------------------------------------------------------------------------


def ingest_machine_info(args, broker: str) -> list[tuple[str, str]]:
    """The shared machine description, then the broker and database servers."""
    info = [
        *machine_info("paho-mqtt", "SQLAlchemy", "psycopg"),
        ("Broker", f"Mosquitto {mosquitto_version()} ({broker})"),
    ]
    try:
        from sqlalchemy import text

        from tracker.foundation.database import make_engine

        engine = make_engine(args.pg_url)
        with engine.connect() as connection:
            info.append(("PostgreSQL", connection.execute(text("SHOW server_version")).scalar()))
        engine.dispose()
    except Exception as exc:  # only informative
        info.append(("PostgreSQL", f"unavailable ({exc.__class__.__name__})"))
    info.append(("SQLite", sqlite3.sqlite_version))
    return info


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def summarise(results: list[dict[str, Result]], consumers: list[str], backlog: bool) -> str:
    labels = {
        "subscriber": "(a) counting subscriber (baseline)",
        "batched": "(a') counting subscriber, batched acks (diagnostic)",
        "sqlite": "(b) ingester -> SQLite",
        "postgresql": "(c) ingester -> PostgreSQL",
    }
    span = "Consumer start" if backlog else "First publish"
    lines = [
        f"| Consumer | Rate (msg/s) | Ratio to (a) | {span} -> last commit+ack (s) "
        "| Publishers' QoS 1 rate (msg/s) | Peak RSS (MB) | CPU (us/msg) | Stored or counted "
        "| Lost | Redelivered after stop |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for consumer in consumers:
        rs = [run[consumer] for run in results if consumer in run]
        ratios = [
            run[consumer].rate / run["subscriber"].rate
            for run in results
            if consumer in run and "subscriber" in run
        ]
        kept = [r.received if consumer in ("subscriber", "batched") else r.stored for r in rs]
        lines.append(
            f"| {labels[consumer]} | {fmt(statistics.median(r.rate for r in rs))} "
            f"| {statistics.median(ratios) if ratios else float('nan'):.2f} "
            f"| {fmt(statistics.median(r.seconds for r in rs), 2)} "
            f"| {fmt(statistics.median(r.publish_rate for r in rs))} "
            f"| {fmt(max(r.peak_rss_mb for r in rs))} "
            f"| {fmt(statistics.median(r.cpu_s / r.messages * 1e6 for r in rs))} "
            f"| {'/'.join(f'{k:,}' for k in sorted(set(kept)))} "
            f"| {max(r.lost for r in rs):,} | {max(r.redelivered for r in rs)} |"
        )
    return "\n".join(lines)


def run_lines(results: list[dict[str, Result]]) -> list[str]:
    out = []
    for number, run in enumerate(results, start=1):
        for consumer, r in run.items():
            load = " -> ".join(", ".join(f"{v:.2f}" for v in la) for la in r.load)
            out.append(
                f"- run {number}, {consumer}: {fmt(r.rate)} msg/s, {fmt(r.seconds, 2)} s "
                f"(publishers acked after {fmt(r.publish_seconds, 2)} s), "
                f"peak RSS {fmt(r.peak_rss_mb)} MB, CPU {fmt(r.cpu_s, 1)} s, "
                f"{'counted' if consumer in ('subscriber', 'batched') else 'stored'} "
                f"{r.received if consumer in ('subscriber', 'batched') else r.stored:,}, "
                f"dead letters {r.dead_letters}, redelivered {r.redelivered}, exit {r.exit_code}, "
                f"CPU by thread {', '.join(f'{k} {v:.1f} s' for k, v in r.thread_cpu_s.items())}, "
                f"load {load}"
                + (f"; ingester: `{r.final_log}`" if r.final_log else "")
                + (f"; NOTE: {'; '.join(r.notes)}" if r.notes else "")
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--publishers",
        type=int,
        default=2,
        help="publisher processes (each owns every P-th device)",
    )
    parser.add_argument(
        "--mqtt-url",
        default=None,
        help="use this broker instead of a private Mosquitto (see the docstring)",
    )
    parser.add_argument(
        "--pg-url", default=os.environ.get("TRACKER_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument(
        "--consumers",
        default="subscriber,sqlite,postgresql",
        help="comma-separated subset of subscriber,sqlite,postgresql",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="TRACKER_INGEST_BATCH for the ingester (default: its setting)",
    )
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=0,
        help="Receive Maximum of the counting subscriber (default: the "
        "ingester's, from tracker.mqtt.ingester)",
    )
    parser.add_argument(
        "--no-hot-spots",
        action="store_true",
        help="do not load the 25 demo hot spots into the ingester's database",
    )
    parser.add_argument("--poll-s", type=float, default=0.05, help="database poll interval")
    parser.add_argument(
        "--ingester-root",
        default=str(ROOT),
        help="run ingest_mqtt.py from this checkout (to compare versions)",
    )
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="publish everything while each consumer is disconnected, then "
        "time it from its start until it has drained the backlog",
    )
    parser.add_argument(
        "--ingester-wrapper",
        default="",
        help="a command to start the ingester with (e.g. 'taskset -c 1'); it "
        "must exec the ingester in the same process",
    )
    # Child modes.
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    parser.add_argument("--subscriber", help=argparse.SUPPRESS)
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=1883, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("filters", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.publisher:
        publisher_main(args.publisher, args.host, args.port)
        return 0
    if args.subscriber:
        subscriber_main(
            args.host,
            args.port,
            args.subscriber,
            args.filters,
            args.expected,
            args.receive_maximum,
            args.batch,
        )
        return 0

    if not args.receive_maximum:
        # Mirror the ingester under test (its module may predate receive_maximum: then it
        # sends none and the broker's default applies to both).
        sys.path.insert(0, str(Path(args.ingester_root).resolve()))
        from tracker.mqtt import ingester as ingester_module

        batch = args.batch or ingester_module.IngestConfig.batch_size
        args.ingester_batch = batch
        rule = getattr(ingester_module, "receive_maximum", None)
        args.receive_maximum = rule(batch) if rule else 0
    consumers = [c for c in args.consumers.split(",") if c]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        broker = None
        if args.mqtt_url is None:
            # The tests' private broker: no cap on queued messages, a log to count drops in.
            from tests.servers import PrivateMosquitto

            broker = PrivateMosquitto(workdir / "broker", "persistence false").start()
            host, port, broker_note = (
                "127.0.0.1",
                broker.port,
                (
                    f"private instance on 127.0.0.1:{broker.port}, max_queued_messages 0, "
                    "persistence false, otherwise defaults"
                ),
            )
        else:
            parts = urlsplit(args.mqtt_url)
            host, port, broker_note = parts.hostname, parts.port or 1883, args.mqtt_url
        try:
            info = ingest_machine_info(args, broker_note)
            t0 = time.perf_counter()
            device_of, payloads = generate_payloads(args.messages, args.devices)
            print(
                f"generated {len(payloads):,} payloads from {args.devices} devices in "
                f"{time.perf_counter() - t0:.1f} s, e.g. {payloads[0].decode()}",
                flush=True,
            )
            results: list[dict[str, Result]] = []
            for number in range(1, args.runs + 1):
                run: dict[str, Result] = {}
                for consumer in consumers:
                    scenario = Scenario(args, workdir, host, port, device_of, payloads)
                    if consumer in ("subscriber", "batched"):
                        run[consumer] = scenario.run_subscriber(consumer == "batched")
                    else:
                        run[consumer] = scenario.run_ingester(consumer)
                    line = run_lines([{consumer: run[consumer]}])[0]
                    print(line.replace("run 1", f"run {number}"), flush=True)
                results.append(run)
        finally:
            dropped = broker.dropped_warnings() if broker is not None else None
            if broker is not None:
                broker.stop()

    print()
    print(f"Command: .venv/bin/python bench/bench_ingest.py {' '.join(sys.argv[1:])}")
    print(
        f"Messages: {args.messages:,} from {args.devices} devices, {args.publishers} publisher "
        f"processes, median of {args.runs} runs, wall time {time.time() - started:.0f} s"
    )
    for key, value in info:
        print(f"- {key}: {value}")
    print(f"- Counting subscriber's Receive Maximum: {args.receive_maximum}")
    print(f"- Hot spots in the ingester's database: {'none' if args.no_hot_spots else '25 (demo)'}")
    if dropped is not None:
        print(f"- Broker log lines 'Outgoing messages are being dropped': {dropped}")
    print()
    print(summarise(results, consumers, args.backlog))
    print()
    print("\n".join(run_lines(results)))
    ok = all(r.lost == 0 and r.redelivered == 0 for run in results for r in run.values())
    for consumer in ("sqlite", "postgresql"):
        ratios = [
            run[consumer].rate / run["subscriber"].rate
            for run in results
            if consumer in run and "subscriber" in run
        ]
        rss = [run[consumer].peak_rss_mb for run in results if consumer in run]
        if ratios:
            print(
                f"\n{consumer}: median ratio {statistics.median(ratios):.2f} (target >= "
                f"{TARGET_RATIO}), peak RSS {max(rss):.0f} MB (target < {TARGET_RSS_MB:.0f}), "
                f"{'nothing lost' if ok else 'LOSSES OR REDELIVERIES'}"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [{k: {**vars(r), "rate": r.rate} for k, r in run.items()} for run in results],
                indent=1,
                default=str,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
