"""liveapi settings (``ONAIR_LIVEAPI_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LiveapiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_LIVEAPI_", extra="ignore", frozen=True)

    # How long a write waits for the broker to acknowledge its events (their positions) before it
    # answers without them; the events are still delivered (spooled), the re-logger covers a crash.
    event_ack_timeout_s: float = Field(default=2.0, gt=0)
    # Re-log channels whose logged version lags their version: once at start, then this often.
    relog_interval_s: float = Field(default=15.0, gt=0)
    # ... but only channels written at least this long ago (a write in flight logs its own events).
    relog_grace_s: float = Field(default=5.0, ge=0)
    # At most this many channels per re-log pass (the next pass takes the rest).
    relog_batch: int = Field(default=200, ge=1)
