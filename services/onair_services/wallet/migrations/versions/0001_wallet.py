"""The wallet's tables, and the log-stream tables its projection (wallet.users) uses."""

import sqlalchemy as sa
from alembic import op

from onair.logstream.schema import create_tables, drop_tables

revision = "0001"
down_revision = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("kind = 'system' OR balance >= 0", name="ck_accounts_not_negative"),
        sa.CheckConstraint("kind IN ('user', 'hold', 'system')", name="ck_accounts_kind"),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("saga_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("debit_account", sa.String(80), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("credit_account", sa.String(80), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("donor", sa.String(32), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_transfers_positive"),
        sa.CheckConstraint("debit_account <> credit_account", name="ck_transfers_two_accounts"),
    )
    op.create_table(
        "ledger",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("transfer_id", sa.String(100), sa.ForeignKey("transfers.id"), nullable=False, index=True),
        sa.Column("account_id", sa.String(80), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount <> 0", name="ck_ledger_not_zero"),
    )
    op.create_index("ix_ledger_account_id", "ledger", ["account_id", "id"])
    op.create_table(
        "sagas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("lease_owner", sa.String(40), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_sagas_state_due", "sagas", ["state", "next_attempt_ms"])
    op.create_table(
        "idempotency_keys",
        sa.Column("owner_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("route", sa.String(40), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("saga_id", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("body", sa.JSON, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False, index=True),
    )
    op.create_table(
        "donor_totals",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("donor_id", sa.String(64), primary_key=True),
        sa.Column("donor", sa.String(32), nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("donations", sa.Integer, nullable=False),
    )
    op.create_index("ix_donor_totals_rank", "donor_totals", ["channel", "total"])
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(32), nullable=False, unique=True),
        sa.Column("streamer", sa.Boolean, nullable=False),
    )
    create_tables(op.get_bind())


def downgrade() -> None:
    drop_tables(op.get_bind())
    for name in ("users", "donor_totals", "idempotency_keys", "sagas", "ledger", "transfers", "accounts"):
        op.drop_table(name)
