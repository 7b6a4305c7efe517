"""Scale-out (issue 14, item 6): one backlog drained by the counting subscriber, by one
ingester, by two ingesters in a shared group and by two sharded ingesters, into PostgreSQL,
in one run.

    .venv/bin/python bench/bench_scaleout.py [--messages 200000] [--devices 500] [--runs 3]

Each run generates nothing new: the messages of bench/bench_ingest.py (same seed, same
devices, one native ping per message) on fresh topics per consumer. For each consumer, as
bench_ingest.py's --backlog does: it connects and subscribes (a persistent MQTT v5 session),
goes away (the session stays), two publisher processes publish the whole backlog, and the
consumer is started again; rate = messages / (last commit-and-ack - that start), start-up
included:

  (a) the counting subscriber (bench_ingest.py's baseline: acknowledges each message as it
      arrives and only counts);
  (b) one ingester (`ingest_mqtt.py`, default settings, the 25 demo hot spots) into a fresh
      PostgreSQL schema;
  (c) two ingesters, each with its own client id, in one shared group (`--shared-group`,
      `$share/<group>/patrol/+/location`), into one fresh schema. Mosquitto hands the
      group's messages to its members' sessions in turn, so while both are away each
      session queues half of the backlog, and each ingester drains its own half;
  (d) two sharded ingesters (`--shard K --shards 2`, the devices registered in the devices
      table first): each subscribed by name to its half of the devices' topics, each
      session queues its devices' messages.

"Last commit" is the first database poll (every 50 ms) that sees every ping; then each
consumer is stopped with SIGTERM and its session resumed by a checking client, which must
receive nothing (nothing left unacknowledged), and the pings table must hold exactly the
messages, with no dead letter. Also reported: the consumers' CPU per message, the broker's
and PostgreSQL's (every `postgres` process of the machine, so also other work on that
server) over the drain, and the machine's CPU use over the drain (from /proc/stat, all
processes), which says whether the cores were the limit.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import bench_ingest as ingest  # noqa: E402

TARGET_RATIO = 1.0  # two ingesters at least as fast as one bare counting subscriber


@dataclass
class Drain:
    """One consumer draining the backlog."""

    consumer: str
    messages: int
    seconds: float
    stored: int  # pings stored, or messages counted by the subscriber
    dead_letters: int
    redelivered: int
    cpu_s: float
    peak_rss_mb: float
    machine_busy: float  # share of all cores' time spent busy during the drain
    servers_cpu_s: tuple[float, float]  # (broker, PostgreSQL) CPU seconds during the drain
    exits: tuple[int | None, ...]
    load: tuple
    notes: list[str]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    @property
    def lost(self) -> int:
        return self.messages - self.stored


class MachineCpu:
    """Busy share of the machine's CPU time between start() and stop() (/proc/stat)."""

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    def start(self) -> None:
        self._total, self._idle = self._read()

    def stop(self) -> float:
        total, idle = self._read()
        spent = total - self._total
        return 1 - (idle - self._idle) / spent if spent else float("nan")


def process_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class ServersCpu:
    """CPU seconds of the broker and of PostgreSQL between start() and stop()."""

    def __init__(self, broker_pid: int) -> None:
        self.broker_pid = broker_pid

    def _read(self) -> tuple[float, dict[int, float]]:
        return process_cpu_s([self.broker_pid]), {p: process_cpu_s([p]) for p in postgres_pids()}

    def start(self) -> None:
        self._broker, self._postgres = self._read()

    def stop(self) -> tuple[float, float]:
        broker, postgres = self._read()
        # Backends come and go: count what each one present at the end used since the start.
        return broker - self._broker, sum(
            v - self._postgres.get(p, 0.0) for p, v in postgres.items()
        )


def drain_subscriber(scenario: ingest.Scenario, broker_pid: int) -> Drain:
    """(a): bench_ingest.py's counting subscriber in --backlog mode."""
    cpu = MachineCpu()
    servers = ServersCpu(broker_pid)
    # run_subscriber restarts the subscriber after publishing: measure the machine from then.
    original = scenario.publish_backlog

    def publish_then_measure(result) -> None:
        original(result)
        cpu.start()
        servers.start()

    scenario.publish_backlog = publish_then_measure
    result = scenario.run_subscriber()
    busy = cpu.stop()
    servers_cpu = servers.stop()
    return Drain(
        "subscriber",
        result.messages,
        result.seconds,
        result.received,
        0,
        result.redelivered,
        result.cpu_s,
        result.peak_rss_mb,
        busy,
        servers_cpu,
        (result.exit_code,),
        result.load,
        result.notes,
    )


def drain_ingesters(
    scenario: ingest.Scenario, count: int, broker_pid: int, sharded: bool = False
) -> Drain:
    """(b), (c) and (d): `count` ingesters, in one shared group or sharded, into one fresh
    PostgreSQL schema."""
    from tracker.foundation.database import make_engine, session_factory
    from tracker.foundation.models import Device

    args = scenario.args
    db = ingest.make_database("postgresql", scenario.workdir, args.pg_url, hot_spots=True)
    engine = make_engine(db.url)
    if sharded:  # as `tracker devices load` does: a sharded ingester subscribes to these
        with session_factory(engine).begin() as session:
            session.add_all(Device(id=device_id) for device_id in scenario.devices)
    group = f"bench-{scenario.tag}"
    client_ids = [f"benchscale-{scenario.tag}-{n}" for n in range(1, count + 1)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env["PYTHONPATH"] = str(ROOT)

    def argv(client_id: str) -> list[str]:
        command = [
            sys.executable,
            str(ROOT / "ingest_mqtt.py"),
            "--mqtt-url",
            f"mqtt://{scenario.host}:{scenario.port}",
            "--db",
            db.url,
            "--client-id",
            client_id,
        ]
        if sharded:
            return [*command, "--shard", client_id.rsplit("-", 1)[1], "--shards", str(count)]
        return [*command, "--shared-group", group] if count > 1 else command

    def start_all() -> list[ingest.Child]:
        return [ingest.Child(argv(c), cwd=ROOT, env=env) for c in client_ids]

    def stop_all(children: list[ingest.Child]) -> tuple[int | None, ...]:
        for child in children:
            child.proc.send_signal(signal.SIGTERM)
        return tuple(child.wait() for child in children)

    result = ingest.Result(f"{'sharded' if sharded else 'ingesters'} x{count}", scenario.n)
    first = start_all()
    deadline = time.monotonic() + 60
    while not all(any("subscribed to" in line for line in c.stderr) for c in first):
        if any(c.exited() for c in first) or time.monotonic() > deadline:
            raise RuntimeError("an ingester did not subscribe:\n" + "\n".join(first[0].stderr))
        time.sleep(0.05)
    stop_all(first)
    scenario.publish_backlog(result)

    load_before = os.getloadavg()
    cpu = MachineCpu()
    cpu.start()
    servers = ServersCpu(broker_pid)
    servers.start()
    started = time.time()
    children = start_all()
    notes: list[str] = []
    ended = float("nan")
    try:
        last_change, last_seen = time.monotonic(), -1
        while True:
            top = db.count(engine, "max(id)")
            if top >= scenario.n and db.count(engine) >= scenario.n:
                ended = time.time()
                break
            if top != last_seen:
                last_seen, last_change = top, time.monotonic()
            elif time.monotonic() - last_change > ingest.STALL_S:
                notes.append("not every ping was committed")
                break
            time.sleep(args.poll_s)
        busy = cpu.stop()
        servers_cpu = servers.stop()
        load = (load_before, os.getloadavg())
    finally:
        exits = stop_all(children)
    stored = db.count(engine)
    dead = db.count(engine, table="dead_letters")
    engine.dispose()
    redelivered = sum(ingest.resume_and_clear(scenario.host, scenario.port, c) for c in client_ids)
    db.cleanup()
    for child in children:
        notes.extend(line for line in child.stderr if "error" in line.lower())
        notes.extend(
            line.split(" tracker.ingest ", 1)[-1] for line in child.stderr if "final:" in line
        )
    return Drain(
        result.consumer,
        scenario.n,
        ended - started,
        stored,
        dead,
        redelivered,
        sum(c.cpu_s for c in children),
        sum(c.peak_rss_mb for c in children),
        busy,
        servers_cpu,
        exits,
        load,
        notes,
    )


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


LABELS = {
    "subscriber": "(a) counting subscriber (baseline)",
    "ingesters x1": "(b) one ingester -> PostgreSQL",
    "ingesters x2": "(c) two ingesters, shared group -> PostgreSQL",
    "sharded x2": "(d) two ingesters, sharded -> PostgreSQL",
}


def summarise(runs: list[dict[str, Drain]]) -> str:
    lines = [
        "| Consumer | Rate (msg/s) | Ratio to (a) | Ratio to (b) | Start -> last commit (s) "
        "| CPU (us/msg) | Broker CPU (us/msg) | PostgreSQL CPU (us/msg) | Machine CPU busy "
        "| Peak RSS (MB) | Stored or counted | Lost | Redelivered after stop |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for consumer, label in LABELS.items():
        drains = [run[consumer] for run in runs]
        to_a = [run[consumer].rate / run["subscriber"].rate for run in runs]
        to_b = [run[consumer].rate / run["ingesters x1"].rate for run in runs]
        kept = sorted({d.stored for d in drains})
        lines.append(
            f"| {label} | {fmt(statistics.median(d.rate for d in drains))} "
            f"| {statistics.median(to_a):.2f} | {statistics.median(to_b):.2f} "
            f"| {fmt(statistics.median(d.seconds for d in drains), 2)} "
            f"| {fmt(statistics.median(d.cpu_s / d.messages * 1e6 for d in drains))} "
            f"| {fmt(statistics.median(d.servers_cpu_s[0] / d.messages * 1e6 for d in drains))} "
            f"| {fmt(statistics.median(d.servers_cpu_s[1] / d.messages * 1e6 for d in drains))} "
            f"| {statistics.median(d.machine_busy for d in drains):.0%} "
            f"| {fmt(max(d.peak_rss_mb for d in drains))} "
            f"| {'/'.join(f'{k:,}' for k in kept)} | {max(d.lost for d in drains):,} "
            f"| {max(d.redelivered for d in drains)} |"
        )
    return "\n".join(lines)


def run_line(number: int, drain: Drain) -> str:
    load = " -> ".join(", ".join(f"{v:.2f}" for v in la) for la in drain.load)
    return (
        f"- run {number}, {drain.consumer}: {fmt(drain.rate)} msg/s, {fmt(drain.seconds, 2)} s, "
        f"CPU {fmt(drain.cpu_s, 1)} s (broker {fmt(drain.servers_cpu_s[0], 1)} s, "
        f"PostgreSQL {fmt(drain.servers_cpu_s[1], 1)} s), machine busy {drain.machine_busy:.0%}, "
        f"stored/counted {drain.stored:,}, dead letters {drain.dead_letters}, "
        f"redelivered {drain.redelivered}, exits {drain.exits}, load {load}"
        + (f"; {'; '.join(drain.notes)}" if drain.notes else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TRACKER_TEST_DATABASE_URL", ingest.DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args(argv)
    # What bench_ingest.Scenario reads: its --backlog mode on a private broker.
    from tracker.mqtt.ingester import IngestConfig, receive_maximum

    args.publishers, args.mqtt_url, args.backlog, args.batch = 2, None, True, 0
    args.ingester_batch = IngestConfig.batch_size
    args.receive_maximum = receive_maximum(IngestConfig.batch_size)
    args.no_hot_spots, args.ingester_root, args.ingester_wrapper = False, str(ROOT), ""
    args.poll_s = 0.05

    started = time.time()
    runs: list[dict[str, Drain]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        workdir = Path(tmp)
        from tests.servers import PrivateMosquitto

        broker = PrivateMosquitto(workdir / "broker", "persistence false").start()
        try:
            info = ingest.ingest_machine_info(
                args, "private instance, max_queued_messages 0, persistence false"
            )
            device_of, payloads = ingest.generate_payloads(args.messages, args.devices)
            for number in range(1, args.runs + 1):
                run: dict[str, Drain] = {}
                for consumer in LABELS:
                    scenario = ingest.Scenario(
                        args, workdir, "127.0.0.1", broker.port, device_of, payloads
                    )
                    broker_pid = broker.process.pid
                    if consumer == "subscriber":
                        run[consumer] = drain_subscriber(scenario, broker_pid)
                    else:
                        run[consumer] = drain_ingesters(
                            scenario,
                            int(consumer[-1]),
                            broker_pid,
                            sharded=consumer.startswith("sharded"),
                        )
                    print(run_line(number, run[consumer]), flush=True)
                runs.append(run)
        finally:
            dropped = broker.dropped_warnings()
            broker.stop()

    print()
    print(f"Command: .venv/bin/python bench/bench_scaleout.py {' '.join(sys.argv[1:])}")
    print(
        f"Backlog: {args.messages:,} messages from {args.devices} devices, median of "
        f"{args.runs} runs, wall time {time.time() - started:.0f} s"
    )
    for key, value in info:
        print(f"- {key}: {value}")
    print(f"- Broker log lines 'Outgoing messages are being dropped': {dropped}")
    print()
    print(summarise(runs))
    print()
    for number, run in enumerate(runs, start=1):
        for drain in run.values():
            print(run_line(number, drain))
    ratio = statistics.median(r["ingesters x2"].rate / r["subscriber"].rate for r in runs)
    sharded = statistics.median(r["sharded x2"].rate / r["subscriber"].rate for r in runs)
    ok = all(
        d.lost == 0 and d.redelivered == 0 and d.dead_letters == 0 for r in runs for d in r.values()
    )
    print(
        f"\ntwo ingesters / counting subscriber: median {ratio:.2f} shared group, "
        f"{sharded:.2f} sharded (goal >= {TARGET_RATIO}); "
        f"{'nothing lost' if ok else 'LOSSES, DEAD LETTERS OR REDELIVERIES'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
