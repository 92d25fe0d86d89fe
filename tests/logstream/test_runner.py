"""The projection runner on a real broker and both databases: exactly-once, crashes, rebalance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

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


async def test_killed_mid_batch_then_restarted_gives_the_exact_fold(kafka: KafkaClient, engine: AsyncEngine) -> None:
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
            (await session.execute(select(projection_offsets.c.partition, projection_offsets.c.next_offset))).all()
        )
    assert sum(stored.values()) == len(envs)
