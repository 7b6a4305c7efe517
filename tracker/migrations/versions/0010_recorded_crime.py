"""recorded_crimes: police.uk street-level crime and force exports, for crime harm

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXED = ("crime_ref", "month")


def upgrade() -> None:
    op.create_table(
        "recorded_crimes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("crime_ref", sa.String(length=64), nullable=True),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=True),
        sa.Column("crime_type", sa.String(length=200), nullable=False),
        sa.Column("offence_code", sa.String(length=32), nullable=True),
        sa.Column("offence", sa.String(length=200), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("lsoa_code", sa.String(length=16), nullable=True),
        sa.Column("lsoa_name", sa.String(length=200), nullable=True),
        sa.Column("reported_by", sa.String(length=200), nullable=True),
        sa.Column("falls_within", sa.String(length=200), nullable=True),
        sa.Column("last_outcome", sa.String(length=200), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("source_file", sa.String(length=255), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "source IN ('police.uk', 'force')", name=op.f("ck_recorded_crimes_source_allowed")
        ),
        sa.CheckConstraint(
            "(longitude IS NULL) = (latitude IS NULL)",
            name=op.f("ck_recorded_crimes_located_or_not"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recorded_crimes")),
        sa.UniqueConstraint("import_key", name=op.f("uq_recorded_crimes_import_key")),
    )
    with op.batch_alter_table("recorded_crimes", schema=None) as batch_op:
        for column in INDEXED:
            batch_op.create_index(
                batch_op.f(f"ix_recorded_crimes_{column}"), [column], unique=False
            )


def downgrade() -> None:
    with op.batch_alter_table("recorded_crimes", schema=None) as batch_op:
        for column in reversed(INDEXED):
            batch_op.drop_index(batch_op.f(f"ix_recorded_crimes_{column}"))
    op.drop_table("recorded_crimes")
