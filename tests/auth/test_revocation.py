"""RevocationList on real Valkey: a revoke reaches another process's list; checks are local."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from prometheus_client import CollectorRegistry

from onair.auth import (
    RevocationList,
    RevocationUnavailable,
    SigningKey,
    StaticKeys,
    TokenError,
    TokenVerifier,
)
from onair.cache import TokenCache
from onair.clients import ValkeyClient
from onair.fanout.app import free_port

from .helpers import AUDIENCE, ISSUER, claims, wait_until

MakeList = Callable[..., Awaitable[RevocationList]]


@pytest.fixture
async def make_list(valkey_url: str) -> AsyncIterator[MakeList]:
    """Each list gets its own ValkeyClient + TokenCache, as a second process would have."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    async with AsyncExitStack() as exits:

        async def make(url: str = valkey_url, **kwargs: object) -> RevocationList:
            client = ValkeyClient(url, namespace=namespace, timeout_s=kwargs.pop("timeout_s", None))  # type: ignore[arg-type]
            tokens = await exits.enter_async_context(TokenCache(client, registry=CollectorRegistry()))
            exits.push_async_callback(client.close)
            return RevocationList(tokens, **kwargs)  # type: ignore[arg-type]

        yield make


async def _get_calls(client: ValkeyClient) -> int:
    stats = await client.raw.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_revoke_reaches_the_other_process_and_checks_stay_local(make_list: MakeList) -> None:
    gw1, gw2 = await make_list(), await make_list()
    jti = uuid.uuid4().hex
    assert await gw2.is_revoked(jti) is False  # first check reads Valkey once ...

    reader = gw2.tokens.reader
    calls, server_gets = reader.valkey_calls, await _get_calls(gw1.tokens.client)
    for _ in range(200):
        assert await gw2.is_revoked(jti) is False  # ... then "not revoked" comes from the near cache
    assert reader.valkey_calls == calls
    assert await _get_calls(gw1.tokens.client) == server_gets

    until = time.time() + 120
    assert await gw1.revoke(jti, until, reason="logout") is True
    await wait_until(lambda: gw2.tokens.blocked_key(jti) not in reader.near, timeout_s=5)
    assert await gw2.is_revoked(jti) is True
    assert await gw2.reason(jti) == "logout"

    calls = reader.valkey_calls
    for _ in range(200):
        assert await gw2.is_revoked(jti) is True  # "revoked" is local too
    assert reader.valkey_calls == calls

    ttl = await gw1.tokens.client.raw.ttl(gw1.tokens.blocked_key(jti))
    assert 120 + 60 - 5 <= ttl <= 120 + 60 + 1  # until the token expires, plus the margin


async def test_revoking_an_expired_token_stores_nothing(make_list: MakeList) -> None:
    rl = await make_list()
    jti = uuid.uuid4().hex
    assert await rl.revoke(jti, time.time() - 3600) is False
    assert await rl.tokens.client.raw.exists(rl.tokens.blocked_key(jti)) == 0
    with pytest.raises(ValueError):
        await rl.revoke("", time.time() + 60)


async def test_verifier_refuses_a_revoked_token_even_when_cached(make_list: MakeList) -> None:
    gw1, gw2 = await make_list(), await make_list()
    key = SigningKey.generate()
    verifier = TokenVerifier(StaticKeys([key]), issuer=ISSUER, audience=AUDIENCE, revocations=gw2)
    token_claims = claims()
    token = key.sign(token_claims)
    await verifier.verify(token)
    await verifier.verify(token)
    assert verifier.cache_hits == 1

    await gw1.revoke(token_claims["jti"], token_claims["exp"])
    await wait_until(lambda: gw2.tokens.blocked_key(token_claims["jti"]) not in gw2.tokens.reader.near, 5)
    with pytest.raises(TokenError) as err:
        await verifier.verify(token)
    assert err.value.reason == "revoked"


async def test_valkey_down_fails_closed_by_default_and_open_on_request(make_list: MakeList) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    closed = await make_list(dead, timeout_s=0.3)
    opened = await make_list(dead, timeout_s=0.3, fail_open=True)
    with pytest.raises(RevocationUnavailable):
        await closed.is_revoked("j1")
    assert isinstance(RevocationUnavailable("x"), ConnectionError)  # the skeleton answers 503
    assert await opened.is_revoked("j1") is False
    assert opened.fail_open_answers == 1
    for rl in (closed, opened):  # a revoke is never reported done unless stored
        with pytest.raises(RevocationUnavailable):
            await rl.revoke("j1", time.time() + 60)
