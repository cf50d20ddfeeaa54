"""an update's replies stay owed until Telegram has them: attempts spent and replies already sent

Revision ID: 0009_owed_replies
Revises: 0008_privacy
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_owed_replies'
down_revision: str | None = '0008_privacy'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('inboxupdate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('send_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('replies_sent', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('inboxupdate', schema=None) as batch_op:
        batch_op.drop_column('replies_sent')
        batch_op.drop_column('send_attempts')
