"""usage rollups: attempt_usage gains sku, labels and sampled_s; per-day rollups (usage_daily, usage_daily_node),
per 32 days (usage_blocks, usage_blocks_node), per-job idle totals (usage_jobs); partial indexes for running and multi-day rows

Revision ID: 0008_usage_rollups
Revises: 0007_groups_artifacts
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_usage_rollups'
down_revision = '0007_groups_artifacts'
branch_labels = None
depends_on = None

DAY = 86400


def _measures() -> list:
    return [sa.Column('gpu_s', sa.Float(), nullable=False), sa.Column('busy_gpu_s', sa.Float(), nullable=False),
            sa.Column('sampled_gpu_s', sa.Float(), nullable=False), sa.Column('started', sa.Integer(), nullable=False),
            sa.Column('wait_s', sa.Float(), nullable=False)]


def upgrade() -> None:
    with op.batch_alter_table('attempt_usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sku', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('labels', sa.Text(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('sampled_s', sa.Float(), nullable=True))
    op.create_index('ix_attempt_usage_open', 'attempt_usage', ['started_at'],
                    sqlite_where=sa.text('ended_at IS NULL'), postgresql_where=sa.text('ended_at IS NULL'))
    op.create_index('ix_attempt_usage_long', 'attempt_usage', ['started_at'],
                    sqlite_where=sa.text(f'ended_at - started_at > {DAY}'),
                    postgresql_where=sa.text(f'ended_at - started_at > {DAY}'))
    group = ['tenant', 'user', 'gpu_model', 'sku', 'kind', 'labels']
    for table, first in (('usage_daily', 'day'), ('usage_blocks', 'block')):
        op.create_table(table,
        sa.Column(first, sa.Integer(), nullable=False),
        sa.Column('tenant', sa.String(length=64), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('gpu_model', sa.String(length=64), nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('labels', sa.Text(), nullable=False),
        *_measures(),
        sa.PrimaryKeyConstraint(first, *group),
        sqlite_with_rowid=False
        )
    op.create_table('usage_blocks_node',
    sa.Column('block', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('gpu_model', sa.String(length=64), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('labels', sa.Text(), nullable=False),
    *_measures(),
    sa.PrimaryKeyConstraint('block', 'node', *group),
    sqlite_with_rowid=False
    )
    op.create_table('usage_daily_node',
    sa.Column('day', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('gpu_model', sa.String(length=64), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    *_measures(),
    sa.PrimaryKeyConstraint('day', 'node', 'gpu_model', 'sku', 'kind'),
    sqlite_with_rowid=False
    )
    op.create_table('usage_jobs',
    sa.Column('job_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('first_at', sa.Float(), nullable=False),
    sa.Column('last_at', sa.Float(), nullable=False),
    sa.Column('idle_gpu_s', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('job_id')
    )
    op.create_index('ix_usage_jobs_idle', 'usage_jobs', ['idle_gpu_s'])
    _backfill()


def _backfill() -> None:
    """SKUs from the nodes' identity labels, then the rollups of every closed row (the live path's rules)."""
    import json

    from gpufleet.store.usage import ROW_COLUMNS, write_rollup

    conn = op.get_bind()
    for name, labels in conn.execute(sa.text("SELECT name, labels FROM nodes")).all():
        sku = (json.loads(labels) if isinstance(labels, str) else labels or {}).get("sku")
        if sku:
            conn.execute(sa.text("UPDATE attempt_usage SET sku = :sku WHERE node = :node"),
                         {"sku": str(sku)[:64], "node": name})
    cols = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
    rows = conn.execute(sa.text(f"SELECT {cols} FROM attempt_usage WHERE ended_at IS NOT NULL")).mappings().all()
    if rows:
        write_rollup(conn, rows)


def downgrade() -> None:
    op.drop_index('ix_usage_jobs_idle', table_name='usage_jobs')
    op.drop_table('usage_jobs')
    op.drop_table('usage_daily_node')
    op.drop_table('usage_blocks_node')
    op.drop_table('usage_blocks')
    op.drop_table('usage_daily')
    op.drop_index('ix_attempt_usage_long', table_name='attempt_usage')
    op.drop_index('ix_attempt_usage_open', table_name='attempt_usage')
    with op.batch_alter_table('attempt_usage', schema=None) as batch_op:
        batch_op.drop_column('sampled_s')
        batch_op.drop_column('labels')
        batch_op.drop_column('sku')
