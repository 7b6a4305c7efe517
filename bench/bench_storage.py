"""Benchmark of storage over a year (issue 14, item 4): do ingest, a device-day rebuild, the
overview and the tasking API slow down as the pings table grows to a year's worth?

    flock /tmp/bench.lock .venv/bin/python bench/bench_storage.py [--pings 21000000]
        [--first 1000000] [--repeats 9] [--runs 15] [--postgres URL]

In one run, on a private schema of PostgreSQL (dropped afterwards), with the schema of this
code (pings partitioned by month, migration 0012):

1. The operation of bench/bench_web.py (`build_database`): the 25 demo hot spots, the demo
   plan over the 365 days ending today, 100 officers each carrying a device (radio-001 ..
   radio-100) and a year of stored aggregates; plus an officer user for PC4100 (radio-001).
   The month partitions of the year are made by `ensure_partitions`, as the ingesters
   would have made them month by month.
2. A year of pings, generated (fixed seed, vectorised with numpy) and loaded with binary
   COPY: each device works one 8-hour shift a day (starting 06:00, 11:00 or 15:00 local,
   plus up to 30 minutes), pinging at a fixed interval chosen so that the year holds
   --pings pings (576 a shift, every 50 s, for 21 million), and spends each half hour
   walking around one hot spot picked at random (about half the pings inside it). The year
   is the 365 local days ending yesterday. Newest days first: the last days up to
   --first pings are loaded, the database is vacuumed and analysed (as autovacuum would),
   and everything is measured ("small"); then the rest of the year is loaded, vacuumed
   and analysed, and everything measured again ("year"). So each measure works on the
   same recent data twice, and only the size of the table differs.
3. The measures, each --repeats times after one warm-up, median reported:
   - ingest: a batch of TRACKER_INGEST_BATCH (500) MQTT messages of new pings from now
     (one ping each, 100 devices), decoded, stored and committed through
     `tracker.dosage.ingest.store_messages` in one transaction, as the ingester's writer
     does it (the device-days it queues are cleared between batches, untimed);
   - device-day rebuild: radio-001's credited spans of yesterday rebuilt from its pings
     (`rebuild_device_days` on the queued device-day, committed);
   - GET /overview and GET /api/tasking as a supervisor, and GET /api/tasking as the officer
     (whose list holds the distances from their latest ping, read from the pings table),
     with the Flask test client, --runs requests each per repeat, interleaved.
4. Finally, the retention purge at a year (180 days: whole month partitions dropped, the
   rest of the cut month deleted), timed once.

It prints a Markdown table (ms; the ratio year / small) and the partitions.

--migration N times migration 0012 instead: N generated pings (the same year, thinned) are
copied into an unpartitioned pings table (the schema at 0011), vacuumed and analysed, and
the upgrade to 0012 that moves them into monthly partitions is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, func, select, text  # noqa: E402

from bench.bench_web import (  # noqa: E402
    OFFICERS,
    build_database,
    device_name,
    officer_of,
    signed_in_client,
    timed_get,
)
from bench.machine import machine_info  # noqa: E402
from tracker.accounts.users import create_user  # noqa: E402
from tracker.dosage.engine import DosageParams  # noqa: E402
from tracker.dosage.ingest import Message, store_messages  # noqa: E402
from tracker.dosage.partitions import ensure_partitions, list_partitions  # noqa: E402
from tracker.dosage.payloads import Limits  # noqa: E402
from tracker.dosage.recompute import rebuild_device_days  # noqa: E402
from tracker.dosage.store import enqueue, purge_pings, stored_hot_spots  # noqa: E402
from tracker.foundation import settings  # noqa: E402
from tracker.foundation.clock import local_midnight_us  # noqa: E402
from tracker.foundation.database import make_engine, session_factory  # noqa: E402
from tracker.foundation.models import (  # noqa: E402
    DirtyDeviceDay,
    DirtyHotSpotDay,
    PingRow,
)

SEED = 20261207
DAYS = 365
SHIFT_S = 8 * 3600
SHIFT_STARTS_H = (6, 11, 15)  # local; a device's shift by its number
BLOCK_S = 1800  # time around one hot spot
STEP_DEG = 0.00003  # random-walk step per ping (about 3 m)
OFFICER_USER = "bench-officer"
US = 1_000_000
PG_EPOCH_US = 946_684_800 * US  # 2000-01-01, PostgreSQL's epoch for binary timestamps
COPY_COLUMNS = "device_id, t_us, lat, lon, accuracy_m, speed_kmh, source, received_at"
# One row of binary COPY: field count, then each field's length and big-endian value.
RECORD = np.dtype(
    [
        ("fields", ">i2"),
        ("device_len", ">i4"),
        ("device", "S9"),
        ("t_len", ">i4"),
        ("t", ">i8"),
        ("lat_len", ">i4"),
        ("lat", ">f8"),
        ("lon_len", ">i4"),
        ("lon", ">f8"),
        ("acc_len", ">i4"),
        ("acc", ">f8"),
        ("speed_len", ">i4"),  # -1: NULL
        ("source_len", ">i4"),
        ("source", "S4"),
        ("received_len", ">i4"),
        ("received", ">i8"),
    ]
)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") * 2
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
MEASURES = (
    "ingest batch",
    "device-day rebuild",
    "GET /overview",
    "GET /api/tasking (supervisor)",
    "GET /api/tasking (officer)",
)


# --------------------------------------------------------------------------- the pings


class Year:
    """The generated pings of every device, one local day at a time."""

    def __init__(self, last_day: date, total: int, params: DosageParams, centres) -> None:
        self.zone = params.zone
        self.days = [last_day - timedelta(days=i) for i in range(DAYS)]  # newest first
        self.per_shift = -(-total // (OFFICERS * DAYS))
        self.interval_s = SHIFT_S / self.per_shift
        self.centres = np.array(centres)  # (hot spots, 2): lat, lon
        self.devices = np.array([device_name(n).encode() for n in range(OFFICERS)], dtype="S9")
        if any(len(d) != 9 for d in self.devices):
            raise ValueError("device ids must have 9 characters (the COPY record)")

    def day(self, day: date) -> np.ndarray:
        """Return the day's pings as binary COPY records, in time order."""
        rng = np.random.default_rng([SEED, day.toordinal()])
        n, p = OFFICERS, self.per_shift
        midnight = local_midnight_us(day, self.zone)
        start_h = np.array(SHIFT_STARTS_H)[np.arange(n) % len(SHIFT_STARTS_H)]
        start_us = midnight + start_h * 3600 * US + rng.integers(0, 1800, size=n) * US
        offset_us = np.round(np.arange(p) * self.interval_s * US).astype(np.int64)
        t_us = start_us[:, None] + offset_us[None, :]
        block = (offset_us // (BLOCK_S * US)).astype(np.int64)
        blocks = int(block.max()) + 1
        spot = rng.integers(0, len(self.centres), size=(n, blocks))
        centre = self.centres[spot[:, block]]  # (n, p, 2)
        walk = rng.normal(0.0, STEP_DEG, size=(n, p, 2))
        # The walk restarts in each block, at the hot spot's centre.
        walk = np.cumsum(walk, axis=1)
        first = np.searchsorted(block, np.arange(blocks))
        walk -= walk[:, first[block], :] - rng.normal(0.0, STEP_DEG, size=(n, 1, 2))
        position = centre + walk
        records = np.empty(n * p, dtype=RECORD)
        order = np.argsort(t_us, axis=None, kind="stable")
        records["fields"] = 8
        records["device_len"] = 9
        records["device"] = np.repeat(self.devices, p)[order]
        records["t_len"] = records["lat_len"] = records["lon_len"] = records["acc_len"] = 8
        records["t"] = t_us.ravel()[order]
        records["lat"] = position[..., 0].ravel()[order]
        records["lon"] = position[..., 1].ravel()[order]
        records["acc"] = rng.uniform(3.0, 20.0, size=n * p)
        records["speed_len"] = -1
        records["source_len"] = 4
        records["source"] = b"mqtt"
        records["received_len"] = 8
        records["received"] = records["t"] - PG_EPOCH_US + 1_500_000  # arrived 1.5 s later
        return records


def copy_days(engine, year: Year, days: list[date]) -> tuple[int, float]:
    """COPY the days' pings into pings (one transaction); return (rows, seconds)."""
    rows = 0
    started = time.perf_counter()
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY pings ({COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(COPY_HEADER)
            for day in days:
                records = year.day(day)
                copy.write(records.tobytes())
                rows += len(records)
            copy.write(COPY_TRAILER)
        driver.commit()
    return rows, time.perf_counter() - started


def vacuum_analyse(engine) -> float:
    """VACUUM ANALYZE pings, and ANALYZE the rest (as autovacuum would); return seconds."""
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE) pings"))
        connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


# --------------------------------------------------------------------------- measuring


class Measures:
    """The five measures on one database; each call of `run` adds one repeat's figures."""

    def __init__(self, url: str, params: DosageParams, password: str, officer_password: str):
        from web import create_app

        self.engine = make_engine(url)
        self.factory = session_factory(self.engine)
        self.params = params
        self.limits = Limits()
        self.batch = settings.get("TRACKER_INGEST_BATCH")
        with self.factory() as session:
            self.hot_spots = stored_hot_spots(session)
        app = create_app({"DATABASE_URL": url})
        self.supervisor = signed_in_client(app, password)
        self.officer = signed_in_client(app, officer_password, OFFICER_USER)
        self.batches = 0
        self.yesterday = datetime.now(params.zone).date() - timedelta(days=1)

    def ingest(self) -> float:
        """Seconds to decode, store and commit one batch of new pings from now."""
        now_us = time.time_ns() // 1000
        # New instants each batch, 10 ms apart: in the last hour, after every generated
        # ping (those end yesterday).
        base_s = now_us // US - 3600 + self.batches * self.batch // 100
        self.batches += 1
        messages = []
        for i in range(self.batch):
            body = {
                "ts": base_s + i / 100,
                "lat": 52.6371 + (i % 50) * 1e-5,
                "lon": -1.1333,
                "acc": 8,
            }
            device = device_name(i % OFFICERS)
            messages.append(Message(f"patrol/{device}/location", json.dumps(body).encode()))
        started = time.perf_counter()
        with self.factory.begin() as session:
            outcome = store_messages(session, messages, self.params, self.limits, now_us)
        seconds = time.perf_counter() - started
        if outcome.pings != self.batch or outcome.dead_letters:
            raise RuntimeError(f"ingest stored {outcome}, expected {self.batch} pings")
        self._clear_queues()
        return seconds

    def rebuild(self) -> float:
        """Seconds to rebuild one device-day (radio-001, yesterday) from its pings."""
        with self.factory.begin() as session:
            enqueue(session, DirtyDeviceDay, [(device_name(0), self.yesterday)])
        started = time.perf_counter()
        with self.factory.begin() as session:
            done = rebuild_device_days(session, self.hot_spots, self.params, limit=1)
        seconds = time.perf_counter() - started
        if done != 1:
            raise RuntimeError(f"rebuilt {done} device-days, expected 1")
        self._clear_queues()
        return seconds

    def _clear_queues(self) -> None:
        with self.factory.begin() as session:
            session.execute(delete(DirtyDeviceDay))
            session.execute(delete(DirtyHotSpotDay))

    def pages(self, runs: int) -> dict[str, float]:
        """Median seconds of each page over `runs` interleaved requests."""
        gets = {
            "GET /overview": (self.supervisor, "/overview"),
            "GET /api/tasking (supervisor)": (self.supervisor, "/api/tasking"),
            "GET /api/tasking (officer)": (self.officer, "/api/tasking"),
        }
        walls = {name: [] for name in gets}
        for _ in range(runs):
            for name, (client, path) in gets.items():
                wall, _, _, status = timed_get(client, path)
                if status != 200:
                    raise RuntimeError(f"{name}: {status}")
                walls[name].append(wall)
        return {name: statistics.median(w) for name, w in walls.items()}

    def officer_has_position(self) -> bool:
        body = self.officer.get("/api/tasking").get_json()
        items = body["items"] if isinstance(body, dict) else body
        return any(item.get("distance_m") is not None for item in items)

    def run(self, repeats: int, runs: int) -> dict[str, list[float]]:
        """Warm every measure up once, then `repeats` rounds of all of them."""
        self.ingest()
        self.rebuild()
        self.pages(1)
        figures = {name: [] for name in MEASURES}
        for _ in range(repeats):
            figures["ingest batch"].append(self.ingest())
            figures["device-day rebuild"].append(self.rebuild())
            for name, seconds in self.pages(runs).items():
                figures[name].append(seconds)
        return figures

    def dispose(self) -> None:
        self.engine.dispose()


def pings_in_table(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(PingRow))


# --------------------------------------------------------------------------- the run


def commit_of_checkout() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run(url: str, args) -> list[str]:
    params = DosageParams()
    today = datetime.now(params.zone).date()
    started = time.perf_counter()
    counts, password = build_database(url, today, params, args.officers_per_spot_day)
    log(f"operation built in {time.perf_counter() - started:.0f} s: {counts}")
    engine = make_engine(url)
    factory = session_factory(engine)
    officer_password = secrets.token_urlsafe(16)
    year_start = today - timedelta(days=DAYS)
    with factory.begin() as session:
        create_user(
            session, OFFICER_USER, "officer", officer_password, officer_of(0), actor="bench"
        )
        made = ensure_partitions(
            session,
            now=datetime.combine(year_start, datetime.min.time(), UTC),
            months_ahead=14,
        )
    log(f"partitions made: {len(made)}")
    with factory() as session:
        centres = [
            (h.geometry.centroid.y, h.geometry.centroid.x) for h in stored_hot_spots(session)
        ]
    year = Year(today - timedelta(days=1), args.pings, params, centres)
    per_day = OFFICERS * year.per_shift
    first_days = min(DAYS, -(-args.first // per_day))
    phases = [("small", year.days[:first_days]), ("year", year.days[first_days:])]
    results, notes = {}, []
    for name, days in phases:
        rows, seconds = copy_days(engine, year, days)
        log(f"{name}: {rows:,} pings copied in {seconds:.0f} s ({rows / seconds:,.0f}/s)")
        vacuumed = vacuum_analyse(engine)
        total = pings_in_table(engine)
        log(f"{name}: vacuum and analyse {vacuumed:.0f} s; {total:,} pings in the table")
        measures = Measures(url, params, password, officer_password)
        if not measures.officer_has_position():
            raise RuntimeError("the officer's tasking list has no distances: no position")
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        results[name] = (total, measures.run(args.repeats, args.runs))
        measures.dispose()
        notes.append(
            f"{name}: {total:,} pings ({min(days)} to {max(days)} loaded in this phase: "
            f"{rows:,} by COPY in {seconds:.0f} s, {rows / seconds:,.0f} rows/s; VACUUM "
            f"ANALYZE {vacuumed:.0f} s); load average before measuring {load}"
        )
    with factory() as session:
        partitions = list_partitions(session)
    before = pings_in_table(engine)
    purge_started = time.perf_counter()
    with factory.begin() as session:
        purged = purge_pings(session, 180, params)
    purge_s = time.perf_counter() - purge_started
    with factory() as session:
        left = len(list_partitions(session))
    after = pings_in_table(engine)
    if before - after != purged:
        raise RuntimeError(f"purge reported {purged} but {before - after} went")
    engine.dispose()

    small_total, small = results["small"]
    year_total, full = results["year"]
    lines = [
        f"| Measure (median of {args.repeats}) | {small_total / 1e6:.2f} M pings, ms | "
        f"{year_total / 1e6:.2f} M pings, ms | Ratio |",
        "|---|--:|--:|--:|",
    ]
    for measure in MEASURES:
        a = statistics.median(small[measure]) * 1000
        b = statistics.median(full[measure]) * 1000
        lines.append(f"| {measure} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    batch = settings.get("TRACKER_INGEST_BATCH")
    rate_a = batch / statistics.median(small["ingest batch"])
    rate_b = batch / statistics.median(full["ingest batch"])
    lines += [
        "",
        f"Ingest rate through the writer's path: {rate_a:,.0f} pings/s at "
        f"{small_total / 1e6:.2f} M, {rate_b:,.0f} pings/s at {year_total / 1e6:.2f} M "
        f"(batches of {batch} messages, commit included).",
        "",
        "Every repeat (ms):",
        "",
    ]
    for measure in MEASURES:
        for name, figures in (("small", small), ("year", full)):
            values = ", ".join(f"{v * 1000:.1f}" for v in figures[measure])
            lines.append(f"- {measure}, {name}: {values}")
    month_rows = [p.rows_estimate for p in partitions if not p.is_default]
    lines += [
        "",
        *[f"- {note}" for note in notes],
        f"- {len(partitions)} partitions at a year (with the default); month partitions of "
        f"{min(month_rows):,} to {max(month_rows):,} rows (estimates), "
        f"{sum(p.total_bytes for p in partitions) / 2**30:.1f} GiB with indexes",
        f"- retention 180 days at a year: {purged:,} pings purged in {purge_s:.1f} s, "
        f"{len(partitions) - left} month partitions dropped",
        f"- {year.per_shift} pings per device and shift (every {year.interval_s:.0f} s), "
        f"{OFFICERS} devices, {DAYS} days ending {year.days[0]}",
    ]
    return lines


def time_migration(url: str, pings: int) -> list[str]:
    """Time migration 0012 on an unpartitioned table of `pings` generated pings."""
    from alembic import command

    from tracker.foundation.database import alembic_config

    engine = make_engine(url)
    config = alembic_config(engine)
    command.upgrade(config, "0011")
    params = DosageParams()
    today = datetime.now(params.zone).date()
    year = Year(today - timedelta(days=1), pings, params, [(52.6371, -1.1333)])
    rows, _ = copy_days(engine, year, year.days)
    vacuum_analyse(engine)
    with engine.connect() as connection:
        size = connection.scalar(text("SELECT pg_total_relation_size('pings')"))
    started = time.perf_counter()
    command.upgrade(config, "0012")
    took = time.perf_counter() - started
    after = pings_in_table(engine)
    engine.dispose()
    if after != rows:
        raise RuntimeError(f"{rows} pings before migration 0012, {after} after")
    return [
        f"Migration 0012 on {rows:,} pings in one table ({size / 2**30:.2f} GiB with indexes): "
        f"{took:.1f} s ({took / rows * 1e6:.1f} s a million); {after:,} pings after it.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=21_000_000, help="pings in the year")
    parser.add_argument(
        "--first", type=int, default=1_000_000, help="pings of the first measurement"
    )
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--runs", type=int, default=15, help="requests per page and repeat")
    parser.add_argument(
        "--officers-per-spot-day",
        type=int,
        default=10,
        help="bench_web's aggregates: officers credited per hot spot and day (default 10)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "TRACKER_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL database to make a private schema in (dropped afterwards)",
    )
    parser.add_argument(
        "--migration",
        type=int,
        default=0,
        metavar="N",
        help="time migration 0012 on N pings instead of everything else",
    )
    args = parser.parse_args()
    command = " ".join(["bench/bench_storage.py", *sys.argv[1:]])
    packages = ("numpy", "sqlalchemy", "psycopg", "flask")
    output = [
        "Run of " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC") + f" (`{command}`), "
        f"commit {commit_of_checkout()}, on:",
        "",
    ]
    output += [f"- {k}: {v}" for k, v in machine_info(*packages)]
    admin = make_engine(args.postgres)
    with admin.connect() as connection:
        output.append(f"- PostgreSQL: {connection.scalar(text('SHOW server_version'))}")
    output.append("")
    schema = f"bench_storage_{uuid.uuid4().hex[:10]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in args.postgres else "?"
    url = f"{args.postgres}{separator}options=-csearch_path%3D{schema}"
    started = time.perf_counter()
    try:
        output += time_migration(url, args.migration) if args.migration else run(url, args)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    output.append(f"- wall time of the run: {(time.perf_counter() - started) / 60:.1f} min")
    print("\n".join(output))


if __name__ == "__main__":
    main()
