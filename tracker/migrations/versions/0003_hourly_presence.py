"""hourly presence

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 08:51:20.385824
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hourly_presence",
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("presence_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hotspot_id", "day", "hour", name=op.f("pk_hourly_presence")),
    )


def downgrade() -> None:
    op.drop_table("hourly_presence")
