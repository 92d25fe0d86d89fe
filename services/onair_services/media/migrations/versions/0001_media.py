"""media: publish keys (projection), streams, sessions, and the log-stream tables."""

import sqlalchemy as sa
from alembic import op

from onair.logstream.schema import create_tables, drop_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "publish_keys",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "streams",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("status_seq", sa.BigInteger, nullable=False),
        sa.Column("logged_seq", sa.BigInteger, nullable=False),
        sa.Column("live_session_id", sa.String(32), nullable=True, unique=True),
        sa.Column("last_session_id", sa.String(32), nullable=True),
        sa.Column("last_reason", sa.String(32), nullable=True),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("source", sa.JSON, nullable=False),
        sa.Column("renditions", sa.JSON, nullable=False),
        sa.Column("open_seq", sa.BigInteger, nullable=False),
        sa.Column("opened_ms", sa.BigInteger, nullable=False),
        sa.Column("lease_expires_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_ms", sa.BigInteger, nullable=True),
        sa.Column("close_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_sessions_channel", "sessions", ["channel"])
    op.create_index("ix_sessions_state_lease", "sessions", ["state", "lease_expires_ms"])
    create_tables(op.get_bind())


def downgrade() -> None:
    drop_tables(op.get_bind())
    op.drop_table("sessions")
    op.drop_table("streams")
    op.drop_table("publish_keys")
