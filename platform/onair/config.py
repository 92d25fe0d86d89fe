"""Settings for every concern, read from the environment with pydantic-settings.

One settings class per concern (service identity, logging, database, Valkey, NATS, Kafka, S3),
all under the ``ONAIR_`` prefix except ``DATABASE_URL``, which keeps its conventional name.
The central default timeout lives in :class:`TimeoutSettings`; every base client takes it from
there, so a policy change happens in one place.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _OnairSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_", extra="ignore", frozen=True)


class TimeoutSettings(_OnairSettings):
    """The one place the default network timeout is set (seconds)."""

    default_timeout_s: float = Field(default=2.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)


class ServiceSettings(_OnairSettings):
    """Who is running: the service name goes on every log line."""

    service_name: str = "onair"
    environment: str = "dev"
    log_level: str = "INFO"


class DatabaseSettings(_OnairSettings):
    """SQL database of one service (SQLite by default, PostgreSQL when the URL says so)."""

    url: str = Field(
        default="sqlite+aiosqlite:///./.onair/onair.db",
        validation_alias=AliasChoices("DATABASE_URL", "ONAIR_DATABASE_URL"),
    )
    pool_size: int = Field(default=10, ge=1)
    echo: bool = False


class ValkeySettings(_OnairSettings):
    """Valkey connection and the key namespace of this deployment."""

    valkey_url: str = "redis://127.0.0.1:6379/0"
    valkey_namespace: str = "onair"
    valkey_max_connections: int = Field(default=64, ge=1)


class NatsSettings(_OnairSettings):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_subject_prefix: str = "onair"


class KafkaSettings(_OnairSettings):
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_client_id: str = "onair"
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)


class S3Settings(_OnairSettings):
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "onair"


@lru_cache(maxsize=1)
def timeouts() -> TimeoutSettings:
    """The process-wide timeout policy (read once)."""
    return TimeoutSettings()
