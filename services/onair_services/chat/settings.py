"""chat settings (``ONAIR_CHAT_*``): message rules, rate limits, history windows, streams, intervals."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _process_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ChatSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_CHAT_", extra="ignore", frozen=True)

    # -- messages --------------------------------------------------------------------------------
    max_chars: int = Field(default=500, ge=1, le=10_000)
    """Longest message, in code points after NFC normalisation and stripping control characters."""
    max_lines: int = Field(default=10, ge=1)
    """Newlines are kept (CR LF / CR become LF); a message may have at most this many lines."""

    # -- rate limits (GCRA in Valkey: a burst of `limit`, refilled over `window_s`) ---------------
    user_limit: int = Field(default=20, ge=1)
    user_window_s: float = Field(default=30.0, gt=0)
    room_limit: int = Field(default=50, ge=1)
    room_window_s: float = Field(default=1.0, gt=0)
    slow_mode_s: float = Field(default=10.0, gt=0)
    """``chat_mode`` slow: one message per this many seconds per user and room."""

    # -- history and streams ---------------------------------------------------------------------
    history: int = Field(default=50, ge=0, le=1000)
    """Room events a viewer gets on joining."""
    room_retention: int = Field(default=1000, ge=10)
    """Room events JetStream keeps per room (max_msgs_per_subject); also the window a reconnecting
    viewer can resume in. Every process's room log holds at least this many."""
    stream: str = "CHAT"
    stream_max_age_s: float = Field(default=7 * 24 * 3600, ge=0)
    stream_max_bytes: int = Field(default=1 << 30, ge=-1)
    duplicate_window_s: float = Field(default=600, gt=0)
    """JetStream de-duplication window (Nats-Msg-Id): retried publishes, redelivered donations."""
    notify_stream: str = "NOTIFY"
    notify_retention: int = Field(default=50, ge=1)
    notify_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    notify_history: int = Field(default=20, ge=0)
    notify_cooldown_s: float = Field(default=300, ge=0)
    """No second go-live notification for a channel that went live this recently (encoder flaps)."""
    donation_consumer: str = "chat-donations"

    # -- viewers, feeds, intervals ---------------------------------------------------------------
    heartbeat_s: float = Field(default=15.0, gt=0)
    ws_hello_s: float = Field(default=0.5, ge=0)
    """How long a WebSocket without ``?last_event_id=`` waits for a first message saying where to resume."""
    viewer_count_interval_s: float = Field(default=10.0, gt=0)
    feed_idle_s: float = Field(default=60.0, ge=0)
    """A room or user feed nobody read for this long is released (its JetStream consumer goes)."""
    relay_interval_s: float = Field(default=5.0, gt=0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Replicas of the CHAT and NOTIFY streams (3 on a 3-node NATS cluster: a node lost loses nothing)."""
    projections: bool = True
    """Run the projections here (every chat process does in production; tests switch it off in replicas)."""
    gc_freeze: bool = True
    """``gc.freeze()`` after start-up (many long-lived streams; see docs/fanout.md, Limits)."""
    process_id: str = Field(default_factory=_process_id, min_length=1, max_length=200)
    """Stable id of this chat process in ``media.viewer.count`` (default host-pid)."""
