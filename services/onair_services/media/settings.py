"""media settings (``ONAIR_MEDIA_*``)."""

from __future__ import annotations

import os
import socket
import uuid

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _instance_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class MediaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_MEDIA_", extra="ignore", frozen=True)

    # The encoder must send a message at least this often (announced in the "ready" message) ...
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    # ... and is cut off (reason heartbeat_timeout) after this long without one.
    heartbeat_timeout_s: float = Field(default=6.0, gt=0)
    # Time an encoder has after connecting to send its hello.
    hello_timeout_s: float = Field(default=5.0, gt=0)
    # Largest message accepted from an encoder.
    max_message_bytes: int = Field(default=16 * 1024, gt=0)
    # A session's lease: renewed every lease_s/3 by the instance that holds it; once expired, any
    # instance's reaper closes the session (lease_expired). Keep it well above clock skew.
    lease_s: float = Field(default=15.0, gt=0)
    # How often the reaper looks for expired leases (default lease_s/3).
    reaper_interval_s: float | None = Field(default=None, gt=0)
    # Re-log channels whose status events were not acknowledged (crash between commit and log).
    relog_interval_s: float = Field(default=15.0, gt=0)
    relog_grace_s: float = Field(default=5.0, ge=0)
    # Closed sessions are kept this long (GET .../session shows the last one), then deleted.
    session_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # How long a change waits for the broker to acknowledge its events.
    event_ack_timeout_s: float = Field(default=2.0, gt=0)
    # This process's id in the sessions table (which instance holds which lease).
    instance_id: str = Field(default_factory=_instance_id, max_length=100)

    @property
    def reaper_every_s(self) -> float:
        return self.reaper_interval_s or self.lease_s / 3
