"""Alembic environment: runs against the engine handed over by tracker.foundation.database."""

from alembic import context

import tracker.harm.models
import tracker.partnership.models
import tracker.plan.models
import tracker.stops.models  # noqa: F401  (registers the stop-and-search tables)
from tracker.foundation.models import Base

engine = context.config.attributes["engine"]


def include_name(name, type_, parent_names) -> bool:
    """Leave the pings table's monthly partitions (migration 0012) out of autogenerate: the
    database has them as tables, the models do not."""
    return not (type_ == "table" and name.startswith("pings_"))


with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
