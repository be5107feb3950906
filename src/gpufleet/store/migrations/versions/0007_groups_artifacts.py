"""job groups (matrices, arrays), job dependencies, artifacts and their per-tenant retention

Revision ID: 0007_groups_artifacts
Revises: 0006_results
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_groups_artifacts'
down_revision = '0006_results'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_groups',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('axes', sa.JSON(), nullable=False),
    sa.Column('cells', sa.JSON(), nullable=False),
    sa.Column('max_running', sa.Integer(), nullable=True),
    sa.Column('dependency', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_groups', schema=None) as batch_op:
        batch_op.create_index('ix_job_groups_tenant', ['tenant'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('group_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('group_index', sa.Integer(), nullable=True))
        batch_op.create_index('ix_jobs_group', ['group_id'], unique=False)
    op.create_table('job_dependencies',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.create_index('ix_job_dependencies_job', ['job_id'], unique=False)
        batch_op.create_index('ix_job_dependencies_target', ['target_id'], unique=False)
    op.create_table('artifacts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('sha1', sa.String(length=40), nullable=False),
    sa.Column('store', sa.String(length=16), nullable=False),
    sa.Column('location', sa.Text(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=True),
    sa.Column('deleted_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.create_index('ix_artifacts_job', ['job_id', 'attempt', 'rank', 'path'], unique=True)
        batch_op.create_index('ix_artifacts_tenant', ['tenant', 'created_at'], unique=False)
    op.create_table('artifact_policies',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('max_bytes', sa.BigInteger(), nullable=True),
    sa.Column('retention_s', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('tenant')
    )


def downgrade() -> None:
    op.drop_table('artifact_policies')
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_index('ix_artifacts_tenant')
        batch_op.drop_index('ix_artifacts_job')
    op.drop_table('artifacts')
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.drop_index('ix_job_dependencies_target')
        batch_op.drop_index('ix_job_dependencies_job')
    op.drop_table('job_dependencies')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_group')
        batch_op.drop_column('group_index')
        batch_op.drop_column('group_id')
    with op.batch_alter_table('job_groups', schema=None) as batch_op:
        batch_op.drop_index('ix_job_groups_tenant')
    op.drop_table('job_groups')
