"""Soak under faults (issue 14, item 5): a fleet through Mosquitto into PostgreSQL with two
ingesters, a broker restart, a `kill -9` of an ingester and a PostgreSQL restart.

    .venv/bin/python bench/soak.py [--minutes 10] [--devices 2000] [--every-s 10]
        [--mode sharded|shared] [--out DIR]

Not part of the test suite. Everything runs on servers of its own, so that restarting them
disturbs nothing else: a private Mosquitto on a free loopback port (persistence on,
`max_queued_messages 0`, as `tracker broker config` writes) and a private PostgreSQL cluster
made with initdb in a temporary folder (run as the `postgres` user when started by root).

- A publisher process sends one native ping per device every --every-s seconds (2,000
  devices every 10 s: 200 messages/s), each with the time it is sent, at QoS 1 on a
  persistent session (so that it resends what the broker had not acknowledged across the
  broker's restart), and counts the PUBACKs it receives.
- Two ingesters (`ingest_mqtt.py`, default settings, metrics on) store them in one
  database with the 25 demo hot spots and the devices registered (as `tracker devices load`
  does): by default sharded (`--shard K --shards 2`: each subscribes by name to its half of
  the devices' topics), or with --mode shared in one shared group (`--shared-group`), which
  loses the messages published while a restarted Mosquitto 2.0.11 has forgotten the group.
- Faults, at a quarter, half and three quarters of the run: the broker is stopped (SIGTERM,
  it saves its persistence file) and started again; ingester 1 is killed with SIGKILL and
  started again 5 s later (as systemd's Restart= would); PostgreSQL is restarted (fast
  shutdown: open connections are cut).
- Every 5 s: published and stored counts, the backlog (published - stored) and the lag it
  means at the publishing rate, each ingester's oldest unacknowledged message
  (`tracker_ingest_oldest_unacknowledged_seconds` from its /metrics) and memory (RSS of the
  receiving and the writing process), and the broker's RSS.

At the end the publisher stops, the ingesters drain, and the pings table is compared with
what the broker acknowledged: lost = acknowledged pings not stored; duplicated = rows
beyond one per (device, timestamp), which must both be 0. Writes soak.csv and soak.png
(lag and memory over time, faults marked) to --out and prints a summary in Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_info  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
LEICESTER = (52.6369, -1.1398)
SAMPLE_S = 5.0
RESTART_PAUSE_S = 5.0
DRAIN_LIMIT_S = 120.0
PUBLISH_WINDOW = 20_000  # unacknowledged messages the publisher may hold (paho ids wrap at 65535)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(condition, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def device_id(n: int) -> str:
    return f"soak-{n:04d}"


# --- the publisher (a child process) ------------------------------------------------------------


def publisher_main(host: str, port: int, devices: int, every_s: float, run: str) -> None:
    """Publish each device's position every `every_s` until stdin closes; report counts."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    rng = random.Random(20261207)
    positions = [
        [LEICESTER[0] + rng.uniform(-0.03, 0.03), LEICESTER[1] + rng.uniform(-0.05, 0.05)]
        for _ in range(devices)
    ]
    counts = {"published": 0, "acknowledged": 0}
    acked_log = open(f"{run}-acked.jsonl", "w")  # noqa: SIM115 (closed at the end)
    # Message id -> record of each message the broker has not acknowledged yet, kept by this
    # thread only: paho's thread just queues the ids it gets a PUBACK for (a lock of ours
    # taken there, while paho holds its own, would deadlock against publish()). Message
    # infos are no use: one published while the broker restarts says "not connected" for
    # good, although paho sends it after reconnecting.
    pending: dict[int, str] = {}
    acknowledged_ids: deque[int] = deque()

    def sweep() -> None:
        while acknowledged_ids:
            record = pending.pop(acknowledged_ids.popleft(), None)
            if record is not None:
                counts["acknowledged"] += 1
                acked_log.write(record + "\n")

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{run[-8:]}", protocol=mqtt.MQTTv5
    )
    client.max_queued_messages_set(0)
    client.on_publish = lambda _c, _u, mid, reason_code, _p: (
        None if reason_code.is_failure else acknowledged_ids.append(mid)
    )
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect(host, port, keepalive=15, clean_start=False, properties=properties)
    client.loop_start()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    started = time.monotonic()
    rate = devices / every_s
    sent = 0
    next_report = started
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while sent < due and len(pending) < PUBLISH_WINDOW:
            n = sent % devices
            device = device_id(n)
            pos = positions[n]
            pos[0] += rng.uniform(-0.0002, 0.0002)
            pos[1] += rng.uniform(-0.0003, 0.0003)
            ts = f"{time.time():.6f}"
            # A numeric string: read exactly (a float's 16 digits may not come back).
            body = f'{{"ts":"{ts}","lat":{pos[0]:.6f},"lon":{pos[1]:.6f},"acc":10}}'
            info = client.publish(f"patrol/{device}/location", body, qos=1)
            pending[info.mid] = f'["{device}", "{ts}"]'
            sweep()  # before paho can reuse an acknowledged id
            counts["published"] += 1
            sent += 1
        if time.monotonic() >= next_report:
            sweep()
            print(json.dumps(counts), flush=True)
            next_report += 1.0
        time.sleep(0.01)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:  # the broker acknowledges the rest
        time.sleep(0.1)
        sweep()
    acked_log.close()
    print(json.dumps({**counts, "final": True, "unacknowledged": len(pending)}), flush=True)
    client.disconnect()
    client.loop_stop()


# --- private servers ----------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb), to restart at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.data = folder / "data"
        self.socket_dir = folder / "socket"
        self.log = folder / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        for path in (folder, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (folder, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(PG_BIN / "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "shared_buffers = 256MB\nsynchronous_commit = on\nfsync = on\n"
            )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv) -> None:
        command = [str(a) for a in argv]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "start")

    def restart(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")


class PrivateBroker:
    """Mosquitto with persistence, as in production, on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 60\n"
            f"user root\nlog_dest file {self.log}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(["mosquitto", "-c", str(self.config)])
        wait_for(lambda: port_open(self.port), "the broker")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


@dataclass
class Ingester:
    number: int
    argv: list[str]
    env: dict
    log: Path
    metrics_port: int
    process: subprocess.Popen | None = None
    restarts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def oldest_unacknowledged_s(self) -> float | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith("tracker_ingest_oldest_unacknowledged_seconds "):
                        return float(line.split()[1])
        except OSError:
            return None
        return None

    def rss_mb(self) -> float:
        if self.process is None or self.process.poll() is not None:
            return 0.0
        pid = self.process.pid
        return rss_mb(pid) + sum(rss_mb(child) for child in children_of(pid))


@dataclass
class Sample:
    t_s: float
    published: int
    acknowledged: int
    stored: int
    oldest_unacked_s: list[float | None]
    ingester_rss_mb: list[float]
    broker_rss_mb: float
    publish_rate: float

    @property
    def backlog(self) -> int:
        return max(0, self.acknowledged - self.stored)

    @property
    def lag_s(self) -> float:
        return self.backlog / self.publish_rate


@dataclass
class Soak:
    args: argparse.Namespace
    folder: Path
    samples: list[Sample] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"published": 0, "acknowledged": 0})

    def run(self) -> dict:
        """Start the private servers, soak, and stop them whatever happens."""
        postgres = PrivatePostgres(self.folder / "postgres")
        postgres.start()
        broker = PrivateBroker(self.folder / "broker")
        try:
            broker.start()
            return self._soak(postgres, broker)
        finally:
            broker.stop()
            postgres.stop()

    def _soak(self, postgres: PrivatePostgres, broker: PrivateBroker) -> dict:
        from sqlalchemy import text

        from tracker.dosage.engine import DosageParams
        from tracker.dosage.geofence import load_hot_spots
        from tracker.dosage.recompute import replace_hot_spots
        from tracker.foundation.database import make_engine, session_factory, upgrade
        from tracker.foundation.models import Device

        args = self.args
        engine = make_engine(postgres.url)
        upgrade(engine)
        with session_factory(engine).begin() as session:
            demo = load_hot_spots(ROOT / "geofences" / "leicestershire_demo.geojson")
            replace_hot_spots(session, demo, DosageParams())
            session.add_all(Device(id=device_id(n)) for n in range(args.devices))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
        env["TRACKER_MQTT_SESSION_EXPIRY_S"] = "3600"
        ingesters = []
        for number in (1, 2):
            port = free_port()
            argv = [
                sys.executable,
                str(ROOT / "ingest_mqtt.py"),
                "--mqtt-url",
                f"mqtt://127.0.0.1:{broker.port}",
                "--db",
                postgres.url,
                "--client-id",
                f"soak-ingest-{number}",
                *(
                    ("--shard", str(number), "--shards", "2")
                    if args.mode == "sharded"
                    else ("--shared-group", "soak")
                ),
                "--metrics-port",
                str(port),
            ]
            ingester = Ingester(number, argv, env, self.folder / f"ingester-{number}.log", port)
            ingester.start()
            ingesters.append(ingester)
        wait_for(
            lambda: all("subscribed to" in i.log.read_text(errors="replace") for i in ingesters),
            "the ingesters to subscribe",
        )
        run = str(self.folder / f"publisher-{uuid.uuid4().hex[:8]}")
        publisher = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publisher",
                run,
                "--port",
                str(broker.port),
                "--devices",
                str(args.devices),
                "--every-s",
                str(args.every_s),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        reader = threading.Thread(target=self._read_publisher, args=(publisher,), daemon=True)
        reader.start()
        duration = args.minutes * 60
        plan = [
            (duration * 0.25, "broker restart", lambda: self._restart_broker(broker)),
            (duration * 0.50, "kill -9 ingester 1", lambda: self._kill(ingesters[0])),
            (duration * 0.75, "PostgreSQL restart", postgres.restart),
        ]
        started = time.monotonic()
        self.started = started
        self.wall_start = time.time()
        next_sample = started
        rate = args.devices / args.every_s
        try:
            while time.monotonic() - started < duration:
                now = time.monotonic() - started
                if plan and now >= plan[0][0]:
                    _at, name, action = plan.pop(0)
                    print(f"{now:7.1f} s: {name}", flush=True)
                    self.faults.append((now, name))
                    action()
                if time.monotonic() >= next_sample:
                    self._sample(engine, ingesters, broker, rate)
                    next_sample += SAMPLE_S
                    if now > 30 and not self.counts["acknowledged"]:
                        raise RuntimeError("the broker has acknowledged nothing in 30 s")
                time.sleep(0.2)
            publisher.stdin.close()
            publisher.wait(timeout=180)
            reader.join(timeout=10)  # its final counts
            drained_by = time.monotonic() + DRAIN_LIMIT_S
            while time.monotonic() < drained_by:
                self._sample(engine, ingesters, broker, rate)
                if self.samples[-1].stored >= self.counts["acknowledged"]:
                    break
                time.sleep(SAMPLE_S)
            drain_s = time.monotonic() - started - duration
        finally:
            if publisher.poll() is None:
                publisher.kill()
            for ingester in ingesters:
                if ingester.process and ingester.process.poll() is None:
                    ingester.process.send_signal(signal.SIGTERM)
            exits = [i.process.wait(timeout=120) if i.process else None for i in ingesters]
        acknowledged = self._acknowledged(run)
        stored, distinct, dead_letters = self._stored(engine, text)
        stored_keys = self._stored_keys(engine, text)
        missing = sorted(t_us for _device, t_us in acknowledged - stored_keys)
        lost = len(missing)
        if missing:  # when, in the run, the lost messages were published
            print(
                f"lost: {lost} published between {(missing[0] / 1e6 - self.wall_start):.1f} s "
                f"and {(missing[-1] / 1e6 - self.wall_start):.1f} s",
                flush=True,
            )
        engine.dispose()
        return {
            "published": self.counts["published"],
            "acknowledged": len(acknowledged),
            "unacknowledged": self.counts.get("unacknowledged", 0),
            "stored": stored,
            "lost": lost,
            "duplicated": stored - distinct,
            "dead_letters": dead_letters,
            "drain_s": drain_s,
            "exits": exits,
            "restarts": [i.restarts for i in ingesters],
        }

    def _read_publisher(self, publisher: subprocess.Popen) -> None:
        for line in publisher.stdout:
            if line.startswith("{"):
                self.counts.update(json.loads(line))

    def _restart_broker(self, broker: PrivateBroker) -> None:
        broker.stop()
        time.sleep(RESTART_PAUSE_S)
        broker.start()

    def _kill(self, ingester: Ingester) -> None:
        ingester.process.kill()
        ingester.process.wait()

        def restart() -> None:
            time.sleep(RESTART_PAUSE_S)
            ingester.restarts += 1
            ingester.start()

        threading.Thread(target=restart, daemon=True).start()

    def _sample(self, engine, ingesters: list[Ingester], broker: PrivateBroker, rate: float):
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT count(*) FROM pings")).scalar()
        except SQLAlchemyError:
            stored = self.samples[-1].stored if self.samples else 0  # restarting
        broker_rss = rss_mb(broker.process.pid) if broker.process else 0.0
        self.samples.append(
            Sample(
                time.monotonic() - self.started,
                self.counts["published"],
                self.counts["acknowledged"],
                stored,
                [i.oldest_unacknowledged_s() for i in ingesters],
                [i.rss_mb() for i in ingesters],
                broker_rss,
                rate,
            )
        )

    def _acknowledged(self, run: str) -> set[tuple[str, int]]:
        found = set()
        with open(f"{run}-acked.jsonl") as handle:
            for line in handle:
                device, ts = json.loads(line)
                found.add((device, int(Decimal(ts) * 1_000_000)))
        return found

    def _stored(self, engine, text) -> tuple[int, int, int]:
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM pings")).scalar()
            distinct = connection.execute(
                text("SELECT count(*) FROM (SELECT DISTINCT device_id, t_us FROM pings) AS d")
            ).scalar()
            dead = connection.execute(text("SELECT count(*) FROM dead_letters")).scalar()
        return stored, distinct, dead

    def _stored_keys(self, engine, text) -> set[tuple[str, int]]:
        with engine.connect() as connection:
            return {
                (device, t_us)
                for device, t_us in connection.execute(text("SELECT device_id, t_us FROM pings"))
            }


def write_outputs(soak: Soak, out: Path) -> None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    with (out / "soak.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "t_s",
                "published",
                "acknowledged_by_broker",
                "stored",
                "backlog",
                "lag_s",
                "oldest_unacked_s_ingester_1",
                "oldest_unacked_s_ingester_2",
                "rss_mb_ingester_1",
                "rss_mb_ingester_2",
                "rss_mb_broker",
            ]
        )
        for s in soak.samples:
            writer.writerow(
                [
                    f"{s.t_s:.1f}",
                    s.published,
                    s.acknowledged,
                    s.stored,
                    s.backlog,
                    f"{s.lag_s:.1f}",
                    *("" if v is None else f"{v:.2f}" for v in s.oldest_unacked_s),
                    *(f"{v:.1f}" for v in s.ingester_rss_mb),
                    f"{s.broker_rss_mb:.1f}",
                ]
            )
    t = [s.t_s / 60 for s in soak.samples]
    figure, (lag, memory) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    lag.plot(t, [s.lag_s for s in soak.samples], label="backlog / publishing rate (s)")
    for n in (0, 1):
        lag.plot(
            t,
            [s.oldest_unacked_s[n] or 0 for s in soak.samples],
            label=f"ingester {n + 1}: oldest unacknowledged (s)",
            linewidth=0.8,
        )
    lag.set_ylabel("lag (s)")
    lag.legend(loc="upper left", fontsize=8)
    for n in (0, 1):
        memory.plot(t, [s.ingester_rss_mb[n] for s in soak.samples], label=f"ingester {n + 1}")
    memory.plot(t, [s.broker_rss_mb for s in soak.samples], label="Mosquitto")
    memory.set_ylabel("RSS (MB)")
    memory.set_xlabel("minutes")
    memory.legend(loc="upper left", fontsize=8)
    for at, name in soak.faults:
        for axis in (lag, memory):
            axis.axvline(at / 60, color="grey", linestyle=":")
        lag.annotate(name, (at / 60, lag.get_ylim()[1] * 0.9), fontsize=7, rotation=90)
    figure.suptitle(
        f"Soak: {soak.args.devices} devices every {soak.args.every_s:g} s, "
        f"two ingesters ({soak.args.mode}) -> PostgreSQL, {soak.args.minutes:g} min"
    )
    figure.tight_layout()
    figure.savefig(out / "soak.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--every-s", type=float, default=10.0)
    parser.add_argument(
        "--mode",
        choices=("sharded", "shared"),
        default="sharded",
        help="how the two ingesters split the devices (default sharded)",
    )
    parser.add_argument("--out", default=str(ROOT / "instance" / "soak"))
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher:
        publisher_main("127.0.0.1", args.port, args.devices, args.every_s, args.publisher)
        return 0
    for program in ("mosquitto", str(PG_BIN / "initdb")):
        if shutil.which(program) is None:
            sys.exit(f"soak.py needs {program}")
    info = machine_info("paho-mqtt", "SQLAlchemy", "psycopg")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # the postgres user reaches its cluster inside
        soak = Soak(args, folder)
        figures = soak.run()
        out = Path(args.out)
        write_outputs(soak, out)
        for n in (1, 2):
            shutil.copy(folder / f"ingester-{n}.log", out / f"ingester-{n}.log")
    steady = [s for s in soak.samples if s.t_s <= args.minutes * 60]
    print()
    print(f"Command: .venv/bin/python bench/soak.py {' '.join(sys.argv[1:])}")
    for key, value in info:
        print(f"- {key}: {value}")
    print()
    print("| Figure | Value |")
    print("|---|--:|")
    rows = [
        ("Messages published", f"{figures['published']:,}"),
        ("Acknowledged by the broker", f"{figures['acknowledged']:,}"),
        ("Never acknowledged by the broker", f"{figures['unacknowledged']:,}"),
        ("Pings stored", f"{figures['stored']:,}"),
        ("Lost (acknowledged, not stored)", f"{figures['lost']:,}"),
        ("Duplicated rows", f"{figures['duplicated']:,}"),
        ("Dead letters", f"{figures['dead_letters']:,}"),
        ("Drain after publishing stopped (s)", f"{figures['drain_s']:.1f}"),
        ("Largest lag, backlog / rate (s)", f"{max(s.lag_s for s in steady):.1f}"),
        (
            "Largest oldest-unacknowledged (s)",
            f"{max((v or 0) for s in steady for v in s.oldest_unacked_s):.1f}",
        ),
        (
            "Peak ingester RSS, receiver + writer (MB)",
            f"{max(max(s.ingester_rss_mb) for s in soak.samples):.0f}",
        ),
        ("Ingester RSS at 1 min and at the end (MB)", _rss_drift(steady)),
        ("Peak broker RSS (MB)", f"{max(s.broker_rss_mb for s in soak.samples):.0f}"),
        ("Ingester exits (SIGTERM at the end)", str(figures["exits"])),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    for at, name in soak.faults:
        print(f"- {at / 60:.2f} min: {name}")
    print(f"\nCSV and PNG in {out}")
    ok = figures["lost"] == 0 and figures["duplicated"] == 0
    return 0 if ok else 1


def _rss_drift(samples: list[Sample]) -> str:
    first = next((s for s in samples if s.t_s >= 60), samples[0])
    last = samples[-1]
    return " / ".join(
        f"{first.ingester_rss_mb[n]:.0f} -> {last.ingester_rss_mb[n]:.0f}" for n in (0, 1)
    )


if __name__ == "__main__":
    sys.exit(main())
