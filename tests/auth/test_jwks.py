"""JWKSCache against a real issuer: refetch rate limit, shared fetches, outages, rotation."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from onair.auth import (
    JWKSCache,
    JWKSError,
    KeysUnavailable,
    SigningKey,
    TokenError,
    TokenVerifier,
    jwks_document,
    parse_jwks,
)
from onair.fanout.app import free_port

from .helpers import AUDIENCE, ISSUER, Issuer, claims, compact, signer_of, wait_until


def _verifier(keys: JWKSCache) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


def _random_kid_token(key: SigningKey) -> str:
    return compact({"alg": "EdDSA", "kid": secrets.token_urlsafe(16)}, claims(), signer_of(key))


async def test_flood_of_random_kids_makes_at_most_one_fetch_per_interval(issuer: Issuer) -> None:
    attacker = SigningKey.generate()
    async with JWKSCache(issuer.url, min_refetch_interval_s=1.0) as keys:
        verifier = _verifier(keys)
        assert issuer.requests == 1
        await asyncio.sleep(1.05)  # the start-up fetch is older than the interval: one refetch allowed
        before = issuer.requests
        results = await asyncio.gather(
            *(verifier.verify(_random_kid_token(attacker)) for _ in range(200)), return_exceptions=True
        )
        for _ in range(200):  # and sequentially, right after
            with pytest.raises(TokenError):
                await verifier.verify(_random_kid_token(attacker))
        assert all(isinstance(r, TokenError) and r.reason == "kid_unknown" for r in results)
        assert 1 <= issuer.requests - before <= 2
        assert keys.fetches == issuer.requests


async def test_syntactically_invalid_kids_never_fetch(issuer: Issuer, ed_key: SigningKey) -> None:
    async with JWKSCache(issuer.url, min_refetch_interval_s=0) as keys:
        before = issuer.requests
        for kid in ("../../x", "a b", "", "x" * 129, "ключ"):
            assert await keys.get(kid) is None
        with pytest.raises(TokenError) as err:
            await _verifier(keys).verify(
                compact({"alg": "EdDSA", "kid": "../x"}, claims(), signer_of(ed_key))
            )
        assert err.value.reason == "kid_invalid"
        assert issuer.requests == before


async def test_concurrent_misses_share_one_fetch_and_find_the_new_key(issuer: Issuer) -> None:
    async with JWKSCache(issuer.url, min_refetch_interval_s=0) as keys:
        new = SigningKey.generate()
        issuer.keys.append(new)  # published before it signs anything
        issuer.delay_s = 0.2
        before = issuer.requests
        found = await asyncio.gather(*(keys.get(new.kid) for _ in range(50)))
        assert all(k is found[0] and k is not None and k.kid == new.kid for k in found)
        assert issuer.requests - before == 1


async def test_old_keys_are_kept_while_the_issuer_is_down_or_broken(
    issuer: Issuer, ed_key: SigningKey
) -> None:
    async with JWKSCache(issuer.url, min_refetch_interval_s=0) as keys:
        verifier = _verifier(keys)
        token = ed_key.sign(claims())
        for mode in ("error", "garbage", "empty"):
            issuer.mode = mode
            assert await keys.refresh() is False
            verifier.clear_cache()
            assert (await verifier.verify(token)).kid == ed_key.kid
        await issuer.stop()
        assert await keys.refresh() is False
        assert keys.failures == 4
        verifier.clear_cache()
        assert (await verifier.verify(token)).kid == ed_key.kid
        with pytest.raises(TokenError) as err:  # an unknown kid is still just unknown
            await verifier.verify(_random_kid_token(SigningKey.generate()))
        assert err.value.reason == "kid_unknown"


async def test_rotation_is_picked_up_without_restart(issuer: Issuer, ed_key: SigningKey) -> None:
    async with JWKSCache(issuer.url, refresh_interval_s=0.2, min_refetch_interval_s=0) as keys:
        verifier = _verifier(keys)
        old_token = ed_key.sign(claims())
        await verifier.verify(old_token)

        new = SigningKey.generate()
        issuer.keys.append(new)  # overlap: both published
        assert (await verifier.verify(new.sign(claims()))).kid == new.kid  # unknown kid -> refetch
        assert (await verifier.verify(old_token)).kid == ed_key.kid

        issuer.keys.remove(ed_key)  # the old key leaves the JWKS after the longest token lifetime
        await wait_until(lambda: ed_key.kid not in keys.kids)  # background refresh
        with pytest.raises(TokenError) as err:
            await verifier.verify(old_token)  # cached, but its key is gone
        assert err.value.reason == "kid_unknown"
        assert (await verifier.verify(new.sign(claims()))).kid == new.kid


async def test_issuer_down_at_start_is_503_then_recovers_by_itself(ed_key: SigningKey) -> None:
    port = free_port()
    late = Issuer(ed_key)
    async with JWKSCache(f"http://127.0.0.1:{port}/jwks.json", min_refetch_interval_s=0.1) as keys:
        assert not keys.ready
        with pytest.raises(KeysUnavailable):
            await _verifier(keys).verify(ed_key.sign(claims()))
        await late.start(port=port)
        try:
            assert await keys.wait_ready(10)
            assert (await _verifier(keys).verify(ed_key.sign(claims()))).kid == ed_key.kid
        finally:
            await late.stop()


async def test_unchanged_keys_keep_their_objects_across_refreshes(issuer: Issuer, ed_key: SigningKey) -> None:
    async with JWKSCache(issuer.url) as keys:
        first = keys.get_cached(ed_key.kid)
        assert await keys.refresh()
        assert keys.get_cached(ed_key.kid) is first


async def test_oversized_jwks_is_refused(issuer: Issuer) -> None:
    async with JWKSCache(issuer.url, max_bytes=100) as keys:
        assert not keys.ready
        assert keys.failures == 1


def test_parse_jwks_skips_keys_onair_does_not_use(ed_key: SigningKey) -> None:
    good = ed_key.public_jwk
    doc = {
        "keys": [
            {"kty": "RSA", "kid": "rsa1", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            dict(good, use="enc"),
            dict(good, alg="ES256"),
            {**SigningKey.generate().public_jwk, "d": "private!"},
            good,
            dict(good),  # repeated kid
        ]
    }
    keys, skipped = parse_jwks(doc)
    assert list(keys) == [ed_key.kid]
    assert len(skipped) == 6
    bads: list[Any] = [{}, {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "RSA", "kid": "r"}]}, []]
    for bad in bads:
        with pytest.raises(JWKSError):
            parse_jwks(bad)
    with pytest.raises(JWKSError, match="at most"):
        parse_jwks(jwks_document([ed_key] * 1), max_keys=0)
