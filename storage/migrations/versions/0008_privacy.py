"""players choose a nickname for leaderboards and prizes; skipped reviews go to the back of the queue

Revision ID: 0008_privacy
Revises: 0007_live_screens
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008_privacy'
down_revision: str | None = '0007_live_screens'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nickname', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('nickname_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_player_nickname_key'), ['nickname_key'], unique=False)
    with op.batch_alter_table('query', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_skipped_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('query', schema=None) as batch_op:
        batch_op.drop_column('review_skipped_at')
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_player_nickname_key'))
        batch_op.drop_column('nickname_key')
        batch_op.drop_column('nickname')
