"""Lifecycle shared by the base clients, and a lifespan helper that starts and stops them together."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Self


class Lifecycle(abc.ABC):
    """Something with ``start()`` and ``close()``; usable as ``async with``."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@asynccontextmanager
async def lifespan(*parts: Lifecycle) -> AsyncIterator[None]:
    """Start ``parts`` in order and close them in reverse, also when start-up fails half way."""
    async with AsyncExitStack() as stack:
        for part in parts:
            await stack.enter_async_context(part)
        yield
