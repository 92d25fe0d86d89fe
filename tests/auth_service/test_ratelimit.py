"""Login rate limits per account and per IP, shared by two auth apps through Valkey; client IPs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from ipaddress import ip_network

import httpx
import pytest

from onair_services.auth.app import create_app
from onair_services.auth.clientip import bucket, client_ip

from .conftest import Stack
from .helpers import PASSWORD, client, fast_settings, new_ip, new_username, serve, signup


@pytest.fixture
async def two_apps(sqlite_stack: Stack) -> AsyncIterator[tuple[str, str]]:
    """Two auth apps on one database and one Valkey; accounts allow 6 units a minute, IPs 8,
    a failure costs 3."""
    settings = fast_settings(
        login_limit_per_account="6/minute", login_limit_per_ip="8/minute", login_failure_cost=3
    )
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(serve(create_app(sqlite_stack.runtime(), settings)))
        b = await stack.enter_async_context(
            serve(create_app(sqlite_stack.runtime(), settings, configure_logs=False))
        )
        yield a, b


async def _login(url: str, username: str, password: str, ip: str) -> httpx.Response:
    async with client(url, ip) as api:
        return await api.post("/auth/login", json={"username": username, "password": password})


async def test_account_limit_is_shared_and_failures_count_more(two_apps: tuple[str, str]) -> None:
    a, b = two_apps
    failing, steady = new_username("acct"), new_username("acct")
    async with client(a) as api:
        await signup(api, failing)
        await signup(api, steady)
    # two failures (3 units each, one per app, from different addresses) fill the account's window
    assert (await _login(a, failing, "Wrong-password-1", new_ip())).status_code == 401
    assert (await _login(b, failing, "Wrong-password-1", new_ip())).status_code == 401
    limited = await _login(a, failing, PASSWORD, new_ip())  # even the right password now
    assert limited.status_code == 429, limited.text
    body = limited.json()
    assert body["error"] == "rate_limited" and body["scope"] == "account"
    assert 1 <= int(limited.headers["retry-after"]) <= 60 and body["retry_after_s"] == int(
        limited.headers["retry-after"]
    )
    # six successful logins (1 unit each) fit in the same window size; the seventh does not
    statuses = [(await _login((a, b)[i % 2], steady, PASSWORD, new_ip())).status_code for i in range(7)]
    assert statuses == [200] * 6 + [429]


async def test_ip_limit_is_shared_by_both_apps_and_other_ips_pass(two_apps: tuple[str, str]) -> None:
    a, b = two_apps
    ip = new_ip()
    names = [new_username("ip") for _ in range(9)]
    async with client(a) as api:
        for name in names:
            await signup(api, name)
    statuses = [(await _login((a, b)[i % 2], names[i], PASSWORD, ip)).status_code for i in range(9)]
    assert statuses == [200] * 8 + [429]
    refused = await _login(b, names[0], PASSWORD, ip)
    assert refused.status_code == 429 and refused.json()["scope"] == "ip"
    assert (await _login(a, names[8], PASSWORD, new_ip())).status_code == 200  # the account was not charged


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(sqlite_stack: Stack) -> None:
    settings = fast_settings(login_limit_per_ip="2/minute", trusted_proxies=[ip_network("10.0.0.0/8")])
    names = [new_username("peer") for _ in range(3)]
    async with serve(create_app(sqlite_stack.runtime(), settings)) as url:
        async with client(url) as api:
            for name in names:
                await signup(api, name)
        # the test's loopback peer is not a trusted proxy: every request counts for 127.0.0.1
        statuses = [(await _login(url, name, PASSWORD, new_ip())).status_code for name in names]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),  # the gateway on loopback
        ("127.0.0.1", ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),  # the client's own prefix is ignored
        ("127.0.0.1", ["6.6.6.6", "203.0.113.7, 10.1.2.3"], "10.1.2.3"),  # 10/8 not trusted here
        ("198.51.100.4", ["203.0.113.7"], "198.51.100.4"),  # not from a proxy: the header is ignored
        ("127.0.0.1", ["garbage, 203.0.113.7"], "203.0.113.7"),
        ("127.0.0.1", ["203.0.113.7, garbage"], "127.0.0.1"),  # a broken hop ends the walk
        ("127.0.0.1", ["127.0.0.2"], "127.0.0.2"),  # everything trusted: the outermost address
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("::ffff:203.0.113.9", [], "203.0.113.9"),
        (None, ["203.0.113.7"], "unknown"),
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    trusted = [ip_network("127.0.0.0/8"), ip_network("::1/128")]
    assert client_ip(peer, forwarded, trusted) == expected


def test_ipv6_clients_share_their_64() -> None:
    assert bucket("2001:db8:1:2:aaaa::1") == bucket("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert bucket("203.0.113.7") == "203.0.113.7"
