"""usage accounting: one row per (attempt, node, GPU model) with what aggregation groups by

Revision ID: 0004_usage
Revises: 0003_attempts_security
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_usage'
down_revision = '0003_attempts_security'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attempt_usage',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('gpu_model', sa.String(length=64), nullable=False),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('ended_at', sa.Float(), nullable=True),
    sa.Column('wait_s', sa.Float(), nullable=False),
    sa.Column('busy_gpu_s', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attempt_usage', schema=None) as batch_op:
        batch_op.create_index('ix_attempt_usage_job_n_part', ['job_id', 'n', 'part'], unique=True)
        batch_op.create_index('ix_attempt_usage_started', ['started_at'], unique=False)
    _backfill()


def _backfill() -> None:
    """Attempts recorded before this revision get their usage rows (same rules as the live path)."""
    from gpufleet.store.usage import usage_parts

    conn = op.get_bind()
    nodes = {name: (kind, {g["index"]: g["model"] for g in _json(gpus) or ()})
             for name, kind, gpus in conn.execute(sa.text("SELECT name, kind, gpus FROM nodes"))}
    rows = conn.execute(sa.text(
        "SELECT a.job_id, a.n, a.started_at, a.ended_at, a.allocation, j.tenant, j.\"user\", j.submitted_at, "
        "(SELECT p.ended_at FROM attempts p WHERE p.job_id = a.job_id AND p.n = a.n - 1) "
        "FROM attempts a JOIN jobs j ON j.id = a.job_id"))
    out = []
    for job_id, n, started, ended, alloc, tenant, user, submitted, prev_end in rows:
        alloc = _json(alloc)
        wait = max(0.0, started - (prev_end if prev_end is not None else submitted))
        for part in usage_parts(alloc or [], nodes):
            out.append({**part, "job_id": job_id, "n": n, "tenant": tenant, "user": user,
                        "started_at": started, "ended_at": ended, "wait_s": wait, "busy_gpu_s": None})
    if out:
        table = sa.table('attempt_usage', *(sa.column(c) for c in out[0]))
        conn.execute(sa.insert(table), out)


def _json(value):
    import json

    return json.loads(value) if isinstance(value, str) else value


def downgrade() -> None:
    with op.batch_alter_table('attempt_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_attempt_usage_started')
        batch_op.drop_index('ix_attempt_usage_job_n_part')
    op.drop_table('attempt_usage')
