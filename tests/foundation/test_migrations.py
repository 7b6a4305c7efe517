"""The Alembic migrations build exactly the schema the models describe, and keep data."""

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from tracker.dosage.partitions import partition_names
from tracker.foundation.database import alembic_config, make_engine, schema_is_current, upgrade
from tracker.foundation.models import Base, PingRow
from tracker.stops import models as stops_models  # noqa: F401 (they register their tables)


def test_the_migrated_schema_matches_the_models(database_url):
    engine = make_engine(database_url)
    with engine.connect() as connection:
        # Partitions of pings (PostgreSQL) are its storage, not tables of the models.
        partitions = partition_names(connection)
        assert (engine.dialect.name == "postgresql") == bool(partitions)
        context = MigrationContext.configure(
            connection,
            opts={"include_name": lambda name, kind, _: kind != "table" or name not in partitions},
        )
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_and_upgrade_again_keep_the_pings(database_url):
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            PingRow.__table__.insert(),
            [
                {
                    "device_id": "r1",
                    "t_us": 1_780_000_000_000_000,
                    "lat": 52.6,
                    "lon": -1.1,
                    "source": "import",
                    "received_at": datetime.now(UTC),
                }
            ],
        )
    command.downgrade(alembic_config(engine), "0003")
    assert not schema_is_current(engine)
    upgrade(engine)
    assert schema_is_current(engine)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(PingRow.__table__)) == 1
    engine.dispose()
