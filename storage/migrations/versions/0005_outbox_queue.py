"""outbox as a queue: status, lease, attempts, dead letters; the player's bot; chat migrations

Revision ID: 0003_outbox_queue
Revises: 0003_search_change
Create Date: 2026-11-28 15:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003_outbox_queue'
down_revision: str | None = '0003_search_change'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('chatmigration',
    sa.Column('old_chat_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('new_chat_id', sa.BigInteger(), nullable=False),
    sa.Column('migrated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('old_chat_id')
    )
    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bot_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))

    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='pending'))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
        batch_op.alter_column('delivered_at', new_column_name='sent_at')
        batch_op.drop_index('ix_outboxmessage_delivered_at')

    # What was marked delivered counts as sent; the rest waits, due now.
    outbox = sa.table('outboxmessage', sa.column('status', sa.String), sa.column('sent_at'),
                      sa.column('created_at'), sa.column('next_attempt_at'))
    op.execute(outbox.update().where(outbox.c.sent_at.is_not(None)).values(status='sent'))
    op.execute(outbox.update().values(next_attempt_at=outbox.c.created_at))

    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.alter_column('next_attempt_at', existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False)
        batch_op.alter_column('status', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), server_default=None)
        batch_op.alter_column('attempts', existing_type=sa.Integer(), server_default=None)
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    outbox = sa.table('outboxmessage', sa.column('status', sa.String), sa.column('sent_at'))
    # Dead letters were never delivered; the old schema has no other way to stop resending them.
    op.execute(outbox.update().where(outbox.c.status == 'dead', outbox.c.sent_at.is_(None))
               .values(sent_at=sa.func.current_timestamp()))
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')
        batch_op.alter_column('sent_at', new_column_name='delivered_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('status')
    with op.batch_alter_table('outboxmessage', schema=None) as batch_op:
        batch_op.create_index('ix_outboxmessage_delivered_at', ['delivered_at'], unique=False)

    with op.batch_alter_table('player', schema=None) as batch_op:
        batch_op.drop_column('bot_key')

    op.drop_table('chatmigration')
