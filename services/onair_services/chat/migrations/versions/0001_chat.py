"""chat: rooms, follows, mutes, the go-live outbox, and the log-stream tables of its projections."""

import sqlalchemy as sa
from alembic import op

from onair.logstream.schema import create_tables, drop_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "chat_rooms",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.String(128), nullable=True),
        sa.Column("chat_mode", sa.String(16), nullable=False, server_default="open"),
        sa.Column("title", sa.String(1000), nullable=False, server_default=""),
        sa.Column("live", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("session_id", sa.String(100), nullable=True),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "chat_follows",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_chat_follows_channel", "chat_follows", ["channel", "user_id"])
    op.create_table(
        "chat_mutes",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("muted_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("until_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "chat_golive",
        sa.Column("session_id", sa.String(100), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("title", sa.String(1000), nullable=False, server_default=""),
        sa.Column("opened_ms", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_until_ms", sa.BigInteger, nullable=True),
        sa.Column("sent_ms", sa.BigInteger, nullable=True),
        sa.Column("notified", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_chat_golive_state", "chat_golive", ["state", "opened_ms"])
    op.create_index("ix_chat_golive_channel", "chat_golive", ["channel", "opened_ms"])
    create_tables(op.get_bind())


def downgrade() -> None:
    drop_tables(op.get_bind())
    op.drop_table("chat_golive")
    op.drop_table("chat_mutes")
    op.drop_table("chat_follows")
    op.drop_table("chat_rooms")
