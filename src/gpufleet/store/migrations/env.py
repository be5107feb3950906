"""Alembic environment: runs on the connection handed over by gpufleet.store.db.migrate."""

from alembic import context

from gpufleet.store.rows import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` CLI use: take the URL from the config
    from gpufleet.store.db import make_engine

    connection = make_engine(config.get_main_option("sqlalchemy.url")).connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
