"""search change log, stored search tokens

Revision ID: 0003_search_change
Revises: 0003_inbox
Create Date: 2026-11-28 15:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003_search_change'
down_revision: str | None = '0003_inbox'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('searchchange',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('sticker_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['sticker_id'], ['sticker.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('query', schema=None) as batch_op:
        # Queries made usable before this revision have none: start-up tokenizes those.
        batch_op.add_column(sa.Column('search_tokens', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('query', schema=None) as batch_op:
        batch_op.drop_column('search_tokens')
    op.drop_table('searchchange')
