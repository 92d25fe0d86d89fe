"""The devstack itself: bring servers up (idempotently), report them, export their URLs, stop them.

State lives in ``<root>/devstack.json`` (one folder per server beside it), so ``up``, ``status``,
``env`` and ``down`` work across separate CLI invocations, and a test session can run its own
stack in a temporary folder next to a developer's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from onair.devstack import probes
from onair.devstack.errors import DevstackError
from onair.devstack.process import alive, spawn, stop, wait_ready
from onair.devstack.servers import KAFKA_STORAGE_BUCKET, S3_CREDENTIALS, SERVER_NAMES, SPECS, LaunchContext

KAFKA_STORAGES = ("memory", "s3")


@dataclass
class RunningServer:
    name: str
    pid: int
    port: int
    url: str
    version: str
    data_dir: str
    log: str
    started_at: float


Progress = Callable[[str], None]


class Devstack:
    def __init__(
        self,
        root: Path | str = ".onair",
        *,
        servers: tuple[str, ...] = SERVER_NAMES,
        kafka_storage: str = "memory",
        database_url: str | None = None,
        start_timeout_s: float | None = None,
    ) -> None:
        unknown = [s for s in servers if s not in SPECS]
        if unknown:
            raise DevstackError(
                f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVER_NAMES)}"
            )
        if kafka_storage not in KAFKA_STORAGES:
            raise DevstackError(f"kafka storage {kafka_storage!r} unknown; choose memory or s3")
        if kafka_storage == "s3" and "kafka" in servers and "s3" not in servers:
            servers = (*servers, "s3")
        self.root = Path(root).resolve()
        self.servers = tuple(n for n in SERVER_NAMES if n in servers)
        self.kafka_storage = kafka_storage
        self.database_url = database_url
        self.state_path = self.root / "devstack.json"
        self.start_timeout_s = start_timeout_s

    # -- state ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, RunningServer]:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise DevstackError(
                f"{self.state_path} is not valid JSON ({exc}); delete it and run up again"
            ) from None
        return {name: RunningServer(**entry) for name, entry in raw.get("servers", {}).items()}

    def _save(self, servers: dict[str, RunningServer]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        payload = {
            "kafka_storage": self.kafka_storage,
            "database_url": self.database_url,
            "servers": {n: asdict(s) for n, s in servers.items()},
        }
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(self.state_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "devstack.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- lifecycle -------------------------------------------------------------------------------
    def up(
        self, ports: dict[str, int] | None = None, progress: Progress | None = None
    ) -> dict[str, RunningServer]:
        """Start every server that is not already running and answering; reuse the rest."""
        ports = dict(ports or {})
        note = progress or (lambda _msg: None)
        with self._locked():
            state = self._load()
            try:
                for name in self.servers:
                    current = state.get(name)
                    if current and self._healthy(current):
                        note(f"{name}: already running on port {current.port} (pid {current.pid})")
                        continue
                    port = ports.get(name) or (
                        current.port if current and not probes.port_in_use(current.port) else 0
                    )
                    state[name] = self._start(name, port, state, explicit=name in ports)
                    note(f"{name}: {state[name].version} on port {state[name].port} (pid {state[name].pid})")
                    self._save(state)
            finally:
                self._save(state)
        return state

    def _healthy(self, server: RunningServer) -> bool:
        if not alive(server.pid):
            return False
        try:
            SPECS[server.name].probe(server.port)
        except (OSError, ConnectionError, ValueError):
            return False
        return True

    def _start(
        self, name: str, port: int, state: dict[str, RunningServer], *, explicit: bool
    ) -> RunningServer:
        spec = SPECS[name]
        binary = spec.binary()
        if port and probes.port_in_use(port):
            hint = f"choose another with --port {name}=N or free it" if explicit else "free it"
            raise DevstackError(f"{name}: port 127.0.0.1:{port} is already in use; {hint}")
        port = port or probes.free_port()
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        ctx = LaunchContext(
            port=port,
            data_dir=data_dir,
            ports={n: s.port for n, s in state.items()},
            kafka_storage=self.kafka_storage,
        )
        if name == "kafka" and self.kafka_storage == "s3":
            self._ensure_kafka_bucket(ctx.ports.get("s3"))
        log_path = data_dir / f"{name}.log"
        proc = spawn(spec.argv(binary, ctx), log_path=log_path, cwd=data_dir, env=spec.env(ctx))
        timeout = self.start_timeout_s or spec.start_timeout_s
        version = wait_ready(name, proc, lambda: spec.probe(port), timeout, log_path)
        return RunningServer(
            name=name,
            pid=proc.pid,
            port=port,
            url=spec.url(port),
            version=version,
            data_dir=str(data_dir),
            log=str(log_path),
            started_at=time.time(),
        )

    @staticmethod
    def _ensure_kafka_bucket(s3_port: int | None) -> None:
        if not s3_port:
            raise DevstackError("kafka: s3 storage needs the s3 server, which is not running")
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if KAFKA_STORAGE_BUCKET not in existing:
            s3.create_bucket(Bucket=KAFKA_STORAGE_BUCKET)

    def down(self, progress: Progress | None = None) -> list[int]:
        """Stop every server of this stack; return the pids that were stopped."""
        note = progress or (lambda _msg: None)
        stopped: list[int] = []
        with self._locked():
            state = self._load()
            for name in reversed(SERVER_NAMES):
                server = state.pop(name, None)
                if server is None:
                    continue
                if alive(server.pid):
                    stop(server.pid)
                    stopped.append(server.pid)
                    note(f"{name}: stopped (pid {server.pid})")
                self._save(state)
            self.state_path.unlink(missing_ok=True)
        return stopped

    def stop_server(self, name: str, *, hard: bool = False) -> RunningServer:
        """Stop one server but keep its port reserved in the state, for :meth:`start_server`."""
        with self._locked():
            state = self._load()
            server = self._require(state, name)
            stop(server.pid, hard=hard)
            return server

    def start_server(self, name: str) -> RunningServer:
        """Start a stopped server again on the port it had, so clients can reconnect."""
        with self._locked():
            state = self._load()
            old = self._require(state, name)
            if alive(old.pid):
                return old
            deadline = time.monotonic() + 10
            while probes.port_in_use(old.port) and time.monotonic() < deadline:
                time.sleep(0.1)
            state[name] = self._start(name, old.port, state, explicit=True)
            self._save(state)
            return state[name]

    def restart_server(self, name: str, *, hard: bool = False) -> RunningServer:
        self.stop_server(name, hard=hard)
        return self.start_server(name)

    @staticmethod
    def _require(state: dict[str, RunningServer], name: str) -> RunningServer:
        if name not in state:
            raise DevstackError(f"{name} is not part of this devstack; run 'onair devstack up' first")
        return state[name]

    # -- reporting -------------------------------------------------------------------------------
    def status(self) -> list[dict[str, object]]:
        return [{**asdict(s), "running": self._healthy(s)} for s in self._load().values()]

    def env(self) -> dict[str, str]:
        state = self._load()
        if not state:
            raise DevstackError(f"no devstack is running under {self.root}; run 'onair devstack up'")
        out: dict[str, str] = {}
        if "valkey" in state:
            out["ONAIR_VALKEY_URL"] = state["valkey"].url
        if "nats" in state:
            out["ONAIR_NATS_URL"] = state["nats"].url
        if "kafka" in state:
            out["ONAIR_KAFKA_BOOTSTRAP"] = state["kafka"].url
        if "s3" in state:
            out["ONAIR_S3_ENDPOINT_URL"] = state["s3"].url
            out.update(S3_CREDENTIALS)
        out["DATABASE_URL"] = self._database_url()
        return out

    def _database_url(self) -> str:
        if self.database_url:
            return self.database_url
        try:
            saved = json.loads(self.state_path.read_text()).get("database_url")
        except (FileNotFoundError, json.JSONDecodeError):
            saved = None
        return saved or f"sqlite+aiosqlite:///{self.root / 'onair.db'}"
