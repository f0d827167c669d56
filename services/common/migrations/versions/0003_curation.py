"""curation of traces for training: flags, duplicates, eligibility

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:12:03.118204
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults fill the rows already stored: nothing flagged, nothing curated yet.
    with op.batch_alter_table("traces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "curation_status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                server_default="pending",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("duplicate_of", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("training_eligible", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("curated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_traces_duplicate_of"), ["duplicate_of"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_traces_training_eligible"), ["training_eligible"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("traces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_traces_training_eligible"))
        batch_op.drop_index(batch_op.f("ix_traces_duplicate_of"))
        batch_op.drop_column("curated_at")
        batch_op.drop_column("training_eligible")
        batch_op.drop_column("duplicate_of")
        batch_op.drop_column("curation_status")
        batch_op.drop_column("flagged")
