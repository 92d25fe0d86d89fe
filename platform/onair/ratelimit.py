"""Rate limits shared by every replica through Valkey, decided locally: :class:`SharedRateLimiter`.

**Algorithm: sliding window counter.** Each policy (``limit`` requests per ``window_s``) keeps, per
key (a user id, an IP), one counter per fixed window in Valkey. A request at fraction ``f`` of the
current window is admitted while ``prev * (1 - f) + curr + cost <= limit``, where ``prev`` and
``curr`` are the totals of the previous and the current window over all replicas: the previous
window's count is assumed to be spread evenly (the usual approximation, exact for steady traffic).

**Local decisions, periodic sync.** A Valkey call per request would cost a round trip and one
command per request. Instead each replica decides from what it knows, and a sync loop runs every
``sync_interval_s`` (100 ms by default): one atomic script (``EVALSHA``) adds the hits the replica
admitted to the shared counters of the keys that are due and returns their new totals (inside:
INCRBY, PEXPIRE and GET per key). A key is due every interval while it is **near its limit** —
at least half used (``refresh_above``), or its recent traffic (all replicas' rate seen between two
syncs, or this replica's hits since the last one) could use up the rest within
``near_horizon_s`` (2 s) — and otherwise once per ``idle_sync_s`` (1 s). So the cost is at most
one command per replica per interval, one per second when every key is far from its limit, and
nothing when idle, whatever the traffic (1,000 requests/s of one user far from the limit: 1
EVALSHA and 6 inner commands a second, 0.007 per request); the decision on the request path is a
dict lookup.

**What it costs in precision.** Between two syncs a replica does not see the others' hits, so a
key hammered through N replicas at once can be admitted up to ``(N - 1) * r * T`` requests over its
limit, where ``r`` is the rate each replica admits for that key and ``T`` the sync interval plus
the script's round trip (a key that was far from its limit is due at the next interval as soon as
one replica's own hits make it near). A replica never admits more than the limit on its own
knowledge, so the
hard bound is ``N * limit`` per window (all replicas starting from zero knowledge at the same
instant). Example: 2 replicas, 100 ms, a client spreading 200 requests/s over both with a limit
of 100/min: at most ~10 extra requests in the minute it crosses the limit. Hits that were refused
are not counted (a refused client is not locked out longer for retrying).

A sync refreshes only the keys a replica saw since the previous one, so a key that went quiet on
one replica while others used it up would be judged on old totals when it comes back. Hence the
one case decided with a Valkey command on the request path: totals older than ``stale_after_s``
(3 sync intervals, at least 250 ms) for a request that would take the key past ``refresh_above``
(half) of its limit are read first. Steady traffic never hits it (the key is refreshed by every
sync); a slow client near its limit pays one round trip per request.

**Valkey down.** The limiter keeps deciding locally (each replica enforces the limit alone, so the
fleet admits up to N times the limit); the unsynced hits are kept and sent when Valkey answers
again (a script that ran but whose answer was lost is counted twice: conservative). Failures are
counted in :attr:`SharedRateLimiter.sync_failures` and logged at most every 10 s.

Keys live ``2 * window_s + 1`` s in Valkey. All keys share the hash tag ``{rl}`` so the script's
keys are in one slot on a cluster too. Policies' windows are whole seconds (the
``RateLimit-Policy`` header's ``w``); replicas' clocks are assumed NTP-close (a skew of ``s``
shifts window boundaries by ``s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from onair.clients.base import Lifecycle
from onair.clients.valkey import ValkeyClient
from onair.logging import get_logger

log = get_logger("onair.ratelimit")

__all__ = ["Decision", "Policy", "SharedRateLimiter"]

# KEYS: per item (current-window key, previous-window key); ARGV[1]: TTL ms; ARGV[1 + i]: hits of
# item i to add to its current-window key. Returns, per item, the two totals.
SYNC_SCRIPT = """
local ttl = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local curr_key = KEYS[2 * i - 1]
  local delta = tonumber(ARGV[i + 1])
  local curr
  if delta > 0 then
    curr = redis.call('INCRBY', curr_key, delta)
    redis.call('PEXPIRE', curr_key, ttl)
  else
    curr = tonumber(redis.call('GET', curr_key) or '0')
  end
  out[2 * i - 1] = curr
  out[2 * i] = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
end
return out
"""


@dataclass(frozen=True, slots=True)
class Policy:
    """``limit`` requests per ``window_s`` seconds, per key. ``name`` is what clients see."""

    name: str
    limit: int
    window_s: int

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window_s < 1:
            raise ValueError("a policy needs limit >= 0 and window_s >= 1 (whole seconds)")

    @property
    def header(self) -> str:
        """This policy as a ``RateLimit-Policy`` item: ``"user";q=100;w=60``."""
        return f'"{self.name}";q={self.limit};w={self.window_s}'


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one hit. ``remaining`` and ``reset_s`` feed the ``RateLimit`` header (``r``
    and ``t``); ``retry_after_s`` is set when refused."""

    allowed: bool
    policy: Policy
    remaining: int
    reset_s: int
    retry_after_s: int = 0

    @property
    def header(self) -> str:
        """This decision as a ``RateLimit`` item: ``"user";r=42;t=17``."""
        return f'"{self.policy.name}";r={self.remaining};t={self.reset_s}'


class _Entry:
    """What one replica knows about one key of one policy."""

    __slots__ = (
        "curr",
        "inflight",
        "inflight_window",
        "key",
        "last_seen",
        "pending",
        "policy",
        "prev",
        "rate",
        "refreshed_at",
        "synced_at",
        "touched",
        "window",
    )

    def __init__(self, policy: Policy, key: str, window: int, now: float) -> None:
        self.policy = policy
        self.key = key
        self.window = window  # index of the current fixed window
        self.curr = 0  # all replicas' hits in `window`, as of the last sync (ours included)
        self.prev = 0  # all replicas' hits in `window - 1`
        self.pending = 0  # hits admitted here since the last sync (not yet in Valkey)
        self.inflight = 0  # hits being sent by a sync that has not answered yet
        self.inflight_window = -1
        self.touched = True  # seen since the last sync (also when refused): refresh its totals
        self.last_seen = now
        self.refreshed_at = float("-inf")  # when the totals were last read from Valkey
        self.synced_at = float("-inf")  # ... by a sync
        self.rate = 0.0  # hits/s of all replicas for this key, between the last two syncs


# one key to sync: (policy, key, window, hits to add, the entry to update or None for leftovers)
_Item = tuple[Policy, str, int, int, _Entry | None]


class SharedRateLimiter(Lifecycle):
    """Sliding-window-counter limits shared through Valkey (see the module docstring).

    ``await hit(policy_name, key)`` decides without I/O in steady state (see :meth:`hit` for the
    one exception). ``start()`` runs the sync loop (the Valkey client is started by its owner);
    ``sync()`` runs one round (tests, shutdown).
    """

    def __init__(
        self,
        valkey: ValkeyClient,
        policies: Iterable[Policy],
        *,
        sync_interval_s: float = 0.1,
        idle_sync_s: float = 1.0,
        near_horizon_s: float = 2.0,
        stale_after_s: float | None = None,
        refresh_above: float = 0.5,
        max_keys: int = 200_000,
        keys_per_script: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.valkey = valkey
        self.policies = {p.name: p for p in policies}
        self.sync_interval_s = sync_interval_s
        self.idle_sync_s = max(idle_sync_s, sync_interval_s)
        self.near_horizon_s = near_horizon_s
        self.stale_after_s = stale_after_s if stale_after_s is not None else max(0.25, 3 * sync_interval_s)
        self.refresh_above = refresh_above
        self.max_keys = max_keys
        self.keys_per_script = keys_per_script
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        # hits of a window that ended before they were synced: (policy, key, window, hits)
        self._leftovers: list[tuple[Policy, str, int, int]] = []
        self._script: Any = None
        self._task: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()
        self._last_failure_log = float("-inf")
        self.syncs = 0
        self.refreshes = 0
        self.sync_failures = 0
        self.refused = 0

    # -- the request path --------------------------------------------------------------------------
    async def hit(self, policy_name: str, key: str, cost: int = 1) -> Decision:
        """Count one request of ``key`` under a policy, or refuse it (nothing counted).

        Decided locally, except when this replica's totals for the key are older than
        ``stale_after_s`` *and* the request would use more than ``refresh_above`` of the limit:
        then the key's totals are read from Valkey first (one command), so a key that went quiet
        here while others used it up is not let through on old knowledge.
        """
        decision = self._decide(policy_name, key, cost, refresh=True)
        if decision is None:
            await self._refresh(policy_name, key)
            decision = self._decide(policy_name, key, cost, refresh=False)
            assert decision is not None
        return decision

    def _decide(self, policy_name: str, key: str, cost: int, *, refresh: bool) -> Decision | None:
        policy = self.policies[policy_name]
        now = self._clock()
        window_s = policy.window_s
        window = int(now // window_s)
        entry = self._entries.get((policy_name, key))
        if entry is None:
            entry = self._new_entry(policy, key, window, now)
        else:
            entry.last_seen = now
            entry.touched = True
            if entry.window != window:
                self._roll(entry, window)
        elapsed = now / window_s - window  # fraction of the current window gone by
        current = entry.curr + entry.pending + (entry.inflight if entry.inflight_window == window else 0)
        used = entry.prev * (1.0 - elapsed) + current
        reset_s = max(1, math.ceil((1.0 - elapsed) * window_s))
        if (
            refresh
            and used + cost > self.refresh_above * policy.limit
            and now - entry.refreshed_at > self.stale_after_s
        ):
            return None
        if used + cost <= policy.limit:
            entry.pending += cost
            return Decision(True, policy, int(policy.limit - used - cost), reset_s)
        self.refused += 1
        retry = self._retry_after(policy, entry.prev, current, elapsed, cost)
        return Decision(False, policy, 0, max(reset_s, retry), retry)

    @staticmethod
    def _retry_after(policy: Policy, prev: int, current: float, elapsed: float, cost: int) -> int:
        """Seconds until ``cost`` more fits, if nobody else sends anything meanwhile."""
        limit, window_s = policy.limit, policy.window_s
        if cost > limit:
            return window_s
        if current + cost <= limit:  # only the previous window's share is in the way
            needed = 1.0 - (limit - current - cost) / prev if prev else elapsed
            wait = (needed - elapsed) * window_s
        else:  # the current window alone is full: wait for it to become the previous one
            needed_next = 1.0 - (limit - cost) / current if current else 0.0
            wait = (1.0 - elapsed) * window_s + max(0.0, needed_next) * window_s
        return max(1, math.ceil(wait))

    async def _refresh(self, policy_name: str, key: str) -> None:
        """Read one key's totals from Valkey now (its pending hits stay pending)."""
        entry = self._entries[(policy_name, key)]
        window = entry.window
        try:
            [(curr, prev)] = await self._run_script([(entry.policy, key, window, 0, entry)])
        except Exception as exc:
            self._failed([], exc)
            entry.refreshed_at = self._clock()  # decide locally; the next sync tries again
            return
        self.refreshes += 1
        # ``curr`` may already include hits of a sync in flight, counted once more until it
        # answers: conservative for a few milliseconds
        self._apply(entry, window, curr, prev)

    def _new_entry(self, policy: Policy, key: str, window: int, now: float) -> _Entry:
        if len(self._entries) >= self.max_keys:
            self._evict(now, force=True)
        entry = _Entry(policy, key, window, now)
        self._entries[(policy.name, key)] = entry
        return entry

    def _roll(self, entry: _Entry, window: int) -> None:
        """Move ``entry`` to a later ``window``: its current counts become the previous ones."""
        ours = entry.pending + (entry.inflight if entry.inflight_window == entry.window else 0)
        entry.prev = entry.curr + ours if window == entry.window + 1 else 0
        if entry.pending:
            self._leftovers.append((entry.policy, entry.key, entry.window, entry.pending))
        entry.curr = 0
        entry.pending = 0
        entry.window = window

    def _evict(self, now: float, *, force: bool = False) -> None:
        """Drop entries idle for two windows (or, when full, the oldest half)."""
        idle = [
            k
            for k, e in self._entries.items()
            if not e.pending and not e.inflight and now - e.last_seen > 2 * e.policy.window_s
        ]
        for k in idle:
            del self._entries[k]
        if force and len(self._entries) >= self.max_keys:
            oldest = sorted(self._entries.items(), key=lambda kv: kv[1].last_seen)
            for k, e in oldest[: len(oldest) // 2]:
                if e.pending:
                    self._leftovers.append((e.policy, e.key, e.window, e.pending))
                del self._entries[k]

    # -- sync with Valkey --------------------------------------------------------------------------
    def _key(self, policy: Policy, key: str, window: int) -> str:
        return self.valkey.key("{rl}", policy.name, key, window)

    async def sync(self) -> None:
        """Send the hits admitted since the last sync and refresh the totals of every key seen."""
        async with self._sync_lock:
            await self._sync()

    def _due(self, e: _Entry, now: float) -> bool:
        """Sync this key now? Every interval when it is near its limit, else every ``idle_sync_s``."""
        if not (e.touched or e.pending):
            return False
        since = now - e.synced_at
        if since >= self.idle_sync_s:
            return True  # (also: never synced)
        limit = e.policy.limit
        used = e.prev + e.curr + e.pending  # an upper bound of what the window holds
        if used >= self.refresh_above * limit:
            return True
        rate = max(e.rate, e.pending / max(since, self.sync_interval_s))
        return limit - used <= rate * self.near_horizon_s

    async def _sync(self) -> None:
        now = self._clock()
        batch = [e for e in self._entries.values() if self._due(e, now)]
        leftovers, self._leftovers = self._leftovers, []
        if not batch and not leftovers:
            self._evict(now)
            return
        for e in batch:
            e.touched = False
            e.inflight = e.pending
            e.inflight_window = e.window
            e.pending = 0
        items: list[_Item] = [(e.policy, e.key, e.window, e.inflight, e) for e in batch]
        items += [(p, k, w, n, None) for p, k, w, n in leftovers]
        done = 0
        try:
            while done < len(items):
                chunk = items[done : done + self.keys_per_script]
                totals = await self._run_script(chunk)
                for (_, _, window, _, entry), (curr, prev) in zip(chunk, totals, strict=True):
                    if entry is not None:
                        self._apply(entry, window, curr, prev)
                        entry.inflight = 0
                done += len(chunk)
            self.syncs += 1
        except Exception as exc:
            self._failed(items[done:], exc)
        self._evict(now)

    def _apply(self, entry: _Entry, window: int, curr: int, prev: int) -> None:
        now = self._clock()
        if entry.window == window:
            if now > entry.synced_at and curr >= entry.curr:  # all replicas' rate for this key
                entry.rate = (curr - entry.curr) / (now - entry.synced_at)
            entry.curr = curr
            entry.prev = prev
            entry.refreshed_at = now
            entry.synced_at = now
        elif entry.window == window + 1:  # the window rolled while the sync was in flight
            entry.prev = curr

    async def _run_script(self, chunk: list[_Item]) -> list[tuple[int, int]]:
        if self._script is None:
            self._script = self.valkey.raw.register_script(SYNC_SCRIPT)
        keys: list[str] = []
        args: list[int] = [max(p.window_s for p, *_ in chunk) * 2000 + 1000]
        for policy, key, window, hits, _ in chunk:
            keys += [self._key(policy, key, window), self._key(policy, key, window - 1)]
            args.append(hits)
        raw = await self._script(keys=keys, args=args)
        return [(int(raw[i]), int(raw[i + 1])) for i in range(0, len(raw), 2)]

    def _failed(self, items: list[_Item], exc: Exception) -> None:
        """Keep the hits that did not reach Valkey for the next sync."""
        self.sync_failures += 1
        for policy, key, window, hits, entry in items:
            if entry is not None:
                entry.touched = True
                if entry.inflight and entry.inflight_window == window:
                    if entry.window == window:
                        entry.pending += entry.inflight
                    else:
                        self._leftovers.append((policy, key, window, entry.inflight))
                    entry.inflight = 0
            elif hits and window >= int(self._clock() // policy.window_s) - 1:
                self._leftovers.append((policy, key, window, hits))
        now = time.monotonic()
        if now - self._last_failure_log >= 10.0:
            self._last_failure_log = now
            log.warning("ratelimit.sync_failed", error=repr(exc), failures=self.sync_failures)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await self.sync()
            except Exception as exc:  # pragma: no cover - _sync handles its own errors
                log.error("ratelimit.sync_crashed", error=repr(exc))

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="ratelimit-sync")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sync(), timeout=1.0)  # hand over the last hits

    @property
    def keys(self) -> int:
        """How many keys this replica tracks."""
        return len(self._entries)
