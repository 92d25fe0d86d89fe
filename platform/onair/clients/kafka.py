"""The base Kafka client: producers, consumers and topic creation with one set of defaults."""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from onair.clients.base import Lifecycle
from onair.config import KafkaSettings, timeouts


class KafkaClient(Lifecycle):
    """Factory and owner of aiokafka producers/consumers for one bootstrap address.

    Everything it made is stopped by ``close()``. ``topic(name)`` applies the optional namespace
    prefix (empty by default: topics are log categories such as ``media.live_stream.status``).
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        client_id: str | None = None,
        topic_prefix: str = "",
        timeout_s: float | None = None,
    ) -> None:
        settings = KafkaSettings()
        self.bootstrap = bootstrap or settings.kafka_bootstrap
        self.client_id = client_id or settings.kafka_client_id
        self.topic_prefix = topic_prefix
        self.partitions = settings.kafka_topic_partitions
        self.replication = settings.kafka_replication_factor
        self.timeout_s = timeout_s if timeout_s is not None else timeouts().default_timeout_s
        self._owned: list[AIOKafkaProducer | AIOKafkaConsumer] = []
        self._known_topics: set[str] = set()

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def _common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": int(max(self.timeout_s * 1000, 5000) * 3),
            "metadata_max_age_ms": 5000,
        }

    async def start(self) -> None:
        """Nothing to connect up front: producers and consumers connect when made."""

    async def producer(self, **overrides: Any) -> AIOKafkaProducer:
        kwargs: dict[str, Any] = {"acks": "all", "linger_ms": 5, **self._common(), **overrides}
        producer = AIOKafkaProducer(**kwargs)
        await producer.start()
        self._owned.append(producer)
        return producer

    async def consumer(self, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
        kwargs: dict[str, Any] = {
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            **self._common(),
            **overrides,
        }
        consumer = AIOKafkaConsumer(*(self.topic(t) for t in topics), **kwargs)
        await consumer.start()
        self._owned.append(consumer)
        return consumer

    async def ensure_topics(self, names: list[str], partitions: int | None = None) -> None:
        """Create the topics that do not exist yet (idempotent)."""
        wanted = [self.topic(n) for n in names if self.topic(n) not in self._known_topics]
        if not wanted:
            return
        admin = AIOKafkaAdminClient(**self._common())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(t, partitions or self.partitions, self.replication)
                for t in wanted
                if t not in existing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
            self._known_topics.update(wanted)
        finally:
            await admin.close()

    async def release(self, part: AIOKafkaProducer | AIOKafkaConsumer) -> None:
        """Stop one producer/consumer made here before ``close()``."""
        if part in self._owned:
            self._owned.remove(part)
        await part.stop()

    async def close(self) -> None:
        owned, self._owned = self._owned, []
        for part in reversed(owned):
            await part.stop()
