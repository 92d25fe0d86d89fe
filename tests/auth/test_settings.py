"""Settings read the agreed environment names and build working verifiers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from onair.auth import (
    IdentitySettings,
    IdentityVerifier,
    StaticKeys,
    TokenVerifier,
    UserTokenSettings,
)


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ONAIR_IDENTITY_ISSUER",
        "ONAIR_IDENTITY_AUDIENCE",
        "ONAIR_AUTH_ISSUER",
        "ONAIR_AUTH_AUDIENCE",
    ):
        monkeypatch.delenv(name, raising=False)
    ids, users = IdentitySettings(), UserTokenSettings()
    assert (ids.issuer, ids.audience, ids.leeway_s, ids.ttl_s) == ("onair-gateway", "onair-services", 5.0, 30)
    assert (users.issuer, users.audience, users.access_token_max_lifetime_s) == ("onair-auth", "onair", 900)


def test_environment_overrides_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONAIR_IDENTITY_JWKS_URL", "http://gateway:8080/jwks")
    monkeypatch.setenv("ONAIR_IDENTITY_LEEWAY_S", "2")
    monkeypatch.setenv("ONAIR_AUTH_JWKS_URL", "http://auth:8101/.well-known/jwks.json")
    monkeypatch.setenv("ONAIR_AUTH_ISSUER", "https://auth.example")
    ids, users = IdentitySettings(), UserTokenSettings()
    assert ids.jwks_url == "http://gateway:8080/jwks" and ids.leeway_s == 2
    assert ids.jwks_cache().url == "http://gateway:8080/jwks"
    keys = StaticKeys()
    assert isinstance(ids.verifier(keys), IdentityVerifier)
    verifier = users.verifier(keys)
    assert isinstance(verifier, TokenVerifier)
    assert (verifier.issuer, verifier.audiences, verifier.max_lifetime_s) == (
        "https://auth.example",
        {"onair"},
        900,
    )
    monkeypatch.setenv("ONAIR_IDENTITY_TTL_S", "120")
    with pytest.raises(ValidationError):
        IdentitySettings()
    monkeypatch.setenv("ONAIR_AUTH_ACCESS_TOKEN_MAX_LIFETIME_S", "3600")
    with pytest.raises(ValidationError):
        UserTokenSettings()
