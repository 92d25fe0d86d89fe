"""Helpers for the cache tests: namespaced clients, started trackers, a tiny versioned "database"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from prometheus_client import CollectorRegistry

from onair.cache import CachedReader, NearCache, Tracker
from onair.clients import ValkeyClient


async def wait_until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``pred`` on the event loop until it holds (fails the test after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        # Polling on purpose: the state changes through other connections and processes.
        while True:
            if pred():
                return
            await asyncio.sleep(0.005)


class Db:
    """A versioned record store standing in for the database; counts loads."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.loads = 0

    def loader(self, key: str) -> Callable[[], Any]:
        async def load() -> dict[str, int] | None:
            self.loads += 1
            await asyncio.sleep(0)
            version = self.rows.get(key)
            return None if version is None else {"v": version}

        return load


class Stack:
    """Makes clients, trackers and readers on one Valkey, all closed at the end of the test."""

    def __init__(self, url: str, namespace: str, exits: AsyncExitStack) -> None:
        self.url = url
        self.namespace = namespace
        self.exits = exits

    async def client(self) -> ValkeyClient:
        return await self.exits.enter_async_context(ValkeyClient(self.url, namespace=self.namespace))

    async def tracker(self, client: ValkeyClient | None = None, **kwargs: Any) -> Tracker:
        client = client or await self.client()
        tracker = await self.exits.enter_async_context(Tracker(client, **kwargs))
        assert await tracker.wait_ready(10)
        return tracker

    async def reader(
        self, tracker: Tracker | None = None, near: NearCache | None = None, **kwargs: Any
    ) -> CachedReader:
        tracker = tracker or await self.tracker(**kwargs.pop("tracker_kwargs", {}))
        reader = CachedReader(tracker.client, tracker, near=near, registry=CollectorRegistry(), **kwargs)
        self.exits.callback(reader.close)
        return reader
