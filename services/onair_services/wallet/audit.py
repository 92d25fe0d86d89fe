"""The wallet's audit: every balance equals its ledger, and the money adds up.

Run by ``onair wallet audit`` (a table, non-zero exit naming what is wrong) and periodically by
the service (``ONAIR_WALLET_AUDIT_INTERVAL_S``; findings exported as
``onair_wallet_audit_problems{check}``). All checks read one consistent snapshot, so it can run
while the wallet takes traffic (sagas younger than ``grace_s`` are not "unfinished").

* ``balances_match_ledger``: each account's stored balance == the sum of its ledger rows;
* ``transfers_balanced``: each transfer has exactly two ledger rows, -amount on its debit
  account and +amount on its credit account (they sum to zero);
* ``money_conserved``: money in user and hold accounts == money purchased (deposits) ==
  completed purchases == minus the provider's balance; all balances sum to zero;
* ``no_negative_balances``: no user or hold account below zero;
* ``sagas_finished``: every saga completed or compensated (those older than ``grace_s``);
* ``sagas_match_transfers``: each saga's transfers are those its state implies (a completed
  donation: debit + credit; a compensated one: no credit, a refund for its debit; ...), each of
  the saga's amount;
* ``holds_match_running_donations``: each hold account == its owner's donations debited but not
  yet credited or refunded;
* ``donor_totals_match``: the top-donors table == the credited donations per channel and donor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from onair_services.wallet.db import WalletDb, now_ms

SAMPLE = 5


@dataclass
class CheckResult:
    name: str
    description: str
    count: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.count == 0

    def add(self, problem: str) -> None:
        self.count += 1
        if len(self.problems) < SAMPLE:
            self.problems.append(problem)


@dataclass
class AuditReport:
    checks: list[CheckResult]
    totals: dict[str, int]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failing(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]

    @property
    def balance_errors(self) -> int:
        """Problems with money (every check but unfinished sagas)."""
        return sum(c.count for c in self.checks if c.name != "sagas_finished")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "totals": self.totals,
            "checks": [
                {"name": c.name, "ok": c.ok, "problems": c.count, "examples": c.problems} for c in self.checks
            ],
        }


async def _rows(conn: AsyncConnection, sql: str, **params: Any) -> list[Any]:
    return list((await conn.execute(text(sql), params)).all())


async def _scalar(conn: AsyncConnection, sql: str, **params: Any) -> int:
    value = (await conn.execute(text(sql), params)).scalar()
    return int(value or 0)


async def _balances(conn: AsyncConnection) -> CheckResult:
    check = CheckResult("balances_match_ledger", "stored balance == sum of the account's ledger rows")
    for account, balance, ledger_sum in await _rows(
        conn,
        """
        SELECT a.id, a.balance, COALESCE(l.total, 0) FROM accounts a
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger GROUP BY account_id) l
          ON l.account_id = a.id
        WHERE a.balance <> COALESCE(l.total, 0)
        ORDER BY a.id
        """,
    ):
        check.add(f"{account}: balance {balance} != ledger {ledger_sum}")
    for account, ledger_sum in await _rows(
        conn,
        """
        SELECT l.account_id, SUM(l.amount) FROM ledger l
        LEFT JOIN accounts a ON a.id = l.account_id WHERE a.id IS NULL GROUP BY l.account_id
        """,
    ):
        check.add(f"{account}: ledger rows ({ledger_sum}) for an account that does not exist")
    return check


async def _transfers(conn: AsyncConnection) -> CheckResult:
    check = CheckResult("transfers_balanced", "two ledger rows per transfer: -amount and +amount (sum zero)")
    for tid, amount, rows, total, debits, credits in await _rows(
        conn,
        """
        SELECT t.id, t.amount, COUNT(l.id), COALESCE(SUM(l.amount), 0),
          SUM(CASE WHEN l.account_id = t.debit_account AND l.amount = -t.amount THEN 1 ELSE 0 END),
          SUM(CASE WHEN l.account_id = t.credit_account AND l.amount = t.amount THEN 1 ELSE 0 END)
        FROM transfers t LEFT JOIN ledger l ON l.transfer_id = t.id
        GROUP BY t.id, t.amount
        HAVING COUNT(l.id) <> 2 OR COALESCE(SUM(l.amount), 0) <> 0
          OR SUM(CASE WHEN l.account_id = t.debit_account AND l.amount = -t.amount THEN 1 ELSE 0 END) <> 1
          OR SUM(CASE WHEN l.account_id = t.credit_account AND l.amount = t.amount THEN 1 ELSE 0 END) <> 1
        ORDER BY t.id
        """,
    ):
        check.add(
            f"transfer {tid} (amount {amount}): {rows} ledger rows summing to {total}"
            f" ({debits or 0} matching debit, {credits or 0} matching credit)"
        )
    for tid, total in await _rows(
        conn,
        """
        SELECT l.transfer_id, SUM(l.amount) FROM ledger l
        LEFT JOIN transfers t ON t.id = l.transfer_id WHERE t.id IS NULL GROUP BY l.transfer_id
        """,
    ):
        check.add(f"ledger rows of a transfer {tid} that does not exist (sum {total})")
    return check


async def _money(conn: AsyncConnection, totals: dict[str, int]) -> CheckResult:
    check = CheckResult(
        "money_conserved", "money in accounts == purchased == completed purchases == -provider; sum zero"
    )
    purchased = await _scalar(conn, "SELECT SUM(amount) FROM transfers WHERE kind = 'purchase'")
    completed = await _scalar(
        conn, "SELECT SUM(amount) FROM sagas WHERE kind = 'purchase' AND state = 'completed'"
    )
    held = await _scalar(conn, "SELECT SUM(balance) FROM accounts WHERE kind IN ('user', 'hold')")
    provider = await _scalar(conn, "SELECT SUM(balance) FROM accounts WHERE kind = 'system'")
    totals.update(purchased=purchased, money_in_accounts=held, provider_balance=provider)
    if held != purchased:
        check.add(f"user and hold accounts hold {held}, but {purchased} was purchased")
    if completed != purchased:
        check.add(f"completed purchases total {completed}, but deposits total {purchased}")
    if held + provider != 0:
        check.add(f"all balances sum to {held + provider}, not 0")
    return check


async def _negative(conn: AsyncConnection) -> CheckResult:
    check = CheckResult("no_negative_balances", "no user or hold account below zero")
    for account, balance in await _rows(
        conn, "SELECT id, balance FROM accounts WHERE kind <> 'system' AND balance < 0 ORDER BY id"
    ):
        check.add(f"{account}: balance {balance}")
    return check


async def _unfinished(conn: AsyncConnection, grace_s: float) -> CheckResult:
    check = CheckResult("sagas_finished", "every saga completed or compensated")
    cutoff = now_ms() - int(grace_s * 1000)
    for sid, kind, state, step, error in await _rows(
        conn,
        """
        SELECT id, kind, state, step, error_code FROM sagas
        WHERE state NOT IN ('completed', 'compensated') AND updated_ms <= :cutoff ORDER BY created_ms
        """,
        cutoff=cutoff,
    ):
        check.add(f"{kind} {sid}: {state} at step {step}" + (f" (last error {error})" if error else ""))
    return check


# Which transfers each saga state implies (d=debit, c=credit, r=refund, p=deposit).
_CONSISTENT = """
    (kind = 'donation' AND state = 'completed' AND d = 1 AND c = 1 AND r = 0)
 OR (kind = 'donation' AND state = 'compensated' AND c = 0 AND r = d AND d <= 1)
 OR (kind = 'donation' AND state = 'running' AND step = 'credit' AND d = 1 AND c = 0 AND r = 0)
 OR (kind = 'donation' AND state = 'running' AND step = 'announce' AND d = 1 AND c = 1 AND r = 0)
 OR (kind = 'donation' AND state = 'compensating' AND d <= 1 AND c = 0 AND r = 0)
 OR (kind = 'purchase' AND state = 'completed' AND p = 1)
 OR (kind = 'purchase' AND state <> 'completed' AND p = 0)
"""


async def _saga_transfers(conn: AsyncConnection) -> CheckResult:
    check = CheckResult("sagas_match_transfers", "each saga's transfers match its state and amount")
    for sid, kind, state, step, d, c, r, p, wrong in await _rows(
        conn,
        f"""
        SELECT * FROM (
          SELECT s.id, s.kind, s.state, s.step,
            SUM(CASE WHEN t.step = 'debit' THEN 1 ELSE 0 END) AS d,
            SUM(CASE WHEN t.step = 'credit' THEN 1 ELSE 0 END) AS c,
            SUM(CASE WHEN t.step = 'refund' THEN 1 ELSE 0 END) AS r,
            SUM(CASE WHEN t.step = 'deposit' THEN 1 ELSE 0 END) AS p,
            SUM(CASE WHEN t.id IS NOT NULL AND t.amount <> s.amount THEN 1 ELSE 0 END) AS wrong
          FROM sagas s LEFT JOIN transfers t ON t.saga_id = s.id
          GROUP BY s.id, s.kind, s.state, s.step
        ) x
        WHERE wrong <> 0 OR NOT ({_CONSISTENT})
        ORDER BY id
        """,
    ):
        check.add(
            f"{kind} {sid} ({state} at {step}): transfers debit={d} credit={c} refund={r} deposit={p}"
            + (f", {wrong} with another amount" if wrong else "")
        )
    for tid, saga_id in await _rows(
        conn,
        "SELECT t.id, t.saga_id FROM transfers t LEFT JOIN sagas s ON s.id = t.saga_id WHERE s.id IS NULL",
    ):
        check.add(f"transfer {tid} belongs to no saga ({saga_id})")
    return check


_IN_FLIGHT = """
    SELECT 'hold:' || s.owner_id AS account_id, SUM(s.amount) AS amount FROM sagas s
    WHERE s.kind = 'donation'
      AND EXISTS (SELECT 1 FROM transfers t WHERE t.saga_id = s.id AND t.step = 'debit')
      AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.saga_id = s.id AND t.step IN ('credit', 'refund'))
    GROUP BY s.owner_id
"""


async def _holds(conn: AsyncConnection) -> CheckResult:
    check = CheckResult("holds_match_running_donations", "hold account == its owner's donations in flight")
    for account, balance, inflight in await _rows(
        conn,
        f"""
        SELECT a.id, a.balance, COALESCE(f.amount, 0) FROM accounts a
        LEFT JOIN ({_IN_FLIGHT}) f ON f.account_id = a.id
        WHERE a.kind = 'hold' AND a.balance <> COALESCE(f.amount, 0)
        ORDER BY a.id
        """,
    ):
        check.add(f"{account}: holds {balance}, donations in flight {inflight}")
    for account, inflight in await _rows(
        conn,
        f"SELECT f.account_id, f.amount FROM ({_IN_FLIGHT}) f "
        "LEFT JOIN accounts a ON a.id = f.account_id WHERE a.id IS NULL",
    ):
        check.add(f"{account}: donations in flight {inflight} but no such account")
    return check


_CREDITED = """
    SELECT t.channel AS channel, s.owner_id AS donor_id, SUM(t.amount) AS total, COUNT(*) AS n
    FROM transfers t JOIN sagas s ON s.id = t.saga_id
    WHERE t.step = 'credit' GROUP BY t.channel, s.owner_id
"""


async def _donor_totals(conn: AsyncConnection) -> CheckResult:
    check = CheckResult("donor_totals_match", "top-donor totals == credited donations per channel and donor")
    for channel, donor, total, n, real_total, real_n in await _rows(
        conn,
        f"""
        SELECT d.channel, d.donor_id, d.total, d.donations, COALESCE(c.total, 0), COALESCE(c.n, 0)
        FROM donor_totals d LEFT JOIN ({_CREDITED}) c ON c.channel = d.channel AND c.donor_id = d.donor_id
        WHERE d.total <> COALESCE(c.total, 0) OR d.donations <> COALESCE(c.n, 0)
        """,
    ):
        check.add(f"{channel}/{donor}: table says {total} in {n}, credits say {real_total} in {real_n}")
    for channel, donor, real_total in await _rows(
        conn,
        f"""
        SELECT c.channel, c.donor_id, c.total FROM ({_CREDITED}) c
        LEFT JOIN donor_totals d ON d.channel = c.channel AND d.donor_id = c.donor_id
        WHERE d.channel IS NULL
        """,
    ):
        check.add(f"{channel}/{donor}: {real_total} credited but missing from the table")
    return check


async def run_audit(db: WalletDb, *, grace_s: float = 0.0) -> AuditReport:
    """Every check, on one snapshot of the database."""
    async with db.snapshot() as conn:
        totals = {
            "accounts": await _scalar(conn, "SELECT COUNT(*) FROM accounts"),
            "transfers": await _scalar(conn, "SELECT COUNT(*) FROM transfers"),
            "ledger_rows": await _scalar(conn, "SELECT COUNT(*) FROM ledger"),
            "sagas": await _scalar(conn, "SELECT COUNT(*) FROM sagas"),
            "sagas_completed": await _scalar(conn, "SELECT COUNT(*) FROM sagas WHERE state = 'completed'"),
            "sagas_compensated": await _scalar(
                conn, "SELECT COUNT(*) FROM sagas WHERE state = 'compensated'"
            ),
        }
        checks = [
            await _balances(conn),
            await _transfers(conn),
            await _money(conn, totals),
            await _negative(conn),
            await _unfinished(conn, grace_s),
            await _saga_transfers(conn),
            await _holds(conn),
            await _donor_totals(conn),
        ]
    return AuditReport(checks, totals)
