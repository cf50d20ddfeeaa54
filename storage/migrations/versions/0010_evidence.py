"""the game's evidence: player kind (human or model), task setting (private or group), the taboo a round showed

Revision ID: 0010_evidence
Revises: 0009_owed_replies
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010_evidence'
down_revision: str | None = '0009_owed_replies'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False,
                                      server_default='human'))
        batch_op.create_index(batch_op.f('ix_player_kind'), ['kind'], unique=False)
    with op.batch_alter_table('retrievaltask', schema=None) as batch_op:
        batch_op.add_column(sa.Column('setting', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='private'))
    with op.batch_alter_table('labelround', schema=None) as batch_op:
        batch_op.add_column(sa.Column('taboo_shown', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('labelround', schema=None) as batch_op:
        batch_op.drop_column('taboo_shown')
    with op.batch_alter_table('retrievaltask', schema=None) as batch_op:
        batch_op.drop_column('setting')
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_player_kind'))
        batch_op.drop_column('kind')
