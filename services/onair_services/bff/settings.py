"""bff settings (``ONAIR_BFF_*``): a deadline per upstream call, page sizes per client, caching."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BffSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_BFF_", extra="ignore", frozen=True)

    # The HTTP client of the upstream calls: a pooled aiohttp session (default), or the
    # skeleton's httpx client (service.http). docs/bff.md has the figures behind the default.
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    max_connections: int = Field(default=256, ge=1, le=10_000)

    # Deadline of one call to each upstream (seconds, the whole call: connect to the last byte).
    # liveinfo's is longer: without the channel's view there is no page at all.
    liveinfo_timeout_s: float = Field(default=1.0, gt=0, le=30)
    chat_timeout_s: float = Field(default=0.5, gt=0, le=30)
    wallet_timeout_s: float = Field(default=0.5, gt=0, le=30)
    search_timeout_s: float = Field(default=0.5, gt=0, le=30)

    # Circuit breaker per upstream: after this many failures in a row, calls to it are skipped
    # (the part is degraded at once) for breaker_open_s, then one trial call goes through.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=2.0, gt=0, le=300)

    # Page sizes: the web page and the phone page.
    web_messages: int = Field(default=50, ge=0, le=200)
    mobile_messages: int = Field(default=20, ge=0, le=200)
    web_donors: int = Field(default=10, ge=0, le=100)
    mobile_donors: int = Field(default=3, ge=0, le=100)
    web_related: int = Field(default=8, ge=0, le=50)
    mobile_related: int = Field(default=4, ge=0, le=50)
    # How many of the channel's tags are searched for related channels (one search each, at once).
    related_tags: int = Field(default=3, ge=0, le=10)
    home_on_air: int = Field(default=24, ge=1, le=100)
    home_ranking: int = Field(default=10, ge=1, le=100)

    # Anonymous pages are the same for everyone: concurrent requests for one page share one
    # composition (single-flight; false: each request composes its own), and its result is kept
    # anonymous_cache_s (0: no cache, flights only).
    anonymous_share: bool = True
    anonymous_cache_s: float = Field(default=1.0, ge=0, le=60)
    anonymous_cache_entries: int = Field(default=10_000, ge=1)
