"""training jobs: device, selection reasons, cancellation, attempts, resulting model

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("device", text(length=8), server_default="cpu", nullable=False)
        )
        batch_op.add_column(
            sa.Column("task_size", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("selection", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("resumed_at_step", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("model", text(length=128), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("model_version", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        for column in (
            "model_version",
            "model",
            "resumed_at_step",
            "attempts",
            "cancel_requested",
            "selection",
            "task_size",
            "device",
        ):
            batch_op.drop_column(column)
