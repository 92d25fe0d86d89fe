"""Every rejection of TokenVerifier, each with its stable reason code, against a real JWKS server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from onair.auth import REASONS, JWKSCache, SigningKey, StaticKeys, TokenError, TokenVerifier

from .helpers import AUDIENCE, ISSUER, Issuer, b64, claims, compact, hs256_with, signer_of


@pytest.fixture
async def verifier(issuer: Issuer) -> AsyncIterator[TokenVerifier]:
    async with JWKSCache(issuer.url, min_refetch_interval_s=0) as keys:
        assert keys.ready
        yield TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, max_lifetime_s=900)


Case = Callable[[SigningKey, SigningKey], str]
NOW = int(time.time())
ATTACKER = SigningKey.generate("EdDSA")
ATTACKER_EC = SigningKey.generate("ES256")
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _hdr(key: SigningKey, **extra: Any) -> dict[str, Any]:
    return {"alg": key.alg, "kid": key.kid, "typ": "JWT", **extra}


def _tampered(ed: SigningKey, _: SigningKey) -> str:
    head, _body, sig = ed.sign(claims()).split(".")
    body = b64(json.dumps(claims(sub="admin")).encode())
    return f"{head}.{body}.{sig}"


CASES: dict[str, tuple[Case, str]] = {
    "forged signature (other key, real kid)": (
        lambda ed, _: compact(_hdr(ed), claims(), signer_of(ATTACKER)),
        "bad_signature",
    ),
    "tampered payload": (_tampered, "bad_signature"),
    "expired": (lambda ed, _: ed.sign(claims(iat=NOW - 400, exp=NOW - 60)), "expired"),
    "not yet valid (nbf)": (lambda ed, _: ed.sign(claims(nbf=NOW + 120)), "not_yet_valid"),
    "issued in the future (iat)": (
        lambda ed, _: ed.sign(claims(iat=NOW + 120, exp=NOW + 400)),
        "not_yet_valid",
    ),
    "wrong iss": (lambda ed, _: ed.sign(claims(iss="evil")), "wrong_issuer"),
    "wrong aud": (lambda ed, _: ed.sign(claims(aud="onair-services")), "wrong_audience"),
    "wrong aud list": (lambda ed, _: ed.sign(claims(aud=["a", "b"])), "wrong_audience"),
    "alg none": (lambda ed, _: compact({"alg": "none", "kid": ed.kid}, claims(), lambda _: b""), "alg_none"),
    "alg NONE": (lambda ed, _: compact({"alg": "NONE", "kid": ed.kid}, claims(), lambda _: b""), "alg_none"),
    "HS256 signed with the public key": (
        lambda ed, _: compact({"alg": "HS256", "kid": ed.kid}, claims(), hs256_with(ed.public_pem())),
        "alg_not_allowed",
    ),
    "RS256": (
        lambda ed, _: jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": ed.kid}),
        "alg_not_allowed",
    ),
    "ES384": (
        lambda ed, _: compact({"alg": "ES384", "kid": ed.kid}, claims(), lambda _: b"x"),
        "alg_not_allowed",
    ),
    "no alg": (lambda ed, _: compact({"kid": ed.kid}, claims(), signer_of(ed)), "malformed"),
    "unknown kid": (lambda ed, _: compact(_hdr(ATTACKER), claims(), signer_of(ATTACKER)), "kid_unknown"),
    "missing kid": (lambda ed, _: compact({"alg": "EdDSA"}, claims(), signer_of(ed)), "kid_missing"),
    "kid path injection": (
        lambda ed, _: compact(_hdr(ed, kid="../../etc/passwd"), claims(), signer_of(ed)),
        "kid_invalid",
    ),
    "kid not a string": (lambda ed, _: compact(_hdr(ed, kid=7), claims(), signer_of(ed)), "kid_invalid"),
    "jku header": (
        lambda ed, _: compact(_hdr(ed, jku="https://evil.example/jwks.json"), claims(), signer_of(ed)),
        "forbidden_header",
    ),
    "x5u header": (
        lambda ed, _: compact(_hdr(ed, x5u="https://evil.example/cert.pem"), claims(), signer_of(ed)),
        "forbidden_header",
    ),
    "embedded jwk": (
        lambda ed, _: compact(_hdr(ATTACKER, jwk=ATTACKER.public_jwk), claims(), signer_of(ATTACKER)),
        "forbidden_header",
    ),
    "x5c header": (
        lambda ed, _: compact(_hdr(ed, x5c=["MIIB"]), claims(), signer_of(ed)),
        "forbidden_header",
    ),
    "crit header": (
        lambda ed, _: compact(_hdr(ed, crit=["exp"]), claims(), signer_of(ed)),
        "crit_header",
    ),
    "ES256 token naming the Ed25519 key": (
        lambda ed, _: compact({"alg": "ES256", "kid": ed.kid}, claims(), signer_of(ATTACKER_EC)),
        "key_mismatch",
    ),
    "EdDSA token naming the P-256 key": (
        lambda ed, ec: compact({"alg": "EdDSA", "kid": ec.kid}, claims(), signer_of(ATTACKER)),
        "key_mismatch",
    ),
    "lifetime too long": (lambda ed, _: ed.sign(claims(exp=NOW + 3600)), "lifetime_too_long"),
    "exp as a string": (lambda ed, _: ed.sign(claims(exp=str(NOW + 60))), "invalid_claim"),
    "empty sub": (lambda ed, _: ed.sign(claims(sub="")), "invalid_claim"),
    "jti not a string": (lambda ed, _: ed.sign(claims(jti=5)), "invalid_claim"),
    "not a JWT": (lambda ed, _: "hello", "malformed"),
    "five segments (JWE)": (lambda ed, _: "a.b.c.d.e", "malformed"),
    "header not JSON": (lambda ed, _: f"{b64(b'{nope')}.{b64(b'{}')}.{b64(b'x')}", "malformed"),
    "padding in a segment": (lambda ed, _: ed.sign(claims()).replace(".", "=.", 1), "malformed"),
    "payload not an object": (lambda ed, _: compact(_hdr(ed), [1, 2], signer_of(ed)), "malformed"),  # type: ignore[arg-type]
}
for _claim in ("iss", "aud", "exp", "iat", "jti", "sub"):
    CASES[f"missing {_claim}"] = (
        lambda ed, _, c=_claim: ed.sign(claims(**{c: None})),  # type: ignore[misc]
        "missing_claim",
    )


@pytest.mark.parametrize("name", sorted(CASES))
async def test_rejection(name: str, verifier: TokenVerifier, ed_key: SigningKey, ec_key: SigningKey) -> None:
    make, reason = CASES[name]
    token = make(ed_key, ec_key)
    with pytest.raises(TokenError) as err:
        await verifier.verify(token)
    assert err.value.reason == reason, err.value.detail
    assert err.value.reason in REASONS
    assert token not in str(err.value)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
async def test_valid_tokens_of_both_algorithms(
    alg: str, verifier: TokenVerifier, ed_key: SigningKey, ec_key: SigningKey
) -> None:
    key = ed_key if alg == "EdDSA" else ec_key
    token = key.sign(claims(sub="u-9", roles=["streamer"]))
    got = await verifier.verify(token)
    assert (got.subject, got.kid, got.alg, got["roles"]) == ("u-9", key.kid, alg, ["streamer"])
    assert got.issuer == ISSUER and got.audience == (AUDIENCE,)


async def test_leeway_accepts_small_clock_skew(verifier: TokenVerifier, ed_key: SigningKey) -> None:
    now = int(time.time())
    await verifier.verify(ed_key.sign(claims(iat=now + 3, exp=now - 3 + 300)))  # iat 3 s ahead
    await verifier.verify(ed_key.sign(claims(iat=now - 300, exp=now - 3)))  # expired 3 s ago
    with pytest.raises(TokenError, match="expired"):
        await verifier.verify(ed_key.sign(claims(iat=now - 300, exp=now - 8)))


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_cache_hit_still_checks_expiry_and_key() -> None:
    key = SigningKey.generate()
    keys = StaticKeys([key, SigningKey.generate()])
    clock = Clock()
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway_s=0, clock=clock)
    token = key.sign(claims(iat=int(clock.now), exp=int(clock.now) + 60))

    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # served from the cache
    assert verifier.cache_hits == 1

    clock.now += 61
    with pytest.raises(TokenError) as err:
        await verifier.verify(token)
    assert err.value.reason == "expired"

    clock.now -= 61
    other = key.sign(claims(iat=int(clock.now), exp=int(clock.now) + 60))
    await verifier.verify(other)
    keys.remove(key.kid)  # the key left the JWKS: its cached tokens stop validating
    with pytest.raises(TokenError) as err:
        await verifier.verify(other)
    assert err.value.reason == "kid_unknown"


async def test_cache_is_bounded() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(StaticKeys([key]), issuer=ISSUER, audience=AUDIENCE, cache_size=3)
    tokens = [key.sign(claims()) for _ in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._cache) == 3
    assert list(verifier._cache) == tokens[2:]


async def test_same_kid_with_other_key_material_is_not_served_from_cache() -> None:
    key = SigningKey.generate()
    keys = StaticKeys([key])
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    token = key.sign(claims())
    await verifier.verify(token)
    impostor = dict(SigningKey.generate().public_jwk, kid=key.kid)
    keys.replace([impostor])
    with pytest.raises(TokenError) as err:
        await verifier.verify(token)
    assert err.value.reason == "bad_signature"


def test_constructor_refuses_other_algorithms() -> None:
    with pytest.raises(ValueError, match="subset"):
        TokenVerifier(StaticKeys(), issuer=ISSUER, audience=AUDIENCE, algorithms=("EdDSA", "HS256"))
    with pytest.raises(ValueError, match="audience"):
        TokenVerifier(StaticKeys(), issuer=ISSUER, audience=[])


async def test_audience_list_in_token_is_accepted_when_one_matches(ed_key: SigningKey) -> None:
    verifier = TokenVerifier(StaticKeys([ed_key]), issuer=ISSUER, audience=AUDIENCE)
    got = await verifier.verify(ed_key.sign(claims(aud=["other", AUDIENCE])))
    assert got.audience == ("other", AUDIENCE)
    assert uuid.UUID(got.token_id)
