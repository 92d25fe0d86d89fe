"""The end-to-end benchmark behind ``onair bench e2e``: going live, on the whole platform.

What runs: the devstack's servers and every service as a process (``onair_services.stack``), on
free loopback ports, started and stopped here. ``channels`` streamers are made through the gateway
(``onair seed``'s code) and half of them go live with media's simulated encoder.

Phase 1, **mixed** (``seconds``): a load generator in its own process reads ``GET /live/{channel}``
through the gateway at ``read_rate`` requests/s, channels drawn from a Zipf(1.1) law, while this
process changes titles (``writes_per_s``) and takes channels on and off air (``golive_per_s``):

* ``write_to_read_ms`` — ``PATCH /channels/{c}`` acknowledged -> ``GET /live/{c}`` through the
  gateway shows the new title (a reader polling every 5 ms);
* ``write_to_search_ms`` — the same write -> ``GET /search?q=<a word only that title has>`` finds
  the channel (live channels only: search indexes what is on air);
* ``go_live_to_listed_ms`` — ``POST /media/channels/{c}/simulate`` acknowledged -> the channel is
  in ``GET /live`` (the on-air list);
* ``stale_reads`` — after each write a read with its position (``X-Onair-Position``) must show
  the new title, and plain reads after it must never show an older title of that channel again;
* ``liveinfo_valkey_cmds_per_read`` / ``liveinfo_db_queries_per_read`` — from liveinfo's own
  counters over the phase (``onair_liveinfo_*`` on its ``/metrics``).

Phase 2, **capacity** (``capacity_seconds`` each): the same Zipf reads straight to liveinfo in a
closed loop at ``concurrency`` connections, first as deployed (``liveinfo_rps``), then with
liveinfo restarted with ``ONAIR_LIVEINFO_NEAR_CACHE=false`` (``uncached_rps``: every read a Valkey
round trip, as plain cache-aside). Both go to liveinfo directly: through the gateway both would
measure the gateway (see ``onair bench gateway``), not what the near cache buys.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from onair.bench import loadgen

TARGETS = {
    "write_to_read_p99_ms": 300.0,
    "write_to_search_p99_ms": 500.0,
    "liveinfo_valkey_cmds_per_read": 0.05,
    "cache_speedup": 3.0,
    "stale_reads": 0,
}
ZIPF = 1.1
POLL_S = 0.005
GIVE_UP_S = 10.0
Note = Callable[[str], None]


# -- counters --------------------------------------------------------------------------------------
def _scrape(url: str) -> dict[str, float]:
    """``onair_liveinfo_*`` totals from a /metrics page (labels summed per metric name)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("onair_liveinfo_") or " " not in line:
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        if name.endswith("_created"):
            continue
        if 'side="write"' in name_labels:
            name += ":write"
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _per_read(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, float]:
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    reads = delta("onair_liveinfo_reads_total")
    if reads <= 0:
        return 0.0, 0.0, 0.0
    return (
        reads,
        delta("onair_liveinfo_valkey_commands_total") / reads,
        delta("onair_liveinfo_read_db_queries_total") / reads,
    )


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


# -- the mixed phase -------------------------------------------------------------------------------
@dataclass
class Streamer:
    channel: str
    token: str
    live: bool = False
    titles: list[str] = field(default_factory=list)  # in write order


@dataclass
class Mixed:
    write_to_read_ms: list[float] = field(default_factory=list)
    write_to_search_ms: list[float] = field(default_factory=list)
    go_live_to_listed_ms: list[float] = field(default_factory=list)
    writes: int = 0
    write_errors: int = 0
    lost: int = 0  # never seen within GIVE_UP_S
    stale_reads: int = 0
    checked_reads: int = 0


async def _login(http: httpx.AsyncClient, username: str, password: str) -> str:
    r = await http.post("/auth/login", json={"username": username, "password": password})
    r.raise_for_status()
    return str(r.json()["access_token"])


async def _until(
    check: Callable[[], Any], give_up_s: float = GIVE_UP_S, poll_s: float = POLL_S
) -> float | None:
    """Seconds until ``await check()`` is true (None: gave up)."""
    start = time.perf_counter()
    while time.perf_counter() - start < give_up_s:
        if await check():
            return time.perf_counter() - start
        await asyncio.sleep(poll_s)
    return None


async def _set_live(http: httpx.AsyncClient, s: Streamer, live: bool) -> bool:
    auth = {"Authorization": f"Bearer {s.token}"}
    path = f"/media/channels/{s.channel}/simulate"
    r = await (http.post(path, headers=auth) if live else http.delete(path, headers=auth))
    ok = r.status_code in (200, 201)
    if ok:
        s.live = live
    return ok


async def _listed(http: httpx.AsyncClient, channel: str) -> bool:
    r = await http.get("/live", params={"limit": 100})
    return r.status_code == 200 and any(i["channel"] == channel for i in r.json().get("items", ()))


async def _write(http: httpx.AsyncClient, s: Streamer, n: int, result: Mixed) -> None:
    word = f"zq{n:05d}x{random.randrange(36**4):04x}"
    title = f"e2e write {n} {word}"
    auth = {"Authorization": f"Bearer {s.token}"}
    r = await http.patch(f"/channels/{s.channel}", json={"title": title}, headers=auth)
    if r.status_code != 200:
        result.write_errors += 1
        return
    result.writes += 1
    s.titles.append(title)
    position = r.headers.get("x-onair-position")
    searchable = s.live

    async def read_shows() -> bool:
        got = await http.get(f"/live/{s.channel}")
        return got.status_code == 200 and got.json().get("title") == title

    async def search_finds() -> bool:
        got = await http.get("/search", params={"q": word})
        return got.status_code == 200 and any(h["channel"] == s.channel for h in got.json().get("items", ()))

    async def read_waited() -> None:
        if position is None:
            return
        for _ in range(20):
            got = await http.get(f"/live/{s.channel}", headers={"X-Onair-Position": position})
            if got.status_code == 200:
                break
            await asyncio.sleep(0.05)
        else:
            result.lost += 1
            return
        index = s.titles.index(title)
        first = True
        for _ in range(6):  # the read with the position, then plain reads: never an older title
            plain = got if first else await http.get(f"/live/{s.channel}")
            first = False
            result.checked_reads += 1
            seen = plain.json().get("title") if plain.status_code == 200 else None
            if seen not in s.titles or s.titles.index(seen) < index:
                result.stale_reads += 1

    waited_to_read, waited_to_search, _ = await asyncio.gather(
        _until(read_shows), _until(search_finds) if searchable else asyncio.sleep(0), read_waited()
    )
    if waited_to_read is None:
        result.lost += 1
    else:
        result.write_to_read_ms.append(waited_to_read * 1000)
    if searchable:
        if isinstance(waited_to_search, float):
            result.write_to_search_ms.append(waited_to_search * 1000)
        else:
            result.lost += 1


async def _go_live(http: httpx.AsyncClient, s: Streamer, result: Mixed) -> None:
    if not await _set_live(http, s, True):
        return
    waited = await _until(lambda: _listed(http, s.channel), poll_s=0.01)
    if waited is None:
        result.lost += 1
    else:
        result.go_live_to_listed_ms.append(waited * 1000)


async def _mixed(
    gateway: str, streamers: list[Streamer], seconds: float, writes_per_s: float, golive_per_s: float
) -> Mixed:
    result = Mixed()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=gateway, timeout=10, limits=limits) as http:
        tasks: set[asyncio.Task[None]] = set()
        rng = random.Random(11)
        end = time.perf_counter() + seconds
        next_write = next_golive = time.perf_counter()
        n = 0
        while time.perf_counter() < end:
            now = time.perf_counter()
            if now >= next_write:
                n += 1
                tasks.add(asyncio.create_task(_write(http, rng.choice(streamers), n, result)))
                next_write += 1 / writes_per_s
            if golive_per_s and now >= next_golive:
                offline = [s for s in streamers if not s.live]
                live = [s for s in streamers if s.live]
                if offline:
                    tasks.add(asyncio.create_task(_go_live(http, rng.choice(offline), result)))
                if len(live) > len(streamers) // 2:
                    tasks.add(asyncio.create_task(_go_off(http, rng.choice(live))))
                next_golive += 1 / golive_per_s
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    return result


async def _go_off(http: httpx.AsyncClient, s: Streamer) -> None:
    await _set_live(http, s, False)


# -- the run ---------------------------------------------------------------------------------------
async def _prepare(gateway: str, out: Path, channels: int, note: Note) -> list[Streamer]:
    from onair_services.seeding import SeedPlan, load_credentials, seed

    await seed(gateway, out, SeedPlan(streamers=channels, viewers=0, top_up=0, prefix="e2e"))
    creds = load_credentials(out)
    accounts = [a for a in creds.get("streamers", []) if a.get("channel")]
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        tokens = await asyncio.gather(*(_login(http, a["username"], a["password"]) for a in accounts))
        streamers = [Streamer(a["channel"], t) for a, t in zip(accounts, tokens, strict=True)]
        note(f"{len(streamers)} channels made; taking half of them on air")
        await asyncio.gather(*(_set_live(http, s, True) for s in streamers[: len(streamers) // 2]))
        for s in streamers[: len(streamers) // 2]:
            await _until(lambda s=s: _listed(http, s.channel), give_up_s=30, poll_s=0.1)  # type: ignore[misc]
    return streamers


def run(
    *,
    channels: int = 40,
    seconds: float = 20.0,
    read_rate: float = 300.0,
    read_concurrency: int = 16,
    writes_per_s: float = 4.0,
    golive_per_s: float = 0.5,
    capacity_seconds: float = 8.0,
    concurrency: int = 16,
    note: Note = lambda _m: None,
) -> dict[str, Any]:
    from onair_services.stack import running_platform

    with tempfile.TemporaryDirectory(prefix="onair-e2e-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        with running_platform(root, progress=note) as platform:
            note(f"platform up in {time.monotonic() - started:.1f} s")
            gateway = platform.gateway_url
            liveinfo = platform.url("liveinfo")
            streamers = asyncio.run(_prepare(gateway, root / "seed.json", channels, note))
            names = [s.channel for s in streamers]

            note(f"mixed phase: {seconds:g} s, reads at {read_rate:g}/s via the gateway, writes, go-lives")
            before = _scrape(liveinfo)
            reads_at = [f"{gateway}/live/{c}" for c in names]
            load = loadgen.start(
                reads_at, concurrency=read_concurrency, seconds=seconds, rate=read_rate, zipf=ZIPF
            )
            time.sleep(1.0)  # the generator's warm-up
            mixed = asyncio.run(_mixed(gateway, streamers, seconds, writes_per_s, golive_per_s))
            gateway_reads = loadgen.result(load, seconds + 60)
            reads, cmds_per_read, db_per_read = _per_read(before, _scrape(liveinfo))

            note(f"capacity: liveinfo as deployed, {capacity_seconds:g} s at {concurrency} connections")
            direct = [f"{liveinfo}/live/{c}" for c in names]
            capacity = {"concurrency": concurrency, "seconds": capacity_seconds, "zipf": ZIPF}
            cached = loadgen.measure(direct, **capacity)
            note("capacity: liveinfo restarted with the near cache off")
            platform.fleet.extra_env.setdefault("liveinfo", {})["ONAIR_LIVEINFO_NEAR_CACHE"] = "false"
            platform.fleet.restart("liveinfo")
            uncached = loadgen.measure(direct, **capacity)
            note("stopping the platform")
    speedup = cached["rps"] / uncached["rps"] if uncached["rps"] else 0.0
    return {
        "write_to_read_p50_ms": round(_p(mixed.write_to_read_ms, 0.5), 1),
        "write_to_read_p99_ms": round(_p(mixed.write_to_read_ms, 0.99), 1),
        "write_to_search_p50_ms": round(_p(mixed.write_to_search_ms, 0.5), 1),
        "write_to_search_p99_ms": round(_p(mixed.write_to_search_ms, 0.99), 1),
        "go_live_to_listed_p50_ms": round(_p(mixed.go_live_to_listed_ms, 0.5), 1),
        "go_live_to_listed_p99_ms": round(_p(mixed.go_live_to_listed_ms, 0.99), 1),
        "liveinfo_rps": round(cached["rps"], 1),
        "uncached_rps": round(uncached["rps"], 1),
        "cache_speedup": round(speedup, 2),
        "liveinfo_valkey_cmds_per_read": round(cmds_per_read, 4),
        "liveinfo_db_queries_per_read": round(db_per_read, 4),
        "stale_reads": mixed.stale_reads,
        "reads_checked_after_position": mixed.checked_reads,
        "writes": mixed.writes,
        "write_errors": mixed.write_errors,
        "lost": mixed.lost,
        "go_lives": len(mixed.go_live_to_listed_ms),
        "gateway_read_rps": round(gateway_reads["rps"], 1),
        "gateway_read_p99_ms": round(gateway_reads["p99_ms"], 1),
        "gateway_read_statuses": gateway_reads["statuses"],
        "liveinfo_reads_in_mixed_phase": int(reads),
        "cached_p99_ms": round(cached["p99_ms"], 2),
        "uncached_p99_ms": round(uncached["p99_ms"], 2),
        "channels": len(names),
        "median_write_to_read_ms": round(statistics.median(mixed.write_to_read_ms), 1)
        if mixed.write_to_read_ms
        else 0.0,
    }
