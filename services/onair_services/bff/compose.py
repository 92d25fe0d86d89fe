"""How a page is composed: which upstream calls run, at once, and what each page keeps of them.

**The channel page** (``/bff/{web,mobile}/live/{channel}``): liveinfo's view of the channel is the
page's core; beside it, at the same time, each with its own deadline:

| part | upstream call(s) | when |
|---|---|---|
| ``chat`` | chat ``GET /chat/{c}/recent`` + ``GET /chat/{c}/stats`` | always |
| ``donors`` | wallet ``GET /wallet/top-donors/{c}`` | always |
| ``related`` | search ``GET /search?tag=<t>`` per first tag, else ``GET /search`` (1) | always |
| ``wallet`` | wallet ``GET /wallet/balance`` | signed in |
| ``follow`` | chat ``GET /follows`` (is the channel in it) | signed in |

(1) after liveinfo answered: the tags come from the channel's view.

A part whose upstream fails, is slow past its deadline, or whose breaker is open is ``null`` and
named in ``degraded``. liveinfo's failure is the page's: 404 when liveinfo does not know the
channel, 503/504 when it is down or slow (there is no page without the channel). A 404 from chat
or the wallet for a channel liveinfo knows (their projections are behind) is an empty part, not
a degraded one.

**Web and mobile** are the same composition (fetched at the web page's sizes), trimmed per client
by :func:`web_live` / :func:`mobile_live`, so an anonymous page is composed once for both.

**Home** (``/bff/web/home``): liveinfo ``GET /live`` (on air now) and ``GET /live/ranking``; the
on-air entries get their viewer counts from the ranking. Parts ``on_air`` and ``ranking``.

**Anonymous pages are shared**: pages without an identity (and the home, which is the same for
everyone) are composed once for all concurrent requests (:class:`onair.cache.SingleFlight`) and
kept ``ONAIR_BFF_ANONYMOUS_CACHE_S`` (1 s) in a small in-process cache. The calls of a shared
composition carry the request id of the request that started it. Pages of a signed-in caller are
composed per request with the caller's identity.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from onair.cache import SingleFlight
from onair_services.bff import metrics
from onair_services.bff.settings import BffSettings
from onair_services.bff.upstreams import Caller, UpstreamError, Upstreams

Json = dict[str, Any]


@dataclass
class Composed:
    """One composition: the channel's view (or None for the home), each part's value (None when
    degraded), and the degraded parts in a stable order."""

    core: Json | None
    parts: dict[str, Any] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)


class PageCache:
    """A tiny in-process cache of composed anonymous pages (TTL, LRU-bounded)."""

    def __init__(self, ttl_s: float, entries: int) -> None:
        self.ttl_s = ttl_s
        self.entries = entries
        self._items: OrderedDict[tuple[str, ...], tuple[float, Composed]] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> Composed | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: tuple[str, ...], value: Composed) -> None:
        if self.ttl_s <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)


class Composer:
    """Composes the pages (see the module docstring)."""

    def __init__(self, upstreams: Upstreams, settings: BffSettings) -> None:
        self.up = upstreams
        self.s = settings
        self.flights: SingleFlight[tuple[str, ...], Composed] = SingleFlight()
        self.cache = PageCache(settings.anonymous_cache_s, settings.anonymous_cache_entries)

    # -- shared or own ---------------------------------------------------------------------------
    async def _shared(
        self, page: str, key: tuple[str, ...], compose: Callable[[], Awaitable[Composed]]
    ) -> Composed:
        if not self.s.anonymous_share:
            metrics.PAGES.labels(page, "composed").inc()
            return await compose()
        cached = self.cache.get(key)
        if cached is not None:
            metrics.PAGES.labels(page, "cached").inc()
            return cached

        async def work() -> Composed:
            result = await compose()
            self.cache.put(key, result)
            return result

        result, shared = await self.flights.do(key, work)
        metrics.PAGES.labels(page, "shared" if shared else "composed").inc()
        return result

    # -- the channel page ------------------------------------------------------------------------
    async def live(self, channel: str, caller: Caller) -> Composed:
        """The channel page's data (raises :class:`UpstreamError` when liveinfo fails)."""
        if caller.identity is None:
            return await self._shared("live", ("live", channel), lambda: self._compose_live(channel, caller))
        metrics.PAGES.labels("live", "composed").inc()
        return await self._compose_live(channel, caller)

    async def _compose_live(self, channel: str, caller: Caller) -> Composed:
        s = self.s
        view_task = asyncio.create_task(
            self.up.get("liveinfo", f"/live/{channel}", caller=caller, deadline_s=s.liveinfo_timeout_s)
        )
        parts: dict[str, Coroutine[Any, Any, Any]] = {
            "chat": self._chat(channel, caller),
            "donors": self._donors(channel, caller),
            "related": self._related(channel, view_task, caller),
        }
        if caller.identity is not None:
            parts["wallet"] = self.up.get(
                "wallet", "/wallet/balance", caller=caller, deadline_s=s.wallet_timeout_s
            )
            parts["follow"] = self._follow(channel, caller)
        tasks = {name: asyncio.create_task(coro) for name, coro in parts.items()}
        try:
            view = await view_task
        except BaseException:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise
        return _collect(Composed(view), tasks, await asyncio.gather(*tasks.values(), return_exceptions=True))

    async def _chat(self, channel: str, caller: Caller) -> Json:
        limit = max(self.s.web_messages, self.s.mobile_messages)
        deadline = self.s.chat_timeout_s
        recent, stats = await asyncio.gather(
            self._or_none(
                self.up.get(
                    "chat",
                    f"/chat/{channel}/recent",
                    caller=caller,
                    deadline_s=deadline,
                    params={"limit": limit},
                )
                if limit
                else _nothing()
            ),
            self._or_none(self.up.get("chat", f"/chat/{channel}/stats", caller=caller, deadline_s=deadline)),
        )
        recent = recent or {}
        stats = stats or {}
        return {
            "messages": recent.get("messages", []),
            "last_n": int(recent.get("last_n", stats.get("last_n", 0))),
            "viewers": int(stats.get("viewers_total", 0)),
            "messages_per_min": int(stats.get("messages_per_min", 0)),
            "chat_mode": stats.get("chat_mode"),
        }

    async def _donors(self, channel: str, caller: Caller) -> list[Json]:
        limit = max(self.s.web_donors, self.s.mobile_donors)
        if not limit:
            return []
        body = await self._or_none(
            self.up.get(
                "wallet",
                f"/wallet/top-donors/{channel}",
                caller=caller,
                deadline_s=self.s.wallet_timeout_s,
                params={"limit": limit},
            )
        )
        return list(body.get("donors", [])) if body else []

    async def _related(self, channel: str, view_task: asyncio.Task[Any], caller: Caller) -> list[Json]:
        limit = max(self.s.web_related, self.s.mobile_related)
        if not limit:
            return []
        view = await view_task
        tags = [t for t in view.get("tags", []) if isinstance(t, str)][: self.s.related_tags]
        queries: list[dict[str, str | int]] = [{"tag": t, "limit": limit + 1} for t in tags] or [
            {"limit": limit + 1}
        ]
        results = await asyncio.gather(
            *(
                self.up.get("search", "/search", caller=caller, deadline_s=self.s.search_timeout_s, params=q)
                for q in queries
            ),
            return_exceptions=True,
        )
        answered = [r for r in results if not isinstance(r, BaseException)]
        if not answered:
            first = results[0]
            assert isinstance(first, BaseException)
            raise first
        seen = {channel}
        related: list[Json] = []
        for body in answered:  # tag order: channels sharing the first tag come first
            for hit in body.get("items", []):
                if hit.get("channel") not in seen:
                    seen.add(hit["channel"])
                    related.append(hit)
        return related[:limit]

    async def _follow(self, channel: str, caller: Caller) -> Json:
        body = await self.up.get("chat", "/follows", caller=caller, deadline_s=self.s.chat_timeout_s)
        following = any(f.get("channel") == channel for f in body.get("follows", []))
        return {"following": following}

    @staticmethod
    async def _or_none(call: Awaitable[Any]) -> Any:
        """The call's body; None for a 404 (the upstream does not know the channel yet)."""
        try:
            return await call
        except UpstreamError as exc:
            if exc.kind == "not_found":
                return None
            raise

    # -- home ------------------------------------------------------------------------------------
    async def home(self, caller: Caller) -> Composed:
        """The same for everyone: always shared (no identity is forwarded)."""
        anonymous = Caller(request_id=caller.request_id)
        return await self._shared("home", ("home",), lambda: self._compose_home(anonymous))

    async def _compose_home(self, caller: Caller) -> Composed:
        s = self.s
        deadline = s.liveinfo_timeout_s
        tasks = {
            "on_air": asyncio.create_task(
                self.up.get(
                    "liveinfo", "/live", caller=caller, deadline_s=deadline, params={"limit": s.home_on_air}
                )
            ),
            "ranking": asyncio.create_task(
                self.up.get(
                    "liveinfo", "/live/ranking", caller=caller, deadline_s=deadline, params={"limit": 100}
                )
            ),
        }
        composed = _collect(
            Composed(None), tasks, await asyncio.gather(*tasks.values(), return_exceptions=True)
        )
        ranking = composed.parts["ranking"]
        viewers = {e["channel"]: e["viewers"] for e in ranking["items"]} if ranking else None
        on_air = composed.parts["on_air"]
        if on_air is not None:
            items = [
                {**item, "viewers": viewers.get(item["channel"], 0) if viewers is not None else None}
                for item in on_air["items"]
            ]
            composed.parts["on_air"] = {"items": items, "total": on_air.get("total", len(items))}
        if ranking is not None:
            composed.parts["ranking"] = ranking["items"][: s.home_ranking]
        return composed


async def _nothing() -> None:
    return None


def _collect(composed: Composed, tasks: dict[str, asyncio.Task[Any]], results: list[Any]) -> Composed:
    for name, result in zip(tasks, results, strict=True):
        if isinstance(result, UpstreamError):
            composed.parts[name] = None
            composed.degraded.append(name)
        elif isinstance(result, BaseException):
            raise result
        else:
            composed.parts[name] = result
    return composed


# -- what each client gets --------------------------------------------------------------------------
MOBILE_CHANNEL_FIELDS = (
    "channel",
    "title",
    "tags",
    "adult",
    "status",
    "started_at",
    "ended_at",
    "end_reason",
    "viewers",
    "version",
)
MOBILE_MESSAGE_FIELDS = ("type", "id", "n", "ts", "user", "text", "amount")


def web_live(c: Composed, settings: BffSettings, *, signed_in: bool) -> Json:
    assert c.core is not None
    chat = c.parts.get("chat")
    if chat is not None:
        chat = {**chat, "messages": _last(chat["messages"], settings.web_messages)}
    return {
        "channel": c.core,
        "chat": chat,
        "donors": _first(c.parts.get("donors"), settings.web_donors),
        "related": _first(c.parts.get("related"), settings.web_related),
        "wallet": c.parts.get("wallet") if signed_in else None,
        "follow": c.parts.get("follow") if signed_in else None,
        "signed_in": signed_in,
        "degraded": list(c.degraded),
    }


def mobile_live(c: Composed, settings: BffSettings, *, signed_in: bool) -> Json:
    assert c.core is not None
    core = {k: c.core.get(k) for k in MOBILE_CHANNEL_FIELDS}
    core["renditions"] = [r.get("name") for r in c.core.get("renditions", []) if isinstance(r, dict)]
    chat = c.parts.get("chat")
    if chat is not None:
        chat = {
            "messages": [
                {k: m[k] for k in MOBILE_MESSAGE_FIELDS if m.get(k) is not None}
                for m in _last(chat["messages"], settings.mobile_messages)
            ],
            "last_n": chat["last_n"],
            "viewers": chat["viewers"],
        }
    donors = c.parts.get("donors")
    related = c.parts.get("related")
    wallet = c.parts.get("wallet")
    return {
        "channel": core,
        "chat": chat,
        "donors": None
        if donors is None
        else [{"donor": d.get("donor"), "amount": d.get("amount")} for d in donors[: settings.mobile_donors]],
        "related": None
        if related is None
        else [
            {"channel": r.get("channel"), "title": r.get("title")} for r in related[: settings.mobile_related]
        ],
        "wallet": {"balance": wallet.get("balance")} if signed_in and wallet is not None else None,
        "follow": c.parts.get("follow") if signed_in else None,
        "signed_in": signed_in,
        "degraded": list(c.degraded),
    }


def home_page(c: Composed) -> Json:
    return {"on_air": c.parts.get("on_air"), "ranking": c.parts.get("ranking"), "degraded": list(c.degraded)}


def _first(items: list[Json] | None, n: int) -> list[Json] | None:
    return None if items is None else items[:n]


def _last(items: list[Json], n: int) -> list[Json]:
    return items[-n:] if n else []
