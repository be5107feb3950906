"""Fixtures shared across the suite: an in-process server on the fake executor, a fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gpufleet.executors.fake import FakeClock

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_LAB = ROOT / "examples" / "lab.yaml"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def require_engine(env_var: str, what: str) -> None:
    """Skip loudly when an engine is absent, but fail in CI where it must be there."""
    if os.environ.get(env_var):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but {env_var} is not set (did .ci/run start it?)")
    pytest.skip(f"{what} not available ({env_var} unset): start it with the scripts/dev-*.sh script")


# Store tests run on both backends: params=DATABASES, then `with database_url(request.param, …) as url`.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def database_url(kind: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """A URL of an empty database: a SQLite file under tmp_path, or a throwaway database on the
    real PostgreSQL of scripts/dev-postgres.sh, dropped afterwards (the caller disposes its engines)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'gpufleet.db'}"
        return
    require_engine("GPUFLEET_TEST_PG_URL", "PostgreSQL (scripts/dev-postgres.sh)")
    from sqlalchemy import create_engine, text

    base = os.environ["GPUFLEET_TEST_PG_URL"]
    name = f"gpufleet_{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=DATABASES)
def db_engine(request, tmp_path):
    """A migrated engine on SQLite and on the real PostgreSQL (a throwaway database)."""
    from gpufleet.store import make_engine, migrate

    with database_url(request.param, tmp_path, "test") as url:
        engine = make_engine(url)
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()
