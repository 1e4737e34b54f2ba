"""trust rollup: the track record per day, agent, service, action type and environment

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

import storage.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

KEY = ('day', 'agent_id', 'service', 'action_type', 'environment')


def _key() -> list[sa.Column]:
    return [sa.Column('day', storage.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column('agent_id', sa.Integer(), nullable=False),
            sa.Column('service', sa.Text(), nullable=False),
            sa.Column('action_type', sa.Text(), nullable=False),
            sa.Column('environment', sa.Text(), nullable=False)]


def upgrade() -> None:
    counts = ('pending', 'approved', 'denied', 'acknowledged', 'overridden', 'expired', 'recorded', 'defaults',
              'violations', 'succeeded', 'failed', 'rolled_back')
    op.create_table('trust_rollup', *_key(), *(sa.Column(c, sa.Integer(), nullable=False) for c in counts),
                    sa.PrimaryKeyConstraint(*KEY))
    op.create_table('trust_rollup_decisions', *_key(),
                    sa.Column('bucket', sa.Integer(), nullable=False),
                    sa.Column('n', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint(*KEY, 'bucket'))
    op.create_table('trust_rollup_days',
                    sa.Column('day', storage.models.UTCDateTime(timezone=True), nullable=False),
                    sa.Column('dirty', sa.Boolean(), nullable=False),
                    sa.Column('token', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('day'))


def downgrade() -> None:
    op.drop_table('trust_rollup_days')
    op.drop_table('trust_rollup_decisions')
    op.drop_table('trust_rollup')
