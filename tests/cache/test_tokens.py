"""TokenCache: blocking reaches every replica at once; steady-state checks cost Valkey nothing."""

from prometheus_client import CollectorRegistry

from onair.cache import SEVEN_DAYS_S, TokenCache

from .helpers import Stack, wait_until


async def _gateway(stack: Stack) -> TokenCache:
    cache = TokenCache(await stack.client(), registry=CollectorRegistry())
    return await stack.exits.enter_async_context(cache)


async def test_block_reaches_other_replica_and_checks_are_local(stack: Stack) -> None:
    gw1 = await _gateway(stack)
    gw2 = await _gateway(stack)
    assert await gw2.is_blocked("t1") is False  # no entry means not blocked
    calls = gw2.reader.valkey_calls
    for _ in range(100):
        assert await gw2.is_blocked("t1") is False
    assert gw2.reader.valkey_calls == calls  # absence is cached too, under tracking

    await gw1.block("t1", reason="stolen")
    await wait_until(lambda: gw2.blocked_key("t1") not in gw2.reader.near)
    assert await gw2.is_blocked("t1") is True
    assert await gw2.block_reason("t1") == "stolen"
    ttl = await gw1.client.raw.ttl(gw1.blocked_key("t1"))
    assert SEVEN_DAYS_S - 60 < ttl <= SEVEN_DAYS_S

    await gw1.unblock("t1")
    await wait_until(lambda: gw2.blocked_key("t1") not in gw2.reader.near)
    assert await gw2.is_blocked("t1") is False


async def test_token_data_round_trip_and_forget(stack: Stack) -> None:
    tokens = await _gateway(stack)
    other = await _gateway(stack)
    assert await other.get("abc") is None
    await tokens.put("abc", {"user": "u1", "scopes": ["watch"]})
    await wait_until(lambda: other.token_key("abc") not in other.reader.near)
    assert await other.get("abc") == {"user": "u1", "scopes": ["watch"]}
    assert 0 < await tokens.client.raw.ttl(tokens.token_key("abc")) <= SEVEN_DAYS_S
    await tokens.forget("abc")
    await wait_until(lambda: other.token_key("abc") not in other.reader.near)
    assert await other.get("abc") is None
