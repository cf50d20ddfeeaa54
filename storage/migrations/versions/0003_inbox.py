"""transactional inbox, conversation state in the database

Revision ID: 0003_inbox
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003_inbox'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'inboxupdate',
        sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('update_id', sa.BigInteger(), nullable=False),
        sa.Column('chat_key', sa.BigInteger(), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('replies', sa.JSON(), nullable=True),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('handled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('done_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('bot_key', 'update_id'),
    )
    with op.batch_alter_table('inboxupdate', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_lane', ['bot_key', 'chat_key', 'status', 'update_id'], unique=False)
        batch_op.create_index('ix_inbox_status', ['status', 'received_at'], unique=False)
    # The inbox's primary key does what this table did (dedupe on bot and update id).
    op.drop_table('processedupdate')
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.add_column(sa.Column('awaiting_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('awaiting_ref', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.drop_column('awaiting_ref')
        batch_op.drop_column('awaiting_kind')
    op.create_table(
        'processedupdate',
        sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('update_id', sa.BigInteger(), nullable=False),
        sa.Column('processed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('bot_key', 'update_id'),
    )
    with op.batch_alter_table('inboxupdate', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_status')
        batch_op.drop_index('ix_inbox_lane')
    op.drop_table('inboxupdate')
