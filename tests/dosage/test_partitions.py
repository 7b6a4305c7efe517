"""The pings table partitioned by month on PostgreSQL (migration 0012, tracker.dosage.partitions):
the migration keeps every ping and figure, inserts never lack a partition, ingest still keeps
one row per (device, timestamp), and retention drops whole months.

Pings are in the winter, when Europe/London (the default time zone) is UTC, so local days
and UTC months line up.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import func, select, text

from tracker.cli import main
from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.ingest import Message, store_messages
from tracker.dosage.partitions import (
    DEFAULT_PARTITION,
    ensure_partitions,
    is_partitioned,
    list_partitions,
    month_bounds_us,
    month_of,
    partition_name,
    partition_names,
)
from tracker.dosage.payloads import Limits
from tracker.dosage.pings import Ping
from tracker.dosage.recompute import bring_up_to_date, enqueue_all_device_days, replace_hot_spots
from tracker.dosage.reports import daily_report
from tracker.dosage.store import purge_pings, store_dead_letters, store_pings, stored_hot_spots
from tracker.foundation.database import alembic_config, make_engine, session_factory, upgrade
from tracker.foundation.models import DeadLetter, PingRow
from tracker.foundation.tables import records

ROOT = Path(__file__).resolve().parents[2]
DEMO = load_hot_spots(ROOT / "geofences" / "leicestershire_demo.geojson")
PARAMS = DosageParams()
IN_LE01 = (52.6371, -1.1333)  # Clock Tower and Haymarket
OUTSIDE = (52.6400, -1.1333)  # in no demo hot spot
US = 1_000_000
# Migration 0012 and tracker.dosage.partitions are about PostgreSQL; SQLite keeps one table.
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def us(moment: datetime) -> int:
    return int(moment.timestamp()) * US


def patrol(device: str, start: datetime, minutes: int, where=IN_LE01) -> list[Ping]:
    """A ping a minute for `minutes` minutes (minutes + 1 pings)."""
    return [
        Ping(device, us(start + timedelta(minutes=i)), where[0], where[1], 5.0)
        for i in range(minutes + 1)
    ]


def history() -> list[Ping]:
    """Patrols in five months, one of them a year before the rest; a visit crosses midnight
    at the end of January."""
    pings = []
    for device, day in (
        ("radio-1", datetime(2025, 2, 10, 9, tzinfo=UTC)),
        ("radio-1", datetime(2025, 11, 3, 14, tzinfo=UTC)),
        ("radio-2", datetime(2025, 12, 24, 22, tzinfo=UTC)),
        ("radio-1", datetime(2026, 1, 31, 23, 50, tzinfo=UTC)),
        ("radio-2", datetime(2026, 2, 2, 8, tzinfo=UTC)),
    ):
        pings += patrol(device, day, 20)
        pings += patrol(device, day + timedelta(minutes=25), 5, OUTSIDE)
    return pings


def all_rows(db) -> list[tuple]:
    """Every column of every ping, ids included, in id order."""
    with db() as session:
        table = PingRow.__table__
        return [tuple(r) for r in session.execute(select(table).order_by(table.c.id))]


def figures(db) -> list[dict]:
    """The stored daily figures, as `tracker report` prints them, after a full recompute."""
    with db.begin() as session:
        enqueue_all_device_days(session, PARAMS)
    with db() as session:
        hot_spots = stored_hot_spots(session)
    bring_up_to_date(db.begin, hot_spots, PARAMS)
    with db() as session:
        return records(daily_report(session))


def where_rows_are(db) -> dict[str, int]:
    """How many pings each partition holds."""
    with db() as session:
        return dict(
            session.execute(
                text("SELECT tableoid::regclass::text, count(*) FROM pings GROUP BY 1")
            ).all()
        )


def test_migration_0012_keeps_every_ping_and_figure_and_goes_back(database_url):
    engine = make_engine(database_url)
    db = session_factory(engine)
    config = alembic_config(engine)
    command.downgrade(config, "0011")
    with engine.connect() as connection:
        assert not is_partitioned(connection)
    with db.begin() as session:
        replace_hot_spots(session, DEMO, PARAMS)
        store_pings(session, history(), PARAMS)
    before_rows, before_figures = all_rows(db), figures(db)
    assert len(before_rows) == 5 * 27
    assert {row["hotspot_id"] for row in before_figures} == {"LE01"}

    command.upgrade(config, "0012")
    postgresql = engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        assert is_partitioned(connection) == postgresql
    assert all_rows(db) == before_rows
    assert figures(db) == before_figures
    if postgresql:
        # A partition for each month with pings, each holding that month's; none left over.
        months = Counter(partition_name(month_of(p.t_us)) for p in history())
        assert len(months) == 5
        assert months["pings_2026_01"] == 10  # 23:50 to 23:59; from 00:00 February's
        assert where_rows_are(db) == months
        with engine.connect() as connection:
            assert DEFAULT_PARTITION in partition_names(connection)
    # The ids go on from the same sequence.
    with db.begin() as session:
        store_pings(session, patrol("radio-3", datetime(2026, 2, 20, 10, tzinfo=UTC), 0), PARAMS)
    newest = all_rows(db)[-1]
    assert newest[1] == "radio-3" and newest[0] > max(row[0] for row in before_rows)

    command.downgrade(config, "0011")
    with engine.connect() as connection:
        assert not is_partitioned(connection)
    assert all_rows(db)[:-1] == before_rows
    assert figures(db) == before_figures
    upgrade(engine)
    assert all_rows(db)[:-1] == before_rows
    engine.dispose()


@POSTGRESQL_ONLY
def test_a_ping_in_a_month_without_a_partition_lands_in_the_default_and_is_moved_out(db):
    march_2024 = datetime(2024, 3, 5, 10, tzinfo=UTC)
    with db.begin() as session:
        store_pings(session, patrol("radio-1", march_2024, 2), PARAMS)
    assert where_rows_are(db) == {DEFAULT_PARTITION: 3}
    with db.begin() as session:
        made = ensure_partitions(session)
    assert made == ["pings_2024_03"]
    assert where_rows_are(db) == {"pings_2024_03": 3}
    with db.begin() as session:
        [march] = [p for p in list_partitions(session) if p.name == "pings_2024_03"]
        assert (march.start_us, march.end_us) == month_bounds_us(date(2024, 3, 1))
        assert ensure_partitions(session) == []  # nothing more to do
    # The moved rows still clash with a redelivery of the same pings.
    with db.begin() as session:
        store_pings(session, patrol("radio-1", march_2024, 3), PARAMS)
    assert where_rows_are(db) == {"pings_2024_03": 4}


@POSTGRESQL_ONLY
def test_maintenance_makes_this_month_and_the_next_three_once(db):
    now = datetime(2031, 11, 20, tzinfo=UTC)  # past the months migration 0012 made
    with db.begin() as session:
        made = ensure_partitions(session, now=now)
    assert made == ["pings_2031_11", "pings_2031_12", "pings_2032_01", "pings_2032_02"]
    with db.begin() as session:
        assert ensure_partitions(session, now=now) == []
        names = [p.name for p in list_partitions(session)]
    assert names[-5:] == [*made, DEFAULT_PARTITION]  # in time order, the default last


@POSTGRESQL_ONLY
def test_maintenance_makes_the_default_partition_if_it_is_missing(db):
    with db.begin() as session:
        session.execute(text(f"DROP TABLE {DEFAULT_PARTITION}"))
    with db.begin() as session:
        assert ensure_partitions(session) == [DEFAULT_PARTITION]
    with db.begin() as session:  # a ping of a month without a partition is taken again
        store_pings(session, patrol("radio-1", datetime(2020, 1, 1, tzinfo=UTC), 0), PARAMS)
    assert where_rows_are(db) == {DEFAULT_PARTITION: 1}


@POSTGRESQL_ONLY
def test_two_ingesters_making_the_same_partition_at_once_both_succeed(db):
    # The first holds the maintenance lock until it commits; the second waits for it, then
    # finds everything made (without the lock it would make the default partition again,
    # and fail).
    with db.begin() as session:
        session.execute(text(f"DROP TABLE {DEFAULT_PARTITION}"))
    now = datetime(2040, 5, 1, tzinfo=UTC)
    first = db()
    first.begin()
    assert ensure_partitions(first, now=now)[:2] == [DEFAULT_PARTITION, "pings_2040_05"]
    made_by_second, errors = [], []

    def second() -> None:
        try:
            with db.begin() as session:
                made_by_second.extend(ensure_partitions(session, now=now))
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive()  # waiting for the first
    first.commit()
    first.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert errors == []
    assert made_by_second == []
    with db() as session:
        assert "pings_2040_05" in partition_names(session)


def test_ingest_through_the_writers_path_keeps_one_ping_per_device_and_time(db):
    # store_messages in one transaction, as the ingester's writer commits a batch.
    at = datetime(2026, 1, 14, 10, tzinfo=UTC)
    with db.begin() as session:
        ensure_partitions(session, now=at)
    first = {"ts": at.isoformat(), "lat": 52.6371, "lon": -1.1333, "acc": 30}
    better = {**first, "lat": 52.6370, "acc": 5}  # the engine prefers it: stored instead

    def deliver(*bodies) -> None:
        messages = [Message("patrol/radio-1/location", json.dumps(b).encode()) for b in bodies]
        with db.begin() as session:
            store_messages(session, messages, PARAMS, Limits(), us(at) + 60 * US)

    deliver(first)
    deliver(first, first)  # redelivered, and twice in one batch
    deliver(better)
    deliver(first)
    with db() as session:
        rows = session.execute(select(PingRow.device_id, PingRow.t_us, PingRow.lat)).all()
    assert rows == [("radio-1", us(at), 52.6370)]
    if db.kw["bind"].dialect.name == "postgresql":
        assert where_rows_are(db) == {"pings_2026_01": 1}


def test_retention_drops_whole_old_months_and_deletes_older_pings_of_the_month_it_ends_in(db):
    pings = (
        patrol("radio-1", datetime(2026, 1, 10, 9, tzinfo=UTC), 9)  # 10 in January
        + patrol("radio-1", datetime(2026, 2, 27, 9, tzinfo=UTC), 4)  # 5 in February
        + patrol("radio-2", datetime(2026, 3, 9, 23, 58, tzinfo=UTC), 3)  # 2 + 2 around midnight
        + patrol("radio-2", datetime(2026, 3, 14, 9, tzinfo=UTC), 2)  # 3 kept
    )
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    with db.begin() as session:
        store_pings(session, pings, PARAMS)
        ensure_partitions(session, now=now)  # the months of the pings, from the default
        store_dead_letters(session, "mqtt", [("patrol/radio-1/location", "bad", b"{}")] * 2)
    with db.begin() as session:
        letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        letters[0].received_at = datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC)  # purged
        letters[1].received_at = datetime(2026, 3, 10, tzinfo=UTC)  # the first kept instant
    postgresql = db.kw["bind"].dialect.name == "postgresql"
    if postgresql:
        assert where_rows_are(db) == {
            "pings_2026_01": 10,
            "pings_2026_02": 5,
            "pings_2026_03": 7,
        }
    # Retention 5 days at noon on 15 March: everything before 10 March goes.
    with db.begin() as session:
        assert purge_pings(session, 5, PARAMS, now=now) == 10 + 5 + 2
    with db() as session:
        kept = session.scalars(select(PingRow.t_us).order_by(PingRow.t_us)).all()
        assert min(kept) == us(datetime(2026, 3, 10, tzinfo=UTC))
        assert len(kept) == 5
        assert session.scalars(select(DeadLetter.id)).all() == [letters[1].id]
        if postgresql:
            names = partition_names(session)
            assert "pings_2026_01" not in names and "pings_2026_02" not in names
            assert {"pings_2026_03", DEFAULT_PARTITION} <= names
    # Again: nothing left to drop or delete.
    with db.begin() as session:
        assert purge_pings(session, 5, PARAMS, now=now) == 0
    with db() as session:
        assert session.scalar(select(func.count()).select_from(PingRow)) == 5


def test_storage_commands_list_and_make_partitions(database_url):
    runner = CliRunner()
    listed = runner.invoke(
        main, ["storage", "partitions", "--db", database_url, "--format", "json"]
    )
    if database_url.startswith("sqlite"):
        assert listed.exit_code == 1
        assert "not partitioned" in listed.output
        return
    assert listed.exit_code == 0, listed.output
    table = json.loads(listed.output)
    month = datetime.now(UTC).date().replace(day=1)
    this_month = next(row for row in table if row["partition"] == f"pings_{month:%Y_%m}")
    assert this_month["first_day_utc"] == month.isoformat()
    assert table[-1]["partition"] == DEFAULT_PARTITION and table[-1]["first_day_utc"] is None
    # A ping of a month without a partition, then maintenance now.
    engine = make_engine(database_url)
    with session_factory(engine).begin() as session:
        store_pings(session, patrol("radio-1", datetime(2023, 7, 1, tzinfo=UTC), 0), PARAMS)
    engine.dispose()
    made = runner.invoke(main, ["storage", "maintain", "--db", database_url])
    assert made.exit_code == 0, made.output
    assert made.output == "made pings_2023_07\n"
    again = runner.invoke(main, ["storage", "maintain", "--db", database_url])
    assert again.output == "every partition needed is there\n"
