"""The base clients talk to the real servers, apply their namespaces and close cleanly."""

import asyncio
import uuid

import pytest

from onair.clients import KafkaClient, NatsClient, ValkeyClient, lifespan
from onair.config import timeouts


async def test_valkey_client_namespaces_keys(valkey_url: str) -> None:
    async with ValkeyClient(valkey_url, namespace="t1") as client:
        assert await client.ping()
        key = client.key("token", "abc")
        assert key == "t1:token:abc"
        await client.raw.set(key, b"v", ex=5)
        assert await client.raw.get("t1:token:abc") == b"v"
        assert client.timeout_s == timeouts().default_timeout_s


async def test_valkey_client_not_started_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = ValkeyClient("redis://127.0.0.1:1/0").raw


async def test_nats_client_publish_subscribe_and_jetstream(nats_url: str) -> None:
    async with NatsClient(nats_url, subject_prefix="t") as client:
        subject = client.subject("chat", "room1")
        assert subject == "t.chat.room1"
        sub = await client.subscribe(subject)
        await client.publish(subject, b"hello")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"hello"
        js = client.jetstream()
        stream = f"S{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        ack = await js.publish(f"{stream}.x", b"kept")
        assert ack.seq == 1


async def test_kafka_client_topics_produce_consume(kafka_bootstrap: str) -> None:
    topic = f"onair.test.t{uuid.uuid4().hex[:6]}"
    client = KafkaClient(kafka_bootstrap, client_id="test")
    async with lifespan(client):
        await client.ensure_topics([topic], partitions=3)
        await client.ensure_topics([topic], partitions=3)  # idempotent
        producer = await client.producer()
        for i in range(6):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 2}".encode())
        consumer = await client.consumer(topic, group_id=None)
        got: list[bytes] = []
        async with asyncio.timeout(20):
            while len(got) < 6:
                batch = await consumer.getmany(timeout_ms=500)
                got += [m.value for msgs in batch.values() for m in msgs if m.value is not None]
        assert sorted(got) == [f"v{i}".encode() for i in range(6)]
        assert len(consumer.partitions_for_topic(topic) or ()) == 3
