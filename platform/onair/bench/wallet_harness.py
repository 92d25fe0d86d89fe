"""The wallet benchmark behind ``onair bench wallet``: concurrent donations, checked to the unit.

Twenty viewers (funded through ``POST /wallet/purchase``) donate random amounts to five streamers
from ``concurrency`` concurrent clients, while the wallet fails the credit step with a given
probability (those donations are compensated: refunded). A share of the donations is sent twice at
once with the same ``Idempotency-Key``. Measured: donations answered per second (completed or
compensated, repeats not counted) and latency. Checked afterwards:

* ``balance_errors`` — every final balance (``GET /wallet/balance``) against what the client was
  told (purchases minus completed donations; received donations), plus the problems
  ``onair wallet audit`` finds in the database (balances vs ledger, transfers, money conserved...);
* ``double_spends`` — a repeated key that executed twice (two donation ids, or more donation
  sagas in the database than keys sent), and any viewer charged more than they were told;
* ``sagas_unfinished`` — sagas neither completed nor compensated once the run has drained.

Direct mode (default) starts what it needs: NATS and Kafka (devstack code), a scratch PostgreSQL
database (``ONAIR_TEST_POSTGRES_URL``) or a SQLite file, a stand-in for the gateway's identity
keys, the users (``auth.user.created`` events) and ``onair serve wallet`` as a process. Against a
running deployment (e.g. through the gateway), give ``base_url``, a users file with each user's
headers, and optionally the wallet's database for the audit; the wallet there must run with
``ONAIR_WALLET_FAULTS=true`` and a credit failure rate for the failure part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from onair.auth.standin import GatewayStandIn

Note = Callable[[str], None]
HeadersFor = Callable[[str], Mapping[str, str]]


@dataclass
class BenchUser:
    username: str
    user_id: str
    roles: tuple[str, ...]


@dataclass
class WalletBenchConfig:
    viewers: int = 20
    streamers: int = 5
    donations: int = 6000
    warmup: int = 300
    concurrency: int = 48
    credit_failure_rate: float = 0.2
    credit_attempts: int = 1
    duplicate_ratio: float = 0.02
    fund: int = 5_000_000
    max_donation: int = 1000
    seed: int = 7
    database: str = "postgres"  # postgres | sqlite (direct mode)
    replicas: int = 1  # wallet processes (direct mode), each its own writer, one database
    postgres_url: str | None = None
    # a running deployment instead of direct mode
    base_url: str | None = None
    users_file: Path | None = None
    database_url: str | None = None  # the wallet's database, for the audit (optional there)


@dataclass
class Outcome:
    status: int
    donation_id: str | None
    latency_s: float


@dataclass
class Tally:
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    spent: Counter[str] = field(default_factory=Counter)  # viewer -> completed donations
    received: Counter[str] = field(default_factory=Counter)  # streamer -> completed donations
    keys: int = 0  # distinct keys whose request executed (201, 502, 202)
    pending: list[tuple[str, str, str, int]] = field(
        default_factory=list
    )  # 202s: viewer, streamer, id, amount
    duplicate_mismatches: int = 0
    errors: list[str] = field(default_factory=list)


# -- identities (direct mode: a stand-in for the gateway) -------------------------------------------
def identity_headers(keys: GatewayStandIn, users: Mapping[str, BenchUser]) -> HeadersFor:
    """A fresh identity per request for the bench users (direct mode)."""

    def headers(username: str) -> Mapping[str, str]:
        u = users[username]
        return {keys.header_name: keys.signer.sign_for(u.user_id, u.username, u.roles)}

    return headers


def load_users_file(path: Path) -> tuple[list[str], list[str], HeadersFor]:
    """``{"viewers": [{"username": .., "headers": {..}}], "streamers": [...]}`` -> names, header lookup."""
    raw = json.loads(path.read_text())
    table: dict[str, dict[str, str]] = {}
    names: dict[str, list[str]] = {"viewers": [], "streamers": []}
    for group in names:
        for item in raw.get(group, []):
            names[group].append(item["username"])
            table[item["username"]] = dict(item.get("headers", {}))
    if not names["viewers"] or not names["streamers"]:
        raise ValueError(f"{path}: needs at least one viewer and one streamer")
    return names["viewers"], names["streamers"], lambda username: table[username]


async def publish_users(bootstrap: str, users: Sequence[BenchUser]) -> None:
    """Log ``auth.user.created`` for each user (what auth does on sign-up)."""
    from onair.clients import KafkaClient
    from onair.logstream import Envelope, new_event_id

    kafka = KafkaClient(bootstrap, client_id="wallet-bench")
    try:
        await kafka.ensure_topics(["auth.user.created"])
        producer = await kafka.producer()
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        sends = []
        for u in users:
            env = Envelope(
                new_event_id(),
                ts,
                "auth",
                "auth.user.created",
                u.user_id,
                None,
                {"user_id": u.user_id, "username": u.username, "roles": list(u.roles)},
            )
            sends.append(await producer.send("auth.user.created", env.to_bytes(), key=u.user_id.encode()))
        await asyncio.gather(*sends)
    finally:
        await kafka.close()


def make_users(run: str, viewers: int, streamers: int) -> tuple[list[BenchUser], list[BenchUser]]:
    v = [BenchUser(f"bv{run}_{i}", f"u-bv{run}-{i}", ("viewer",)) for i in range(viewers)]
    s = [BenchUser(f"bs{run}_{i}", f"u-bs{run}-{i}", ("viewer", "streamer")) for i in range(streamers)]
    return v, s


# -- the wallet process --------------------------------------------------------------------------
def wallet_env(
    *,
    database_url: str,
    backend: Mapping[str, str],
    jwks_url: str,
    settings: Mapping[str, Any] | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of ``onair serve wallet`` for a test or a benchmark run; ``settings`` are
    :class:`~onair_services.wallet.settings.WalletSettings` fields (``ONAIR_WALLET_<FIELD>``)."""
    env = {
        "DATABASE_URL": database_url,
        "ONAIR_NATS_URL": backend["ONAIR_NATS_URL"],
        "ONAIR_KAFKA_BOOTSTRAP": backend["ONAIR_KAFKA_BOOTSTRAP"],
        "ONAIR_IDENTITY_JWKS_URL": jwks_url,
        "ONAIR_LOG_LEVEL": "INFO",
        "ONAIR_WALLET_AUDIT_INTERVAL_S": "0",
    }
    for name, value in (settings or {}).items():
        env[f"ONAIR_WALLET_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env.update(extra)
    return env


@contextlib.contextmanager
def wallet_fleet(root: Path, env: Mapping[str, str], note: Note | None = None) -> Iterator[Any]:
    """``onair serve wallet`` as a process (an :class:`onair.fleet.Fleet` of one), stopped after."""
    from onair.fleet import Fleet, Member

    fleet = Fleet(root, [Member("wallet")], backend_env={}, extra_env={"wallet": dict(env)})
    try:
        fleet.start(progress=note)
        yield fleet
    finally:
        fleet.stop_all()


async def wait_channels(client: Http, channels: Sequence[str], timeout_s: float = 60.0) -> None:
    """Until the wallet knows every channel (its ``wallet.users`` projection caught up)."""
    deadline = time.monotonic() + timeout_s
    for channel in channels:
        while True:
            status, body = await client.request("GET", f"/wallet/top-donors/{channel}")
            if status == 200:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the wallet does not know channel {channel} after {timeout_s}s ({body})")
            await asyncio.sleep(0.2)


# -- the load ------------------------------------------------------------------------------------
class Http:
    """A small JSON client on aiohttp (its per-request CPU is a fraction of httpx's, and the
    client shares the machine with the server it measures)."""

    def __init__(self, base_url: str, connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, limit_per_host=self.connections),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self, method: str, path: str, *, json_body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        assert self._session is not None
        data = orjson.dumps(json_body) if json_body is not None else None
        hdrs = {**(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
        async with self._session.request(method, self.base_url + path, data=data, headers=hdrs) as r:
            raw = await r.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        return r.status, body


class Load:
    """The donation mix, sent to one or more wallet instances (round-robin)."""

    def __init__(
        self,
        clients: Sequence[Http],
        headers_for: HeadersFor,
        viewers: Sequence[str],
        streamers: Sequence[str],
        cfg: WalletBenchConfig,
    ) -> None:
        self.clients = list(clients)
        self.client = self.clients[0]
        self._next = 0
        self.headers_for = headers_for
        self.viewers = list(viewers)
        self.streamers = list(streamers)
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.purchased: Counter[str] = Counter()
        self.retries = 0  # requests sent again (same key) after a lost answer

    async def fund(self) -> None:
        async def one(viewer: str) -> None:
            headers = {**self.headers_for(viewer), "Idempotency-Key": f"fund-{uuid.uuid4().hex}"}
            status, body = await self.client.request(
                "POST", "/wallet/purchase", json_body={"amount": self.cfg.fund}, headers=headers
            )
            if status != 201:
                raise RuntimeError(f"funding {viewer} failed: {status} {body}")
            self.purchased[viewer] += self.cfg.fund

        await asyncio.gather(*(one(v) for v in self.viewers))

    async def _donate(self, viewer: str, streamer: str, amount: int, key: str) -> Outcome:
        started = time.perf_counter()
        self._next += 1
        client = self.clients[self._next % len(self.clients)]
        for attempt in range(3):
            headers = {**self.headers_for(viewer), "Idempotency-Key": key}
            try:
                status, body = await client.request(
                    "POST",
                    "/wallet/donations",
                    json_body={"channel": streamer, "amount": amount},
                    headers=headers,
                )
                break
            except aiohttp.ClientError:  # the answer was lost: ask again with the same key
                if attempt == 2:
                    raise
                self.retries += 1
        elapsed = time.perf_counter() - started
        donation_id = body.get("donation_id") if isinstance(body, dict) else None
        return Outcome(status, donation_id, elapsed)

    async def run(self, count: int, tally: Tally) -> float:
        """``count`` donations from ``concurrency`` workers; returns the wall time."""
        queue: asyncio.Queue[tuple[str, str, int, bool]] = asyncio.Queue()
        for _ in range(count):
            queue.put_nowait(
                (
                    self.rng.choice(self.viewers),
                    self.rng.choice(self.streamers),
                    self.rng.randint(1, self.cfg.max_donation),
                    self.rng.random() < self.cfg.duplicate_ratio,
                )
            )

        async def worker() -> None:
            while True:
                try:
                    viewer, streamer, amount, twice = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                key = uuid.uuid4().hex
                if twice:
                    first, second = await asyncio.gather(
                        self._donate(viewer, streamer, amount, key),
                        self._donate(viewer, streamer, amount, key),
                    )
                    if first.donation_id != second.donation_id:  # one key, two donations
                        tally.duplicate_mismatches += 1
                    if (first.status, first.donation_id) != (second.status, second.donation_id):
                        tally.errors.append(
                            f"key {key}: {first.status}/{first.donation_id} then "
                            f"{second.status}/{second.donation_id}"
                        )
                    outcome = first
                else:
                    outcome = await self._donate(viewer, streamer, amount, key)
                self._count(tally, outcome, viewer, streamer, amount)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(self.cfg.concurrency)))
        return time.perf_counter() - started

    @staticmethod
    def _count(tally: Tally, outcome: Outcome, viewer: str, streamer: str, amount: int) -> None:
        tally.answered += 1
        tally.statuses[outcome.status] += 1
        tally.latencies.append(outcome.latency_s)
        if outcome.status in (201, 202, 502):
            tally.keys += 1
        if outcome.status == 201:
            tally.spent[viewer] += amount
            tally.received[streamer] += amount
        elif outcome.status == 202 and outcome.donation_id:
            tally.pending.append((viewer, streamer, outcome.donation_id, amount))
        elif outcome.status != 502 and len(tally.errors) < 20:
            tally.errors.append(f"unexpected status {outcome.status}")

    async def settle_pending(self, tally: Tally, timeout_s: float = 60.0) -> int:
        """Follow 202 answers to their end; returns how many never ended."""
        deadline = time.monotonic() + timeout_s
        left = list(tally.pending)
        while left and time.monotonic() < deadline:
            still = []
            for viewer, streamer, donation_id, amount in left:
                status, body = await self.client.request(
                    "GET", f"/wallet/donations/{donation_id}", headers=self.headers_for(viewer)
                )
                state = body.get("state") if status == 200 and isinstance(body, dict) else None
                if state in ("completed", "announcing"):
                    tally.spent[viewer] += amount
                    tally.received[streamer] += amount
                elif state != "compensated":
                    still.append((viewer, streamer, donation_id, amount))
            left = still
            if left:
                await asyncio.sleep(0.5)
        return len(left)

    async def balance_errors(self, tally: Tally) -> list[str]:
        problems = []
        for viewer in self.viewers:
            _, body = await self.client.request("GET", "/wallet/balance", headers=self.headers_for(viewer))
            expected = self.purchased[viewer] - tally.spent[viewer]
            if body.get("balance") != expected or body.get("held") != 0:
                problems.append(f"{viewer}: balance {body} expected {expected} (held 0)")
        for streamer in self.streamers:
            _, body = await self.client.request("GET", "/wallet/balance", headers=self.headers_for(streamer))
            if body.get("balance") != tally.received[streamer]:
                problems.append(f"{streamer}: balance {body} expected {tally.received[streamer]}")
        return problems


# -- the database side ---------------------------------------------------------------------------
async def drain_and_audit(
    database_url: str, donors: Sequence[str], timeout_s: float = 60.0
) -> dict[str, Any]:
    """Wait until no saga runs, then audit; the donation sagas of ``donors`` and the audit's findings."""
    from sqlalchemy import bindparam, text

    from onair.db import create_engine
    from onair_services.wallet.audit import run_audit
    from onair_services.wallet.db import WalletDb

    engine = create_engine(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            async with engine.connect() as conn:
                active = int(
                    (
                        await conn.execute(
                            text("SELECT COUNT(*) FROM sagas WHERE state IN ('running', 'compensating')")
                        )
                    ).scalar_one()
                )
            if active == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        async with engine.connect() as conn:  # every donation saga is created with its debit
            donation_sagas = int(
                (
                    await conn.execute(
                        text(
                            "SELECT COUNT(DISTINCT saga_id) FROM transfers "
                            "WHERE step = 'debit' AND donor IN :donors"
                        ).bindparams(bindparam("donors", expanding=True)),
                        {"donors": list(donors)},
                    )
                ).scalar_one()
            )
        report = await run_audit(WalletDb(engine))
    finally:
        await engine.dispose()
    unfinished = next(c.count for c in report.checks if c.name == "sagas_finished")
    return {
        "sagas_active": active,
        "sagas_unfinished": unfinished,
        "donation_sagas": donation_sagas,
        "audit_balance_errors": report.balance_errors,
        "audit_failing": {c.name: c.problems for c in report.failing},
        "audit_totals": report.totals,
    }


async def writer_stats(clients: Sequence[Http]) -> tuple[float, float, float]:
    """(batches, ops, seconds) of the wallets' writers so far, from their ``/metrics``."""
    wanted = {
        "onair_wallet_write_batch_ops_count": 0,
        "onair_wallet_write_batch_ops_sum": 1,
        "onair_wallet_write_batch_seconds_sum": 2,
    }
    totals = [0.0, 0.0, 0.0]
    for client in clients:
        with contextlib.suppress(aiohttp.ClientError, ValueError):
            _, body = await client.request("GET", "/metrics")
            for line in str(body).splitlines():
                name, _, value = line.partition(" ")
                if name in wanted:
                    totals[wanted[name]] += float(value)
    return totals[0], totals[1], totals[2]


def default_postgres_url() -> str | None:
    for var in ("ONAIR_TEST_POSTGRES_URL", "DATABASE_URL"):
        value = os.environ.get(var)
        if value and value.startswith("postgres"):
            return value
    return None


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def process_cpu_s(pids: Sequence[int]) -> float | None:
    """CPU seconds (user + system) used so far by ``pids`` (Linux ``/proc``; None elsewhere)."""
    total = 0.0
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return None
    return total


# -- the run ----------------------------------------------------------------------------------------
async def _measure(
    clients: Sequence[Http],
    headers_for: HeadersFor,
    viewers: Sequence[str],
    streamers: Sequence[str],
    cfg: WalletBenchConfig,
    database_url: str | None,
    note: Note,
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    load = Load(clients, headers_for, viewers, streamers, cfg)
    note("funding the viewers")
    await load.fund()
    if cfg.warmup:
        note(f"warming up ({cfg.warmup} donations)")
        warm = Tally()
        await load.run(cfg.warmup, warm)
    else:
        warm = Tally()
    note(f"{cfg.donations} donations from {cfg.concurrency} concurrent clients")
    tally = Tally()
    writer_before = await writer_stats(clients)
    load_before = _load()
    cpu_before = os.times()
    server_before = process_cpu_s(server_pids) if server_pids else None
    elapsed = await load.run(cfg.donations, tally)
    cpu_after = os.times()
    server_after = process_cpu_s(server_pids) if server_pids else None
    note("settling and checking")
    never = await load.settle_pending(tally)
    # the warm-up's donations count for the balances too
    for name, value in warm.spent.items():
        tally.spent[name] += value
    for name, value in warm.received.items():
        tally.received[name] += value
    balance_problems = await load.balance_errors(tally)
    result: dict[str, Any] = {
        "donations": tally.answered,
        "donations_per_s": round(tally.answered / elapsed, 1) if elapsed else 0.0,
        "completed": tally.statuses.get(201, 0),
        "compensated": tally.statuses.get(502, 0),
        "pending_202": tally.statuses.get(202, 0),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "latency_p50_ms": round(_quantile(tally.latencies, 0.5) * 1000, 1),
        "latency_p99_ms": round(_quantile(tally.latencies, 0.99) * 1000, 1),
        "latency_mean_ms": round(statistics.fmean(tally.latencies) * 1000, 1) if tally.latencies else 0.0,
        "seconds": round(elapsed, 2),
        "client_retries": load.retries,
        "concurrency": cfg.concurrency,
        "credit_failure_rate": cfg.credit_failure_rate,
        "client_cpu_ms_per_donation": round(
            ((cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system))
            * 1000
            / tally.answered,
            2,
        ),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": _load(),
    }
    writer_after = await writer_stats(clients)
    batches = writer_after[0] - writer_before[0]
    if batches > 0:
        result["writer_batches"] = int(batches)
        result["writer_ops_per_batch"] = round((writer_after[1] - writer_before[1]) / batches, 1)
        result["writer_batch_ms_mean"] = round((writer_after[2] - writer_before[2]) * 1000 / batches, 1)
    if server_before is not None and server_after is not None:
        result["server_cpu_ms_per_donation"] = round(
            (server_after - server_before) * 1000 / tally.answered, 2
        )
    double_spends = tally.duplicate_mismatches
    balance_errors = len(balance_problems)
    unfinished = never
    if database_url:
        db = await drain_and_audit(database_url, viewers)
        balance_errors += db["audit_balance_errors"]
        unfinished = max(unfinished, db["sagas_unfinished"] + db["sagas_active"])
        executed = tally.keys + warm.keys
        if db["donation_sagas"] > executed:  # a key that executed twice left a second saga
            double_spends += db["donation_sagas"] - executed
        result["audit_failing"] = db["audit_failing"]
        result["audit_totals"] = db["audit_totals"]
    result.update(balance_errors=balance_errors, double_spends=double_spends, sagas_unfinished=unfinished)
    if balance_problems:
        result["balance_problems"] = balance_problems[:10]
    if tally.errors:
        result["errors"] = tally.errors[:10]
    return result


async def run_benchmark(cfg: WalletBenchConfig, note: Note | None = None) -> dict[str, Any]:
    say = note or (lambda _m: None)
    if cfg.base_url:
        if cfg.users_file is None:
            raise ValueError("a run against base_url needs users_file (each user's headers)")
        viewers, streamers, headers_for = load_users_file(cfg.users_file)
        async with Http(cfg.base_url, cfg.concurrency * 2) as client:
            result = await _measure([client], headers_for, viewers, streamers, cfg, cfg.database_url, say)
        return {"mode": "base_url", "base_url": cfg.base_url, **result}
    return await _direct(cfg, say)


async def _direct(cfg: WalletBenchConfig, say: Note) -> dict[str, Any]:
    from onair.db.admin import create_database, drop_database
    from onair.devstack import temporary_stack

    run = uuid.uuid4().hex[:6]
    v_users, s_users = make_users(run, cfg.viewers, cfg.streamers)
    users = {u.username: u for u in (*v_users, *s_users)}
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="onair-wallet-bench-")))
        backend = stack.enter_context(temporary_stack(("nats", "kafka"), note=say))
        if cfg.database == "postgres":
            admin = cfg.postgres_url or default_postgres_url()
            if not admin:
                raise ValueError("PostgreSQL run: set ONAIR_TEST_POSTGRES_URL or give postgres_url")
            name = f"onair_bench_wallet_{run}"
            database_url = await create_database(admin, name)
            stack.push_async_callback(drop_database, admin, name)
        else:
            database_url = f"sqlite+aiosqlite:///{tmp / 'wallet.db'}"
        keys = GatewayStandIn()
        stack.callback(keys.close)
        say("publishing users (auth.user.created)")
        await publish_users(backend["ONAIR_KAFKA_BOOTSTRAP"], [*v_users, *s_users])
        env = wallet_env(
            database_url=database_url,
            backend=backend,
            jwks_url=keys.jwks_url,
            settings={
                "faults": True,
                "fault_credit_failure_rate": cfg.credit_failure_rate,
                "credit_attempts": cfg.credit_attempts,
            },
            ONAIR_SPOOL_DIR=str(tmp / "spool"),
        )
        urls, pids = [], []
        for i in range(cfg.replicas):  # the first migrates the database; the others find it done
            fleet = stack.enter_context(wallet_fleet(tmp / f"fleet{i}", env, note=say))
            urls.append(fleet.url("wallet"))
            pids.append(fleet.load()["wallet"].pid)
        clients = [await stack.enter_async_context(Http(url, cfg.concurrency * 2)) for url in urls]
        say("waiting for the wallet to know the channels")
        for client in clients:
            await wait_channels(client, [u.username for u in s_users])
        result = await _measure(
            clients,
            identity_headers(keys, users),
            [u.username for u in v_users],
            [u.username for u in s_users],
            cfg,
            database_url,
            say,
            server_pids=pids,
        )
        return {"mode": "direct", "database": cfg.database, "replicas": cfg.replicas, **result}
