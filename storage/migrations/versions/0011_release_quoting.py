"""a seed query remembers that its released CSV row quoted a field that needed no quotes

Revision ID: 0011_release_quoting
Revises: 0010_evidence
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_release_quoting'
down_revision: str | None = '0010_evidence'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('query', schema=None) as batch_op:
        batch_op.add_column(sa.Column('release_quoted', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('query', schema=None) as batch_op:
        batch_op.drop_column('release_quoted')
