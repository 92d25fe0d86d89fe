"""Settings of the two token kinds, read from the environment (pydantic-settings).

* :class:`IdentitySettings` (``ONAIR_IDENTITY_*``): how services verify the gateway's identity
  header — the gateway's JWKS URL, ``iss`` ``onair-gateway``, ``aud`` ``onair-services``, leeway.
* :class:`UserTokenSettings` (``ONAIR_AUTH_*``): how the gateway (or the auth service) verifies
  user access tokens — the auth JWKS URL, ``iss`` ``onair-auth``, ``aud`` ``onair``, at most 900 s.

Each has ``jwks_cache()`` and ``verifier(keys)`` so wiring is two lines in a lifespan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from onair.auth.identity import IDENTITY_AUDIENCE, IDENTITY_ISSUER, IDENTITY_MAX_TTL_S, IdentityVerifier
from onair.auth.jwks import JWKSCache, KeySource
from onair.auth.verify import RevocationCheck, TokenVerifier

if TYPE_CHECKING:
    import httpx

__all__ = ["IdentitySettings", "UserTokenSettings"]


class _JWKSSettings(BaseSettings):
    jwks_url: str
    leeway_s: float = Field(default=5.0, ge=0, le=60)
    jwks_refresh_interval_s: float = Field(default=300.0, gt=0)
    jwks_min_refetch_interval_s: float = Field(default=5.0, ge=0)

    def jwks_cache(self, client: httpx.AsyncClient | None = None) -> JWKSCache:
        """A :class:`JWKSCache` on ``jwks_url`` (start it in the lifespan)."""
        return JWKSCache(
            self.jwks_url,
            client=client,
            refresh_interval_s=self.jwks_refresh_interval_s,
            min_refetch_interval_s=self.jwks_min_refetch_interval_s,
        )


class IdentitySettings(_JWKSSettings):
    """``ONAIR_IDENTITY_JWKS_URL``, ``ONAIR_IDENTITY_ISSUER``, ``ONAIR_IDENTITY_AUDIENCE``,
    ``ONAIR_IDENTITY_LEEWAY_S``, ``ONAIR_IDENTITY_TTL_S`` (the gateway's signing lifetime)."""

    model_config = SettingsConfigDict(env_prefix="ONAIR_IDENTITY_", extra="ignore", frozen=True)

    jwks_url: str = "http://127.0.0.1:8080/.well-known/identity-jwks.json"
    issuer: str = IDENTITY_ISSUER
    audience: str = IDENTITY_AUDIENCE
    ttl_s: int = Field(default=30, gt=0, le=IDENTITY_MAX_TTL_S)

    def verifier(self, keys: KeySource) -> IdentityVerifier:
        return IdentityVerifier(keys, issuer=self.issuer, audience=self.audience, leeway_s=self.leeway_s)


class UserTokenSettings(_JWKSSettings):
    """``ONAIR_AUTH_JWKS_URL``, ``ONAIR_AUTH_ISSUER``, ``ONAIR_AUTH_AUDIENCE``, ``ONAIR_AUTH_LEEWAY_S``,
    ``ONAIR_AUTH_ACCESS_TOKEN_MAX_LIFETIME_S`` (access tokens live at most 15 minutes)."""

    model_config = SettingsConfigDict(env_prefix="ONAIR_AUTH_", extra="ignore", frozen=True)

    jwks_url: str = "http://127.0.0.1:8101/.well-known/jwks.json"
    issuer: str = "onair-auth"
    audience: str = "onair"
    access_token_max_lifetime_s: int = Field(default=900, gt=0, le=900)

    def verifier(self, keys: KeySource, revocations: RevocationCheck | None = None) -> TokenVerifier:
        return TokenVerifier(
            keys,
            issuer=self.issuer,
            audience=self.audience,
            leeway_s=self.leeway_s,
            max_lifetime_s=self.access_token_max_lifetime_s,
            revocations=revocations,
        )
