"""trust rollup: the track record per day (and per usual window) and key, and which days are current

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

COUNTS = ('pending', 'approved', 'denied', 'acknowledged', 'overridden', 'expired', 'recorded', 'defaults',
          'violations', 'succeeded', 'failed', 'rolled_back')


def upgrade() -> None:
    op.create_table('trust_rollup',
                    sa.Column('days', sa.Integer(), nullable=False),
                    sa.Column('first_day', storage.models.UTCDateTime(timezone=True), nullable=False),
                    sa.Column('agent_id', sa.Integer(), nullable=False),
                    sa.Column('service', sa.Text(), nullable=False),
                    sa.Column('action_type', sa.Text(), nullable=False),
                    sa.Column('environment', sa.Text(), nullable=False),
                    *(sa.Column(c, sa.Integer(), nullable=False) for c in COUNTS),
                    sa.Column('decisions', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('days', 'first_day', 'agent_id', 'service', 'action_type', 'environment'))
    op.create_table('trust_rollup_days',
                    sa.Column('day', storage.models.UTCDateTime(timezone=True), nullable=False),
                    sa.Column('dirty', sa.Boolean(), nullable=False),
                    sa.Column('token', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('day'))
    op.create_table('trust_rollup_spans',
                    sa.Column('days', sa.Integer(), nullable=False),
                    sa.Column('first_day', storage.models.UTCDateTime(timezone=True), nullable=False),
                    sa.Column('tokens', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('days', 'first_day'))


def downgrade() -> None:
    op.drop_table('trust_rollup_spans')
    op.drop_table('trust_rollup_days')
    op.drop_table('trust_rollup')
