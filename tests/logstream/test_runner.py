"""The projection runner on a real broker and both databases: exactly-once, crashes, rebalance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onair.clients import KafkaClient
from onair.db import create_engine, session_factory
from onair.logstream import Event, Projection, ProjectionRunner, ensure_schema
from onair.logstream.schema import projection_offsets

from .helpers import (
    counting_apply,
    counting_projection,
    envelope,
    eventually,
    model,
    produce,
    read_counts,
    uid,
)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await ensure_schema(engine, [model])
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaClient]:
    client = KafkaClient(kafka_bootstrap, client_id="logstream-test")
    yield client
    await client.close()


def fold(envs: Sequence[object]) -> dict[str, tuple[int, int, str | None]]:
    out: dict[str, tuple[int, int, str | None]] = {}
    for e in envs:
        n, total, _ = out.get(e.entity, (0, 0, None))  # type: ignore[attr-defined]
        out[e.entity] = (n + 1, total + e.data["value"], e.data.get("state"))  # type: ignore[attr-defined]
    return out


async def test_killed_mid_batch_then_restarted_gives_the_exact_fold(
    kafka: KafkaClient, engine: AsyncEngine
) -> None:
    topic = f"test.{uid()}.kill"
    await kafka.ensure_topics([topic], partitions=3)
    envs = [envelope(topic, f"e{i % 17}", seq=i, value=i, state=f"s{i}") for i in range(3000)]
    await produce(kafka, envs)

    name = uid("kill")
    entered = asyncio.Event()
    batches = 0

    async def hanging_apply(batch: Sequence[Event], session: AsyncSession) -> None:
        nonlocal batches
        batches += 1
        await counting_apply(batch, session)  # writes reach the open transaction...
        if batches == 2:
            entered.set()
            await asyncio.Event().wait()  # ...and the process "dies" here, mid-batch

    first = ProjectionRunner(kafka, engine, Projection(name, [topic], hanging_apply), batch_max=500)
    await first.start()
    async with asyncio.timeout(30):
        await entered.wait()
    partial = await read_counts(engine)
    assert sum(n for n, _, _ in partial.values()) <= 500  # only the first batch committed
    await first.abort()  # cancelled inside apply: the open transaction rolls back

    class Crash(BaseException):
        pass

    crashed = 0

    async def crashing_apply(batch: Sequence[Event], session: AsyncSession) -> None:
        nonlocal crashed
        await counting_apply(batch, session)
        if crashed == 0:
            crashed += 1
            raise Crash  # a crash that is not a poison record: the runner task dies

    second = ProjectionRunner(kafka, engine, Projection(name, [topic], crashing_apply), batch_max=700)
    await second.start()
    async with asyncio.timeout(30):
        with pytest.raises(Crash):
            assert second.task is not None
            await second.task
    await second.abort()

    third = ProjectionRunner(kafka, engine, counting_projection(name, [topic]), batch_max=400)
    await third.start()
    try:

        async def done() -> bool:
            return await read_counts(engine) == fold(envs)

        await eventually(done, 40)
    finally:
        await third.stop()
    async with session_factory(engine)() as session:
        stored = dict(
            (
                await session.execute(
                    select(projection_offsets.c.partition, projection_offsets.c.next_offset)
                )
            ).all()
        )
    assert sum(stored.values()) == len(envs)
    # metrics count what was committed, not what was attempted and rolled back
    from onair.logstream.metrics import APPLIED, LAG_RECORDS

    assert sum(APPLIED.labels(name, topic, str(p))._value.get() for p in range(3)) == len(envs)
    assert all(LAG_RECORDS.labels(name, topic, str(p))._value.get() == 0 for p in range(3))


async def test_projector_process_killed_with_sigkill_then_restarted(
    kafka: KafkaClient, engine: AsyncEngine, database_url: str
) -> None:
    import os
    import signal
    import sys
    from pathlib import Path

    from onair.bench.projection_harness import apply_count, bench_counts, bench_model

    await ensure_schema(engine, [bench_model])
    topic = f"test.{uid()}.sigkill"
    await kafka.ensure_topics([topic], partitions=3)
    envs = [envelope(topic, f"e{i % 13}", seq=i, value=i, state="x") for i in range(2000)]
    await produce(kafka, envs)
    name = uid("sigkill")
    script = Path(__file__).with_name("projector_proc.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        kafka.bootstrap,
        database_url,
        name,
        topic,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            applying = 0
            while applying < 6:  # a few batches committed, the 6th is in its transaction
                line = await proc.stdout.readline()
                assert line, "the projector process ended early"
                applying += line.startswith(b"applying")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def counted() -> dict[str, tuple[int, int]]:
        async with session_factory(engine)() as session:
            rows = await session.execute(
                select(bench_counts.c.entity, bench_counts.c.n, bench_counts.c.total)
            )
            return {r[0]: (r[1], r[2]) for r in rows}

    assert 0 < sum(n for n, _ in (await counted()).values()) < len(envs)
    expected: dict[str, tuple[int, int]] = {}
    for e in envs:
        n, total = expected.get(e.entity, (0, 0))
        expected[e.entity] = (n + 1, total + e.data["value"])
    runner = ProjectionRunner(kafka, engine, Projection(name, [topic], apply_count), batch_max=500)
    await runner.start()
    try:

        async def done() -> bool:
            return await counted() == expected

        await eventually(done, 40)
    finally:
        await runner.stop()


async def test_out_of_order_votes_and_poison_records(kafka: KafkaClient, engine: AsyncEngine) -> None:
    ordered, voted = f"test.{uid()}.status", f"test.{uid()}.visibility"
    await kafka.ensure_topics([ordered, voted], partitions=2)
    # Out of order by seq: 3 arrives before 2, which must be dropped; a duplicate of 3 too.
    late = envelope(ordered, "a", seq=3, value=30, state="third")
    seq_events = [
        envelope(ordered, "a", seq=1, value=10, state="first"),
        late,
        envelope(ordered, "a", seq=2, value=20, state="second"),
        late,  # the same event again (a producer retry)
        # no seq: ts decides; the older one (ts -5 s) arrives last and is dropped
        envelope(ordered, "b", ts_offset_ms=1000, value=1, state="new"),
        envelope(ordered, "b", ts_offset_ms=-5000, value=2, state="old"),
    ]
    # Flip-flop: public, hidden, public (true order) arriving as public, public, hidden.
    votes = [
        envelope(voted, "ch", ts_offset_ms=0, state="public"),
        envelope(voted, "ch", ts_offset_ms=200, state="public"),
        envelope(voted, "ch", ts_offset_ms=100, state="hidden"),
    ]
    poison = [
        (ordered, b"p", b"\xff not json"),
        (ordered, b"p", b'{"v": 1, "event_id": "x"}'),  # schema-invalid
    ]
    boom = envelope(ordered, "boom", seq=1, value=1, state="explode")  # apply raises for this one
    after = envelope(ordered, "c", seq=1, value=5, state="fine")
    await produce(kafka, [*seq_events, *votes], raw=poison)
    await produce(kafka, [boom, after])

    async def apply(batch: Sequence[Event], session: AsyncSession) -> None:
        if any(e.data.get("state") == "explode" for e in batch):
            raise ValueError("cannot apply explode")
        await counting_apply(batch, session)

    from onair.logstream import VoteRule, list_dead_letters
    from onair.logstream.metrics import DROPPED_STALE

    name = uid("ooo")
    rule = VoteRule("state", {"public": 1, "hidden": -1}, window_s=5)
    runner = ProjectionRunner(kafka, engine, Projection(name, [ordered, voted], apply, votes={voted: rule}))
    await runner.start()
    try:

        async def settled() -> bool:
            got = await read_counts(engine)
            return "c" in got and "ch" in got and "a" in got and "b" in got

        await eventually(settled, 30)
        assert runner.task is not None and not runner.task.done()
    finally:
        await runner.stop()
    got = await read_counts(engine)
    assert got["a"] == (2, 40, "third")  # seq 1 and 3 applied; 2 (late) and the duplicate dropped
    assert got["b"] == (1, 1, "new")
    assert got["ch"][2] == "public"  # decided by the vote, whatever the arrival order
    assert got["c"] == (1, 5, "fine")  # the projection carried on after the poison
    assert "boom" not in got and "p" not in got
    assert DROPPED_STALE.labels(name)._value.get() == 3
    async with session_factory(engine)() as session:
        letters = await list_dead_letters(session, name)
    reasons = sorted(d.reason for d in letters)
    assert reasons == ["apply_failed", "invalid", "undecodable"]
    raw = {d.reason: d.value for d in letters}
    assert raw["undecodable"] == b"\xff not json"
    assert b"explode" in (raw["apply_failed"] or b"")
    assert all(d.error for d in letters)


async def test_rebalance_between_two_instances_applies_each_event_once(
    kafka: KafkaClient, engine: AsyncEngine
) -> None:
    topic = f"test.{uid()}.rebalance"
    await kafka.ensure_topics([topic], partitions=6)
    name = uid("reb")
    chunks = [
        [
            envelope(topic, f"e{i % 40}", seq=i, value=i, state=f"s{i}")
            for i in range(k * 1500, (k + 1) * 1500)
        ]
        for k in range(3)
    ]
    await produce(kafka, chunks[0])
    a = ProjectionRunner(kafka, engine, counting_projection(name, [topic]), batch_max=300)
    b = ProjectionRunner(kafka, engine, counting_projection(name, [topic]), batch_max=300)
    await a.start()
    await a.wait_assigned()
    await b.start()  # joins while a is applying: a rebalance
    try:

        async def both_own_partitions() -> bool:
            return bool(a._consumer and b._consumer and a._consumer.assignment() and b._consumer.assignment())

        await eventually(both_own_partitions, 40)
        assert not (a._consumer.assignment() & b._consumer.assignment())  # type: ignore[union-attr]
        await produce(kafka, chunks[1])  # shared between the two instances

        async def has(envs: list[object]) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return await read_counts(engine) == fold(envs)

            return check

        await eventually(await has(chunks[0] + chunks[1]), 40)
        await b.stop()  # leaves: a takes all partitions back
        await produce(kafka, chunks[2])
        await eventually(await has(chunks[0] + chunks[1] + chunks[2]), 40)
    finally:
        await a.stop()
        await b.stop()
    assert a.applied_total + b.applied_total == 4500
    assert b.applied_total > 0


async def test_read_your_writes_waits_then_times_out(
    kafka: KafkaClient, engine: AsyncEngine, tmp_path: object
) -> None:
    from pathlib import Path

    import structlog

    from onair.logging import configure_logging, get_logger
    from onair.logstream import LogStreamSink, NotYetApplied, Position, UnknownPosition, wait_for_position

    topic = f"test.{uid()}.title"
    await kafka.ensure_topics([topic], partitions=2)
    name = uid("ryw")
    gate = asyncio.Event()
    gate.set()

    async def gated(batch: Sequence[Event], session: AsyncSession) -> None:
        await gate.wait()
        await counting_apply(batch, session)

    sink = LogStreamSink(kafka, spool_dir=Path(str(tmp_path)) / "spool", service="live")
    import io

    configure_logging("live", sinks=[sink], stream=io.StringIO())
    runner = ProjectionRunner(kafka, engine, Projection(name, [topic], gated))
    try:
        await sink.start()
        await runner.start()
        await runner.wait_assigned()
        log = get_logger()
        pos = await sink.log_event(log, "title changed", category=topic, entity="ch1", value=1, state="Hello")
        assert isinstance(pos, Position) and pos.topic == topic
        await wait_for_position(engine, name, str(pos), timeout_s=5, runner=runner)
        assert (await read_counts(engine))["ch1"] == (1, 1, "Hello")

        gate.clear()  # the projection stalls: the next read cannot see the write
        pos2 = await sink.log_event(log, "title changed", category=topic, entity="ch1", value=1, state="Bye")
        with pytest.raises(NotYetApplied) as info:
            await wait_for_position(engine, name, pos2, timeout_s=0.3)
        assert info.value.status == 503 and info.value.body["position"] == str(pos2)
        assert info.value.headers["Retry-After"]
        with pytest.raises(UnknownPosition) as bad:
            await wait_for_position(engine, name, "nonsense", timeout_s=0.3)
        assert bad.value.status == 409
        with pytest.raises(UnknownPosition):
            await wait_for_position(engine, name, Position("other.topic", 0, 1), topics=[topic])
        gate.set()
        await wait_for_position(engine, name, pos2, timeout_s=5)
        assert (await read_counts(engine))["ch1"] == (2, 2, "Bye")
    finally:
        gate.set()
        await runner.stop()
        await sink.close()
        structlog.reset_defaults()
