"""liveapi: the channels table."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False, unique=True),
        sa.Column("title", sa.String(140), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("adult", sa.Boolean, nullable=False),
        sa.Column("chat_mode", sa.String(16), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("key_rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("logged_version", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_channels_updated_at", "channels", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_channels_updated_at", "channels")
    op.drop_table("channels")
