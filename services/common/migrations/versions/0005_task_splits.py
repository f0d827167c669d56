"""task splits and merges: parent task, status, related tasks, serve-time matcher

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 17:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tasks mined before splits existed are whole signatures: active, with no parent.
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("parent_task_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                server_default="active",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("related_task_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("matcher", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("matcher_agreement", sa.Float(), nullable=True))
        batch_op.create_index("ix_tasks_parent_task_id", ["parent_task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_parent_task_id")
        batch_op.drop_column("matcher_agreement")
        batch_op.drop_column("matcher")
        batch_op.drop_column("related_task_ids")
        batch_op.drop_column("status")
        batch_op.drop_column("parent_task_id")
