"""pings partitioned by month on PostgreSQL (a DEFAULT partition for the rest); no change on
SQLite

The table is rebuilt: the old one renamed, a partitioned one created with a partition for
every month that has rows, this month and the next three (UTC months), the rows copied and
the old table dropped. The ids go on from the same sequence. A key of a partitioned table
must hold the partition key, so the primary key becomes (t_us, id); nothing refers to
pings.id. Its own code, not tracker.dosage.partitions, so that it always does the same.

Revision ID: 0012
Revises: 0011
"""

from datetime import UTC, date, datetime

from alembic import op
from sqlalchemy import text

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

MONTHS_AHEAD = 3
COLUMNS = """
    id BIGINT NOT NULL DEFAULT nextval('{sequence}'::regclass),
    device_id VARCHAR(128) NOT NULL,
    t_us BIGINT NOT NULL,
    lat FLOAT NOT NULL,
    lon FLOAT NOT NULL,
    accuracy_m FLOAT,
    speed_kmh FLOAT,
    source VARCHAR(16) NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE NOT NULL
"""
NAMES = "id, device_id, t_us, lat, lon, accuracy_m, speed_kmh, source, received_at"


def _month_us(month: date) -> int:
    return int(datetime(month.year, month.month, 1, tzinfo=UTC).timestamp()) * 1_000_000


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    sequence = _set_aside("pings_unpartitioned")
    op.execute(
        f"CREATE TABLE pings ({COLUMNS.format(sequence=sequence)}) PARTITION BY RANGE (t_us)"
    )
    months = set(
        bind.scalars(
            text(
                "SELECT DISTINCT date_trunc('month', to_timestamp(t_us / 1e6) AT TIME ZONE 'UTC')"
                "::date FROM pings_unpartitioned"
            )
        )
    )
    month = datetime.now(UTC).date().replace(day=1)
    for _ in range(MONTHS_AHEAD + 1):
        months.add(month)
        month = _next_month(month)
    for month in sorted(months):
        op.execute(
            f"CREATE TABLE pings_{month:%Y_%m} PARTITION OF pings "
            f"FOR VALUES FROM ({_month_us(month)}) TO ({_month_us(_next_month(month))})"
        )
    op.execute("CREATE TABLE pings_default PARTITION OF pings DEFAULT")
    _move_into_pings("pings_unpartitioned", "t_us, id", sequence)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    sequence = _set_aside("pings_partitioned")
    op.execute(f"CREATE TABLE pings ({COLUMNS.format(sequence=sequence)})")
    _move_into_pings("pings_partitioned", "id", sequence)  # its partitions go with it


def _set_aside(name: str) -> str:
    """Rename pings to `name` without its key and index (their names are the new table's);
    return the id sequence."""
    sequence = op.get_bind().scalar(text("SELECT pg_get_serial_sequence('pings', 'id')"))
    op.execute(f"ALTER TABLE pings RENAME TO {name}")
    op.execute(f"ALTER TABLE {name} DROP CONSTRAINT pk_pings")
    op.execute(f"ALTER TABLE {name} DROP CONSTRAINT uq_pings_device_id")
    op.execute("DROP INDEX ix_pings_received_at")
    return sequence


def _move_into_pings(old: str, primary_key: str, sequence: str) -> None:
    """Copy the rows of `old` into the new pings, then give it its key, unique constraint,
    index and the id sequence, and drop `old`."""
    op.execute(f"INSERT INTO pings ({NAMES}) SELECT {NAMES} FROM {old}")  # noqa: S608 (constants)
    # Keys and index after the copy: building them once is faster than row by row.
    op.execute(f"ALTER TABLE pings ADD CONSTRAINT pk_pings PRIMARY KEY ({primary_key})")
    op.execute("ALTER TABLE pings ADD CONSTRAINT uq_pings_device_id UNIQUE (device_id, t_us)")
    op.execute("CREATE INDEX ix_pings_received_at ON pings (received_at)")
    op.execute(f"ALTER SEQUENCE {sequence} OWNED BY pings.id")  # or it goes with the old table
    op.execute(f"DROP TABLE {old}")
