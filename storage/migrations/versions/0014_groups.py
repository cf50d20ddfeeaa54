"""group rounds: the groups the bot is in, the rounds posted there and each member's pick

Revision ID: 0014_groups
Revises: 0013_inline
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0014_groups'
down_revision: str | None = '0013_inline'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'groupchat',
        sa.Column('chat_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('last_post_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('chat_id'),
    )
    op.create_table(
        'groupround',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('chat_id', sa.BigInteger(), nullable=False),
        sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('label_round_id', sa.Integer(), nullable=False),
        sa.Column('sticker_id', sa.Integer(), nullable=False),
        sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('query_ids', sa.JSON(), nullable=False),
        sa.Column('candidate_ids', sa.JSON(), nullable=False),
        sa.Column('seed', sa.BigInteger(), nullable=False),
        sa.Column('posted_by', sa.Integer(), nullable=True),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('message_id', sa.BigInteger(), nullable=True),
        sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('closes_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['label_round_id'], ['labelround.id']),
        sa.ForeignKeyConstraint(['posted_by'], ['player.id']),
        sa.ForeignKeyConstraint(['sticker_id'], ['sticker.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('groupround', schema=None) as batch_op:
        batch_op.create_index('ix_groupround_chat', ['chat_id', 'status'], unique=False)
        batch_op.create_index('ix_groupround_due', ['status', 'closes_at'], unique=False)
    op.create_table(
        'grouppick',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('round_id', sa.Integer(), nullable=False),
        sa.Column('player_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('sticker_id', sa.Integer(), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=True),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('picked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['player_id'], ['player.id']),
        sa.ForeignKeyConstraint(['round_id'], ['groupround.id']),
        sa.ForeignKeyConstraint(['sticker_id'], ['sticker.id']),
        sa.ForeignKeyConstraint(['task_id'], ['retrievaltask.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('round_id', 'player_id', name='uq_grouppick_member'),
    )
    with op.batch_alter_table('grouppick', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_grouppick_player_id'), ['player_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_grouppick_round_id'), ['round_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_grouppick_task_id'), ['task_id'], unique=False)


def downgrade() -> None:
    op.drop_table('grouppick')
    op.drop_table('groupround')
    op.drop_table('groupchat')
