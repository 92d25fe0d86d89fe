"""Alembic scripts of media (run by ``onair migrate media`` or at start-up)."""
