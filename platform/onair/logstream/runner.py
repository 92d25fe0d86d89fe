"""The projection runner: one consumer group per projection, batches applied exactly once.

Each batch is applied in ONE database transaction together with the consumed offsets
(``projection_offsets``). On start and on every rebalance the runner seeks each assigned partition
to the offset stored in its own database, so a crash at any point (before, during or after the
commit) replays exactly the batches whose transaction did not commit. The offset write is
conditional (``UPDATE … WHERE next_offset = <expected>`` / ``INSERT`` of a new row), so two
instances that briefly both believe they own a partition during a rebalance cannot both commit the
same records. Kafka offset commits are made every few seconds for tooling only; they are never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onair.clients import KafkaClient
from onair.db import session_factory
from onair.logstream import deadletter, metrics
from onair.logstream.envelope import Envelope, EnvelopeError
from onair.logstream.ordering import EntityPosition, is_stale, vote
from onair.logstream.positions import Position
from onair.logstream.projection import Event, Projection
from onair.logstream.schema import projection_entity_positions, projection_offsets, upsert
from onair.logstream.topics import TopicRegistry

log = structlog.get_logger("onair.logstream.runner")

# Errors that mean "the infrastructure failed", never "this record is poison": retried, not dead-lettered.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
    OSError,
)

OnCommit = Callable[[Sequence[Event], float], None]


class OffsetConflict(RuntimeError):
    """Another instance committed these partitions first (a rebalance was in progress)."""


_PASS_THROUGH: tuple[type[BaseException], ...] = (OffsetConflict, *INFRA_ERRORS)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.runner._lock:  # wait for the batch in flight to commit or roll back
            for tp in revoked:
                self.runner._next.pop(tp, None)
            self.runner._positions.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.runner._to_sync.update(assigned)
        self.runner._assigned.set()


class ProjectionRunner:
    """Runs one :class:`Projection` against one service database.

    ``await runner.start()`` joins the group and starts the loop; ``await runner.stop()`` finishes
    the batch in flight and leaves the group. ``await runner.wait_for(position)`` waits until a
    position has been applied (see :mod:`onair.logstream.positions`).
    """

    def __init__(
        self,
        kafka: KafkaClient,
        engine: AsyncEngine,
        projection: Projection,
        *,
        batch_max: int = 5000,
        poll_ms: int = 100,
        batch_linger_ms: int = 20,
        partitions: int | None = None,
        on_commit: OnCommit | None = None,
        consumer_overrides: dict[str, Any] | None = None,
        advisory_commit_s: float = 5.0,
        position_cache: int = 200_000,
    ) -> None:
        self.kafka = kafka
        self.engine = engine
        self.projection = projection
        self.batch_max = batch_max
        self.poll_ms = poll_ms
        self.batch_linger_ms = batch_linger_ms
        self.on_commit = on_commit
        self.advisory_commit_s = advisory_commit_s
        self.position_cache = position_cache
        self._topics = TopicRegistry(kafka, partitions)
        self._sessions = session_factory(engine)
        self._consumer_overrides = consumer_overrides or {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self._next: dict[TopicPartition, int] = {}  # next offset to apply, per assigned partition
        self._stored: set[TopicPartition] = set()  # partitions that have a row in projection_offsets
        self._to_sync: set[TopicPartition] = set()
        self._positions: dict[tuple[str, str], EntityPosition] = {}
        self._applied = asyncio.Condition()
        self._notifiers: set[asyncio.Task[None]] = set()
        self._assigned = asyncio.Event()
        self._rate = metrics.RateMeter()
        self._last_advisory = 0.0
        self._bad_errors: dict[tuple[str, int, int], str] = {}
        self.applied_total = 0
        self.batches = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def topics(self) -> list[str]:
        return [self.kafka.topic(t) for t in self.projection.topics]

    async def start(self) -> None:
        await self._topics.ensure(self.projection.topics)
        overrides: dict[str, Any] = {
            "fetch_max_wait_ms": self.poll_ms,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 1_000,
            "max_poll_interval_ms": 300_000,
            **self._consumer_overrides,
        }
        self._consumer = await self.kafka.consumer(group_id=self.projection.group_id, **overrides)
        self._consumer.subscribe(self.topics, listener=_Listener(self))
        self._task = asyncio.create_task(self._run(), name=f"projection:{self.projection.name}")

    async def wait_assigned(self, timeout_s: float = 30.0) -> set[TopicPartition]:
        """Wait until this instance owns at least one partition (group joins take seconds)."""
        async with asyncio.timeout(timeout_s):
            await self._assigned.wait()
        return set(self._consumer.assignment()) if self._consumer else set()

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, then leave the group."""
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._release()

    async def abort(self) -> None:
        """Cancel the loop wherever it is (a crash in tests): the open transaction rolls back."""
        task = self._task
        if task is not None:
            task.cancel()
            try:
                await asyncio.wait([task])
            finally:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: the crash is the caller's to inspect via .task
        await self._release()

    async def _release(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            _leave_from_generation_zero(consumer)
            with contextlib.suppress(Exception):
                await self.kafka.release(consumer)

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    # -- read-your-writes ------------------------------------------------------------------------
    def applied_offset(self, topic: str, partition: int) -> int | None:
        """The next offset to apply on a partition this instance owns (None when not owned)."""
        return self._next.get(TopicPartition(topic, partition))

    async def wait_for(self, position: Position, timeout_s: float) -> None:
        """Wait until ``position`` is applied by this instance (raises ``TimeoutError``)."""
        tp = TopicPartition(position.topic, position.partition)
        async with asyncio.timeout(timeout_s), self._applied:
            await self._applied.wait_for(lambda: self._next.get(tp, -1) > position.offset)

    # -- loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = 0.2
        while not self._stopping:
            try:
                if self._to_sync:
                    await self._sync_offsets(consumer)
                records = await self._next_batch(consumer)
                if records:
                    await self._apply_records(records)
                    await self._maybe_advisory_commit(consumer)
                backoff = 0.2
            except OffsetConflict as exc:
                log.warning(
                    "projection offsets moved under us; resyncing",
                    projection=self.projection.name,
                    error=str(exc),
                )
                self._resync(consumer)
            except INFRA_ERRORS as exc:
                log.warning(
                    "projection batch failed; retrying",
                    projection=self.projection.name,
                    error=repr(exc),
                    backoff_s=backoff,
                )
                self._resync(consumer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # a bug in apply that is not one poison record: retry slowly
                log.error("projection batch failed", projection=self.projection.name, error=repr(exc))
                self._resync(consumer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        if self._next:
            await self._maybe_advisory_commit(consumer, force=True)

    async def _next_batch(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord[Any, Any]]:
        """One poll, topped up for at most ``batch_linger_ms`` while a backlog keeps arriving.

        Fetch responses are small (a few hundred records); gathering them into one batch means one
        transaction instead of several when the projection is behind, and adds nothing when it is not.
        """
        batch = await consumer.getmany(timeout_ms=self.poll_ms, max_records=self.batch_max)
        records = [r for recs in batch.values() for r in recs]
        if not records or self.batch_linger_ms <= 0:
            return records
        deadline = time.monotonic() + self.batch_linger_ms / 1000
        while len(records) < self.batch_max and time.monotonic() < deadline:
            more = await consumer.getmany(timeout_ms=2, max_records=self.batch_max - len(records))
            if not more:
                break
            records += [r for recs in more.values() for r in recs]
        records.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return records

    def _resync(self, consumer: AIOKafkaConsumer) -> None:
        self._positions.clear()
        self._next.clear()
        self._to_sync.update(consumer.assignment())

    async def _sync_offsets(self, consumer: AIOKafkaConsumer) -> None:
        """Seek each newly assigned partition to the offset stored in the database."""
        async with self._lock:
            assigned = consumer.assignment()
            wanted = [tp for tp in self._to_sync if tp in assigned]
            self._to_sync.clear()
            if not wanted:
                return
            t = projection_offsets
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(t.c.topic, t.c.partition, t.c.next_offset).where(
                            t.c.projection == self.projection.name
                        )
                    )
                ).all()
            stored = {TopicPartition(topic, part): off for topic, part, off in rows}
            missing = [tp for tp in wanted if tp not in stored]
            beginnings = await consumer.beginning_offsets(missing) if missing else {}
            for tp in wanted:
                if tp in stored:
                    offset = stored[tp]
                    self._stored.add(tp)
                else:
                    offset = beginnings.get(tp, 0)
                    self._stored.discard(tp)
                consumer.seek(tp, offset)
                self._next[tp] = offset
            log.debug(
                "projection partitions synced",
                projection=self.projection.name,
                offsets={f"{tp.topic}:{tp.partition}": self._next[tp] for tp in wanted},
            )

    # -- one batch -------------------------------------------------------------------------------
    async def _apply_records(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        async with self._lock:
            fresh: list[ConsumerRecord[Any, Any]] = []
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                nxt = self._next.get(tp)
                if nxt is None or r.offset < nxt:
                    continue  # not ours (revoked / not yet synced) or already applied
                fresh.append(r)
            if not fresh:
                return
            expected = {tp: self._next[tp] for tp in {TopicPartition(r.topic, r.partition) for r in fresh}}
            new_next: dict[TopicPartition, int] = {}
            for r in fresh:
                new_next[TopicPartition(r.topic, r.partition)] = r.offset + 1

            decoded: list[Event] = []
            letters: list[deadletter.DeadLetter] = []
            for r in fresh:
                try:
                    env = Envelope.from_bytes(r.value)
                except EnvelopeError as exc:
                    reason = deadletter.UNDECODABLE if "not JSON" in str(exc) else deadletter.INVALID
                    letters.append(self._letter(r, reason, str(exc)))
                    continue
                decoded.append(Event(r.topic, r.partition, r.offset, r.key, env, r.timestamp))

            bad: set[tuple[str, int, int]] = set()
            for _attempt in range(3):
                try:
                    async with self._sessions() as session, session.begin():
                        applied, stale, positions = await self._order(session, decoded, bad)
                        await self._apply_all(session, applied)
                        await self._write_positions(session, positions)
                        await deadletter.record(session, letters + self._apply_letters(decoded, bad))
                        await self._write_offsets(session, expected, new_next)
                    break
                except _PASS_THROUGH:
                    raise
                except _ApplyFailed as failed:
                    bad |= await self._find_poison(failed.events)
                    if not bad:
                        raise failed.cause from None
            else:  # pragma: no cover - apply keeps failing differently each time
                raise RuntimeError(f"projection {self.projection.name}: batch kept failing")

            # committed: let the projection tell its readers (e.g. invalidate cached views) before
            # the position counts as applied here, so a read that waited for it sees the change
            await self._run_after_commit(applied)
            # publish the new state (the position cache is bounded; the table is the truth)
            if len(self._positions) + len(positions) > self.position_cache:
                self._positions.clear()
            self._positions.update(positions)
            for tp, nxt in new_next.items():
                self._next[tp] = nxt
                self._stored.add(tp)
        now = time.time()
        self._after_commit(applied, stale, letters, bad, new_next, fresh, now)

    async def _run_after_commit(self, applied: list[Event]) -> None:
        hook = self.projection.after_commit
        if hook is None or not applied:
            return
        try:
            await hook(applied)
        except Exception as exc:  # the batch is committed: report, never undo or retry it
            metrics.AFTER_COMMIT_ERRORS.labels(self.projection.name).inc()
            log.warning(
                "projection after-commit hook failed", projection=self.projection.name, error=repr(exc)
            )

    def _letter(self, r: ConsumerRecord[Any, Any], reason: str, error: str) -> deadletter.DeadLetter:
        return deadletter.DeadLetter(
            self.projection.name, r.topic, r.partition, r.offset, r.key, r.value, reason, error
        )

    def _apply_letters(
        self, decoded: list[Event], bad: set[tuple[str, int, int]]
    ) -> list[deadletter.DeadLetter]:
        out = []
        for e in decoded:
            if (e.topic, e.partition, e.offset) in bad:
                out.append(
                    deadletter.DeadLetter(
                        self.projection.name,
                        e.topic,
                        e.partition,
                        e.offset,
                        e.key,
                        e.envelope.to_bytes(),
                        deadletter.APPLY_FAILED,
                        self._bad_errors.get((e.topic, e.partition, e.offset), "apply raised"),
                    )
                )
        return out

    async def _order(
        self, session: AsyncSession, events: list[Event], bad: set[tuple[str, int, int]]
    ) -> tuple[list[Event], int, dict[tuple[str, str], EntityPosition]]:
        """Drop stale/duplicate events and run vote counters; returns (kept, dropped, new positions)."""
        events = [e for e in events if (e.topic, e.partition, e.offset) not in bad]
        if self.projection.ordering == "none" and not self.projection.votes:
            return events, 0, {}
        keys = {(e.topic, e.entity) for e in events}
        await self._load_positions(session, [k for k in keys if k not in self._positions])
        work: dict[tuple[str, str], EntityPosition] = {}
        kept: list[Event] = []
        stale = 0
        for e in events:
            key = (e.topic, e.entity)
            last = work.get(key) or self._positions.get(key)
            env = e.envelope
            ts_us = env.ts_us
            rule = self.projection.votes.get(e.topic)
            if rule is not None:
                pos = _copy(last) if last is not None else EntityPosition(e.partition, e.offset)
                if last is not None and last.event_id == env.event_id:
                    stale += 1
                    continue
                e.decided = vote(rule, pos, env.data.get(rule.field), ts_us)
                pos.partition, pos.offset, pos.event_id = e.partition, e.offset, env.event_id
                pos.seq = max(env.seq, pos.seq or 0) if env.seq is not None else pos.seq
                pos.ts_us = max(ts_us, pos.ts_us or 0)
                work[key] = pos
                kept.append(e)
                continue
            if self.projection.ordering == "entity" and is_stale(
                last, seq=env.seq, ts_us=ts_us, partition=e.partition, offset=e.offset, event_id=env.event_id
            ):
                stale += 1
                continue
            work[key] = EntityPosition(e.partition, e.offset, env.seq, ts_us, env.event_id)
            kept.append(e)
        return kept, stale, work

    async def _load_positions(self, session: AsyncSession, keys: list[tuple[str, str]]) -> None:
        t = projection_entity_positions
        by_topic: dict[str, list[str]] = {}
        for topic, entity in keys:
            by_topic.setdefault(topic, []).append(entity)
        for topic, entities in by_topic.items():
            for i in range(0, len(entities), 500):
                chunk = entities[i : i + 500]
                rows = (
                    await session.execute(
                        select(t).where(
                            and_(
                                t.c.projection == self.projection.name,
                                t.c.topic == topic,
                                t.c.entity.in_(chunk),
                            )
                        )
                    )
                ).mappings()
                for row in rows:
                    self._positions[(topic, row["entity"])] = EntityPosition.from_row(dict(row))

    async def _apply_all(self, session: AsyncSession, events: list[Event]) -> None:
        if not events:
            return
        try:
            await self.projection.apply(events, session)
        except INFRA_ERRORS:
            raise
        except Exception as exc:
            raise _ApplyFailed(events, exc) from exc

    async def _find_poison(self, events: list[Event]) -> set[tuple[str, int, int]]:
        """Apply the events one by one in a transaction that is rolled back; return those that raise."""
        found: set[tuple[str, int, int]] = set()
        async with self._sessions() as session:
            await session.begin()
            try:
                for e in events:
                    try:
                        await self.projection.apply([e], session)
                    except INFRA_ERRORS:
                        raise
                    except Exception as exc:
                        ident = (e.topic, e.partition, e.offset)
                        found.add(ident)
                        self._bad_errors[ident] = f"{type(exc).__name__}: {exc}"
                        # a failed statement may abort the transaction (PostgreSQL): start afresh
                        await session.rollback()
                        await session.begin()
            finally:
                await session.rollback()
        return found

    async def _write_positions(
        self, session: AsyncSession, positions: dict[tuple[str, str], EntityPosition]
    ) -> None:
        if not positions:
            return
        rows = [
            {"projection": self.projection.name, "topic": topic, "entity": entity, **pos.to_row()}
            for (topic, entity), pos in positions.items()
        ]
        await upsert(session, projection_entity_positions, rows, ["projection", "topic", "entity"])

    async def _write_offsets(
        self,
        session: AsyncSession,
        expected: dict[TopicPartition, int],
        new_next: dict[TopicPartition, int],
    ) -> None:
        t = projection_offsets
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in new_next:
            if tp in self._stored:
                by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in by_topic.items():
            # one conditional UPDATE per topic: every partition must still be at the expected offset
            result: Any = await session.execute(
                update(t)
                .where(
                    and_(
                        t.c.projection == self.projection.name,
                        t.c.topic == topic,
                        or_(
                            *[
                                and_(t.c.partition == tp.partition, t.c.next_offset == expected[tp])
                                for tp in tps
                            ]
                        ),
                    )
                )
                .values(
                    next_offset=case({tp.partition: new_next[tp] for tp in tps}, value=t.c.partition),
                    updated_at=func.now(),
                )
            )
            if result.rowcount != len(tps):
                moved = ", ".join(f"{tp.partition}@{expected[tp]}" for tp in tps)
                raise OffsetConflict(f"{topic}: partitions {moved} are no longer at their expected offsets")
        fresh = [tp for tp in new_next if tp not in self._stored]
        if fresh:
            try:
                await session.execute(
                    t.insert(),
                    [
                        {
                            "projection": self.projection.name,
                            "topic": tp.topic,
                            "partition": tp.partition,
                            "next_offset": new_next[tp],
                        }
                        for tp in fresh
                    ],
                )
            except sa_exc.IntegrityError as exc:
                raise OffsetConflict("a partition was started by another instance") from exc

    def _after_commit(
        self,
        applied: list[Event],
        stale: int,
        letters: list[deadletter.DeadLetter],
        bad: set[tuple[str, int, int]],
        new_next: dict[TopicPartition, int],
        fresh: list[ConsumerRecord[Any, Any]],
        now: float,
    ) -> None:
        name = self.projection.name
        self.batches += 1
        self.applied_total += len(applied)
        counts: dict[TopicPartition, int] = {}
        for e in applied:
            tp = TopicPartition(e.topic, e.partition)
            counts[tp] = counts.get(tp, 0) + 1
        for tp, n in counts.items():
            metrics.APPLIED.labels(name, tp.topic, str(tp.partition)).inc(n)
        metrics.APPLIED_RATE.labels(name).set(self._rate.add(len(applied)))
        if stale:
            metrics.DROPPED_STALE.labels(name).inc(stale)
        for d in letters:
            metrics.DEAD_LETTERED.labels(name, d.reason).inc()
        if bad:
            metrics.DEAD_LETTERED.labels(name, deadletter.APPLY_FAILED).inc(len(bad))
        last_ts: dict[TopicPartition, int] = {}
        for r in fresh:
            last_ts[TopicPartition(r.topic, r.partition)] = r.timestamp
        consumer = self._consumer
        for tp, nxt in new_next.items():
            hw = consumer.highwater(tp) if consumer is not None else None
            lag = max((hw or nxt) - nxt, 0)
            metrics.LAG_RECORDS.labels(name, tp.topic, str(tp.partition)).set(lag)
            age = max(now - last_ts[tp] / 1000.0, 0.0) if lag else 0.0
            metrics.LAG_SECONDS.labels(name, tp.topic, str(tp.partition)).set(age)
        if self.on_commit is not None:
            self.on_commit(applied, now)
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifiers.add(task)  # keep a reference until done
        task.add_done_callback(self._notifiers.discard)

    async def _notify(self) -> None:
        async with self._applied:
            self._applied.notify_all()

    async def _maybe_advisory_commit(self, consumer: AIOKafkaConsumer, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_advisory < self.advisory_commit_s:
            return
        self._last_advisory = now
        offsets = {tp: off for tp, off in self._next.items() if tp in consumer.assignment()}
        if offsets:
            with contextlib.suppress(Exception):
                await consumer.commit(offsets)


class _ApplyFailed(Exception):
    def __init__(self, events: list[Event], cause: Exception) -> None:
        super().__init__(f"apply raised {cause!r}")
        self.events = events
        self.cause = cause


def _leave_from_generation_zero(consumer: AIOKafkaConsumer) -> None:
    """Work around tansu numbering the first group generation 0.

    aiokafka only sends LeaveGroup when ``generation > 0``, so the first member of a group would
    never leave and the next rebalance would wait a whole session timeout for it. The LeaveGroup
    request does not carry the generation, so bumping the number just before ``stop()`` is safe.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and getattr(coordinator, "generation", None) == 0 and coordinator.member_id:
        coordinator.generation = 1


def _copy(pos: EntityPosition) -> EntityPosition:
    return EntityPosition(**pos.to_row())
