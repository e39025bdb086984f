"""Alembic environment: runs on the connection that `aitasks.store.migrate` hands it."""

from alembic import context

from aitasks.store.models import Base

connection = context.config.attributes["connection"]
sqlite = connection.dialect.name == "sqlite"
if sqlite:
    # Batch mode rebuilds a table (create a copy, drop the old, rename): with foreign keys on,
    # dropping the old table would cascade into every table that refers to it (messages, files,
    # idempotency keys of `tasks`). Off for the migration; our connect hook sets it on again.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=sqlite,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
