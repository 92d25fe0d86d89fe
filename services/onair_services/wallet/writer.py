"""The wallet's writer: every change of money and of saga state, applied in batches (group commit).

A request does not open its own transaction to move money. It describes what it needs as an
:class:`Op` — claim an idempotency key, create or advance a saga (only if the saga row still is
what the caller last saw), post transfers, add to a donor's total — and hands it to the
:class:`BatchWriter`, which applies every op that has queued meanwhile in **one** transaction:

1. claim the idempotency keys (``INSERT ... ON CONFLICT DO NOTHING``; a key already there is
   answered with what its first request did);
2. lock the sagas to change (``SELECT ... FOR UPDATE``, in id order) and check each op's
   expectation on its row (a saga another process moved on is answered ``lost``);
3. lock every account the batch touches (``SELECT ... FOR NO KEY UPDATE``, in id order; ``NO KEY``
   is the lock for changing a non-key column — plain ``FOR UPDATE`` would also block every
   concurrent insert of a ledger row referencing the account by foreign key);
4. go through the ops in order against the locked balances: an op whose debit would take an
   account below zero is refused (``short``; with a claim, the refusal is remembered as the
   key's answer) and writes nothing; the others' writes are collected;
5. write it all with a few multi-row statements (sagas, transfers, ledger rows, balances, donor
   totals) and commit once.

Every transaction takes its locks in the same order — idempotency keys, sagas, accounts, each
sorted — so two batches (two writer tasks, two wallet processes) never wait for each other in a
cycle. On SQLite the transaction begins with ``BEGIN IMMEDIATE`` (the database's single write
lock) and ``FOR ...`` is left out. Under load a batch carries tens of ops, so a donation costs
about one statement instead of twenty; an idle wallet commits each op alone, at once.

A batch that fails for a transient reason (deadlock, serialization failure, busy SQLite) is
retried; one that fails otherwise is split and its ops run one by one, so only the faulty op fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from onair.logging import get_logger
from onair_services.wallet import metrics
from onair_services.wallet.db import WRITE_RETRIES, WalletDb, backoff, dialect_insert, now_ms, retryable
from onair_services.wallet.idempotency import Claim, Earlier
from onair_services.wallet.ledger import DonorTotal, Movement, is_system
from onair_services.wallet.models import accounts, donor_totals, idempotency_keys, ledger, sagas, transfers

log = get_logger("onair.wallet.writer")

Row = dict[str, Any]
# Columns of a saga row that change after it was created.
SAGA_MUTABLE = (
    "state",
    "step",
    "attempts",
    "error_code",
    "last_error",
    "lease_owner",
    "lease_until_ms",
    "next_attempt_ms",
    "updated_ms",
)


_ADD_TO_BALANCE = (
    update(accounts)
    .where(accounts.c.id == bindparam("b_id"))
    .values(balance=accounts.c.balance + bindparam("b_delta"))
)
_UPDATE_SAGA = (
    update(sagas)
    .where(sagas.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}") for c in SAGA_MUTABLE})
)


@dataclass(frozen=True)
class SagaChange:
    """Change saga ``saga_id`` if ``expect(row)`` holds for its locked row: to ``values(row)``."""

    saga_id: str
    expect: Callable[[Row], bool]
    values: Callable[[Row], Mapping[str, Any]]


@dataclass(frozen=True)
class Insufficient:
    account_id: str
    balance: int
    needed: int

    def __str__(self) -> str:
        return f"{self.account_id} holds {self.balance}, needs {self.needed}"


#: What a claimed request answers when its debit is refused (given the account's balance).
Refusal = Callable[[Insufficient], tuple[int, dict[str, Any]]]


@dataclass
class Op:
    claim: Claim | None = None
    new_saga: Row | None = None
    change: SagaChange | None = None
    movements: Sequence[Movement] = ()
    donor_total: DonorTotal | None = None
    refusal: Refusal | None = None
    #: fault injection: awaited inside the transaction, after the writes, before the commit
    pause: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Result:
    status: Literal["done", "earlier", "short", "lost"]
    saga: Row | None = None
    earlier: Earlier | None = None
    short: Insufficient | None = None


@dataclass
class _Batch:
    """What one transaction writes, collected op by op."""

    new_sagas: list[Row] = field(default_factory=list)
    changed_sagas: dict[str, Row] = field(default_factory=dict)
    transfers: list[Row] = field(default_factory=list)
    ledger: list[Row] = field(default_factory=list)
    deltas: Counter[str] = field(default_factory=Counter)
    donor_totals: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    answers: list[Row] = field(default_factory=list)
    posted: list[Movement] = field(default_factory=list)
    pauses: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


Pending = tuple[Op, "asyncio.Future[Result]"]


class BatchWriter:
    def __init__(
        self,
        db: WalletDb,
        on_posted: Callable[[Movement], None],
        *,
        max_batch: int = 256,
        concurrency: int = 1,
    ) -> None:
        self.db = db
        self._on_posted = on_posted
        self.max_batch = max_batch
        self.concurrency = 1 if db.sqlite else concurrency
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"wallet-writer-{i}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(ConnectionError("the wallet is shutting down"))

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def submit(self, op: Op) -> Result:
        if not self._tasks:
            raise RuntimeError("the writer is not running")
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, fut))
        return await fut

    async def _worker(self) -> None:
        conn: AsyncConnection | None = None
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                if conn is None or conn.closed or conn.invalidated:
                    # one connection per writer task for its life: no checkout (and its ping) per batch
                    try:
                        conn = await self.db.writer.connect()
                    except Exception as exc:  # the database is away: these ops fail (503), the next try later
                        log.warning("wallet writer cannot connect", error=repr(exc))
                        for _, fut in batch:
                            if not fut.done():
                                fut.set_exception(exc)
                        await asyncio.sleep(0.5)
                        continue
                try:
                    await self._run(conn, batch)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await conn.close()
                    conn = None
                    raise
                if conn.invalidated:
                    await conn.close()
                    conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _run(self, conn: AsyncConnection, batch: list[Pending]) -> None:
        live = [(op, fut) for op, fut in batch if not fut.cancelled()]
        if not live:
            return
        started = time.perf_counter()
        for attempt in range(WRITE_RETRIES):
            try:
                results, posted = await self._transaction(conn, [op for op, _ in live])
                break
            except DBAPIError as exc:
                if conn.invalidated:  # the connection broke: the next batch gets a new one
                    await self._fail(conn, live, exc, split=False)
                    return
                if attempt + 1 < WRITE_RETRIES and retryable(exc):
                    await backoff(attempt)
                    continue
                await self._fail(conn, live, exc)
                return
            except Exception as exc:
                await self._fail(conn, live, exc)
                return
        metrics.WRITE_BATCH.observe(len(live))
        metrics.WRITE_SECONDS.observe(time.perf_counter() - started)
        for m in posted:
            self._on_posted(m)
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def _fail(
        self, conn: AsyncConnection, live: list[Pending], exc: Exception, split: bool = True
    ) -> None:
        if split and len(live) > 1:  # find the op at fault: the others still go through
            for pending in live:
                await self._run(conn, [pending])
            return
        log.warning("wallet write failed", error=repr(exc), ops=len(live))
        for _, fut in live:
            if not fut.done():
                fut.set_exception(exc)

    # -- the transaction -----------------------------------------------------------------------------
    async def _transaction(self, conn: AsyncConnection, ops: list[Op]) -> tuple[list[Result], list[Movement]]:
        results: list[Result | None] = [None] * len(ops)
        async with conn.begin():
            await self._claim(conn, ops, results)
            rows = await self._lock_sagas(conn, ops, results)
            balances = await self._lock_accounts(conn, ops, results)
            out = _Batch()
            for i, op in enumerate(ops):
                if results[i] is None:
                    results[i] = self._apply(op, rows, balances, out)
            await self._write(conn, out)
            for pause in out.pauses:
                await pause()
        return [r for r in results if r is not None], out.posted

    async def _claim(self, conn: AsyncConnection, ops: list[Op], results: list[Result | None]) -> None:
        claims = sorted(
            ((op.claim.owner_id, op.claim.key, i) for i, op in enumerate(ops) if op.claim is not None)
        )
        if not claims:
            return
        created = now_ms()
        rows, seen = [], set()
        for owner_id, key, i in claims:
            claim = ops[i].claim
            assert claim is not None
            if (owner_id, key) in seen:
                continue
            seen.add((owner_id, key))
            rows.append(
                {
                    "owner_id": owner_id,
                    "key": key,
                    "route": claim.route,
                    "request_hash": claim.request_hash,
                    "saga_id": claim.saga_id,
                    "created_ms": created,
                }
            )
        stmt = (
            dialect_insert(conn, idempotency_keys)
            .on_conflict_do_nothing(index_elements=["owner_id", "key"])
            .returning(idempotency_keys.c.owner_id, idempotency_keys.c.key)
        )
        won = {(r[0], r[1]) for r in (await conn.execute(stmt, rows)).all()}
        taken: set[tuple[str, str]] = set()
        for owner_id, key, i in claims:
            if (owner_id, key) in won and (owner_id, key) not in taken:
                taken.add((owner_id, key))  # the first op with this key in the batch has it
                continue
            found = (
                await conn.execute(
                    select(
                        idempotency_keys.c.route,
                        idempotency_keys.c.request_hash,
                        idempotency_keys.c.saga_id,
                        idempotency_keys.c.status,
                        idempotency_keys.c.body,
                    ).where(idempotency_keys.c.owner_id == owner_id, idempotency_keys.c.key == key)
                )
            ).one()
            results[i] = Result("earlier", earlier=Earlier(found[0], found[1], found[2], found[3], found[4]))

    async def _lock_sagas(
        self, conn: AsyncConnection, ops: list[Op], results: list[Result | None]
    ) -> dict[str, Row]:
        ids = sorted({op.change.saga_id for i, op in enumerate(ops) if op.change and results[i] is None})
        if not ids:
            return {}
        stmt = select(sagas).where(sagas.c.id.in_(ids)).order_by(sagas.c.id).with_for_update()
        return {r._mapping["id"]: dict(r._mapping) for r in (await conn.execute(stmt)).all()}

    async def _lock_accounts(
        self, conn: AsyncConnection, ops: list[Op], results: list[Result | None]
    ) -> dict[str, int]:
        ids = sorted(
            {
                account
                for i, op in enumerate(ops)
                if results[i] is None
                for m in op.movements
                for account in (m.debit_account, m.credit_account)
            }
        )
        if not ids:
            return {}
        stmt = (
            select(accounts.c.id, accounts.c.balance)
            .where(accounts.c.id.in_(ids))
            .order_by(accounts.c.id)
            .with_for_update(key_share=True)
        )
        found = {r[0]: int(r[1]) for r in (await conn.execute(stmt)).all()}
        missing = [i for i in ids if i not in found]
        if missing:
            raise LookupError(f"no account {', '.join(missing)} (create accounts before moving money)")
        return found

    @staticmethod
    def _apply(op: Op, rows: dict[str, Row], balances: dict[str, int], out: _Batch) -> Result:
        """Check one op against the state left by the ops before it; collect its writes."""
        row: Row | None = None
        if op.change is not None:
            current = rows.get(op.change.saga_id)
            if current is None or not op.change.expect(current):
                return Result("lost", saga=current)
            row = {**current, **op.change.values(current)}
        running: Counter[str] = Counter()
        for m in op.movements:  # every debit must be covered (this op's earlier credits count)
            if not is_system(m.debit_account):
                have = balances[m.debit_account] + running[m.debit_account]
                if have < m.amount:
                    short = Insufficient(m.debit_account, have, m.amount)
                    if op.refusal is not None and op.claim is not None:
                        status, body = op.refusal(short)
                        out.answers.append(
                            {
                                "b_owner": op.claim.owner_id,
                                "b_key": op.claim.key,
                                "b_status": status,
                                "b_body": body,
                            }
                        )
                    return Result("short", short=short)
            running[m.debit_account] -= m.amount
            running[m.credit_account] += m.amount
        for account, delta in running.items():
            balances[account] += delta
            out.deltas[account] += delta
        created = now_ms()
        for m in op.movements:
            out.transfers.append(
                {
                    "id": m.transfer_id,
                    "saga_id": m.saga_id,
                    "kind": m.kind,
                    "step": m.step,
                    "debit_account": m.debit_account,
                    "credit_account": m.credit_account,
                    "amount": m.amount,
                    "channel": m.channel,
                    "donor": m.donor,
                    "created_ms": created,
                }
            )
            out.ledger.append(
                {
                    "transfer_id": m.transfer_id,
                    "account_id": m.debit_account,
                    "amount": -m.amount,
                    "created_ms": created,
                }
            )
            out.ledger.append(
                {
                    "transfer_id": m.transfer_id,
                    "account_id": m.credit_account,
                    "amount": m.amount,
                    "created_ms": created,
                }
            )
            out.posted.append(m)
        if op.donor_total is not None:
            d = op.donor_total
            entry = out.donor_totals.setdefault((d.channel, d.donor_id), [d.donor, 0, 0])
            entry[1] += d.amount
            entry[2] += 1
        if op.new_saga is not None:
            row = dict(op.new_saga)
            out.new_sagas.append(row)
        elif row is not None and op.change is not None:
            rows[op.change.saga_id] = row  # a later op of the batch sees this change
            out.changed_sagas[op.change.saga_id] = row
        if op.pause is not None:
            out.pauses.append(op.pause)
        return Result("done", saga=row)

    @staticmethod
    async def _write(conn: AsyncConnection, out: _Batch) -> None:
        if out.new_sagas:
            await conn.execute(sagas.insert(), out.new_sagas)
        if out.changed_sagas:
            await conn.execute(
                _UPDATE_SAGA,
                [
                    {"b_id": sid, **{f"b_{c}": row[c] for c in SAGA_MUTABLE}}
                    for sid, row in sorted(out.changed_sagas.items())
                ],
            )
        if out.transfers:
            await conn.execute(transfers.insert(), out.transfers)
            await conn.execute(ledger.insert(), out.ledger)
        deltas = [{"b_id": k, "b_delta": v} for k, v in sorted(out.deltas.items()) if v]
        if deltas:  # every row is locked already (step 3); id order all the same
            await conn.execute(_ADD_TO_BALANCE, deltas)
        if out.donor_totals:
            ins = dialect_insert(conn, donor_totals)
            await conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["channel", "donor_id"],
                    set_={
                        "total": donor_totals.c.total + ins.excluded.total,
                        "donations": donor_totals.c.donations + ins.excluded.donations,
                    },
                ),
                [
                    {"channel": ch, "donor_id": did, "donor": v[0], "total": v[1], "donations": v[2]}
                    for (ch, did), v in sorted(out.donor_totals.items())
                ],
            )
        if out.answers:
            await conn.execute(
                update(idempotency_keys)
                .where(
                    idempotency_keys.c.owner_id == bindparam("b_owner"),
                    idempotency_keys.c.key == bindparam("b_key"),
                )
                .values(saga_id=None, status=bindparam("b_status"), body=bindparam("b_body")),
                out.answers,
            )
