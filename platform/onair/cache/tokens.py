"""TokenCache: token data and blocked tokens in Valkey, read through the near cache.

A narrow module on the base client (``onair.clients.ValkeyClient``): Valkey is the store, entries
live 7 days by default, and reads go through a :class:`CachedReader` in BCAST mode over the
token prefixes, so blocking a token reaches every gateway replica's near cache at once while
steady-state checks cost Valkey nothing. "No entry" means "not blocked". When Valkey cannot be
reached and the near cache cannot vouch, checks raise :class:`CacheUnavailable`: whether to fail
open or closed is the caller's policy, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from onair.cache.near import NearCache
from onair.cache.reader import CachedReader, CacheUnavailable
from onair.cache.tracking import Tracker
from onair.clients.base import Lifecycle
from onair.clients.valkey import ValkeyClient

SEVEN_DAYS_S = 7 * 24 * 3600

__all__ = ["SEVEN_DAYS_S", "CacheUnavailable", "TokenCache"]


class TokenCache(Lifecycle):
    """``put``/``get`` token data, ``block``/``unblock``/``is_blocked`` tokens.

    Pass a shared ``tracker`` to use the process's one invalidation connection (it must be in
    default mode or have BCAST prefixes covering :meth:`prefixes`); otherwise the cache makes and
    owns a BCAST tracker of its own.
    """

    def __init__(
        self,
        client: ValkeyClient,
        tracker: Tracker | None = None,
        *,
        ttl_s: int = SEVEN_DAYS_S,
        near: NearCache | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._owns_tracker = tracker is None
        self.tracker = tracker if tracker is not None else Tracker(client, prefixes=self.prefixes())
        self.reader = CachedReader(
            client,
            self.tracker,
            near=near if near is not None else NearCache(max_entries=100_000, ttl_s=300),
            ttl_s=ttl_s,
            name="tokens",
            registry=registry,
        )

    def prefixes(self) -> list[str]:
        return [self.client.key("token", ""), self.client.key("token-blocked", "")]

    def token_key(self, token_id: str) -> str:
        return self.client.key("token", token_id)

    def blocked_key(self, token_id: str) -> str:
        return self.client.key("token-blocked", token_id)

    async def start(self) -> None:
        await self.client.start()
        if self._owns_tracker:
            await self.tracker.start()

    async def close(self) -> None:
        self.reader.close()
        if self._owns_tracker:
            await self.tracker.close()

    # -- token data --------------------------------------------------------------------------------
    async def put(self, token_id: str, data: Mapping[str, Any], ttl_s: int | None = None) -> None:
        await self.reader.publish(self.token_key(token_id), dict(data), ttl_s or self.ttl_s)

    async def get(self, token_id: str) -> dict[str, Any] | None:
        value = await self.reader.get(self.token_key(token_id))
        return dict(value) if value is not None else None

    async def forget(self, token_id: str) -> None:
        await self.reader.delete(self.token_key(token_id))

    # -- blocked tokens ----------------------------------------------------------------------------
    async def block(self, token_id: str, reason: str = "", ttl_s: int | None = None) -> None:
        """Block ``token_id`` on every replica (for 7 days by default, the token lifetime)."""
        await self.reader.publish(self.blocked_key(token_id), {"reason": reason}, ttl_s or self.ttl_s)

    async def unblock(self, token_id: str) -> None:
        await self.reader.delete(self.blocked_key(token_id))

    async def is_blocked(self, token_id: str) -> bool:
        return await self.reader.get(self.blocked_key(token_id)) is not None

    async def block_reason(self, token_id: str) -> str | None:
        value = await self.reader.get(self.blocked_key(token_id))
        return None if value is None else str(value.get("reason", ""))
