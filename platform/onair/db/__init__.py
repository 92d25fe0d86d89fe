"""SQL databases: async engines and sessions for SQLite and PostgreSQL, and per-service Alembic.

Each service owns its database and its migrations; this package gives it the engine (SQLite with
WAL and a busy timeout, or PostgreSQL through asyncpg), a session factory, and ``migrate()``, which
runs that service's Alembic scripts on the service's own engine. ``with_write_lock(engine)`` and
``with_snapshot(engine)`` give the same engine for read-check-write transactions (``BEGIN
IMMEDIATE`` on SQLite) and for consistent multi-query reads.
"""

from onair.db.engine import (
    create_engine,
    is_sqlite,
    normalize_url,
    session_factory,
    with_snapshot,
    with_write_lock,
)
from onair.db.migrations import migrate

__all__ = [
    "create_engine",
    "is_sqlite",
    "migrate",
    "normalize_url",
    "session_factory",
    "with_snapshot",
    "with_write_lock",
]
