"""Alembic scripts of liveapi (run by ``onair migrate liveapi`` or at start-up)."""
