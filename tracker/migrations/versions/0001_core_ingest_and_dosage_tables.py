"""core ingest and dosage tables

Revision ID: 0001
Revises:
Create Date: 2026-11-26 08:45:24.062639
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)

    op.create_table(
        "credited_spans",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credited_spans")),
    )
    with op.batch_alter_table("credited_spans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credited_spans_device_start", ["device_id", "start_us"], unique=False
        )
        batch_op.create_index(
            "ix_credited_spans_hotspot_start", ["hotspot_id", "start_us"], unique=False
        )

    op.create_table(
        "daily_dosage",
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("presence_us", sa.BigInteger(), nullable=False),
        sa.Column("officer_us", sa.BigInteger(), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hotspot_id", "day", name=op.f("pk_daily_dosage")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letters_received_at"), ["received_at"], unique=False
        )

    op.create_table(
        "device_daily_dosage",
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("officer_us", sa.BigInteger(), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hotspot_id", "device_id", "day", name=op.f("pk_device_daily_dosage")
        ),
    )
    with op.batch_alter_table("device_daily_dosage", schema=None) as batch_op:
        batch_op.create_index(
            "ix_device_daily_dosage_device_day", ["device_id", "day"], unique=False
        )

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    op.create_table(
        "dirty_device_days",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "day", name=op.f("pk_dirty_device_days")),
    )
    op.create_table(
        "dirty_hotspot_days",
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hotspot_id", "day", name=op.f("pk_dirty_hotspot_days")),
    )
    op.create_table(
        "hot_spots",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("geometry", sa.JSON(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hot_spots")),
    )
    op.create_table(
        "officers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_officers")),
    )
    op.create_table(
        "pings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("t_us", sa.BigInteger(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("speed_kmh", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pings")),
        sa.UniqueConstraint("device_id", "t_us", name=op.f("uq_pings_device_id")),
    )
    op.create_table(
        "visits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=False),
        sa.Column("presence_us", sa.BigInteger(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
    )
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index("ix_visits_device_day", ["device_id", "day"], unique=False)
        batch_op.create_index("ix_visits_hotspot_start", ["hotspot_id", "start_us"], unique=False)

    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("officer_id", sa.String(length=64), nullable=False),
        sa.Column("starts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_assignments_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_assignments_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
        sa.UniqueConstraint("device_id", "starts", name=op.f("uq_assignments_device_id")),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assignments_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_assignments_officer_id"), ["officer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assignments_officer_id"))
        batch_op.drop_index(batch_op.f("ix_assignments_device_id"))

    op.drop_table("assignments")
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index("ix_visits_hotspot_start")
        batch_op.drop_index("ix_visits_device_day")

    op.drop_table("visits")
    op.drop_table("pings")
    op.drop_table("officers")
    op.drop_table("hot_spots")
    op.drop_table("dirty_hotspot_days")
    op.drop_table("dirty_device_days")
    op.drop_table("devices")
    with op.batch_alter_table("device_daily_dosage", schema=None) as batch_op:
        batch_op.drop_index("ix_device_daily_dosage_device_day")

    op.drop_table("device_daily_dosage")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_received_at"))

    op.drop_table("dead_letters")
    op.drop_table("daily_dosage")
    with op.batch_alter_table("credited_spans", schema=None) as batch_op:
        batch_op.drop_index("ix_credited_spans_hotspot_start")
        batch_op.drop_index("ix_credited_spans_device_start")

    op.drop_table("credited_spans")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))

    op.drop_table("audit_events")
