"""job runs count their attempts (failed and crashed slots are retried)

Revision ID: 0006_jobrun_attempts
Revises: 0003_outbox_queue
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_jobrun_attempts'
down_revision: str | None = '0003_outbox_queue'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobrun', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    with op.batch_alter_table('jobrun', schema=None) as batch_op:
        batch_op.drop_column('attempts')
