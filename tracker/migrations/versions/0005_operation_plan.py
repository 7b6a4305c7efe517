"""operation plan: operations, their hot spots and phases of targets

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_operations_dates_ordered")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint("name", name=op.f("uq_operations_name")),
    )
    op.create_table(
        "operation_hot_spots",
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_operation_hot_spots_operation_id_operations"),
        ),
        sa.PrimaryKeyConstraint("operation_id", "hotspot_id", name=op.f("pk_operation_hot_spots")),
    )
    op.create_table(
        "plan_phases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("ends", sa.Date(), nullable=False),
        sa.Column("presence_minutes_per_day", sa.Float(), nullable=True),
        sa.Column("presence_minutes_per_week", sa.Float(), nullable=True),
        sa.Column("visits_per_day", sa.Float(), nullable=True),
        sa.Column("min_visit_minutes", sa.Float(), nullable=False),
        sa.Column("max_presence_minutes_per_day", sa.Float(), nullable=True),
        sa.Column("windows", sa.JSON(), nullable=True),
        sa.CheckConstraint("ends >= starts", name=op.f("ck_plan_phases_dates_ordered")),
        sa.CheckConstraint(
            "(presence_minutes_per_day IS NULL) <> (presence_minutes_per_week IS NULL)",
            name=op.f("ck_plan_phases_one_presence_target"),
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["operations.id"],
            name=op.f("fk_plan_phases_operation_id_operations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_phases")),
    )
    with op.batch_alter_table("plan_phases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plan_phases_operation_id"), ["operation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("plan_phases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_phases_operation_id"))
    op.drop_table("plan_phases")
    op.drop_table("operation_hot_spots")
    op.drop_table("operations")
