"""live screens: the message ids of each task's screen in a player's chat

Revision ID: 0007_live_screens
Revises: 0006_jobrun_attempts
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0007_live_screens'
down_revision: str | None = '0006_jobrun_attempts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'livescreen',
        sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('player_id', sa.Integer(), nullable=False),
        sa.Column('screen', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('chat_id', sa.BigInteger(), nullable=False),
        sa.Column('text_message_id', sa.BigInteger(), nullable=True),
        sa.Column('photo_message_id', sa.BigInteger(), nullable=True),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['player_id'], ['player.id']),
        sa.PrimaryKeyConstraint('bot_key', 'player_id', 'screen'),
    )


def downgrade() -> None:
    op.drop_table('livescreen')
