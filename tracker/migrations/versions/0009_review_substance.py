"""bwv_reviews: reasonable grounds, camera coverage, conduct, a grade, the officer's
acknowledgement and a second review; review_actions

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ANSWERS = ("yes", "partly", "no")
CHECKS = {
    "grounds_reasonable": ANSWERS,
    "camera": ("whole", "joined_late", "stopped_early", "none"),
    "conduct_respectful": ANSWERS,
    "conduct_explained": ANSWERS,
    "conduct_de_escalated": ANSWERS,
    "grade": ("good_practice", "learning", "concern"),
    "second_grade": ("good_practice", "learning", "concern"),
}


def _allowed(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("bwv_reviews", schema=None) as batch_op:
        for column in ("grounds_reasonable", "conduct_respectful", "conduct_explained"):
            batch_op.add_column(sa.Column(column, sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("conduct_de_escalated", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("grounds_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("camera", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("camera_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("grade", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("second_sampled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("second_reviewer", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("second_reviewed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("second_grade", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("second_note", sa.Text(), nullable=True))
        for column, values in CHECKS.items():
            batch_op.create_check_constraint(f"{column}_allowed", _allowed(column, values))
    op.create_table(
        "review_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stop_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'done')", name=op.f("ck_review_actions_status_allowed")
        ),
        sa.ForeignKeyConstraint(
            ["stop_id"],
            ["stop_searches.id"],
            name=op.f("fk_review_actions_stop_id_stop_searches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_actions")),
    )
    with op.batch_alter_table("review_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_actions_stop_id"), ["stop_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("review_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_actions_stop_id"))
    op.drop_table("review_actions")
    with op.batch_alter_table("bwv_reviews", schema=None) as batch_op:
        for column in CHECKS:
            batch_op.drop_constraint(f"{column}_allowed", type_="check")
        for column in (
            "second_note",
            "second_grade",
            "second_reviewed_at",
            "second_reviewer",
            "second_sampled",
            "acknowledged_at",
            "acknowledged_by",
            "grade",
            "camera_note",
            "camera",
            "grounds_note",
            "conduct_de_escalated",
            "conduct_explained",
            "conduct_respectful",
            "grounds_reasonable",
        ):
            batch_op.drop_column(column)
