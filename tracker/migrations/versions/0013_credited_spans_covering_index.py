"""credited spans: the hot spot index also holds the end and the device (tasking, pages)

The index on (hotspot_id, start_us) becomes (hotspot_id, start_us, end_us, device_id): a
query of some hot spots' spans over a period (tasking, the hot spot pages) then reads the
index alone instead of each row it points to, which halves its time on SQLite.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credited_spans", schema=None) as batch_op:
        batch_op.drop_index("ix_credited_spans_hotspot_start")
        batch_op.create_index(
            "ix_credited_spans_hotspot_start_end_device",
            ["hotspot_id", "start_us", "end_us", "device_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("credited_spans", schema=None) as batch_op:
        batch_op.drop_index("ix_credited_spans_hotspot_start_end_device")
        batch_op.create_index(
            "ix_credited_spans_hotspot_start", ["hotspot_id", "start_us"], unique=False
        )
