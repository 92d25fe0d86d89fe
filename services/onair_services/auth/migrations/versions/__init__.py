"""Alembic revisions of the auth database."""
