"""liveinfo settings (``ONAIR_LIVEINFO_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LiveinfoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_LIVEINFO_", extra="ignore", frozen=True)

    # Run the projections (and the viewer sweeper) in this process. false: a read-only replica
    # that serves from the database the projecting instances write (scale reads on their own).
    projections: bool = True
    # Reads go through the near cache (in-process, invalidated by Valkey client tracking). False:
    # plain cache-aside on Valkey, for `onair bench e2e` to measure what the near cache buys.
    near_cache: bool = True
    near_entries: int = Field(default=50_000, gt=0)
    near_bytes: int = Field(default=64 << 20, gt=0)
    # A local entry lives at most this long even without an invalidation (a safety net).
    near_ttl_s: float = Field(default=60.0, gt=0)
    # Values in Valkey expire after this long (they are invalidated on every change anyway).
    cache_ttl_s: int = Field(default=300, gt=0)
    # Read-your-writes: how long a read with a position waits for the projection (then 503).
    position_wait_s: float = Field(default=2.0, gt=0, le=30)
    # A chat process's viewer count counts for this many of its reporting intervals.
    viewer_stale_intervals: float = Field(default=3.0, gt=0)
    # How often expired viewer counts are swept out of the totals and the ranking.
    viewer_sweep_s: float = Field(default=1.0, gt=0)
    # The ranking's sorted set is rebuilt from the database this often (repairs a lost update).
    ranking_rebuild_s: float = Field(default=300.0, gt=0)
    # Channels kept in the cached ranking (GET /live/ranking?limit= is at most this).
    ranking_size: int = Field(default=100, gt=0, le=1000)
    # Messages retained per channel for SSE readers that fall behind (each is a whole view).
    sse_window: int = Field(default=16, gt=0)
    sse_heartbeat_s: float = Field(default=15.0, gt=0)
    # A channel's NATS subscription is dropped this long after its last SSE viewer here left.
    sse_release_after_s: float = Field(default=30.0, ge=0)
