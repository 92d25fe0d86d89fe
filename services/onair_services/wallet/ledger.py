"""Accounts and the double-entry ledger: account ids, a transfer (:class:`Movement`), the reads.

Money moves only through :mod:`.writer`, which posts a movement as one ``transfers`` row (id
``<saga>:<step>``: a step moves money once) and two ``ledger`` rows (``-amount`` on the debit
account, ``+amount`` on the credit account) and changes both balances in the same transaction,
under row locks. Account ids name their kind (``user:<id>``, ``hold:<id>``, ``system:provider``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from onair_services.wallet.db import WalletDb, dialect_insert, now_ms
from onair_services.wallet.models import accounts, donor_totals, ledger, transfers

PROVIDER = "system:provider"


def user_account(user_id: str) -> str:
    return f"user:{user_id}"


def hold_account(user_id: str) -> str:
    return f"hold:{user_id}"


def is_system(account_id: str) -> bool:
    return account_id.startswith("system:")


def kind_and_owner(account_id: str) -> tuple[str, str | None]:
    kind, _, owner = account_id.partition(":")
    return (kind, None) if kind == "system" else (kind, owner)


@dataclass(frozen=True, slots=True)
class Movement:
    """One transfer (and what its ``wallet.ledger.entry`` event says)."""

    transfer_id: str
    saga_id: str
    kind: str  # purchase | donation | compensation
    step: str
    debit_account: str
    credit_account: str
    amount: int
    channel: str | None = None
    donor: str | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("a transfer moves a positive amount")
        if self.debit_account == self.credit_account:
            raise ValueError("a transfer moves money between two accounts")


@dataclass(frozen=True, slots=True)
class DonorTotal:
    channel: str
    donor_id: str
    donor: str
    amount: int


def movement_event(m: Movement) -> dict[str, Any]:
    """The data fields of the ``wallet.ledger.entry`` event (docs/contracts.md)."""
    return {k: v for k, v in asdict(m).items() if v is not None}


class Accounts:
    """Accounts exist before money moves: created on first use, in a short transaction of their
    own, before any lock is taken (an insert that races another insert of the same row waits for
    it, and must not do so while holding locks). Accounts are never deleted, so each process
    remembers which exist."""

    def __init__(self, db: WalletDb) -> None:
        self.db = db
        self._known: set[str] = set()

    async def ensure(self, ids: Iterable[str]) -> None:
        missing = sorted({i for i in ids if i not in self._known})
        if not missing:
            return
        created = now_ms()
        rows = []
        for account_id in missing:
            kind, owner = kind_and_owner(account_id)
            rows.append(
                {"id": account_id, "kind": kind, "owner_id": owner, "balance": 0, "created_ms": created}
            )

        async def create(conn: AsyncConnection) -> None:
            stmt = dialect_insert(conn, accounts).on_conflict_do_nothing(index_elements=["id"])
            await conn.execute(stmt, rows)

        await self.db.write(create)
        self._known.update(missing)


# -- reads ---------------------------------------------------------------------------------------
async def balances(conn: AsyncConnection, user_id: str) -> tuple[int, int]:
    """(spendable, held in running donations) of a user; zeros before first use."""
    rows = (
        await conn.execute(
            select(accounts.c.id, accounts.c.balance).where(
                accounts.c.id.in_([user_account(user_id), hold_account(user_id)])
            )
        )
    ).all()
    found = {r[0]: int(r[1]) for r in rows}
    return found.get(user_account(user_id), 0), found.get(hold_account(user_id), 0)


async def history(
    conn: AsyncConnection, user_id: str, page: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The user's ledger rows, newest first: one page, and whether there is a next one."""
    stmt = (
        select(
            ledger.c.id,
            ledger.c.transfer_id,
            ledger.c.amount,
            ledger.c.created_ms,
            transfers.c.kind,
            transfers.c.step,
            transfers.c.saga_id,
            transfers.c.channel,
            transfers.c.donor,
        )
        .join(transfers, transfers.c.id == ledger.c.transfer_id)
        .where(ledger.c.account_id == user_account(user_id))
        .order_by(ledger.c.id.desc())
        .limit(limit + 1)
        .offset((page - 1) * limit)
    )
    rows = [dict(r._mapping) for r in (await conn.execute(stmt)).all()]
    return rows[:limit], len(rows) > limit


async def top_donors(conn: AsyncConnection, channel: str, limit: int) -> list[dict[str, Any]]:
    stmt = (
        select(donor_totals.c.donor, donor_totals.c.total, donor_totals.c.donations)
        .where(donor_totals.c.channel == channel, donor_totals.c.total > 0)
        .order_by(donor_totals.c.total.desc(), donor_totals.c.donor)
        .limit(limit)
    )
    return [
        {"donor": r[0], "amount": int(r[1]), "donations": int(r[2])} for r in (await conn.execute(stmt)).all()
    ]
