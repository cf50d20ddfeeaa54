"""partners: when a model partner took a submitted round (one partner answer per round)

Revision ID: 0012_partners
Revises: 0011_release_quoting
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0012_partners'
down_revision: str | None = '0011_release_quoting'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('labelround', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partner_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('labelround', schema=None) as batch_op:
        batch_op.drop_column('partner_at')
