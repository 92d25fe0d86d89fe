"""search: channels, tag and rendition filters, the full-text index (FTS5 or tsvector + GIN)."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from onair.logstream.schema import create_tables, drop_tables

revision = "0001"
down_revision = None

# Tokens are made by onair_services.search.text (letters, digits and marks, separated by spaces):
# the FTS5 tokenizer must keep each as it is.
FTS5 = (
    "CREATE VIRTUAL TABLE search_fts USING fts5(title, tags, "
    "tokenize = \"unicode61 remove_diacritics 0 categories 'L* N* Co M*'\")"
)


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    create_tables(bind)
    op.create_table(
        "search_channels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(64), nullable=False, unique=True),
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
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("indexed", sa.Boolean, nullable=False),
        sa.Column("document", postgresql.TSVECTOR() if pg else sa.Text(), nullable=True),
    )
    op.create_index("ix_search_channels_indexed", "search_channels", ["indexed", "started_us"])
    for name, column, size in (("search_tags", "tag", 64), ("search_renditions", "name", 32)):
        op.create_table(
            name,
            sa.Column(
                "channel_id",
                sa.Integer,
                sa.ForeignKey("search_channels.id", ondelete="CASCADE"),
                primary_key=True,
            ),
            sa.Column(column, sa.String(size), primary_key=True),
        )
        op.create_index(f"ix_{name}_{column}", name, [column])
    if pg:
        op.create_index(
            "ix_search_channels_document", "search_channels", ["document"], postgresql_using="gin"
        )
    else:
        op.execute(FTS5)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table("search_renditions")
    op.drop_table("search_tags")
    op.drop_table("search_channels")
    drop_tables(op.get_bind())
