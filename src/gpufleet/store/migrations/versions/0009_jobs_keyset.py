"""jobs: indexes that serve `ORDER BY id DESC` under each list filter (keyset pages, issue 16):
(state, id) and (tenant, state, id) replace (state, tenant)

Revision ID: 0009_jobs_keyset
Revises: 0008_usage_rollups
"""
from alembic import op


revision = '0009_jobs_keyset'
down_revision = '0008_usage_rollups'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_state_tenant')
        batch_op.create_index('ix_jobs_state_id', ['state', 'id'], unique=False)
        batch_op.create_index('ix_jobs_tenant_state_id', ['tenant', 'state', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_state_id')
        batch_op.drop_index('ix_jobs_state_id')
        batch_op.create_index('ix_jobs_state_tenant', ['state', 'tenant'], unique=False)
