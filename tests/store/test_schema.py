"""The migrated schema is the one the rows declare, on both backends, and the job list queries are
served by an index in id order (keyset pages never sort the table)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import gpufleet.store.hardware  # noqa: F401  (rows declared outside rows.py register on Base)
import gpufleet.store.health  # noqa: F401
from gpufleet.store import make_engine, migrate
from gpufleet.store.rows import Base


def test_migrations_build_exactly_the_declared_rows(db_engine):
    with db_engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("where", [  # (Store.list_jobs reads several states as one query per state)
    "state = 'CANCELLED'",
    "tenant = 'vision' AND state = 'CANCELLED'",
    "state = 'CANCELLED' AND id < 500",
])
def test_job_lists_read_an_index_in_id_order(tmp_path, where):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    with engine.connect() as c:
        plan = c.execute(text(f"EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE {where} ORDER BY id DESC LIMIT 100"))
        details = " | ".join(row[-1] for row in plan)
    engine.dispose()
    assert "USING INDEX" in details and "TEMP B-TREE" not in details, details
