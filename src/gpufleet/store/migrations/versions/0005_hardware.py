"""hardware identity (versioned node/GPU attributes) and clean-room perf runs with their samples

Revision ID: 0005_hardware
Revises: 0004_usage
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_hardware'
down_revision = '0004_usage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hardware_attributes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('gpu_uuid', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('since', sa.Float(), nullable=False),
    sa.Column('until', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('hardware_attributes', schema=None) as batch_op:
        batch_op.create_index('ix_hardware_attributes_node', ['node', 'until'], unique=False)
    op.create_table('perf_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('gpus', sa.JSON(), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('valid', sa.Boolean(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('prolog', sa.JSON(), nullable=False),
    sa.Column('epilog', sa.JSON(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('identity', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('perf_runs', schema=None) as batch_op:
        batch_op.create_index('ix_perf_runs_job_attempt_node', ['job_id', 'attempt', 'node'], unique=True)
    op.create_table('perf_samples',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('gpu', sa.Integer(), nullable=False),
    sa.Column('sm_mhz', sa.Integer(), nullable=True),
    sa.Column('mem_mhz', sa.Integer(), nullable=True),
    sa.Column('temp_c', sa.Integer(), nullable=True),
    sa.Column('power_w', sa.Float(), nullable=True),
    sa.Column('util_pct', sa.Integer(), nullable=True),
    sa.Column('throttle', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('perf_samples', schema=None) as batch_op:
        batch_op.create_index('ix_perf_samples_job_attempt', ['job_id', 'attempt'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('perf_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_perf_samples_job_attempt')
    op.drop_table('perf_samples')
    with op.batch_alter_table('perf_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_perf_runs_job_attempt_node')
    op.drop_table('perf_runs')
    with op.batch_alter_table('hardware_attributes', schema=None) as batch_op:
        batch_op.drop_index('ix_hardware_attributes_node')
    op.drop_table('hardware_attributes')
