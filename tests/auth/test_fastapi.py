"""The FastAPI dependencies on a real server: 401 + WWW-Authenticate, 403, optional identity, OpenAPI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from onair.auth import Identity, IdentitySigner, IdentityVerifier, JWKSCache, SigningKey, StaticKeys
from onair.auth.fastapi import (
    AUTH_MARK,
    CurrentIdentity,
    MaybeIdentity,
    identity,
    optional_identity,
    require_role,
)
from onair.fanout.app import free_port, running_server
from onair.service.errors import install_error_handlers

from .helpers import claims

GATEWAY = SigningKey.generate()
admin_only = require_role("admin")
staff = require_role("admin", "moderator")


def make_app(verifier: IdentityVerifier) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.identity_verifier = verifier

    @app.get("/me")
    async def me(caller: CurrentIdentity) -> dict[str, Any]:
        return {"user": caller.user_id, "name": caller.username, "rid": caller.request_id}

    @app.get("/maybe")
    async def maybe(caller: MaybeIdentity) -> dict[str, Any]:
        return {"user": caller.user_id if caller else None}

    @app.get("/admin")
    async def admin(caller: Identity = Depends(admin_only)) -> dict[str, Any]:
        return {"user": caller.user_id}

    @app.get("/staff", dependencies=[Depends(staff)])
    async def staff_route() -> dict[str, Any]:
        return {"ok": True}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(IdentityVerifier(StaticKeys([GATEWAY])))
    async with running_server(app) as base, httpx.AsyncClient(base_url=base) as c:
        yield c


def _identity(*roles: str, key: SigningKey = GATEWAY) -> dict[str, str]:
    token = IdentitySigner(key).sign(Identity("u-1", "alice", frozenset(roles), "req-7"))
    return {"X-Onair-Identity": token}


async def test_missing_identity_is_401_with_json_and_challenge(client: httpx.AsyncClient) -> None:
    r = await client.get("/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["error"] == "unauthorized" and body["reason"] == "missing"
    assert "X-Onair-Identity" in body["detail"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Onair-Identity": "garbage"}, "malformed"),
        (_identity("viewer", key=SigningKey.generate()), "kid_unknown"),
        (
            {
                "X-Onair-Identity": GATEWAY.sign(
                    claims(
                        iss="onair-gateway",
                        aud="onair-services",
                        iat=int(time.time()) - 90,
                        exp=int(time.time()) - 30,
                    )
                )
            },
            "expired",
        ),
        ({"X-Onair-Identity": GATEWAY.sign(claims())}, "wrong_issuer"),  # a raw user token
    ],
)
async def test_invalid_identity_is_401_naming_the_reason(
    client: httpx.AsyncClient, headers: dict[str, str], reason: str
) -> None:
    for path in ("/me", "/maybe", "/admin"):
        r = await client.get(path, headers=headers)
        assert r.status_code == 401, path
        assert r.json()["reason"] == reason
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == 'Bearer realm="onair", error="invalid_token"'
        assert headers["X-Onair-Identity"] not in r.text


async def test_valid_identity_reaches_the_handler(client: httpx.AsyncClient) -> None:
    r = await client.get("/me", headers=_identity("viewer"))
    assert r.status_code == 200
    assert r.json() == {"user": "u-1", "name": "alice", "rid": "req-7"}


async def test_missing_role_is_403_with_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin", headers=_identity("viewer", "streamer"))
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden" and r.json()["required_roles"] == ["admin"]
    assert (await client.get("/admin", headers=_identity("admin"))).json() == {"user": "u-1"}
    assert (await client.get("/staff", headers=_identity("moderator"))).status_code == 200
    assert (await client.get("/staff", headers=_identity("viewer"))).status_code == 403
    assert (await client.get("/staff")).status_code == 401


async def test_optional_identity(client: httpx.AsyncClient) -> None:
    assert (await client.get("/maybe")).json() == {"user": None}
    assert (await client.get("/maybe", headers=_identity())).json() == {"user": "u-1"}


async def test_unreachable_gateway_jwks_is_503_not_401() -> None:
    async with JWKSCache(f"http://127.0.0.1:{free_port()}/jwks.json") as keys:
        app = make_app(IdentityVerifier(keys))
        async with running_server(app) as base, httpx.AsyncClient(base_url=base) as c:
            r = await c.get("/me", headers=_identity("viewer"))
    assert r.status_code == 503
    assert r.json()["error"] == "unavailable" and "retry-after" in r.headers


def test_dependencies_are_marked_and_documented() -> None:
    assert getattr(identity, AUTH_MARK) == "required"
    assert getattr(optional_identity, AUTH_MARK) == "optional"
    assert getattr(admin_only, AUTH_MARK) == "role"
    assert admin_only.__onair_roles__ == frozenset({"admin"})  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        require_role()
    schema = make_app(IdentityVerifier(StaticKeys([GATEWAY]))).openapi()
    scheme = schema["components"]["securitySchemes"]["OnairIdentity"]
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Onair-Identity",
        "description": scheme["description"],
    }
    for path in ("/me", "/maybe", "/admin", "/staff"):
        assert schema["paths"][path]["get"]["security"] == [{"OnairIdentity": []}], path
