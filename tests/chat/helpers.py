"""Pieces of the chat tests: media events into Kafka, SSE readers, waiting for a server-side state."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from onair.clients import KafkaClient
from onair.db.admin import create_database, drop_database
from onair.logstream import Envelope, new_event_id
from onair.testing import POSTGRES_ENV


def uid(prefix: str = "ch") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def event(
    category: str, entity: str, *, seq: int | None = None, event_id: str | None = None, **data: Any
) -> Envelope:
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return Envelope(event_id or new_event_id(), at, "test", category, entity, seq, data)


def options(channel: str, chat_mode: str = "open", seq: int = 1) -> Envelope:
    return event(
        "media.broad_info.options",
        channel,
        seq=seq,
        owner_id=f"u-{channel}",
        adult=False,
        chat_mode=chat_mode,
        visibility="public",
    )


def title(channel: str, text: str, seq: int = 1) -> Envelope:
    return event("media.broad_info.title", channel, seq=seq, owner_id=f"u-{channel}", title=text)


def status(channel: str, state: str, session_id: str) -> Envelope:
    data: dict[str, Any] = {"status": state, "session_id": session_id}
    if state == "close":
        data["reason"] = "encoder_closed"
    return event("media.live_stream.status", channel, **data)


async def produce(kafka: KafkaClient, envelopes: Sequence[Envelope]) -> None:
    producer = await kafka.producer()
    try:
        futs = [await producer.send(e.category, e.to_bytes(), key=e.entity.encode()) for e in envelopes]
        await asyncio.gather(*futs)
    finally:
        await kafka.release(producer)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, every_s: float = 0.05
) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polls a server
            await asyncio.sleep(every_s)


class SSEReader:
    """One SSE connection: ``events`` are dicts with the frame's ``id``/``event`` and parsed ``data``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.status = 0
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def data(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = [e["data"] for e in self.events if "data" in e]
        return [d for d in out if kind is None or d.get("type") == kind]

    async def wait_for(self, predicate: Callable[[SSEReader], bool], timeout_s: float = 15.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    async def run(self, client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> None:
        async with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(30, read=None)) as resp:
            self.status = resp.status_code
            self.connected.set()
            if resp.status_code != 200:
                await resp.aread()
                self.events.append({"error": resp.json()})
                self.changed.set()
                return
            frame: dict[str, Any] = {}
            async for line in resp.aiter_lines():
                if line == "":
                    if frame:
                        if "data" in frame:
                            frame["data"] = orjson.loads(frame["data"])
                        self.events.append(frame)
                        self.changed.set()
                    frame = {}
                    continue
                key, _, value = line.partition(":")
                if key == "":
                    continue  # a comment (heartbeat)
                frame[key] = value.removeprefix(" ")


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SSEReader]:
    reader = SSEReader()
    reader.task = asyncio.create_task(reader.run(client, path, headers))
    try:
        async with asyncio.timeout(15):
            await reader.connected.wait()
        yield reader
    finally:
        reader.task.cancel()
        await asyncio.gather(reader.task, return_exceptions=True)


@asynccontextmanager
async def module_database(kind: str, tmp: str) -> AsyncIterator[str]:
    """The module's chat database: a SQLite file, or a fresh PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp}/chat.db"
        return
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run sets it); PostgreSQL cases not run")
    name = f"onair_t_{uuid.uuid4().hex[:12]}"
    url = await create_database(admin, name)
    try:
        yield url
    finally:
        await drop_database(admin, name)
