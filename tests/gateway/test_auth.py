"""Authentication through the gateway: every forgery refused with 401, identities signed for the
upstream, roles, and services that refuse callers who bypass the gateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from onair.auth import SigningKey

from .conftest import Stack
from .helpers import bearer, claims, compact, hs256_with, signer_of

pytestmark = pytest.mark.asyncio(loop_scope="module")

OTHER_KEY = SigningKey.generate("EdDSA")


def _forged_signature(s: Stack) -> str:
    # the auth key's kid, signed by another key
    return compact({"alg": "EdDSA", "kid": s.auth.key.kid, "typ": "JWT"}, claims(), signer_of(OTHER_KEY))


def _tampered(s: Stack) -> str:
    head, _, sig = s.auth.mint().split(".")
    body = compact({}, claims(roles=["admin"]), lambda _: b"").split(".")[1]
    return f"{head}.{body}.{sig}"


def _signed(**overrides: Any) -> Callable[[Stack], str]:
    return lambda s: s.auth.mint(**overrides)


def _with_header(header: dict[str, Any], sign: str = "auth") -> Callable[[Stack], str]:
    def make(s: Stack) -> str:
        full = {"typ": "JWT", "kid": s.auth.key.kid, **header}
        signer = signer_of(s.auth.key) if sign == "auth" else (lambda _: b"")
        return compact({k: v for k, v in full.items() if v is not None}, claims(), signer)

    return make


def _hs256_public_key(s: Stack) -> str:
    # the classic confusion: HMAC keyed with the (public) key material the JWKS publishes
    secret = s.auth.key.public_jwk["x"].encode()
    return compact({"alg": "HS256", "kid": s.auth.key.kid, "typ": "JWT"}, claims(), hs256_with(secret))


def _unknown_kid(_: Stack) -> str:
    return OTHER_KEY.sign(claims())


async def _revoked(s: Stack) -> str:
    token = s.auth.mint()
    jti = token_claims(token)["jti"]
    assert s.auth.revocations is not None
    await s.auth.revocations.revoke(jti, time.time() + 300, reason="test")
    return token


def token_claims(token: str) -> dict[str, Any]:
    import base64
    import json

    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


NOW = int(time.time())
REJECTIONS: list[tuple[str, Callable[[Stack], Any], str]] = [
    ("forged signature", _forged_signature, "bad_signature"),
    ("tampered payload", _tampered, "bad_signature"),
    ("expired", _signed(iat=NOW - 1000, exp=NOW - 100), "expired"),
    ("not yet valid (iat)", _signed(iat=NOW + 600, exp=NOW + 800), "not_yet_valid"),
    ("not yet valid (nbf)", _signed(nbf=NOW + 600), "not_yet_valid"),
    ("wrong iss", _signed(iss="evil-auth"), "wrong_issuer"),
    ("wrong aud", _signed(aud="someone-else"), "wrong_audience"),
    ("alg none", _with_header({"alg": "none"}, sign="none"), "alg_none"),
    ("HS256 signed with the public key", _hs256_public_key, "alg_not_allowed"),
    ("unknown kid", _unknown_kid, "kid_unknown"),
    ("kid path injection", _with_header({"alg": "EdDSA", "kid": "../../../../etc/passwd"}), "kid_invalid"),
    (
        "jku header",
        _with_header({"alg": "EdDSA", "jku": "https://evil.example/jwks.json"}),
        "forbidden_header",
    ),
    ("lifetime over 15 min", _signed(iat=NOW, exp=NOW + 3600), "lifetime_too_long"),
    ("blocked jti", _revoked, "revoked"),
    ("not a JWT", lambda _: "not-a-token", "malformed"),
]


@pytest.mark.parametrize(("case", "make", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
async def test_every_bad_token_is_401_json_with_challenge(
    stack: Stack, case: str, make: Callable[[Stack], Any], reason: str
) -> None:
    token = make(stack)
    if not isinstance(token, str):
        token = await token
    before = stack.echo.requests
    for path in ("/live/echo", "/wallet/echo"):  # an optional route and a required one
        r = await stack.http.get(path, headers=bearer(token))
        assert r.status_code == 401, (case, r.text)
        body = r.json()
        assert body["error"] == "unauthorized" and body["reason"] == reason, body
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="onair"') and 'error="invalid_token"' in challenge
        assert r.headers["content-type"] == "application/json"
        assert token not in r.text
    assert stack.echo.requests == before  # never reached the upstream


@pytest.mark.parametrize(
    ("header", "reason"),
    [("Basic dXNlcjpwYXNz", "bad_scheme"), ("Bearer", "malformed"), ("Bearer a b", "malformed")],
)
async def test_malformed_authorization_header_is_401(stack: Stack, header: str, reason: str) -> None:
    r = await stack.http.get("/live/echo", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["reason"] == reason
    assert 'error="invalid_request"' in r.headers["www-authenticate"]


async def test_a_flood_of_unknown_kids_costs_auth_one_jwks_request(stack: Stack) -> None:
    before = stack.auth.jwks_requests
    for _ in range(30):
        key = SigningKey.generate("EdDSA")
        r = await stack.http.get("/live/echo", headers=bearer(key.sign(claims())))
        assert r.status_code == 401 and r.json()["reason"] == "kid_unknown"
    assert stack.auth.jwks_requests - before <= 2


async def test_valid_token_reaches_the_upstream_as_a_signed_identity(stack: Stack) -> None:
    sub = f"u-{uuid.uuid4().hex[:8]}"
    token = stack.auth.mint(sub=sub, name="bob", roles=["viewer", "streamer"])
    rid = f"rid-{uuid.uuid4().hex}"
    r = await stack.http.get("/live/me", headers={**bearer(token), "X-Request-ID": rid})
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": sub, "username": "bob", "roles": ["streamer", "viewer"], "request_id": rid}
    assert r.headers["x-request-id"] == rid

    echoed = (await stack.http.get("/live/echo", headers=bearer(token))).json()
    assert "authorization" not in echoed["headers"]  # never the user's token
    assert echoed["headers"]["x-onair-identity"] != token
    assert echoed["identity"]["user_id"] == sub


async def test_a_client_cannot_send_its_own_identity(stack: Stack) -> None:
    forged = OTHER_KEY.sign(
        {
            "iss": "onair-gateway",
            "aud": "onair-services",
            "sub": "admin",
            "name": "admin",
            "roles": ["admin"],
            "iat": int(time.time()),
            "exp": int(time.time()) + 30,
            "jti": uuid.uuid4().hex,
        }
    )
    r = await stack.http.get("/live/echo", headers={"X-Onair-Identity": forged})
    assert r.status_code == 200, r.text
    assert r.json()["identity"] is None and "x-onair-identity" not in r.json()["headers"]


async def test_only_auth_sees_the_authorization_header(stack: Stack) -> None:
    token = stack.auth.mint()
    r = await stack.http.get("/auth/echo", headers=bearer(token))
    assert r.json() == {"authorization": True, "identity": True}


async def test_required_route_without_token_is_401(stack: Stack) -> None:
    r = await stack.http.get("/wallet/echo")
    assert r.status_code == 401
    assert r.json()["reason"] == "missing"
    assert r.headers["www-authenticate"] == 'Bearer realm="onair"'
    assert (await stack.http.get("/wallet/echo", headers=bearer(stack.auth.mint()))).status_code == 200


async def test_optional_route_is_anonymous_without_token(stack: Stack) -> None:
    r = await stack.http.get("/live/echo")
    assert r.status_code == 200 and r.json()["identity"] is None


async def test_public_route_ignores_tokens(stack: Stack) -> None:
    r = await stack.http.get("/.well-known/jwks.json", headers=bearer("garbage"))
    assert r.status_code == 200 and r.json()["keys"][0]["kid"] == stack.auth.key.kid


async def test_roles_per_method(stack: Stack) -> None:
    viewer = bearer(stack.auth.mint(roles=["viewer"]))
    streamer = bearer(stack.auth.mint(roles=["streamer"]))
    assert (await stack.http.get("/channels", headers=viewer)).status_code == 200
    r = await stack.http.post("/channels", headers=viewer, json={})
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden" and r.json()["required_roles"] == ["streamer", "admin"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert (await stack.http.post("/channels", headers=streamer, json={})).status_code == 200


async def test_a_direct_call_without_the_gateways_identity_is_401(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.upstream) as direct:
        r = await direct.get("/live/me")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        # a user's access token is not an identity either
        r = await direct.get("/live/me", headers={"X-Onair-Identity": stack.auth.mint()})
        assert r.status_code == 401 and r.json()["reason"] in ("wrong_issuer", "kid_unknown")
