"""SQL databases: async engines and sessions for SQLite and PostgreSQL, and per-service Alembic.

Each service owns its database and its migrations; this package gives it the engine (SQLite with
WAL and a busy timeout, or PostgreSQL through asyncpg), a session factory, and ``migrate()``, which
runs that service's Alembic scripts on the service's own engine.
"""

from onair.db.engine import create_engine, normalize_url, session_factory
from onair.db.migrations import migrate

__all__ = ["create_engine", "migrate", "normalize_url", "session_factory"]
