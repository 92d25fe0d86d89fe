"""The wallet's tables (its own database): accounts, transfers and their ledger rows, sagas,
idempotency keys, donor totals and the ``wallet.users`` projection.

Money is in integer minor units. Every movement is a *transfer* with exactly two ledger rows that
sum to zero (``-amount`` on the debited account, ``+amount`` on the credited one); an account's
``balance`` is stored (the row that is locked, and a fast read) and always equals the sum of its
ledger rows (``onair wallet audit`` checks it). Account ids name their kind:

* ``user:<user_id>`` — a user's spendable money (never negative);
* ``hold:<user_id>`` — a user's donations in flight, debited but not yet credited or refunded
  (never negative; zero when no donation of theirs is running);
* ``system:provider`` — the payment provider's side of every purchase (negative: minus the money
  that came in), so the ledger always balances.

Times are integer milliseconds since the epoch (portable between SQLite and PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

ID = String(64)
ACCOUNT_ID = String(80)
# SQLite autoincrements only an INTEGER PRIMARY KEY.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", ACCOUNT_ID, primary_key=True),
    Column("kind", String(10), nullable=False),  # user | hold | system
    Column("owner_id", ID, nullable=True),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("kind = 'system' OR balance >= 0", name="ck_accounts_not_negative"),
    CheckConstraint("kind IN ('user', 'hold', 'system')", name="ck_accounts_kind"),
)

transfers = Table(
    "transfers",
    metadata,
    # "<saga_id>:<step>": a step's transfer exists once, so a replayed step never moves money twice.
    Column("id", String(100), primary_key=True),
    Column("saga_id", ID, nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # purchase | donation | compensation
    Column("step", String(16), nullable=False),
    Column("debit_account", ACCOUNT_ID, ForeignKey("accounts.id"), nullable=False),
    Column("credit_account", ACCOUNT_ID, ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("channel", String(32), nullable=True),
    Column("donor", String(32), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="ck_transfers_positive"),
    CheckConstraint("debit_account <> credit_account", name="ck_transfers_two_accounts"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("transfer_id", String(100), ForeignKey("transfers.id"), nullable=False, index=True),
    Column("account_id", ACCOUNT_ID, ForeignKey("accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: -debit, +credit
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("amount <> 0", name="ck_ledger_not_zero"),
    Index("ix_ledger_account_id", "account_id", "id"),
)

sagas = Table(
    "sagas",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),  # donation | purchase
    # running | compensating | completed | compensated
    Column("state", String(16), nullable=False),
    Column("step", String(16), nullable=False),  # the step to run now (or the last one run)
    Column("attempts", Integer, nullable=False),  # attempts started of that step
    Column("error_code", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("owner_id", ID, nullable=False),  # the user who asked for it
    Column("amount", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    # which process drives it, until when (ms); a retry is not due before next_attempt_ms
    Column("lease_owner", String(40), nullable=True),
    Column("lease_until_ms", BigInteger, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Index("ix_sagas_state_due", "state", "next_attempt_ms"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("owner_id", ID, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("route", String(40), nullable=False),
    Column("request_hash", String(64), nullable=False),
    # the saga the request started, or the answer it got without one (status + JSON body)
    Column("saga_id", ID, nullable=True),
    Column("status", Integer, nullable=True),
    Column("body", JSON, nullable=True),
    Column("created_ms", BigInteger, nullable=False, index=True),
)

donor_totals = Table(
    "donor_totals",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("donor_id", ID, primary_key=True),
    Column("donor", String(32), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("donations", Integer, nullable=False),
    Index("ix_donor_totals_rank", "channel", "total"),
)

# Projection wallet.users of auth.user.created: who exists and who is a streamer (channel id ==
# the streamer's username).
users = Table(
    "users",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("streamer", Boolean, nullable=False),
)
