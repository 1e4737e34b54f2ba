"""shared pacing: the per-channel Slack send budget and the Slack breaker, in the database

Revision ID: 0004
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pacing_buckets',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('tat', sa.Float(), nullable=False),
    sa.Column('queue_tail', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('breaker_state',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('open_until', sa.Float(), nullable=False),
    sa.Column('opened_at', sa.Float(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('breaker_state')
    op.drop_table('pacing_buckets')
