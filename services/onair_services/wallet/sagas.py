"""An orchestrated saga: steps run in order by one orchestrator, each with its compensation.

A :class:`SagaType` is an ordered list of :class:`Step`\\ s. A step is *local* (its effect — the
transfers it posts — is written in the same transaction as the saga's progress, by
:mod:`.writer`) or *remote* (a call outside the database: the payment provider, JetStream; the
saga's state is committed before the call and the result after it). Each step may name its
compensation (``undo``); a step without one is a pivot or a retriable step: once the saga is past
it, the saga can only go forward (its ``attempts`` = 0 means "retry until it succeeds").

The state is one row per saga (``sagas``): ``state`` (running, compensating, completed,
compensated), ``step`` (the step to run now), ``attempts`` (attempts *started* of that step,
committed before the step runs, so a step that kills its process every time is still counted and
given up), ``error_code`` / ``last_error``, a lease (``lease_owner``, ``lease_until_ms``) and
``next_attempt_ms`` (backoff).

* Forward step fails: retried (backoff) until its ``attempts`` are used up or the failure is not
  retryable; then the saga turns to ``compensating`` and runs the compensations of the steps
  already done, newest first — for a remote step, its own compensation too (a call that timed out
  may have taken effect); each compensation is retried until it succeeds; the saga ends
  ``compensated``. Every forward step done -> ``completed``.
* Every step is idempotent, keyed by saga id + step (a transfer's id is ``<saga>:<step>``; a
  JetStream message id is the saga id), so running a step again after a crash never doubles it.
* Progress is written only if the saga row (locked) still is what the driver read (state, step,
  attempts, lease owner): if another driver took the saga over (an expired lease), the slower
  one's write changes nothing and it stops.
* :meth:`Orchestrator.drive` runs a saga in the request that started it; :meth:`Orchestrator.sweep`
  (at start and periodically) picks up sagas whose lease expired (their process died) or whose
  retry is due, and drives them to the end.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from onair.logging import get_logger
from onair_services.wallet import metrics
from onair_services.wallet.db import WalletDb, now_ms
from onair_services.wallet.ledger import DonorTotal, Movement
from onair_services.wallet.models import sagas
from onair_services.wallet.writer import BatchWriter, Op, Result, Row, SagaChange

log = get_logger("onair.wallet.sagas")

ACTIVE = ("running", "compensating")
TERMINAL = ("completed", "compensated")


class StepFailed(Exception):
    """A step did not do its work. ``retryable=False``: trying again cannot help (compensate now)."""

    def __init__(self, code: str, detail: str, *, retryable: bool = True) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retryable = retryable


class LostSaga(Exception):
    """Another driver moved the saga on (its lease had expired): this one stops."""


@dataclass(frozen=True)
class Effect:
    """What a local step writes (in the same transaction as the saga's progress)."""

    movements: Sequence[Movement] = ()
    donor_total: DonorTotal | None = None


#: A local step: the saga -> its writes (raise StepFailed before writing anything to fail it).
LocalFn = Callable[["Saga"], Effect]
RemoteFn = Callable[["Saga"], Awaitable[None]]
PauseFn = Callable[["Saga", str], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str
    local: LocalFn | None = None
    remote: RemoteFn | None = None
    #: attempts before the saga gives up and compensates; 0: retried until it succeeds
    attempts: int = 1
    undo: Step | None = None
    #: after a failure, leave the retries to the sweep instead of holding the request
    background_retries: bool = False

    def __post_init__(self) -> None:
        if (self.local is None) == (self.remote is None):
            raise ValueError(f"step {self.name}: give exactly one of local= or remote=")


@dataclass(frozen=True)
class SagaType:
    kind: str
    steps: tuple[Step, ...]
    _index: dict[str, tuple[Step, int, bool]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for i, step in enumerate(self.steps):
            self._index[step.name] = (step, i, False)
            if step.undo is not None:
                if step.undo.attempts != 0:
                    raise ValueError(f"compensation {step.undo.name} must retry until done (attempts=0)")
                self._index[step.undo.name] = (step.undo, i, True)

    def locate(self, name: str) -> tuple[Step, int, bool]:
        """(step, index of the forward step it belongs to, is it a compensation)."""
        return self._index[name]

    def compensation_before(self, index: int) -> Step | None:
        """The compensation to run once forward step ``index`` failed (or was undone)."""
        for step in reversed(self.steps[:index]):
            if step.undo is not None:
                return step.undo
        return None

    def after(self, step_name: str) -> tuple[str, str]:
        """(state, step) once ``step_name`` succeeded."""
        step, index, is_undo = self.locate(step_name)
        if is_undo:
            undo = self.compensation_before(index)
            return ("compensating", undo.name) if undo else ("compensated", step.name)
        if index + 1 < len(self.steps):
            return "running", self.steps[index + 1].name
        return "completed", step.name


@dataclass(frozen=True)
class Saga:
    id: str
    kind: str
    state: str
    step: str
    attempts: int
    error_code: str | None
    last_error: str | None
    owner_id: str
    amount: int
    payload: Mapping[str, Any]
    lease_owner: str | None
    lease_until_ms: int
    next_attempt_ms: int
    created_ms: int
    updated_ms: int

    @classmethod
    def of(cls, row: Mapping[str, Any] | Any) -> Saga:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def new_saga_id() -> str:
    return uuid.uuid4().hex


def _same(saga: Saga) -> Callable[[Row], bool]:
    """The locked row still is what this driver read."""

    def expect(row: Row) -> bool:
        return (
            row["state"] == saga.state
            and row["step"] == saga.step
            and row["attempts"] == saga.attempts
            and row["lease_owner"] == saga.lease_owner
        )

    return expect


class Orchestrator:
    def __init__(
        self,
        db: WalletDb,
        writer: BatchWriter,
        types: Mapping[str, SagaType],
        *,
        lease_s: float,
        max_backoff_s: float = 30.0,
        sweep_batch: int = 200,
        sweep_concurrency: int = 32,
    ) -> None:
        self.db = db
        self.writer = writer
        self.types = dict(types)
        self.lease_ms = int(lease_s * 1000)
        self.max_backoff_s = max_backoff_s
        self.sweep_batch = sweep_batch
        self.sweep_concurrency = sweep_concurrency
        self.instance = uuid.uuid4().hex[:16]  # this process, as a lease owner
        self.pause: PauseFn | None = None  # fault injection
        self._inflight: set[str] = set()

    # -- starting --------------------------------------------------------------------------------
    def begin(self, kind: str, *, saga_id: str, owner_id: str, amount: int, payload: Mapping[str, Any]) -> Op:
        """The op that creates a saga, leased to this process. When its first step is local, the
        op also carries that step's writes: the saga row is created already past it, with the
        next step's first attempt counted (its effect and its record commit together, or neither).
        A short debit there refuses the whole op: the saga never exists."""
        stype = self.types[kind]
        first = stype.steps[0]
        now = now_ms()
        row: Row = {
            "id": saga_id,
            "kind": kind,
            "state": "running",
            "step": first.name,
            "attempts": 1,
            "error_code": None,
            "last_error": None,
            "owner_id": owner_id,
            "amount": amount,
            "payload": dict(payload),
            "lease_owner": self.instance,
            "lease_until_ms": now + self.lease_ms,
            "next_attempt_ms": now,
            "created_ms": now,
            "updated_ms": now,
        }
        if first.local is None:
            return Op(new_saga=row)
        effect = first.local(Saga.of(row))
        state, step = stype.after(first.name)
        row.update(state=state, step=step)
        return Op(
            new_saga=row,
            movements=effect.movements,
            donor_total=effect.donor_total,
            pause=self._pause_op(Saga.of(row), first.name),
        )

    def _pause_op(self, saga: Saga, step: str) -> Callable[[], Awaitable[None]] | None:
        pause = self.pause
        if pause is None:
            return None

        async def run() -> None:
            await pause(saga, step)

        return run

    # -- driving ---------------------------------------------------------------------------------
    async def load(self, saga_id: str) -> Saga | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(sagas).where(sagas.c.id == saga_id))).first()
        return Saga.of(row._mapping) if row is not None else None

    async def drive(self, saga: Saga, *, deadline_ms: int | None = None) -> Saga:
        """Run ``saga`` until it ends, or waits for a retry that falls after ``deadline_ms`` (then
        it is left to the sweep), or another driver holds it. Returns it as last seen."""
        if saga.id in self._inflight:  # another task of this process drives it already
            return saga
        self._inflight.add(saga.id)
        try:
            return await self._drive(saga, deadline_ms)
        finally:
            self._inflight.discard(saga.id)

    async def _drive(self, saga: Saga, deadline_ms: int | None) -> Saga:
        stype = self.types[saga.kind]
        owned = saga.lease_owner == self.instance and saga.lease_until_ms > now_ms()
        try:
            while saga.state in ACTIVE:
                if not owned:
                    claimed = await self._claim(saga)
                    if claimed is None:  # another driver holds it, or its retry is not due yet
                        return await self.load(saga.id) or saga
                    saga, owned = claimed, True
                step, index, is_undo = stype.locate(saga.step)
                may_give_up = not is_undo
                try:
                    if may_give_up and step.attempts and saga.attempts > step.attempts:
                        raise StepFailed(
                            saga.error_code or "attempts_exhausted",
                            f"step {step.name} was started {saga.attempts - 1} times without finishing",
                            retryable=False,
                        )
                    saga = await self._run(saga, stype, step)
                    continue
                except StepFailed as exc:
                    failure = exc
                except LostSaga:
                    raise
                except Exception as exc:  # a bug or an outage inside a step: retried, never given up
                    log.warning("saga step crashed", saga_id=saga.id, step=step.name, error=repr(exc))
                    failure = StepFailed("step_error", f"{type(exc).__name__}: {exc}"[:500])
                    may_give_up = False
                saga, retry_at = await self._failed(saga, stype, step, index, failure, may_give_up)
                if retry_at is None:
                    continue  # compensating now (or compensated)
                if step.background_retries or (deadline_ms is not None and retry_at > deadline_ms):
                    return saga  # released: the sweep retries it when due
                await asyncio.sleep(max(0.0, (retry_at - now_ms()) / 1000))
                owned = False  # the next attempt is claimed (and counted) first
        except LostSaga:
            return await self.load(saga.id) or saga
        return saga

    async def _submit(self, op: Op) -> Result:
        result = await self.writer.submit(op)
        if result.status == "lost":
            raise LostSaga()
        return result

    def _advance(self, saga: Saga, stype: SagaType) -> SagaChange:
        state, step = stype.after(saga.step)
        active = state in ACTIVE
        lease_ms = self.lease_ms

        def values(row: Row) -> dict[str, Any]:
            now = now_ms()
            out: dict[str, Any] = {
                "state": state,
                "step": step,
                "attempts": 1 if active else row["attempts"],
                "lease_owner": row["lease_owner"] if active else None,
                "lease_until_ms": now + lease_ms if active else 0,
                "next_attempt_ms": now,
                "updated_ms": now,
            }
            if state == "running":
                out["last_error"] = None
                out["error_code"] = None
            return out

        return SagaChange(saga.id, _same(saga), values)

    async def _run(self, saga: Saga, stype: SagaType, step: Step) -> Saga:
        if step.local is not None:
            effect = step.local(saga)  # raises StepFailed before anything is written
            result = await self._submit(
                Op(
                    change=self._advance(saga, stype),
                    movements=effect.movements,
                    donor_total=effect.donor_total,
                    pause=self._pause_op(saga, step.name),
                )
            )
            if result.status == "short":
                raise StepFailed("insufficient_funds", str(result.short), retryable=False)
        else:
            assert step.remote is not None
            await step.remote(saga)
            if self.pause is not None:
                await self.pause(saga, step.name)
            result = await self._submit(Op(change=self._advance(saga, stype)))
        assert result.saga is not None
        advanced = Saga.of(result.saga)
        if stype.locate(step.name)[2]:
            metrics.COMPENSATIONS.labels(saga.kind, step.name).inc()
        if advanced.finished:
            metrics.SAGAS.labels(saga.kind, advanced.state).inc()
        return advanced

    async def _failed(
        self, saga: Saga, stype: SagaType, step: Step, index: int, exc: StepFailed, may_give_up: bool
    ) -> tuple[Saga, int | None]:
        """Record a failure: schedule a retry (returns its time) or turn to compensation (None)."""
        metrics.STEP_FAILURES.labels(saga.kind, step.name, exc.code).inc()
        give_up = may_give_up and (
            not exc.retryable or bool(step.attempts and saga.attempts >= step.attempts)
        )
        undo = None
        if give_up:
            # a remote call that failed may still have taken effect (a timeout): undo it too; a
            # local step that failed wrote nothing, so compensation starts with the step before
            remote_undo = step.undo if step.remote is not None else None
            undo = remote_undo or stype.compensation_before(index)
        now = now_ms()
        backoff = min(self.max_backoff_s, 0.05 * 2 ** min(saga.attempts, 20)) * (0.5 + random.random())
        retry_at = None if give_up else now + int(backoff * 1000)
        lease_ms = self.lease_ms

        def values(row: Row) -> dict[str, Any]:
            out: dict[str, Any] = {"error_code": exc.code, "last_error": exc.detail[:1000], "updated_ms": now}
            if give_up:
                out.update(
                    state="compensating" if undo else "compensated",
                    step=undo.name if undo else step.name,
                    attempts=1 if undo else row["attempts"],
                    lease_owner=row["lease_owner"] if undo else None,
                    lease_until_ms=now + lease_ms if undo else 0,
                    next_attempt_ms=now,
                )
            else:  # keep the lease until the retry is due; the sweep may take it over after that
                out.update(next_attempt_ms=retry_at, lease_until_ms=retry_at)
            return out

        result = await self._submit(Op(change=SagaChange(saga.id, _same(saga), values)))
        assert result.saga is not None
        updated = Saga.of(result.saga)
        if give_up:
            log.info("saga compensating", saga_id=saga.id, kind=saga.kind, step=step.name, error=exc.code)
        if updated.finished:
            metrics.SAGAS.labels(saga.kind, updated.state).inc()
        return updated, retry_at

    async def _claim(self, saga: Saga) -> Saga | None:
        """Take the saga (lease expired or ours, retry due) and count the attempt about to start."""
        me, lease_ms = self.instance, self.lease_ms

        def expect(row: Row) -> bool:
            now = now_ms()
            return (
                row["state"] in ACTIVE
                and row["next_attempt_ms"] <= now
                and (row["lease_owner"] in (me, None) or row["lease_until_ms"] <= now)
            )

        def values(row: Row) -> dict[str, Any]:
            now = now_ms()
            return {
                "attempts": row["attempts"] + 1,
                "lease_owner": me,
                "lease_until_ms": now + lease_ms,
                "updated_ms": now,
            }

        result = await self.writer.submit(Op(change=SagaChange(saga.id, expect, values)))
        if result.status != "done" or result.saga is None:
            return None
        return Saga.of(result.saga)

    # -- the sweep -------------------------------------------------------------------------------
    async def due(self, limit: int | None = None) -> list[Saga]:
        now = now_ms()
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(sagas)
                    .where(
                        sagas.c.state.in_(ACTIVE),
                        sagas.c.next_attempt_ms <= now,
                        sagas.c.lease_until_ms <= now,
                    )
                    .order_by(sagas.c.next_attempt_ms)
                    .limit(limit or self.sweep_batch)
                )
            ).all()
        return [Saga.of(r._mapping) for r in rows if r._mapping["id"] not in self._inflight]

    async def sweep(self) -> int:
        """Drive every saga whose lease ran out or whose retry is due; returns how many."""
        found = await self.due()
        if not found:
            return 0
        gate = asyncio.Semaphore(self.sweep_concurrency)

        async def one(saga: Saga) -> None:
            async with gate:
                metrics.RESUMED.labels(saga.kind).inc()
                log.info("saga resumed", saga_id=saga.id, kind=saga.kind, state=saga.state, step=saga.step)
                await self.drive(saga, deadline_ms=now_ms())

        await asyncio.gather(*(one(s) for s in found))
        return len(found)

    async def run_sweeper(self, interval_s: float) -> None:
        """Sweep now (the sagas a killed process left behind), then every ``interval_s``."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("saga sweep failed", error=repr(exc))
            await asyncio.sleep(interval_s)
