"""Alembic environment: runs against the engine handed over by tracker.db."""

from alembic import context

import tracker.plan_models  # noqa: F401
from tracker import stops_models  # noqa: F401  (registers the stop-and-search tables)
from tracker.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
