"""Alembic environment: runs against the engine handed over by tracker.foundation.database."""

from alembic import context

import tracker.harm.models
import tracker.partnership.models
import tracker.plan.models
import tracker.stops.models  # noqa: F401  (registers the stop-and-search tables)
from tracker.foundation.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
