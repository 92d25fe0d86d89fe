"""Posting limits in Valkey, checked and taken in one atomic script: per user, per room, slow mode.

Per user and per room a GCRA (generic cell rate algorithm) limiter: ``limit`` messages at once,
refilled evenly over ``window_s`` (one key each, holding the theoretical arrival time; no counter
windows whose edges let twice the rate through). Slow mode is one key per (room, user) that lives
``slow_mode_s``. The script checks every limiter first and takes from them only if all allow, so a
message refused by one limiter costs nothing from the others; it answers how long to wait
(``Retry-After``) otherwise. Time is the server's (``TIME``), the same for every chat process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onair.clients import ValkeyClient

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local wait, which = 0, ''
local new = {}
for i = 1, n do
  local kind = ARGV[3 * i - 2]
  local a = tonumber(ARGV[3 * i - 1])
  local b = tonumber(ARGV[3 * i])
  if kind == 'gcra' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local nt = tat + a
    if nt - now > b then
      local w = nt - now - b
      if w > wait then wait, which = w, KEYS[i] end
    end
    new[i] = nt
  else
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl > 0 then
      if ttl > wait then wait, which = ttl, KEYS[i] end
    end
    new[i] = now + a
  end
end
if wait > 0 then return {0, wait, which} end
for i = 1, n do
  redis.call('SET', KEYS[i], new[i], 'PX', math.max(1, new[i] - now))
end
return {1, 0, ''}
"""


@dataclass(frozen=True)
class Limit:
    """``limit`` messages per ``window_s`` (a burst of ``limit``, then evenly spaced)."""

    limit: int
    window_s: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    limiter: str = ""  # "user", "room" or "slow" when refused

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class PostLimiter:
    """``await limiter.take(channel, user_id, slow_s=..., room=True)`` -> :class:`Decision`."""

    def __init__(self, valkey: ValkeyClient, *, user: Limit, room: Limit) -> None:
        self.valkey = valkey
        self.user = user
        self.room = room
        self._script = valkey.raw.register_script(_SCRIPT)

    async def take(self, channel: str, user_id: str, *, slow_s: float = 0.0, room: bool = True) -> Decision:
        kinds: list[tuple[str, str, float, float]] = [
            ("user", self.valkey.key("chat", "rl", "user", user_id), *_gcra(self.user)),
        ]
        if room:
            kinds.append(("room", self.valkey.key("chat", "rl", "room", channel), *_gcra(self.room)))
        if slow_s > 0:
            kinds.append(("slow", self.valkey.key("chat", "rl", "slow", channel, user_id), slow_s * 1000, 0))
        keys = [k[1] for k in kinds]
        args: list[str] = []
        for kind, _key, a, b in kinds:
            args += ["slow" if kind == "slow" else "gcra", str(round(a)), str(round(b))]
        ok, wait_ms, which = await self._script(keys=keys, args=args)
        if int(ok) == 1:
            return Decision(True)
        key = which.decode() if isinstance(which, bytes) else str(which)
        name = next((k[0] for k in kinds if k[1] == key), "user")
        return Decision(False, int(wait_ms) / 1000, name)


def _gcra(limit: Limit) -> tuple[float, float]:
    """(emission interval, burst window) in ms."""
    window_ms = limit.window_s * 1000
    return window_ms / limit.limit, window_ms
