"""The runtime settings every service shares (one pydantic-settings class, read from the environment).

A service's own settings live in its package (``ONAIR_<SERVICE>_*``); these are the skeleton's:
backends, the log level, migrations on start, the log-stream spool, the profiler upload and the
identity keys. Tests pass an instance with explicit values instead of setting the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from onair.config import DatabaseSettings, KafkaSettings, NatsSettings, ValkeySettings


class RuntimeSettings(BaseSettings):
    """What the skeleton needs to run one service process (``ONAIR_*``, ``DATABASE_URL``)."""

    model_config = SettingsConfigDict(env_prefix="ONAIR_", extra="ignore", frozen=True)

    log_level: str = "INFO"
    environment: str = "dev"
    database_url: str = Field(
        default_factory=lambda: DatabaseSettings().url,
        validation_alias=AliasChoices("DATABASE_URL", "ONAIR_DATABASE_URL"),
    )
    database_pool_size: int = Field(default=10, ge=1)
    # Run the service's Alembic migrations at start-up (the demo and tests); compose and k8s run
    # them once in a one-shot job (`onair migrate <service>`) and set this to false.
    migrate_on_start: bool = True
    valkey_url: str = Field(default_factory=lambda: ValkeySettings().valkey_url)
    nats_url: str = Field(default_factory=lambda: NatsSettings().nats_url)
    kafka_bootstrap: str = Field(default_factory=lambda: KafkaSettings().kafka_bootstrap)
    # Where the log-stream sink spools events the broker did not take yet (one folder per service).
    spool_dir: Path = Path(".onair/spool")
    # The gateway's identity keys (services verify X-Onair-Identity with them).
    identity_jwks_url: str = "http://127.0.0.1:8080/.well-known/identity-jwks.json"
    # Continuous profiling: upload CPU profiles to the profstore when its URL is set (and
    # ONAIR_PROFILING is not false).
    profiling: bool = True
    profstore_url: str | None = None
    profstore_token: SecretStr | None = None
    profile_interval_s: float = Field(default=60.0, gt=0)
    profile_duration_s: float = Field(default=10.0, gt=0)
    # Requests with a larger body are refused with 413 (routes may allow more).
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    # One access-log line per request (the gateway's default; services log requests at debug).
    access_log: bool | None = None
