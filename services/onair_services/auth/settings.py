"""auth settings (``ONAIR_AUTH_*``): tokens, cookies, signing keys, password hashing, login limits.

:class:`AuthSettings` extends :class:`onair.auth.UserTokenSettings` (same prefix), so the issuer,
audience and maximum lifetime the auth service signs with are the ones the gateway verifies with.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal

from limits import RateLimitItem, parse
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from onair.auth import UserTokenSettings

Network = IPv4Network | IPv6Network

#: Loopback and private networks (RFC 1918, RFC 4193): where the gateway reaches auth from.
PRIVATE_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")


class AuthSettings(UserTokenSettings):
    """The auth service's own knobs; every one is ``ONAIR_AUTH_<FIELD>`` in the environment."""

    # Errors never echo an input: one of them is the key encryption secret.
    model_config = SettingsConfigDict(
        env_prefix="ONAIR_AUTH_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # -- tokens ----------------------------------------------------------------------------------
    access_token_ttl_s: int = Field(default=900, gt=0, le=900)
    # A refresh token lives this long unless used (each use rotates it and starts a new period) ...
    refresh_token_ttl_s: int = Field(default=14 * 24 * 3600, gt=0)
    # ... and a login session (refresh-token family) at most this long, however often refreshed.
    session_max_age_s: int = Field(default=30 * 24 * 3600, gt=0)
    # The refresh-token cookie of browsers: HttpOnly, SameSite=Strict, Path=/auth, Secure unless
    # turned off (Chromium and Firefox accept Secure cookies on http://localhost and 127.0.0.1).
    refresh_cookie_name: str = Field(default="onair_refresh", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    refresh_cookie_secure: bool = True
    # Where the public API is reached (the gateway), for the discovery document; default: the
    # scheme and host the request came in with.
    public_url: str | None = None

    # -- signing keys ----------------------------------------------------------------------------
    key_alg: Literal["EdDSA", "ES256"] = "EdDSA"
    # Private keys are stored encrypted (PKCS#8, PBES2/AES-256) with this secret when it is set.
    key_encryption_secret: SecretStr | None = None
    # Every auth process re-reads the keys table this often (rotation without a restart).
    key_poll_interval_s: float = Field(default=2.0, gt=0, le=60)
    # A new key is published this long before it signs: verifiers refetch an unknown kid at most
    # once per jwks_min_refetch_interval_s, and auth processes see the new row within one poll.
    key_publish_lead_s: float | None = Field(default=None, ge=0)
    # A retired key stays in the JWKS for the longest token lifetime + leeway + this margin.
    key_retire_margin_s: float = Field(default=60.0, ge=0)

    # -- passwords -------------------------------------------------------------------------------
    # argon2id, OWASP's recommended configuration by default (m=19 MiB, t=2, p=1: ~25 ms a
    # verification on the 2-core reference machine). RFC 9106's second profile (t=3, m=65536, p=4)
    # is ~7x the CPU here (~190 ms): a setting away where logins are rare.
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    # At most this many hashes at once per process (each takes argon2_memory_kib of memory).
    hash_concurrency: int = Field(default=4, ge=1)

    # -- login rate limits (moving windows in Valkey, shared by every auth process) ---------------
    login_limit_per_account: str = "50/15 minutes"
    login_limit_per_ip: str = "300/5 minutes"
    # A failed attempt uses this many units of both windows, a successful one uses 1.
    login_failure_cost: int = Field(default=5, ge=1)
    # Peers whose X-Forwarded-For is believed (the gateway); JSON list in the environment,
    # e.g. ONAIR_AUTH_TRUSTED_PROXIES='["10.42.0.0/16"]'. Empty: the TCP peer is the client.
    # Default: loopback and the private ranges a compose or k8s network uses — auth is never
    # reachable from outside the mesh (only the gateway is); narrow it to the gateway's subnet.
    trusted_proxies: list[Network] = Field(default_factory=lambda: [ip_network(n) for n in PRIVATE_NETWORKS])

    # -- the auth.user.created event ---------------------------------------------------------------
    event_ack_timeout_s: float = Field(default=2.0, gt=0)
    # Users whose event was not acknowledged are logged again this often (and at start) ...
    relog_interval_s: float = Field(default=30.0, gt=0)
    # ... once they are this old (a signup in flight logs its own event).
    relog_grace_s: float = Field(default=10.0, ge=0)

    @field_validator("login_limit_per_account", "login_limit_per_ip")
    @classmethod
    def _limit(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit like '50/15 minutes': {exc}") from None
        return value

    @field_validator("key_encryption_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < 16:
            raise ValueError("use a random secret of at least 16 characters (e.g. openssl rand -base64 32)")
        return value

    @model_validator(mode="after")
    def _ttl_within_max(self) -> AuthSettings:
        if self.access_token_ttl_s > self.access_token_max_lifetime_s:
            raise ValueError("access_token_ttl_s must not exceed access_token_max_lifetime_s")
        return self

    @property
    def publish_lead_s(self) -> float:
        """How long before it signs a new key is published: the verifiers' refetch interval plus
        two polls of the keys table plus 1 s, unless set."""
        if self.key_publish_lead_s is not None:
            return self.key_publish_lead_s
        return self.jwks_min_refetch_interval_s + 2 * self.key_poll_interval_s + 1.0

    @property
    def retire_after_s(self) -> float:
        """How long a key stays published after it stopped signing."""
        return self.access_token_max_lifetime_s + self.leeway_s + self.key_retire_margin_s

    def account_limit(self) -> RateLimitItem:
        return parse(self.login_limit_per_account)

    def ip_limit(self) -> RateLimitItem:
        return parse(self.login_limit_per_ip)

    def encryption_password(self) -> bytes | None:
        secret = self.key_encryption_secret
        return secret.get_secret_value().encode("utf-8") if secret and secret.get_secret_value() else None
