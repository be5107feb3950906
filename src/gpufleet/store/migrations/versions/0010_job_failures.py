"""jobs.failures: restarts after a fault or failure (what --restart on-failure:N counts, issue 17)

Revision ID: 0010_job_failures
Revises: 0009_jobs_keyset
"""
import sqlalchemy as sa
from alembic import op


revision = '0010_job_failures'
down_revision = '0009_jobs_keyset'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('failures')
