"""The base Valkey client: one connection pool, the default timeout, and the key namespace."""

from __future__ import annotations

from typing import Any

import valkey.asyncio as avalkey

from onair.clients.base import Lifecycle
from onair.config import ValkeySettings, timeouts


class ValkeyClient(Lifecycle):
    """Wraps ``valkey.asyncio.Valkey``.

    ``key("token", tid)`` -> ``"<namespace>:token:<tid>"``; every narrow module builds its keys
    through it so that deployments sharing a server never collide.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        timeout_s: float | None = None,
        max_connections: int | None = None,
        protocol: int = 2,
    ) -> None:
        settings = ValkeySettings()
        self.url = url or settings.valkey_url
        self.namespace = settings.valkey_namespace if namespace is None else namespace
        self.timeout_s = timeout_s if timeout_s is not None else timeouts().default_timeout_s
        self.protocol = protocol
        self._max_connections = max_connections or settings.valkey_max_connections
        self._client: avalkey.Valkey | None = None

    def key(self, *parts: object) -> str:
        joined = ":".join(str(p) for p in parts)
        return f"{self.namespace}:{joined}" if self.namespace else joined

    def connection_kwargs(self) -> dict[str, Any]:
        """Options for extra dedicated connections (e.g. an invalidation connection)."""
        return {
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": timeouts().connect_timeout_s,
            "protocol": self.protocol,
        }

    async def start(self) -> None:
        if self._client is None:
            self._client = avalkey.Valkey.from_url(
                self.url, max_connections=self._max_connections, **self.connection_kwargs()
            )

    @property
    def raw(self) -> avalkey.Valkey:
        if self._client is None:
            raise RuntimeError("ValkeyClient not started: call await client.start() or use 'async with'")
        return self._client

    async def ping(self) -> bool:
        return bool(await self.raw.ping())

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
