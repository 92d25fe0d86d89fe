"""The projection benchmark behind ``onair bench projection``.

Produce N events over E entities into P partitions; for each database (SQLite, PostgreSQL) run a
counting projection and an upsert projection from the start of the topic and measure applied
events/s; then offer 5,000 events/s through the real producer path (:class:`LogStreamSink`) for a
few seconds to the running upsert projection and measure end-to-end lag (log call -> committed in
the read model), p50/p99. Finally check exactly-once: each read model equals a fold of the
produced events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from onair.clients import KafkaClient
from onair.db import create_engine, session_factory
from onair.db.admin import create_database, drop_database
from onair.logstream.envelope import Envelope, new_event_id
from onair.logstream.projection import Event, Projection
from onair.logstream.runner import ProjectionRunner
from onair.logstream.schema import ensure_schema, excluded, upsert
from onair.logstream.sink import LogStreamSink

Note = Callable[[str], None]

bench_model = MetaData()
bench_counts = Table(
    "bench_counts",
    bench_model,
    Column("entity", String(50), primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
)
bench_state = Table(
    "bench_state",
    bench_model,
    Column("entity", String(50), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("value", Integer, nullable=False),
    Column("state", String(50), nullable=False),
)


async def apply_count(batch: Sequence[Event], session: AsyncSession) -> None:
    agg: dict[str, list[int]] = {}
    for e in batch:
        row = agg.setdefault(e.entity, [0, 0])
        row[0] += 1
        row[1] += int(e.data["value"])
    ex = excluded(session, bench_counts)
    rows = [{"entity": k, "n": n, "total": t} for k, (n, t) in agg.items()]
    await upsert(
        session,
        bench_counts,
        rows,
        ["entity"],
        {"n": bench_counts.c.n + ex.n, "total": bench_counts.c.total + ex.total},
    )


async def apply_upsert(batch: Sequence[Event], session: AsyncSession) -> None:
    last: dict[str, dict[str, Any]] = {}
    for e in batch:
        last[e.entity] = {
            "entity": e.entity,
            "seq": e.envelope.seq,
            "value": int(e.data["value"]),
            "state": str(e.data["state"]),
        }
    await upsert(session, bench_state, list(last.values()), ["entity"])


@dataclass
class Produced:
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    state: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)

    def add(self, env: Envelope) -> None:
        n, t = self.counts.get(env.entity, (0, 0))
        self.counts[env.entity] = (n + 1, t + int(env.data["value"]))
        assert env.seq is not None
        self.state[env.entity] = (env.seq, int(env.data["value"]), str(env.data["state"]))


def _now_ts() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def make_event(topic: str, i: int, entities: int, produced: Produced) -> Envelope:
    entity = f"e{i % entities}"
    seq = produced.seqs.get(entity, -1) + 1
    produced.seqs[entity] = seq
    env = Envelope(
        new_event_id(), _now_ts(), "bench", topic, entity, seq, {"value": i % 97, "state": f"s{i % 5}"}
    )
    produced.add(env)
    return env


async def produce_all(
    kafka: KafkaClient, topic: str, n: int, entities: int, produced: Produced, note: Note
) -> float:
    producer = await kafka.producer(linger_ms=20, max_batch_size=256 * 1024)
    started = time.perf_counter()
    try:
        pending = []
        for i in range(n):
            env = make_event(topic, i, entities, produced)
            pending.append(await producer.send(topic, env.to_bytes(), key=env.entity.encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                note(f"produced {i + 1:,}/{n:,}")
        await asyncio.gather(*pending)
    finally:
        await kafka.release(producer)
    return n / (time.perf_counter() - started)


async def _wait_applied(runner: ProjectionRunner, total: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while runner.applied_total < total:  # noqa: ASYNC110 - a counter updated by the runner task
            await asyncio.sleep(0.02)


async def run_projection(
    kafka: KafkaClient, engine: AsyncEngine, projection: Projection, total: int, batch_max: int, note: Note
) -> tuple[float, ProjectionRunner]:
    """Start a runner from offset 0, return (applied events/s, the still running runner)."""
    runner = ProjectionRunner(kafka, engine, projection, batch_max=batch_max)
    await runner.start()
    await runner.wait_assigned(60)
    started = time.perf_counter()
    note(f"{projection.name}: applying {total:,} events")
    await _wait_applied(runner, total, max(120.0, total / 500))
    return total / (time.perf_counter() - started), runner


async def offered_load(
    kafka: KafkaClient, topic: str, rate: int, seconds: float, entities: int, produced: Produced, spool: Path
) -> int:
    """Log events at a fixed rate through the sink (the real producer path)."""
    sink = LogStreamSink(kafka, spool_dir=spool, service="bench", buffer_size=100_000)
    await sink.start()
    sent = 0
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for _ in range(per_tick):
                sink.publish(make_event(topic, sent, entities, produced))
                sent += 1
            next_at = started + (sent / rate)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await sink.flush(30)
    finally:
        await sink.close()
    return sent


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def check_models(engine: AsyncEngine, produced_counts: Produced, produced_state: Produced) -> bool:
    async with session_factory(engine)() as session:
        counts = {
            r[0]: (r[1], r[2])
            for r in (
                await session.execute(select(bench_counts.c.entity, bench_counts.c.n, bench_counts.c.total))
            )
        }
        state = {
            r[0]: (r[1], r[2], r[3])
            for r in (
                await session.execute(
                    select(bench_state.c.entity, bench_state.c.seq, bench_state.c.value, bench_state.c.state)
                )
            )
        }
    return counts == produced_counts.counts and state == produced_state.state


@dataclass
class DbResult:
    db: str
    count_eps: float
    upsert_eps: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_events: int
    exactly_once: bool


async def bench_db(
    db: str,
    url: str,
    kafka: KafkaClient,
    topic: str,
    produced: Produced,
    *,
    events: int,
    entities: int,
    partitions: int,
    rate: int,
    lag_seconds: float,
    batch_max: int,
    workdir: Path,
    note: Note,
) -> DbResult:
    engine = create_engine(url)
    try:
        await ensure_schema(engine, [bench_model])
        run = uuid.uuid4().hex[:6]
        count_eps, counter = await run_projection(
            kafka,
            engine,
            Projection(f"bench_count_{db}_{run}", [topic], apply_count),
            events,
            batch_max,
            note,
        )
        await counter.stop()
        lag_topic = f"{topic}_lag_{db}"
        await kafka.ensure_topics([lag_topic], partitions)
        lags: list[float] = []
        measuring = False

        def on_commit(batch: Sequence[Event], now: float) -> None:
            if measuring:
                lags.extend(now - e.envelope.ts_us / 1e6 for e in batch if e.topic == lag_topic)

        projection = Projection(f"bench_upsert_{db}_{run}", [topic, lag_topic], apply_upsert)
        runner = ProjectionRunner(kafka, engine, projection, batch_max=batch_max, on_commit=on_commit)
        await runner.start()
        await runner.wait_assigned(60)
        started = time.perf_counter()
        note(f"{projection.name}: applying {events:,} events")
        await _wait_applied(runner, events, max(120.0, events / 500))
        upsert_eps = events / (time.perf_counter() - started)
        # both the counting fold and the upsert fold include the lag-phase events from here on
        state_produced = Produced(dict(produced.counts), dict(produced.state), dict(produced.seqs))
        note(f"{db}: offering {rate:,} events/s for {lag_seconds:.0f}s")
        measuring = True
        sent = await offered_load(
            kafka, lag_topic, rate, lag_seconds, entities, state_produced, workdir / f"spool-{db}"
        )
        await _wait_applied(runner, events + sent, 60)
        await runner.stop()
        ok = await check_models(engine, produced, state_produced)
        return DbResult(
            db, count_eps, upsert_eps, percentile(lags, 50) * 1000, percentile(lags, 99) * 1000, len(lags), ok
        )
    finally:
        await engine.dispose()


async def run_benchmark(
    *,
    bootstrap: str | None,
    postgres_url: str | None,
    databases: Sequence[str],
    events: int,
    entities: int,
    partitions: int,
    rate: int,
    lag_seconds: float,
    batch_max: int,
    note: Note,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="onair-bench-projection-"))
    servers = contextlib.ExitStack()
    if bootstrap is None:
        from onair.devstack import temporary_stack

        stack = temporary_stack(("kafka",), root=workdir / "devstack", note=note)
        bootstrap = (await asyncio.to_thread(servers.enter_context, stack))["ONAIR_KAFKA_BOOTSTRAP"]
    kafka = KafkaClient(bootstrap, client_id="bench-projection")
    result: dict[str, Any] = {"events": events, "entities": entities, "partitions": partitions, "rate": rate}
    pg_db: str | None = None
    try:
        topic = f"bench.projection.r{uuid.uuid4().hex[:8]}"
        await kafka.ensure_topics([topic], partitions)
        produced = Produced()
        note(f"producing {events:,} events over {entities:,} entities into {partitions} partitions")
        result["produce_events_per_s"] = round(
            await produce_all(kafka, topic, events, entities, produced, note)
        )
        ok_all = True
        for db in databases:
            if db == "sqlite":
                url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
            else:
                if not postgres_url:
                    result[f"{db}.skipped"] = "no PostgreSQL URL (--postgres-url / ONAIR_TEST_POSTGRES_URL)"
                    continue
                pg_db = f"onair_bench_{uuid.uuid4().hex[:10]}"
                url = await create_database(postgres_url, pg_db)
            r = await bench_db(
                db,
                url,
                kafka,
                topic,
                produced,
                events=events,
                entities=entities,
                partitions=partitions,
                rate=rate,
                lag_seconds=lag_seconds,
                batch_max=batch_max,
                workdir=workdir,
                note=note,
            )
            result[f"{db}.count.events_per_s"] = round(r.count_eps)
            result[f"{db}.upsert.events_per_s"] = round(r.upsert_eps)
            result[f"{db}.lag_p50_ms_at_5k"] = round(r.lag_p50_ms, 1)
            result[f"{db}.lag_p99_ms_at_5k"] = round(r.lag_p99_ms, 1)
            result[f"{db}.lag_samples"] = r.lag_events
            result[f"{db}.exactly_once_ok"] = r.exactly_once
            ok_all = ok_all and r.exactly_once
            if pg_db is not None and postgres_url:
                await drop_database(postgres_url, pg_db)
                pg_db = None
        result["exactly_once_ok"] = ok_all
    finally:
        await kafka.close()
        if pg_db is not None and postgres_url:
            await drop_database(postgres_url, pg_db)
        await asyncio.to_thread(servers.close)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def default_postgres_url() -> str | None:
    for var in ("ONAIR_TEST_POSTGRES_URL", "DATABASE_URL"):
        value = os.environ.get(var)
        if value and value.startswith("postgres"):
            return value
    return None
