"""The producer side on a real broker: event lines become records, nothing blocks, nothing is lost."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest
import structlog
from aiokafka import TopicPartition

from onair.clients import KafkaClient
from onair.devstack import Devstack
from onair.logging import configure_logging, get_logger
from onair.logstream import Envelope, LogStreamSink
from onair.logstream.metrics import SPOOL_DEPTH

from .helpers import envelope, uid


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> AsyncIterator[KafkaClient]:
    client = KafkaClient(kafka_bootstrap, client_id="logstream-sink-test")
    yield client
    await client.close()


@pytest.fixture(autouse=True)
def _reset_logging() -> object:
    yield
    structlog.reset_defaults()


async def read_topic(
    kafka: KafkaClient, topic: str, timeout_s: float = 30, idle_s: float = 1.5
) -> list[Envelope]:
    """Everything in ``topic``, partition by partition: up to the end offsets, then until idle.

    The idle period matters: after a restart with S3 storage, tansu can report a stale (too low)
    end offset while fetches still return every record.
    """
    consumer = await kafka.consumer(group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        assert parts, f"topic {topic} does not exist"
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: dict[TopicPartition, list[Envelope]] = {tp: [] for tp in parts}
        loop = asyncio.get_running_loop()
        last = loop.time()
        async with asyncio.timeout(timeout_s):
            while any(len(out[tp]) < ends[tp] for tp in parts) or loop.time() - last < idle_s:
                batch = await consumer.getmany(timeout_ms=300)
                for tp, records in batch.items():
                    out[tp] += [Envelope.from_bytes(r.value) for r in records]
                    last = loop.time()
        return [e for tp in parts for e in out[tp]]
    finally:
        await kafka.release(consumer)


async def test_event_lines_go_to_kafka_and_still_to_stdout(kafka: KafkaClient, tmp_path: Path) -> None:
    topic = f"test.{uid()}.title"
    out = io.StringIO()
    sink = LogStreamSink(kafka, spool_dir=tmp_path / "spool", service="live", partitions=2)
    configure_logging("live", sinks=[sink], stream=out)
    log = get_logger()
    async with sink:
        log.info("service started", port=8000)  # not an event: stdout only
        for i in range(20):
            log.info("title changed", category=topic, entity=f"ch{i % 3}", seq=i, title=f"t{i}")
        assert await sink.flush(10)
    lines = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert len([x for x in lines if x.get("category") == topic]) == 20
    assert any(x["event"] == "service started" for x in lines)
    got = await read_topic(kafka, topic)
    assert len(got) == 20
    e = next(x for x in got if x.seq == 5)
    assert (e.service, e.category, e.entity, e.event, e.data) == (
        "live",
        topic,
        "ch2",
        "title changed",
        {"title": "t5"},
    )
    for key in ("ch0", "ch1", "ch2"):
        seqs = [x.seq for x in got if x.entity == key]
        assert seqs == sorted(seqs)


async def test_unreachable_broker_spools_and_the_next_start_replays(
    kafka: KafkaClient, tmp_path: Path
) -> None:
    topic = f"test.{uid()}.status"
    envs = [envelope(topic, "k", seq=i, value=i) for i in range(300)]
    down = KafkaClient("127.0.0.1:9", client_id="nowhere", timeout_s=0.5)
    sink = LogStreamSink(
        down, spool_dir=tmp_path / "spool", service="ingest", buffer_size=50, send_timeout_s=1
    )
    await sink.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for env in envs:
        sink.publish(env)  # never waits for the (absent) broker
    assert loop.time() - started < 0.5
    assert len(sink.spool) >= 250  # the buffer overflowed to disk
    await sink.close(timeout_s=1)
    await down.close()
    assert len(sink.spool) == 300  # flushed to the spool on shutdown
    assert SPOOL_DEPTH.labels("ingest")._value.get() == 300

    again = LogStreamSink(kafka, spool_dir=tmp_path / "spool", service="ingest", partitions=1)
    async with again:
        assert await again.flush(20)
    assert len(again.spool) == 0
    got = await read_topic(kafka, topic)
    assert [e.seq for e in got] == list(range(300))  # replayed in order


async def test_broker_stopped_while_producing_then_restarted(
    private_devstack: Callable[..., Devstack], tmp_path: Path
) -> None:
    stack = private_devstack(servers=("s3", "kafka"), kafka_storage="s3")
    kafka = KafkaClient(stack.env()["ONAIR_KAFKA_BOOTSTRAP"], client_id="restart-test", timeout_s=1)
    topic = f"test.{uid()}.status"
    await kafka.ensure_topics([topic], partitions=3)
    sink = LogStreamSink(
        kafka, spool_dir=tmp_path / "spool", service="ingest", buffer_size=500, send_timeout_s=2
    )
    keys = [f"k{i}" for i in range(20)]
    total = 10_000
    await sink.start()
    try:
        for i in range(total):
            if i == 3000:
                assert await sink.flush(30)
                await asyncio.to_thread(stack.stop_server, "kafka")
            if i == 8000:
                await asyncio.sleep(3)  # let sends fail and the spool take over
                assert len(sink.spool) > 0
                await asyncio.to_thread(stack.start_server, "kafka")
            sink.publish(envelope(topic, keys[i % 20], seq=i // 20, value=i))
            if i % 500 == 0:
                await asyncio.sleep(0)  # a service keeps serving meanwhile
        assert await sink.flush(60), f"spool still holds {len(sink.spool)}"
    finally:
        await sink.close()
    got = await read_topic(kafka, topic, timeout_s=60)
    await kafka.close()
    seen: dict[str, list[int]] = {}
    unique: set[tuple[str, int]] = set()
    for e in got:
        assert e.seq is not None
        if (e.entity, e.seq) in unique:
            continue  # an at-least-once duplicate of a send that timed out
        unique.add((e.entity, e.seq))
        seen.setdefault(e.entity, []).append(e.seq)
    missing = sorted(i for i in range(total) if (keys[i % 20], i // 20) not in unique)
    assert not missing, (
        f"{len(missing)} lost, e.g. {missing[:5]}..{missing[-5:]}; acked {sink.sent}"
    )  # all arrived
    for key, seqs in seen.items():
        assert seqs == list(range(total // 20)), key  # per-key order kept
