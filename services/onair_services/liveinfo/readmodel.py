"""liveinfo's reads and what its projections do after a commit.

Reads (every one through a :class:`onair.cache.CachedReader`: near cache, single-flight, Valkey,
then the database):

* ``channel:<channel>`` — one channel's view (``None`` cached for an unknown channel);
* ``onair`` — the whole on-air list (public channels on air; small), filtered and paged in
  process;
* ``ranking:top`` — the ranking view: the sorted set ``ranking`` (viewers per channel) joined with
  the channels' titles, listed channels only.

After a commit (:meth:`LiveReadModel.changed`): the changed channels' keys are invalidated, the
on-air list only when an entry of it changed, the ranking view only when the sorted set or a ranked
channel's entry changed; then each new view is published on ``live.channel.<channel>`` (the SSE
streams of every liveinfo process), with its version in the ``Onair-Version`` header.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson

from onair.cache import CachedReader, NearCache
from onair.cache.reader import VALKEY_DOWN
from onair.fanout.bridge import FanoutBridge
from onair.service import Service
from onair_services.liveinfo import metrics, store
from onair_services.liveinfo.settings import LiveinfoSettings
from onair_services.liveinfo.views import channel_view, is_listed, list_item

VERSION_HEADER = "Onair-Version"
_INVALIDATE_CONCURRENCY = 16


def now_us() -> int:
    return time.time_ns() // 1000


class LiveReadModel:
    """The cached reads of one liveinfo process, and the after-commit actions of its projections."""

    def __init__(self, svc: Service, settings: LiveinfoSettings) -> None:
        assert svc.valkey is not None and svc.nats is not None
        self.svc = svc
        self.settings = settings
        self.valkey = svc.valkey
        self.nats = svc.nats
        self.near_enabled = settings.near_cache
        ttl = settings.cache_ttl_s
        self.channels: CachedReader = svc.cached_reader(
            "channel",
            near=NearCache(settings.near_entries, settings.near_bytes, settings.near_ttl_s),
            ttl_s=ttl,
            near_enabled=settings.near_cache,
        )
        self.lists: CachedReader = svc.cached_reader(
            "lists",
            near=NearCache(8, 64 << 20, settings.near_ttl_s),
            ttl_s=ttl,
            near_enabled=settings.near_cache,
        )
        self.ranking_key = self.valkey.key("liveinfo", "ranking")
        self.onair_key = self.valkey.key("liveinfo", "onair")
        self.top_key = self.valkey.key("liveinfo", "ranking", "top")
        self.bridge = FanoutBridge(self.nats, capacity=settings.sse_window)
        self._releases: set[asyncio.Task[bool]] = set()
        self._read_cmds = 0  # Valkey commands of reads besides the readers' own (ranking reads)
        self._invalidations = 0  # the readers count these among their calls: not reads
        self._projection_cmds = 0  # ranking updates and checks by the projections
        metrics.track(self)

    # -- keys ------------------------------------------------------------------------------------
    def channel_key(self, channel: str) -> str:
        return self.valkey.key("liveinfo", "channel", channel)

    def subject(self, channel: str) -> str:
        return self.nats.subject("live", "channel", channel)

    def valkey_commands(self) -> tuple[int, int]:
        readers = self.channels.valkey_calls + self.lists.valkey_calls
        reads = readers - self._invalidations + self._read_cmds
        return reads, self._invalidations + self._projection_cmds

    # -- reads -----------------------------------------------------------------------------------
    async def channel(self, channel: str) -> dict[str, Any] | None:
        metrics.READ["channel"].inc()
        view: dict[str, Any] | None = await self.channels.get(
            self.channel_key(channel), lambda: self.load_channel(channel)
        )
        return view

    async def onair(self) -> list[dict[str, Any]]:
        metrics.READ["onair"].inc()
        items: list[dict[str, Any]] = await self.lists.get(self.onair_key, self.load_onair)
        return items

    async def ranking(self) -> list[dict[str, Any]]:
        metrics.READ["ranking"].inc()
        items: list[dict[str, Any]] = await self.lists.get(self.top_key, self.load_ranking)
        return items

    # -- loaders (also the fresh reads of read-your-writes) ---------------------------------------
    async def load_channel(self, channel: str, view: str = "channel") -> dict[str, Any] | None:
        metrics.READ_DB[view].inc()
        async with self.svc.session() as session:
            row = await store.row_of(session, channel)
        return channel_view(row) if row is not None else None

    async def load_onair(self) -> list[dict[str, Any]]:
        metrics.READ_DB["onair"].inc()
        async with self.svc.session() as session:
            rows = await store.listed_rows(session)
        return [list_item(r) for r in rows]

    async def load_ranking(self) -> list[dict[str, Any]]:
        """The top ``ranking_size`` listed channels by viewers, from the sorted set."""
        size = self.settings.ranking_size
        top: list[dict[str, Any]] = []
        start, batch = 0, size * 2
        for _ in range(4):  # channels with viewers that are not listed (offline, hidden) are skipped
            self._read_cmds += 1
            try:
                entries = await self.valkey.raw.zrevrange(
                    self.ranking_key, start, start + batch - 1, withscores=True
                )
            except VALKEY_DOWN:  # the sorted set is away: the same ranking from the database
                return await self.load_ranking_from_db()
            if not entries:
                break
            names = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in entries]
            metrics.READ_DB["ranking"].inc()
            async with self.svc.session() as session:
                rows = await store.ranked_rows(session, names)
            for name, (_, score) in zip(names, entries, strict=True):
                row = rows.get(name)
                if row is not None and is_listed(row) and len(top) < size:
                    top.append(
                        {"rank": len(top) + 1, "channel": name, "title": row["title"], "viewers": int(score)}
                    )
            if len(top) >= size or len(entries) < batch:
                break
            start += batch
        return top

    async def load_ranking_from_db(self) -> list[dict[str, Any]]:
        """The same ranking from the database (reads with a position: the sorted set is updated
        after the commit, the database at it)."""
        metrics.READ_DB["ranking"].inc()
        async with self.svc.session() as session:
            totals = await store.viewer_totals(session)
            rows = await store.ranked_rows(session, list(totals))
        ranked = sorted(
            (name for name, row in rows.items() if is_listed(row)), key=lambda n: (-totals[n], n)
        )[: self.settings.ranking_size]
        return [
            {"rank": i + 1, "channel": n, "title": rows[n]["title"], "viewers": totals[n]}
            for i, n in enumerate(ranked)
        ]

    # -- after a commit --------------------------------------------------------------------------
    async def changed(
        self,
        rows: Mapping[str, Mapping[str, Any]],
        *,
        projection: str,
        list_changed: bool = False,
        rank_candidates: Collection[str] = (),
        ranking_changed: bool = False,
    ) -> None:
        """Invalidate what a commit changed, then publish the new views (see the module docstring)."""
        if not rows and not list_changed and not ranking_changed:
            return
        keys = [self.channel_key(name) for name in rows]
        if list_changed:
            keys.append(self.onair_key)
        if not ranking_changed and rank_candidates:
            ranking_changed = await self._any_ranked(rank_candidates)
        if ranking_changed:
            keys.append(self.top_key)
        await self._invalidate(keys)
        metrics.VIEW_CHANGES.labels(projection).inc(len(rows))
        for name, row in rows.items():
            view = channel_view(row)
            await self.nats.publish(
                self.subject(name), orjson.dumps(view), headers={VERSION_HEADER: str(view["version"])}
            )

    async def _any_ranked(self, names: Collection[str]) -> bool:
        self._projection_cmds += 1
        scores = await self.valkey.raw.zmscore(self.ranking_key, list(names))
        return any(s is not None for s in scores)

    async def _invalidate(self, keys: list[str]) -> None:
        reader_of: Callable[[str], CachedReader] = lambda k: (  # noqa: E731
            self.lists if k in (self.onair_key, self.top_key) else self.channels
        )
        for i in range(0, len(keys), _INVALIDATE_CONCURRENCY):
            chunk = keys[i : i + _INVALIDATE_CONCURRENCY]
            self._invalidations += len(chunk)
            await asyncio.gather(*(reader_of(k).invalidate(k) for k in chunk))

    async def update_ranking(self, totals: Mapping[str, int]) -> None:
        """Set the viewers of ``totals``' channels in the sorted set (0 removes a channel)."""
        if not totals:
            return
        pipe = self.valkey.raw.pipeline(transaction=False)
        add = {name: n for name, n in totals.items() if n > 0}
        gone = [name for name, n in totals.items() if n <= 0]
        if add:
            pipe.zadd(self.ranking_key, add)
        if gone:
            pipe.zrem(self.ranking_key, *gone)
        self._projection_cmds += len(pipe)
        await pipe.execute()

    async def rebuild_ranking(self) -> None:
        """Replace the sorted set by the database's totals (at start and now and then: an update
        lost between a commit and its ``ZADD``, e.g. a crash, is repaired here)."""
        async with self.svc.session() as session:
            totals = await store.viewer_totals(session)
        pipe = self.valkey.raw.pipeline(transaction=True)
        pipe.delete(self.ranking_key)
        if totals:
            pipe.zadd(self.ranking_key, totals)
        self._projection_cmds += len(pipe)
        await pipe.execute()
        await self._invalidate([self.top_key])

    # -- the live streams ------------------------------------------------------------------------
    def stream_closed(self, channel: str) -> None:
        """An SSE connection of ``channel`` ended: drop the channel's NATS subscription once it has
        had no viewer here for ``sse_release_after_s`` (a viewer who reconnects at once keeps it)."""
        subject = self.subject(channel)
        flog = self.bridge.log_for(subject)
        if flog is None or flog.subscribers > 0:
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.settings.sse_release_after_s, self._release_later, subject)

    def _release_later(self, subject: str) -> None:
        flog = self.bridge.log_for(subject)
        if flog is None or flog.subscribers > 0:
            return
        task = asyncio.ensure_future(self.bridge.release(subject))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.bridge.start()

    async def close(self) -> None:
        await self.bridge.close()
