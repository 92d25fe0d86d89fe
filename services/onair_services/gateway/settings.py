"""gateway settings (``ONAIR_GATEWAY_*``); the route table itself is in ``table.py``.

Lists (``cors_origins``, ``ready_upstreams``) are read as JSON (``'["https://a.example"]'``) or as
comma-separated text (``https://a.example,https://b.example``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_GATEWAY_", extra="ignore", frozen=True)

    # -- the identity the gateway signs for the upstreams ------------------------------------------
    # PEM file with the identity signing key (Ed25519 or P-256, PKCS#8); compose/k8s mount it from a
    # Secret so every replica signs with a key the services know. Several keys in one file: the
    # first signs, all are published (rotation). Unset: a key is created once under state_dir.
    identity_key_file: Path | None = None
    state_dir: Path = Path(".onair/gateway")
    # Identity lifetime (the signer refuses > 60 s).
    identity_ttl_s: int = Field(default=30, gt=0, le=60)

    # -- user tokens -------------------------------------------------------------------------------
    # Answer "not revoked" when Valkey cannot say (availability over a revoked token living until
    # its exp, <= 15 min). Default: fail closed (503).
    revocation_fail_open: bool = False
    # Also accept the access token as ?access_token= on WebSocket handshakes and SSE requests
    # (browsers cannot set headers there); it is removed before the request goes upstream.
    query_token: bool = True

    # -- rate limits (per window, 0 = off) ---------------------------------------------------------
    rate_limit_per_user: int = Field(default=1200, ge=0)
    rate_limit_per_ip: int = Field(default=6000, ge=0)
    rate_limit_window_s: int = Field(default=60, ge=1)
    rate_limit_sync_ms: int = Field(default=100, ge=5, le=5000)

    # -- upstreams ---------------------------------------------------------------------------------
    connect_timeout_s: float = Field(default=2.0, gt=0)
    max_connections: int = Field(default=512, gt=0)
    # Below the upstreams' own keep-alive timeout (uvicorn: 5 s), so a pooled connection is never
    # reused just as the upstream closes it.
    keepalive_timeout_s: float = Field(default=4.0, gt=0)
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    breaker_min_calls: int = Field(default=20, ge=1)
    breaker_open_s: float = Field(default=5.0, gt=0)
    # Upstreams whose /healthz must answer for /readyz to say ready; the others are reported only.
    ready_upstreams: Annotated[list[str], NoDecode] = ["auth"]
    # Upstream OpenAPI documents are fetched again after this long.
    openapi_ttl_s: float = Field(default=60.0, gt=0)

    # -- browsers ----------------------------------------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = []
    cors_max_age_s: int = Field(default=600, ge=0)
    # Content-Security-Policy added to responses that do not set their own (the web app may).
    csp: str = DEFAULT_CSP
    # Strict-Transport-Security max-age; 0 = not sent (set it when the gateway is served over TLS).
    hsts_max_age_s: int = Field(default=0, ge=0)

    @field_validator("cors_origins", "ready_upstreams", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {origin!r} must be '*' or start with http:// or https://")
        return [origin.rstrip("/") for origin in value]
