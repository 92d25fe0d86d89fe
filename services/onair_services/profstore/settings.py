"""profstore settings (``ONAIR_PROFSTORE_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProfstoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_PROFSTORE_", extra="ignore", frozen=True)

    backend: Literal["dir", "valkey", "s3"] = "dir"
    dir: Path = Path(".onair/profiles")
    s3_prefix: str = "pgo"
    # Bearer token for uploads and deletes. Without one, writes are refused unless allow_anonymous.
    token: SecretStr | None = None
    allow_anonymous: bool = False
    # Also require the token to list, download and view.
    protect_reads: bool = False
    max_upload_bytes: int = Field(default=8 << 20, gt=0)
    max_decompressed_bytes: int = Field(default=128 << 20, gt=0)
    retention_s: float = Field(default=7 * 24 * 3600, gt=0)
    max_per_app: int = Field(default=256, gt=0)
    retention_interval_s: float = Field(default=300, gt=0)
    default_limit: int = Field(default=32, gt=0)
    max_limit: int = Field(default=256, gt=0)
    # A merge reads the newest profiles of the selection until this many (compressed) bytes; merging
    # costs ~17x the compressed size in memory, so this bounds the service's memory.
    max_merge_input_bytes: int = Field(default=48 << 20, gt=0)
    # Cached merged profiles kept in memory (each is one app+window+limit).
    cache_entries: int = Field(default=32, ge=0)
