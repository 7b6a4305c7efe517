"""indexes for the pages: pings by arrival time (ingest health), visits by hot spot and day

Revision ID: 0006
Revises: 0004, 0005
"""

from alembic import op

revision = "0006"
down_revision = ("0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pings_received_at"), ["received_at"], unique=False)
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_visits_hotspot_device_day", ["hotspot_id", "device_id", "day"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index("ix_visits_hotspot_device_day")
    with op.batch_alter_table("pings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pings_received_at"))
