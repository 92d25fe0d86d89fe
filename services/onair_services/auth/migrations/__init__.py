"""Alembic migrations of the auth database."""
