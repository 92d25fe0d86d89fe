"""liveinfo: channels, viewer counts and the projection tables."""

import sqlalchemy as sa
from alembic import op

from onair.logstream.schema import create_tables, drop_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_tables(op.get_bind())
    op.create_table(
        "live_channels",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("adult", sa.Boolean, nullable=False),
        sa.Column("chat_mode", sa.String(16), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("options_seq", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(100), nullable=True),
        sa.Column("started_us", sa.BigInteger, nullable=True),
        sa.Column("ended_us", sa.BigInteger, nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("meta_session_id", sa.String(100), nullable=True),
        sa.Column("source", sa.JSON, nullable=True),
        sa.Column("renditions", sa.JSON, nullable=False),
        sa.Column("viewers", sa.Integer, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_live_channels_status", "live_channels", ["status", "visibility"])
    op.create_table(
        "live_viewer_counts",
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("process", sa.String(200), primary_key=True),
        sa.Column("viewers", sa.Integer, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_live_viewer_counts_expires", "live_viewer_counts", ["expires_us"])


def downgrade() -> None:
    op.drop_table("live_viewer_counts")
    op.drop_table("live_channels")
    drop_tables(op.get_bind())
