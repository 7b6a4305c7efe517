"""stop and search records and BWV reviews

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26 09:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

GOWISELY = (
    "grounds",
    "object",
    "warrant_card",
    "identity",
    "station",
    "entitlement",
    "legal_power",
    "you_are_detained",
)


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(
        f"{column} IN ({allowed})", name=op.f(f"ck_bwv_reviews_{column}_allowed")
    )


def upgrade() -> None:
    op.create_table(
        "stop_searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("part_of_policing_operation", sa.Boolean(), nullable=True),
        sa.Column("policing_operation", sa.String(length=200), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("gender", sa.String(length=64), nullable=True),
        sa.Column("age_range", sa.String(length=64), nullable=True),
        sa.Column("self_defined_ethnicity", sa.String(length=200), nullable=True),
        sa.Column("officer_defined_ethnicity", sa.String(length=200), nullable=True),
        sa.Column("legislation", sa.String(length=200), nullable=True),
        sa.Column("object_of_search", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("outcome_linked_to_object", sa.Boolean(), nullable=True),
        sa.Column("removal_of_more_than_outer_clothing", sa.Boolean(), nullable=True),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("officer_id", sa.String(length=64), nullable=True),
        sa.Column("grounds", sa.Text(), nullable=True),
        sa.Column("bwv_recorded", sa.Boolean(), nullable=True),
        sa.Column("bwv_reference", sa.String(length=128), nullable=True),
        sa.Column("hotspot_id", sa.String(length=64), nullable=True),
        sa.Column("operation_id", sa.Integer(), nullable=True),
        sa.Column("import_key", sa.String(length=64), nullable=False),
        sa.Column("source_file", sa.String(length=255), nullable=True),
        sa.Column("source_line", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["officer_id"], ["officers.id"], name=op.f("fk_stop_searches_officer_id_officers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stop_searches")),
        sa.UniqueConstraint("import_key", name=op.f("uq_stop_searches_import_key")),
        sa.UniqueConstraint("reference", name=op.f("uq_stop_searches_reference")),
    )
    with op.batch_alter_table("stop_searches", schema=None) as batch_op:
        for column in ("hotspot_id", "occurred_at", "officer_id", "operation_id"):
            batch_op.create_index(batch_op.f(f"ix_stop_searches_{column}"), [column], unique=False)

    op.create_table(
        "bwv_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stop_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("no_footage_reason", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(length=64), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        *(sa.Column(column, sa.String(length=8), nullable=True) for column in GOWISELY),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("rag", sa.String(length=8), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("sampled", sa.Boolean(), nullable=False),
        _one_of("status", ("pending", "reviewed", "no_footage")),
        _one_of("outcome", ("no_issues", "learning_identified", "referred")),
        _one_of("rag", ("red", "amber", "green")),
        *(_one_of(column, ("yes", "partly", "no")) for column in GOWISELY),
        sa.ForeignKeyConstraint(
            ["stop_id"],
            ["stop_searches.id"],
            name=op.f("fk_bwv_reviews_stop_id_stop_searches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bwv_reviews")),
        sa.UniqueConstraint("stop_id", name=op.f("uq_bwv_reviews_stop_id")),
    )
    with op.batch_alter_table("bwv_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bwv_reviews_due_date"), ["due_date"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bwv_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bwv_reviews_due_date"))

    op.drop_table("bwv_reviews")
    with op.batch_alter_table("stop_searches", schema=None) as batch_op:
        for column in ("operation_id", "officer_id", "occurred_at", "hotspot_id"):
            batch_op.drop_index(batch_op.f(f"ix_stop_searches_{column}"))

    op.drop_table("stop_searches")
