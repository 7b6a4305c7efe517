"""users.agency for partners; the problem-solving plans: sara_plans, sara_actions,
sara_action_updates, sara_versions

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATUS_ALLOWED = "status IN ('open', 'in_progress', 'done', 'cancelled')"
PLAN_TEXTS = ("problem", "harm", "offender", "victim", "place", "evidence", "measures", "result")
INDEXED = {
    "sara_actions": "plan_id",
    "sara_action_updates": "action_id",
    "sara_versions": "plan_id",
}


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agency", sa.String(length=200), nullable=True))
    op.create_table(
        "sara_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hotspot_id", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.Text(), nullable=False) for name in PLAN_TEXTS),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sara_plans")),
        sa.UniqueConstraint("hotspot_id", name=op.f("uq_sara_plans_hotspot_id")),
    )
    op.create_table(
        "sara_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner_agency", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(STATUS_ALLOWED, name=op.f("ck_sara_actions_status_allowed")),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["sara_plans.id"],
            name=op.f("fk_sara_actions_plan_id_sara_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sara_actions")),
    )
    op.create_table(
        "sara_action_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("author_agency", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint(STATUS_ALLOWED, name=op.f("ck_sara_action_updates_status_allowed")),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["sara_actions.id"],
            name=op.f("fk_sara_action_updates_action_id_sara_actions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sara_action_updates")),
    )
    op.create_table(
        "sara_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("actor_agency", sa.String(length=200), nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["sara_plans.id"],
            name=op.f("fk_sara_versions_plan_id_sara_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sara_versions")),
        sa.UniqueConstraint("plan_id", "version", name=op.f("uq_sara_versions_plan_id")),
    )
    for table, column in INDEXED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


def downgrade() -> None:
    for table, column in reversed(INDEXED.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
    for table in ("sara_versions", "sara_action_updates", "sara_actions", "sara_plans"):
        op.drop_table(table)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("agency")
