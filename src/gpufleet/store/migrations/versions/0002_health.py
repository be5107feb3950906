"""health results, remediations, schedules

Revision ID: 0002_health
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_health'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('health_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('check_name', sa.String(length=64), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('health_results', schema=None) as batch_op:
        batch_op.create_index('ix_health_results_node_at', ['node', 'at'], unique=False)
        batch_op.create_index('ix_health_results_status_at', ['status', 'at'], unique=False)

    op.create_table('remediations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('requeue', sa.Boolean(), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('max_rounds', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.Column('not_before', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('ticket', sa.JSON(), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('remediations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remediations_node'), ['node'], unique=False)

    op.create_table('schedules',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('cron', sa.String(length=128), nullable=False),
    sa.Column('tz', sa.String(length=64), nullable=False),
    sa.Column('command', sa.JSON(), nullable=False),
    sa.Column('job', sa.JSON(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('last_slot', sa.Float(), nullable=True),
    sa.Column('last_outcome', sa.Text(), nullable=True),
    sa.Column('last_run_at', sa.Float(), nullable=True),
    sa.Column('last_duration_s', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('schedules')
    with op.batch_alter_table('remediations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_remediations_node'))
    op.drop_table('remediations')
    with op.batch_alter_table('health_results', schema=None) as batch_op:
        batch_op.drop_index('ix_health_results_status_at')
        batch_op.drop_index('ix_health_results_node_at')
    op.drop_table('health_results')
