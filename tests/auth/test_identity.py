"""The gateway identity: signing, verifying, the 60 s cap, and user claims -> Identity."""

from __future__ import annotations

import time

import pytest

from onair.auth import (
    Claims,
    Identity,
    IdentitySigner,
    IdentityVerifier,
    SigningKey,
    StaticKeys,
    TokenError,
    TokenVerifier,
    identity_from_claims,
)

from .helpers import AUDIENCE, ISSUER, claims


async def test_sign_and_verify_round_trip() -> None:
    key = SigningKey.generate()
    signer = IdentitySigner(key, ttl_s=30)
    verifier = IdentityVerifier(StaticKeys([key]))
    alice = Identity("u-1", "alice", frozenset({"viewer", "streamer"}), "req-1")
    token = signer.sign(alice)
    got = await verifier.verify(token)
    assert (got.user_id, got.username, got.roles, got.request_id) == ("u-1", "alice", alice.roles, "req-1")
    assert got.token_id
    raw = await verifier.tokens.verify(token)
    assert raw.issuer == "onair-gateway" and raw.audience == ("onair-services",)
    assert raw.expires_at - raw.issued_at == 30
    assert raw["roles"] == ["streamer", "viewer"]
    assert signer.sign(alice) != signer.sign(alice)  # fresh jti each time


def test_ttl_is_capped_at_sixty_seconds() -> None:
    with pytest.raises(ValueError, match=r"1\.\.60"):
        IdentitySigner(SigningKey.generate(), ttl_s=61)
    with pytest.raises(ValueError):
        IdentitySigner(SigningKey.generate(), ttl_s=0)


async def test_identity_verifier_refuses_what_is_not_a_gateway_identity() -> None:
    gateway, auth = SigningKey.generate(), SigningKey.generate()
    verifier = IdentityVerifier(StaticKeys([gateway, auth]))
    now = int(time.time())
    cases = {
        "wrong_issuer": auth.sign(claims()),  # a user's raw access token
        "lifetime_too_long": gateway.sign(
            claims(iss="onair-gateway", aud="onair-services", iat=now, exp=now + 120)
        ),
        "missing_claim": gateway.sign(
            claims(iss="onair-gateway", aud="onair-services", exp=now + 30, roles=None)
        ),
        "invalid_claim": gateway.sign(
            claims(iss="onair-gateway", aud="onair-services", exp=now + 30, roles="admin")
        ),
    }
    for reason, token in cases.items():
        with pytest.raises(TokenError) as err:
            await verifier.verify(token)
        assert err.value.reason == reason


def test_has_role_is_any_of() -> None:
    bob = Identity("u-2", "bob", frozenset({"viewer"}))
    assert bob.has_role("viewer") and bob.has_role("admin", "viewer")
    assert not bob.has_role("admin") and not bob.has_role()


async def test_user_claims_become_an_identity_for_the_gateway() -> None:
    auth = SigningKey.generate()
    users = TokenVerifier(StaticKeys([auth]), issuer=ISSUER, audience=AUDIENCE, max_lifetime_s=900)
    verified: Claims = await users.verify(auth.sign(claims(sub="u-7", name="carol", roles=["admin"])))
    carol = identity_from_claims(verified, request_id="r-9")
    assert carol == Identity("u-7", "carol", frozenset({"admin"}), "r-9", verified.token_id)
    for bad in ({"name": None}, {"name": 3}, {"roles": "admin"}, {"roles": [1]}):
        token = auth.sign(claims(**bad))
        with pytest.raises(TokenError) as err:
            identity_from_claims(await users.verify(token))
        assert err.value.reason == "invalid_claim"


async def test_session_id_travels_from_the_access_token_through_the_identity() -> None:
    auth, gateway = SigningKey.generate(), SigningKey.generate()
    users = TokenVerifier(StaticKeys([auth]), issuer=ISSUER, audience=AUDIENCE, max_lifetime_s=900)
    user = identity_from_claims(await users.verify(auth.sign(claims(sid="fam-1"))), request_id="r-1")
    assert user.session_id == "fam-1"
    service_side = await IdentityVerifier(StaticKeys([gateway])).verify(IdentitySigner(gateway).sign(user))
    assert service_side.session_id == "fam-1" and service_side.user_id == user.user_id
    without = identity_from_claims(await users.verify(auth.sign(claims())))
    assert without.session_id is None
    assert (
        "sid"
        not in (await users.verify(IdentitySigner(auth, issuer=ISSUER, audience=AUDIENCE).sign(without))).raw
    )
    with pytest.raises(TokenError) as err:
        identity_from_claims(await users.verify(auth.sign(claims(sid=7))))
    assert err.value.reason == "invalid_claim"
