"""Topics on first use: a log category is created as a topic the first time it is written or read.

The partition count comes from ``KafkaSettings.kafka_topic_partitions`` (``ONAIR_KAFKA_TOPIC_PARTITIONS``)
unless given; creation is idempotent and remembered per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from onair.clients import KafkaClient


class TopicRegistry:
    """Creates topics once per process; safe to call before every send."""

    def __init__(self, kafka: KafkaClient, partitions: int | None = None) -> None:
        self.kafka = kafka
        self.partitions = partitions or kafka.partitions
        self._known: set[str] = set()
        self._lock = asyncio.Lock()

    def known(self, topic: str) -> bool:
        return topic in self._known

    async def ensure(self, topics: Iterable[str]) -> None:
        missing = [t for t in topics if t not in self._known]
        if not missing:
            return
        async with self._lock:
            missing = [t for t in dict.fromkeys(missing) if t not in self._known]
            if missing:
                await self.kafka.ensure_topics(missing, self.partitions)
                self._known.update(missing)
