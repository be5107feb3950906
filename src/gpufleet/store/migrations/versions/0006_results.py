"""benchmark results with provenance (results) and JUnit test cases (test_cases)

Revision ID: 0006_results
Revises: 0005_hardware
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_results'
down_revision = '0005_hardware'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('series', sa.String(length=512), nullable=False),
    sa.Column('benchmark', sa.String(length=256), nullable=False),
    sa.Column('metric', sa.String(length=256), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('unit', sa.String(length=64), nullable=False),
    sa.Column('higher_is_better', sa.Boolean(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=True),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('gpu_model', sa.String(length=128), nullable=False),
    sa.Column('sku', sa.String(length=128), nullable=False),
    sa.Column('driver', sa.String(length=64), nullable=False),
    sa.Column('vbios', sa.String(length=64), nullable=False),
    sa.Column('gpu_uuids', sa.Text(), nullable=False),
    sa.Column('commit', sa.String(length=256), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=True),
    sa.Column('clocks', sa.String(length=64), nullable=False),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('invalid_reason', sa.Text(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index('ix_results_series_at', ['series', 'at'], unique=False)
        batch_op.create_index('ix_results_tenant_at', ['tenant', 'at'], unique=False)
        batch_op.create_index('ix_results_job', ['job_id', 'attempt'], unique=False)
    op.create_table('test_cases',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=True),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('suite', sa.String(length=256), nullable=False),
    sa.Column('classname', sa.String(length=256), nullable=False),
    sa.Column('name', sa.String(length=512), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('time_s', sa.Float(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.create_index('ix_test_cases_job', ['job_id', 'attempt'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('test_cases', schema=None) as batch_op:
        batch_op.drop_index('ix_test_cases_job')
    op.drop_table('test_cases')
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_job')
        batch_op.drop_index('ix_results_tenant_at')
        batch_op.drop_index('ix_results_series_at')
    op.drop_table('results')
