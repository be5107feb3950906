"""attempts, token lifecycle, idempotent submission, booking approval

Revision ID: 0003_attempts_security
Revises: 0002_health
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_attempts_security'
down_revision = '0002_health'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('allocation', sa.JSON(), nullable=False),
    sa.Column('handle', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_job_n', ['job_id', 'n'], unique=True)
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=True))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=128), nullable=True))
        batch_op.create_index('ix_jobs_user_idempotency_key', ['user', 'idempotency_key'], unique=True)
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.String(length=256), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('expires_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('last_used_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', sa.Float(), nullable=True))
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval', sa.String(length=16), nullable=False,
                                      server_default='approved'))


def downgrade() -> None:
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_column('approval')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('note')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_user_idempotency_key')
        batch_op.drop_column('idempotency_key')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('attempt')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_attempts_job_n')
    op.drop_table('attempts')
