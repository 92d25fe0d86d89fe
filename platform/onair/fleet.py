"""Run a deployment's services as local processes: ``onair serve NAME`` each, with its own port,
log file and database, wired to the devstack's servers and to each other.

What ``onair demo``, the end-to-end benchmark, the fault scenarios and the whole-stack tests share.
The caller names the services (``Member(name, port, database)``; onair's list is
``onair_services.registry.SERVICES``) and the backend environment (the devstack's); the fleet adds
per process ``DATABASE_URL`` (a SQLite file each, or a PostgreSQL database each), ``ONAIR_PORT``,
``ONAIR_<NAME>_URL`` of every member, the identity and auth JWKS URLs, and the spool folder.

State lives in ``<root>/fleet.json`` so another command (``onair chaos``) can find, kill and restart
a member started by this one. Processes run in their own session; ``stop_all`` stops every one it
knows, SIGTERM then SIGKILL.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from onair.devstack import probes
from onair.devstack.errors import DevstackError
from onair.devstack.process import alive, log_tail, spawn, stop

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Member:
    """One service of the fleet: its name, the port to use (0: a free one) and whether it owns a DB."""

    name: str
    port: int = 0
    database: bool = False


@dataclass
class RunningMember:
    name: str
    pid: int
    port: int
    url: str
    log: str
    started_at: float
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)


class FleetError(DevstackError):
    """A service could not be started or stopped (the message names it and shows its log tail)."""


def _http_status(url: str, timeout_s: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class Fleet:
    """The services of one local deployment under ``root`` (see the module docstring)."""

    def __init__(
        self,
        root: Path | str,
        members: Iterable[Member] = (),
        *,
        backend_env: Mapping[str, str] | None = None,
        postgres_admin_url: str | None = None,
        database_prefix: str = "onair",
        extra_env: Mapping[str, Mapping[str, str]] | None = None,
        readiness_path: str = "/readyz",
        start_timeout_s: float = 90.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.members = {m.name: m for m in members}
        self.backend_env = dict(backend_env or {})
        self.postgres_admin_url = postgres_admin_url
        self.database_prefix = database_prefix
        self.extra_env = {k: dict(v) for k, v in (extra_env or {}).items()}
        self.readiness_path = readiness_path
        self.start_timeout_s = start_timeout_s
        self.state_path = self.root / "fleet.json"
        self._ports: dict[str, int] = {}

    # -- state -----------------------------------------------------------------------------------
    def load(self) -> dict[str, RunningMember]:
        try:
            raw = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {name: RunningMember(**m) for name, m in raw.get("members", {}).items()}

    def _save(self, state: Mapping[str, RunningMember]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"members": {n: asdict(m) for n, m in state.items()}}, indent=2))
        tmp.replace(self.state_path)

    def url(self, name: str) -> str:
        running = self.load().get(name)
        if running is not None:
            return running.url
        return f"http://127.0.0.1:{self._port(name)}"

    # -- environment -----------------------------------------------------------------------------
    def _port(self, name: str) -> int:
        if name not in self._ports:
            member = self.members[name]
            self._ports[name] = member.port or probes.free_port()
        return self._ports[name]

    def _database_url(self, name: str) -> str:
        db_name = f"{self.database_prefix}_{name}"
        if self.postgres_admin_url:
            from sqlalchemy.engine import make_url

            url = make_url(self.postgres_admin_url).set(drivername="postgresql+asyncpg", database=db_name)
            return url.render_as_string(hide_password=False)
        return f"sqlite+aiosqlite:///{self.root / 'db' / f'{name}.db'}"

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of member ``name`` (without the process's own)."""
        member = self.members[name]
        env = dict(self.backend_env)
        for other in self.members:
            env[f"ONAIR_{other.upper()}_URL"] = f"http://127.0.0.1:{self._port(other)}"
        if "gateway" in self.members:
            env["ONAIR_IDENTITY_JWKS_URL"] = f"{env['ONAIR_GATEWAY_URL']}/.well-known/identity-jwks.json"
        if "auth" in self.members:
            env["ONAIR_AUTH_JWKS_URL"] = f"{env['ONAIR_AUTH_URL']}/.well-known/jwks.json"
        env.update(
            {
                "ONAIR_SERVICE_NAME": name,
                "ONAIR_PORT": str(self._port(name)),
                "ONAIR_HOST": "127.0.0.1",
                "ONAIR_SPOOL_DIR": str(self.root / "spool"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if member.database:
            env["DATABASE_URL"] = self._database_url(name)
        else:
            env.pop("DATABASE_URL", None)
        env.update(self.extra_env.get(name, {}))
        return env

    # -- lifecycle -------------------------------------------------------------------------------
    def start(
        self, names: Sequence[str] | None = None, progress: Progress | None = None
    ) -> dict[str, RunningMember]:
        """Start ``names`` (default: every member not running) at once, then wait until each is ready.

        Members already running and ready are kept. Fails with the log tail of the first member
        that exits or does not become ready in time; what did start keeps running (call
        :meth:`stop_all`).
        """
        note = progress or (lambda _msg: None)
        wanted = list(names if names is not None else self.members)
        unknown = [n for n in wanted if n not in self.members]
        if unknown:
            raise FleetError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(self.members)}")
        state = self.load()
        for name, running in state.items():  # keep ports of running members
            self._ports.setdefault(name, running.port)
        todo = [n for n in wanted if not (n in state and self._ready(state[n]))]
        if self.postgres_admin_url:
            self._create_databases([n for n in todo if self.members[n].database])
        procs = {}
        for name in todo:
            port = self._port(name)
            if probes.port_in_use(port):
                raise FleetError(
                    f"{name}: port 127.0.0.1:{port} is already in use; free it or use free ports"
                )
            env = self.env_for(name)
            log_path = self.root / "logs" / f"{name}.log"
            argv = [str(Path(sys.executable).parent / "onair"), "serve", name, "--port", str(port)]
            proc = spawn(argv, log_path=log_path, cwd=self.root, env=env)
            procs[name] = proc
            state[name] = RunningMember(
                name=name,
                pid=proc.pid,
                port=port,
                url=f"http://127.0.0.1:{port}",
                log=str(log_path),
                started_at=time.time(),
                database_url=env.get("DATABASE_URL"),
                env={k: v for k, v in env.items() if k.startswith(("ONAIR_", "DATABASE_URL"))},
            )
            note(f"{name}: starting on port {port} (pid {proc.pid})")
        self._save(state)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(procs))) as pool:
            futures = {pool.submit(self._wait_ready, state[n]): n for n in procs}
            for fut in concurrent.futures.as_completed(futures):
                fut.result()
                note(f"{futures[fut]}: ready")
        return state

    def _ready(self, running: RunningMember) -> bool:
        if not alive(running.pid):
            return False
        try:
            return _http_status(running.url + self.readiness_path) == 200
        except OSError:
            return False

    def _wait_ready(self, running: RunningMember) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last = "no answer"
        while True:
            if not alive(running.pid):
                raise FleetError(
                    f"{running.name} exited during start-up; its log ({running.log}) ends with:\n"
                    f"{log_tail(Path(running.log), 25)}"
                )
            try:
                status = _http_status(running.url + self.readiness_path)
                if status == 200:
                    return
                last = f"{self.readiness_path} answered {status}"
            except OSError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise FleetError(
                    f"{running.name} was not ready within {self.start_timeout_s:.0f}s ({last}); "
                    f"its log ({running.log}) ends with:\n{log_tail(Path(running.log), 25)}"
                )
            time.sleep(0.1)

    def _create_databases(self, names: Sequence[str]) -> None:
        import asyncio

        import asyncpg
        from sqlalchemy.engine import make_url

        assert self.postgres_admin_url is not None
        u = make_url(self.postgres_admin_url)

        async def create() -> None:
            conn = await asyncpg.connect(
                host=u.host or "127.0.0.1",
                port=u.port or 5432,
                user=u.username or "postgres",
                password=u.password,
                database=u.database or "postgres",
            )
            try:
                existing = {r[0] for r in await conn.fetch("SELECT datname FROM pg_database")}
                for name in names:
                    db = f"{self.database_prefix}_{name}"
                    if db not in existing:
                        await conn.execute(f'CREATE DATABASE "{db}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def drop_databases(self) -> None:
        """Drop the PostgreSQL databases of the members (tests and throwaway runs)."""
        if not self.postgres_admin_url:
            return
        import asyncio

        from onair.db.admin import drop_database

        async def drop() -> None:
            for name, member in self.members.items():
                if member.database:
                    await drop_database(self.postgres_admin_url or "", f"{self.database_prefix}_{name}")

        asyncio.run(drop())

    def stop(self, name: str, *, hard: bool = False, grace_s: float = 10.0) -> RunningMember:
        """Stop one member (SIGTERM and its graceful shutdown; SIGKILL with ``hard``)."""
        state = self.load()
        running = state.get(name)
        if running is None:
            raise FleetError(f"{name} is not running in {self.root}")
        if alive(running.pid):
            stop(running.pid, grace_s=grace_s, hard=hard)
        return running

    def kill(self, name: str) -> RunningMember:
        """SIGKILL one member (a crash: no shutdown hook runs)."""
        return self.stop(name, hard=True)

    def restart(self, name: str, *, hard: bool = False, progress: Progress | None = None) -> RunningMember:
        running = self.stop(name, hard=hard)
        self._ports[name] = running.port
        deadline = time.monotonic() + 10
        while probes.port_in_use(running.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start([name], progress)[name]

    def signal(self, name: str, sig: signal.Signals) -> None:
        running = self.load()[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, sig)

    def stop_all(self, progress: Progress | None = None) -> list[str]:
        """Stop every member this fleet's state knows (gateway first, so traffic stops first)."""
        note = progress or (lambda _msg: None)
        state = self.load()
        order = sorted(state, key=lambda n: (n != "gateway", n))
        stopped: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(order))) as pool:
            futures = {}
            for name in order:
                running = state[name]
                if alive(running.pid):
                    futures[pool.submit(stop, running.pid, 10.0)] = name
            for fut in concurrent.futures.as_completed(futures):
                with contextlib.suppress(DevstackError):
                    fut.result()
                stopped.append(futures[fut])
                note(f"{futures[fut]}: stopped")
        self.state_path.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[dict[str, object]]:
        return [{**asdict(m), "running": alive(m.pid), "ready": self._ready(m)} for m in self.load().values()]
