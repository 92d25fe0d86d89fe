"""Login rate limits per account and per client IP, shared by every auth process through Valkey.

Built on the ``limits`` library's moving window (one Valkey list per key, updated by one Lua
script, so the check-and-take is atomic however many auth processes there are):

1. **Before** the password is checked, an attempt takes 1 unit from the IP's window, then 1 from
   the account's; either being full answers 429 with ``Retry-After`` (the seconds until the
   oldest unit leaves the window) and nothing else happens — no database read, no argon2 work.
   The IP is checked first, so requests refused for their IP never use up a victim's account
   budget.
2. **After** a failed check, ``failure_cost - 1`` more units are taken from both windows (as many as
   are left), so a failure costs ``failure_cost`` units and a success 1: with the defaults an
   account allows 50 logins but only 10 failures per 15 minutes, an IP 300 logins or 60 failures
   per 5 minutes.

The account key is the username as typed (lower-cased), whether or not the user exists, so the
limiter says nothing about which accounts exist. Keys: ``<namespace>:ratelimit:LIMITER/login-ip/
<ip or IPv6 /64>/...`` and ``.../login-account/<username>/...``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from onair.clients import ValkeyClient

Scope = Literal["ip", "account"]

REJECTED = Counter("onair_auth_login_rate_limited_total", "Login attempts refused by a rate limit", ["scope"])


class RateLimited(Exception):
    """A login window is full: ``scope`` (``ip`` / ``account``) and ``retry_after_s``."""

    def __init__(self, scope: Scope, retry_after_s: int) -> None:
        super().__init__(f"too many login attempts for this {scope}; retry in {retry_after_s} s")
        self.scope = scope
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class _Window:
    scope: Scope
    item: RateLimitItem
    name: str


class LoginLimiter:
    """``await admit(account, ip)`` before checking a password, ``await failed(account, ip)`` after a
    wrong one (see the module docstring)."""

    def __init__(
        self,
        valkey: ValkeyClient,
        *,
        per_account: RateLimitItem,
        per_ip: RateLimitItem,
        failure_cost: int,
    ) -> None:
        # The service's own Valkey pool (its timeouts, one set of connections); keys in its namespace.
        storage = RedisStorage(
            "async+valkey://",
            implementation="valkey",
            connection_pool=valkey.raw.connection_pool,  # type: ignore[arg-type]
            key_prefix=valkey.key("ratelimit"),
        )
        self.limiter = MovingWindowRateLimiter(storage)
        self.ip = _Window("ip", per_ip, "login-ip")
        self.account = _Window("account", per_account, "login-account")
        self.failure_cost = failure_cost

    async def _retry_after(self, window: _Window, key: str) -> int:
        stats = await self.limiter.get_window_stats(window.item, window.name, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def admit(self, account: str, ip: str) -> None:
        """Take one unit from the IP's window, then the account's; :class:`RateLimited` if full."""
        for window, key in ((self.ip, ip), (self.account, account)):
            if not await self.limiter.hit(window.item, window.name, key):
                REJECTED.labels(window.scope).inc()
                raise RateLimited(window.scope, await self._retry_after(window, key))

    async def failed(self, account: str, ip: str) -> None:
        """Charge a failed attempt's extra cost to both windows (as much as fits)."""
        extra = self.failure_cost - 1
        if extra <= 0:
            return
        for window, key in ((self.ip, ip), (self.account, account)):
            stats = await self.limiter.get_window_stats(window.item, window.name, key)
            cost = min(extra, stats.remaining)
            if cost > 0:
                await self.limiter.hit(window.item, window.name, key, cost=cost)

    async def clear(self, account: str | None = None, ip: str | None = None) -> None:
        """Forget the windows of an account and/or an IP (operators, tests)."""
        if ip is not None:
            await self.limiter.clear(self.ip.item, self.ip.name, ip)
        if account is not None:
            await self.limiter.clear(self.account.item, self.account.name, account)
