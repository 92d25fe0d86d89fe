"""Signing keys: one first key however many processes start, encryption at rest, the JWKS and
discovery documents, and rotation under continuous logins and verifications with zero failures."""

from __future__ import annotations

import asyncio
import base64
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from onair.auth import TokenError, jwk_thumbprint
from onair.db import create_engine, migrate, session_factory
from onair_services.auth.app import create_app
from onair_services.auth.keyring import KeyRing, KeyringError, KeyStore

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

MIGRATIONS = "onair_services.auth:migrations"


async def _key_rows(database_url: str) -> list[Any]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text("SELECT * FROM signing_keys"))).all())
    finally:
        await engine.dispose()


async def test_first_start_creates_exactly_one_key(stack: Stack) -> None:
    """Four 'processes' (engines of their own) race for the first key, then two apps start at once."""
    engines = [create_engine(stack.database_url) for _ in range(4)]
    try:
        await migrate(engines[0], MIGRATIONS)
        stores = [KeyStore(session_factory(e)) for e in engines]
        made = await asyncio.gather(*(s.ensure_signing_key() for s in stores))
        assert sum(m is not None for m in made) == 1
    finally:
        for engine in engines:
            await engine.dispose()
    settings = fast_settings()
    apps = [
        create_app(stack.runtime(migrate_on_start=False), settings),
        create_app(stack.runtime(migrate_on_start=False), settings, configure_logs=False),
    ]
    async with AsyncExitStack() as s1, AsyncExitStack() as s2:
        urls = await asyncio.gather(
            s1.enter_async_context(serve(apps[0])), s2.enter_async_context(serve(apps[1]))
        )
        async with httpx.AsyncClient() as http:
            documents = [(await http.get(f"{u}/.well-known/jwks.json")).json() for u in urls]
    rows = await _key_rows(stack.database_url)
    assert len(rows) == 1
    assert documents[0] == documents[1] and [k["kid"] for k in documents[0]["keys"]] == [rows[0].kid]


async def test_jwks_and_discovery_documents(sqlite_auth_url: str, valkey_url: str) -> None:
    async with client(sqlite_auth_url) as api:
        jwks = await api.get("/.well-known/jwks.json")
        assert jwks.status_code == 200 and jwks.headers["cache-control"] == "no-cache"
        (key,) = jwks.json()["keys"]
        assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
        }
        assert key["kid"] == jwk_thumbprint(key) and len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
        assert not {"d", "p", "q", "k"} & key.keys()  # public members only

        conf = (await api.get("/.well-known/openid-configuration")).json()
        assert conf["issuer"] == "onair-auth" and conf["audience"] == "onair"
        assert conf["jwks_uri"] == f"{sqlite_auth_url}/.well-known/jwks.json"
        assert conf["token_endpoint"] == f"{sqlite_auth_url}/auth/login"
        assert conf["id_token_signing_alg_values_supported"] == ["EdDSA"]
        assert {"password", "refresh_token"} == set(conf["grant_types_supported"])
        assert (await api.get(conf["jwks_uri"])).json() == jwks.json()

        # a token verifies with nothing but the discovery document's keys
        name = new_username("disco")
        await signup(api, name)
        token = (await login_body(api, name))["access_token"]
        async with gateway_verifier(conf["jwks_uri"], valkey_url) as gw:
            claims = await gw.tokens.verify(token)
            assert claims.kid == key["kid"] and claims.issuer == conf["issuer"]


async def test_public_url_names_the_gateway_in_discovery(sqlite_stack: Stack) -> None:
    settings = fast_settings(public_url="https://onair.example/")
    async with serve(create_app(sqlite_stack.runtime(), settings)) as url, client(url) as api:
        conf = (await api.get("/.well-known/openid-configuration")).json()
    assert conf["jwks_uri"] == "https://onair.example/.well-known/jwks.json"


async def test_private_keys_are_encrypted_at_rest(sqlite_stack: Stack) -> None:
    secret = "a-long-random-secret-from-the-vault"
    settings = fast_settings(key_encryption_secret=SecretStr(secret))
    async with serve(create_app(sqlite_stack.runtime(), settings)) as url, client(url) as api:
        name = new_username("enc")
        await signup(api, name)
        await login_body(api, name)
    (row,) = await _key_rows(sqlite_stack.database_url)
    assert row.encrypted and row.private_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    engine = create_engine(sqlite_stack.database_url)
    try:
        for password, problem in ((None, "ONAIR_AUTH_KEY_ENCRYPTION_SECRET"), (b"wrong", "does not decrypt")):
            with pytest.raises(KeyringError, match=problem):
                await KeyRing(KeyStore(session_factory(engine), password)).refresh()
        ring = KeyRing(KeyStore(session_factory(engine), secret.encode()))
        await ring.refresh()
        assert ring.signer().kid == row.kid
    finally:
        await engine.dispose()


@dataclass
class Load:
    """Continuous logins on two auth apps, each token verified by two gateway-like verifiers."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    kids: list[tuple[float, str]] = field(default_factory=list)  # (time, kid) of each good token
    published: dict[tuple[int, str], float] = field(default_factory=dict)  # (app, kid) -> first seen


async def test_rotation_under_continuous_logins_and_verifications_has_no_failure(
    stack: Stack, valkey_url: str
) -> None:
    refetch_s = 1.0
    settings = fast_settings(
        jwks_min_refetch_interval_s=refetch_s,
        login_limit_per_account="100000/minute",
        login_limit_per_ip="100000/minute",
    )
    lead = settings.publish_lead_s
    assert lead >= refetch_s + settings.key_poll_interval_s
    load = Load()
    stop = asyncio.Event()
    async with AsyncExitStack() as stack_ctx:
        url_a = await stack_ctx.enter_async_context(serve(create_app(stack.runtime(), settings)))
        url_b = await stack_ctx.enter_async_context(
            serve(create_app(stack.runtime(), settings, configure_logs=False))
        )
        gateways = [
            await stack_ctx.enter_async_context(
                gateway_verifier(
                    f"{u}/.well-known/jwks.json", valkey_url, settings, min_refetch_interval_s=refetch_s
                )
            )
            for u in (url_a, url_b)
        ]
        apis = [await stack_ctx.enter_async_context(client(u)) for u in (url_a, url_b)]
        names = [new_username("rot") for _ in range(4)]
        for name in names:
            await signup(apis[0], name)

        async def worker(i: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                api = apis[(i + n) % 2]
                r = await api.post("/auth/login", json={"username": names[i], "password": PASSWORD})
                if r.status_code != 200:
                    load.failures.append(f"login {r.status_code}: {r.text}")
                    continue
                token = r.json()["access_token"]
                try:
                    claims = [await gw.tokens.verify(token) for gw in gateways]
                except TokenError as exc:
                    load.failures.append(f"verify: {exc.reason}")
                    continue
                load.ok += 1
                load.kids.append((time.monotonic(), claims[0].kid))

        async def watch_jwks() -> None:
            while not stop.is_set():
                for i, api in enumerate(apis):
                    for key in (await api.get("/.well-known/jwks.json")).json()["keys"]:
                        load.published.setdefault((i, key["kid"]), time.monotonic())
                await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(worker(i)) for i in range(len(names))] + [
            asyncio.create_task(watch_jwks())
        ]
        try:
            await asyncio.sleep(1.0)
            old_kid = load.kids[-1][1]
            engine = create_engine(stack.database_url)
            try:
                new, replaced, _ = await KeyStore(session_factory(engine)).rotate(
                    alg="EdDSA", lead_s=lead, retire_after_s=settings.retire_after_s
                )
            finally:
                await engine.dispose()
            rotated_at = time.monotonic()
            assert [r.kid for r in replaced] == [old_kid]
            deadline = rotated_at + lead + 20
            while time.monotonic() < deadline:  # until both apps have signed with the new key for 1 s
                recent = [
                    k for t, k in load.kids if t > rotated_at + lead + 2 * settings.key_poll_interval_s + 1
                ]
                if len(recent) >= 20:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        documents = [(await api.get("/.well-known/jwks.json")).json() for api in apis]
        fetches = [gw.keys.fetches for gw in gateways]

    assert load.failures == [], load.failures[:5]
    assert load.ok > 50
    before = [k for t, k in load.kids if t < rotated_at]
    after = [k for t, k in load.kids if t > rotated_at + lead + 2 * settings.key_poll_interval_s + 1]
    assert set(before) == {old_kid} and len(after) >= 20 and set(after) == {new.kid}
    # the new key was published by both apps well before the first token signed with it ...
    first_new = min(t for t, k in load.kids if k == new.kid)
    published = max(load.published[(i, new.kid)] for i in range(2))
    assert first_new - published >= refetch_s, (first_new - published, refetch_s)
    # ... the verifiers learned it by the refetch on an unknown kid, and the old key is still published
    assert all(f >= 2 for f in fetches)
    for document in documents:
        assert {k["kid"] for k in document["keys"]} == {old_kid, new.kid}
