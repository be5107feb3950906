"""Durable state: SQLAlchemy rows, the Store repository, Alembic migrations."""

from gpufleet.store.db import make_engine, migrate, sqlite_url
from gpufleet.store.repo import DuplicateKey, Store, hash_token

__all__ = ["DuplicateKey", "Store", "hash_token", "make_engine", "migrate", "sqlite_url"]
