"""Skeleton upstreams for the BFF tests: liveinfo, chat, wallet and search as tiny apps that answer
what the real ones answer (their documented shapes), record every call (path, query, headers),
and can be told to be slow or to fail per service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CHANNELS: dict[str, dict[str, Any]] = {
    "alice": {"title": "Speedruns all night", "tags": ["speedrun", "retro"], "viewers": 42},
    "bob": {"title": "Retro games", "tags": ["retro"], "viewers": 7},
    "carol": {"title": "Speedrun practice", "tags": ["speedrun"], "viewers": 3},
    "dave": {"title": "Cooking", "tags": ["food"], "viewers": 0},
}


def channel_view(name: str) -> dict[str, Any]:
    info = CHANNELS[name]
    return {
        "channel": name,
        "title": info["title"],
        "tags": info["tags"],
        "adult": False,
        "chat_mode": "open",
        "visibility": "public",
        "status": "live",
        "session_id": f"s-{name}",
        "started_at": "2026-12-01T10:00:00.000000Z",
        "ended_at": None,
        "end_reason": None,
        "source": {"height": 1080, "fps": 60, "codec": "h264", "bitrate_kbps": 6000},
        "renditions": [
            {"name": "1080p", "height": 1080, "fps": 60, "bitrate_kbps": 6000},
            {"name": "720p", "height": 720, "fps": 60, "bitrate_kbps": 3000},
        ],
        "viewers": info["viewers"],
        "version": 5,
        "updated_at": "2026-12-01T10:00:00.000000Z",
    }


def message(n: int) -> dict[str, Any]:
    return {
        "type": "message",
        "id": n,
        "n": n,
        "ts": 1_700_000_000_000 + n,
        "user": f"viewer{n % 3}",
        "user_id": f"u-viewer{n % 3}",
        "text": f"hello {n}",
    }


@dataclass
class Call:
    service: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Fakes:
    """What the fake upstreams saw, and how they behave (per service)."""

    calls: list[Call] = field(default_factory=list)
    delay_s: dict[str, float] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    follows: dict[str, list[str]] = field(default_factory=dict)  # user id -> channels

    def seen(self, service: str, path: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.service == service and (path is None or c.path == path)]

    async def enter(self, service: str, request: Request) -> JSONResponse | None:
        self.calls.append(
            Call(
                service,
                request.url.path,
                dict(request.query_params),
                {k.lower(): v for k, v in request.headers.items()},
            )
        )
        delay = self.delay_s.get(service, 0.0)
        if delay:
            await asyncio.sleep(delay)
        status = self.status.get(service)
        if status is not None:
            return JSONResponse({"error": "broken", "detail": f"{service} is told to fail"}, status)
        return None


def _missing(channel: str) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": f"no channel {channel!r}"}, 404)


def liveinfo_app(fakes: Fakes) -> FastAPI:
    app = FastAPI()

    @app.get("/live")
    async def on_air(request: Request, limit: int = 20) -> Any:
        if (failed := await fakes.enter("liveinfo", request)) is not None:
            return failed
        items = [
            {
                k: v
                for k, v in channel_view(c).items()
                if k in ("channel", "title", "tags", "adult", "started_at")
            }
            for c in CHANNELS
        ]
        return {"items": items[:limit], "page": 1, "limit": limit, "total": len(items)}

    @app.get("/live/ranking")
    async def ranking(request: Request, limit: int = 10) -> Any:
        if (failed := await fakes.enter("liveinfo", request)) is not None:
            return failed
        ranked = sorted(
            (c for c in CHANNELS if CHANNELS[c]["viewers"]), key=lambda c: -CHANNELS[c]["viewers"]
        )
        items = [
            {"rank": i + 1, "channel": c, "title": CHANNELS[c]["title"], "viewers": CHANNELS[c]["viewers"]}
            for i, c in enumerate(ranked)
        ]
        return {"items": items[:limit]}

    @app.get("/live/{channel}")
    async def view(channel: str, request: Request) -> Any:
        if (failed := await fakes.enter("liveinfo", request)) is not None:
            return failed
        return channel_view(channel) if channel in CHANNELS else _missing(channel)

    return app


def chat_app(fakes: Fakes) -> FastAPI:
    app = FastAPI()

    @app.get("/chat/{channel}/recent")
    async def recent(channel: str, request: Request, limit: int = 50) -> Any:
        if (failed := await fakes.enter("chat", request)) is not None:
            return failed
        if channel not in CHANNELS:
            return _missing(channel)
        messages = [message(n) for n in range(1, 81)][-limit:]
        messages.append(
            {
                "type": "donation",
                "id": 81,
                "n": 81,
                "ts": 1,
                "user": "viewer1",
                "amount": 500,
                "text": "gg",
                "transfer_id": "t-1",
            }
        )
        return {"channel": channel, "messages": messages[-limit:], "last_n": 81}

    @app.get("/chat/{channel}/stats")
    async def stats(channel: str, request: Request) -> Any:
        if (failed := await fakes.enter("chat", request)) is not None:
            return failed
        if channel not in CHANNELS:
            return _missing(channel)
        return {
            "channel": channel,
            "live": True,
            "chat_mode": "open",
            "viewers_here": 3,
            "viewers_total": CHANNELS[channel]["viewers"],
            "processes": 1,
            "messages_per_min": 12,
            "last_n": 81,
        }

    @app.get("/follows")
    async def my_follows(request: Request) -> Any:
        if (failed := await fakes.enter("chat", request)) is not None:
            return failed
        if "x-onair-identity" not in request.headers:
            return JSONResponse({"error": "unauthorized", "detail": "no identity"}, 401)
        claims = jwt.decode(request.headers["x-onair-identity"], options={"verify_signature": False})
        user = str(claims["sub"])
        return {
            "follows": [
                {"channel": c, "since_ms": 1, "live": True, "title": ""} for c in fakes.follows.get(user, [])
            ]
        }

    return app


def wallet_app(fakes: Fakes) -> FastAPI:
    app = FastAPI()

    @app.get("/wallet/top-donors/{channel}")
    async def top(channel: str, request: Request, limit: int = 10) -> Any:
        if (failed := await fakes.enter("wallet", request)) is not None:
            return failed
        donors = [{"donor": f"fan{i}", "amount": 1000 - i * 50, "donations": 3} for i in range(12)]
        return {"channel": channel, "donors": donors[:limit]}

    @app.get("/wallet/balance")
    async def balance(request: Request) -> Any:
        if (failed := await fakes.enter("wallet", request)) is not None:
            return failed
        if "x-onair-identity" not in request.headers:
            return JSONResponse({"error": "unauthorized", "detail": "no identity"}, 401)
        return {"user_id": "u-x", "balance": 2500, "held": 0}

    return app


def search_app(fakes: Fakes) -> FastAPI:
    app = FastAPI()

    @app.get("/search")
    async def search(request: Request, tag: str | None = None, limit: int = 20) -> Any:
        if (failed := await fakes.enter("search", request)) is not None:
            return failed
        names = [c for c in CHANNELS if tag is None or tag in CHANNELS[c]["tags"]]
        items = [
            {
                "channel": c,
                "title": CHANNELS[c]["title"],
                "tags": CHANNELS[c]["tags"],
                "renditions": ["1080p"],
                "started_at": None,
            }
            for c in names
        ]
        return {"items": items[:limit], "page": 1, "limit": limit, "total": len(items)}

    return app
