"""inline sticker search: the stickers consented players chose from the inline results

Revision ID: 0013_inline
Revises: 0012_partners
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0013_inline'
down_revision: str | None = '0012_partners'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'inlinechoice',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('player_id', sa.Integer(), nullable=False),
        sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('query', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column('shown', sa.JSON(), nullable=False),
        sa.Column('sticker_id', sa.Integer(), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('hour', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['player_id'], ['player.id']),
        sa.ForeignKeyConstraint(['sticker_id'], ['sticker.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('inlinechoice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inlinechoice_player_id'), ['player_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inlinechoice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inlinechoice_player_id'))
    op.drop_table('inlinechoice')
