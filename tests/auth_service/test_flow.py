"""Sign-up, login, me, refresh, logout on real servers (SQLite and PostgreSQL); refresh-token reuse."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie

import httpx
import pytest
import sqlalchemy as sa

from onair.auth import IdentitySigner, TokenError
from onair.db import create_engine
from onair.testing import IdentityIssuer, ServerControl
from onair_services.auth.app import create_app

from .conftest import Stack
from .helpers import (
    PASSWORD,
    client,
    fast_settings,
    gateway_verifier,
    login_body,
    new_username,
    serve,
    signup,
)


def _refresh_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookie.load(header)
    return cookie


async def test_signup_login_me_refresh_logout(
    auth_url: str, valkey_url: str, identity_issuer: IdentityIssuer
) -> None:
    name = new_username("alice")
    async with (
        client(auth_url) as api,
        gateway_verifier(f"{auth_url}/.well-known/jwks.json", valkey_url) as gw,
    ):
        created = await api.post(
            "/auth/signup", json={"username": name, "password": PASSWORD, "role": "streamer"}
        )
        assert created.status_code == 201, created.text
        user = created.json()
        assert user["username"] == name and user["roles"] == ["streamer", "viewer"]
        assert len(user["id"]) == 16 and name not in user["id"]
        assert created.headers["x-onair-position"].startswith("auth.user.created:")

        # a browser: the refresh token in a cookie only
        login = await api.post("/auth/login", json={"username": name.upper(), "password": PASSWORD})
        assert login.status_code == 200, login.text
        body = login.json()
        assert "refresh_token" not in body and body["token_type"] == "Bearer" and body["expires_in"] == 900
        assert login.headers["cache-control"] == "no-store"
        cookie = _refresh_cookie(login)["onair_refresh"]
        assert cookie["httponly"] and cookie["secure"] and cookie["samesite"].lower() == "strict"
        assert cookie["path"] == "/auth" and int(cookie["max-age"]) > 13 * 24 * 3600

        # the access token verifies from the JWKS URL, with the contract's claims
        claims = await gw.tokens.verify(body["access_token"])
        assert claims.subject == user["id"] and claims.alg == "EdDSA"
        assert claims["name"] == name and claims["roles"] == ["streamer", "viewer"]
        assert claims.expires_at - claims.issued_at == 900 and claims["sid"] == body["session_id"]

        # /auth/me through the gateway's identity (the identity carries the session id)
        signer: IdentitySigner = identity_issuer.signer
        me = await api.get("/auth/me", headers=await gw.identity_headers(body["access_token"], signer))
        assert me.status_code == 200, me.text
        assert me.json() | {"created_at": None} == {
            "id": user["id"],
            "username": name,
            "roles": ["streamer", "viewer"],
            "created_at": None,
            "session_id": body["session_id"],
        }
        no_identity = await api.get("/auth/me")
        assert no_identity.status_code == 401 and no_identity.json()["error"] == "unauthorized"

        # refresh with the cookie: a new cookie and a new access token in the same session
        refreshed = await api.post("/auth/refresh", headers={"Cookie": f"onair_refresh={cookie.value}"})
        assert refreshed.status_code == 200, refreshed.text
        second = refreshed.json()
        new_cookie = _refresh_cookie(refreshed)["onair_refresh"]
        assert new_cookie.value != cookie.value and "refresh_token" not in second
        assert second["session_id"] == body["session_id"] and second["access_token"] != body["access_token"]
        assert (await gw.tokens.verify(second["access_token"])).subject == user["id"]

        # logout with the cookie: 204, the cookie cleared, the session and its access tokens revoked
        out = await api.post("/auth/logout", headers={"Cookie": f"onair_refresh={new_cookie.value}"})
        assert out.status_code == 204
        cleared = _refresh_cookie(out)["onair_refresh"]
        assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/auth"
        again = await api.post("/auth/refresh", headers={"Cookie": f"onair_refresh={new_cookie.value}"})
        assert again.status_code == 401 and again.json()["reason"] == "revoked"
        for token in (body["access_token"], second["access_token"]):
            with pytest.raises(TokenError) as err:
                await gw.tokens.verify(token)
            assert err.value.reason == "revoked"


async def test_logout_with_only_the_access_token_ends_its_session(
    auth_url: str, valkey_url: str, identity_issuer: IdentityIssuer
) -> None:
    name = new_username("bob")
    async with (
        client(auth_url) as api,
        gateway_verifier(f"{auth_url}/.well-known/jwks.json", valkey_url) as gw,
    ):
        await signup(api, name)
        first = await login_body(api, name)
        other = await login_body(api, name)  # a second session of the same user stays alive
        headers = await gw.identity_headers(first["access_token"], identity_issuer.signer)
        out = await api.post("/auth/logout", headers=headers)
        assert out.status_code == 204
        with pytest.raises(TokenError) as err:
            await gw.tokens.verify(first["access_token"])
        assert err.value.reason == "revoked"
        refused = await api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert refused.status_code == 401 and refused.json()["reason"] == "revoked"
        assert (await gw.tokens.verify(other["access_token"])).subject == first["user"]["id"]
        assert (
            await api.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
        ).status_code == 200


async def test_refresh_is_single_use_and_reuse_revokes_the_family(auth_url: str, valkey_url: str) -> None:
    name = new_username("carol")
    async with (
        client(auth_url) as api,
        gateway_verifier(f"{auth_url}/.well-known/jwks.json", valkey_url) as gw,
    ):
        await signup(api, name)
        first = await login_body(api, name)
        r1 = first["refresh_token"]
        step = await api.post("/auth/refresh", json={"refresh_token": r1})
        assert step.status_code == 200, step.text
        second = step.json()
        assert second["refresh_token"] != r1 and "set-cookie" not in step.headers  # body in, body out
        assert (await gw.tokens.verify(second["access_token"])).subject == first["user"]["id"]

        reuse = await api.post("/auth/refresh", json={"refresh_token": r1})
        assert reuse.status_code == 401
        assert reuse.json()["error"] == "invalid_refresh_token" and reuse.json()["reason"] == "reused"
        assert reuse.headers["www-authenticate"].startswith("Bearer")
        # the whole family is gone: the newest refresh token and every access token it issued
        newest = await api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert newest.status_code == 401 and newest.json()["reason"] == "revoked"
        for token in (first["access_token"], second["access_token"]):
            with pytest.raises(TokenError) as err:
                await gw.tokens.verify(token)
            assert err.value.reason == "revoked"


async def test_a_refresh_token_raced_twice_is_used_once(auth_url: str) -> None:
    """Two uses of one token at the same moment: one wins, the other is a reuse (family revoked)."""
    name = new_username("dave")
    async with client(auth_url) as api:
        await signup(api, name)
        token = (await login_body(api, name))["refresh_token"]
        answers = await asyncio.gather(
            *(api.post("/auth/refresh", json={"refresh_token": token}) for _ in range(2))
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 401], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200).json()
        loser = next(a for a in answers if a.status_code == 401).json()
        assert loser["reason"] == "reused"
        after = await api.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})
        assert after.status_code == 401 and after.json()["reason"] == "revoked"


async def test_refresh_without_or_with_a_bad_token(sqlite_auth_url: str) -> None:
    async with client(sqlite_auth_url) as api:
        missing = await api.post("/auth/refresh")
        assert missing.status_code == 401 and missing.json()["error"] == "missing_refresh_token"
        bad = await api.post("/auth/refresh", headers={"Cookie": "onair_refresh=not-a-token"})
        assert bad.status_code == 401 and bad.json()["reason"] == "invalid"
        assert _refresh_cookie(bad)["onair_refresh"]["max-age"] == "0"  # a dead cookie is cleared
        not_json = await api.post(
            "/auth/refresh", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422 and not_json.json()["error"] == "invalid_request"


async def test_ended_sessions_are_pruned_with_their_tokens(stack: Stack) -> None:
    app = create_app(stack.runtime(), fast_settings())
    name = new_username("old")
    async with serve(app) as url, client(url) as api:
        await signup(api, name)
        ended, live = await login_body(api, name), await login_body(api, name)
        await api.post("/auth/refresh", json={"refresh_token": ended["refresh_token"]})
        engine = create_engine(stack.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE refresh_families SET expires_at = :t WHERE id = :id"),
                    {"t": datetime.now(UTC) - timedelta(days=2), "id": ended["session_id"]},
                )
            state = app.state.service.state["auth"]  # type: ignore[attr-defined]
            assert await state.sessions.prune() == 1
            async with engine.connect() as conn:
                families = (await conn.execute(sa.text("SELECT id FROM refresh_families"))).scalars().all()
                tokens = (await conn.execute(sa.text("SELECT family_id FROM refresh_tokens"))).scalars().all()
        finally:
            await engine.dispose()
        assert families == [live["session_id"]] and set(tokens) == {live["session_id"]}
        assert (
            await api.post("/auth/refresh", json={"refresh_token": live["refresh_token"]})
        ).status_code == 200


async def test_reuse_while_valkey_is_down_is_503_and_the_revocation_lands_later(
    sqlite_stack: Stack, valkey_url: str, servers: ServerControl
) -> None:
    """The session is revoked in the database at once; its access tokens reach the revocation list
    when Valkey is back (the sweep), never silently dropped."""
    async with serve(create_app(sqlite_stack.runtime(), fast_settings())) as url, client(url) as api:
        name = new_username("outage")
        await signup(api, name)
        first = await login_body(api, name)
        second = (await api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
        servers.stop("valkey")
        try:
            reuse = await api.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
            assert reuse.status_code == 503, reuse.text
            assert reuse.json()["error"] == "unavailable" and "retry-after" in reuse.headers
            newest = await api.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
            assert newest.status_code == 401 and newest.json()["reason"] == "revoked"
        finally:
            servers.start("valkey")
        async with gateway_verifier(f"{url}/.well-known/jwks.json", valkey_url) as gw:
            deadline = asyncio.get_running_loop().time() + 15
            while True:
                try:
                    await gw.tokens.verify(second["access_token"])
                except TokenError as exc:
                    assert exc.reason == "revoked"
                    break
                except ConnectionError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "the sweep never revoked the token"
                await asyncio.sleep(0.2)
            with pytest.raises(TokenError, match="revoked"):
                await gw.tokens.verify(first["access_token"])
