"""The whole platform on one machine: the devstack's servers and every service as a process.

:func:`platform_fleet` builds the :class:`onair.fleet.Fleet` of every service package that exists,
with what a local run needs beyond the defaults: one gateway identity key shared by every local
gateway process, profstore's folder and token, an auth key-encryption secret, the wallet's fault
switches (off unless asked), and limits suited to load from one machine (every Locust user comes
from 127.0.0.1, so the per-IP limits of the gateway and of logins are raised; per-user limits stay).
:func:`running_platform` starts the devstack and the fleet and stops both: what ``onair demo``, the
end-to-end benchmark and the whole-stack tests use.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from onair.devstack.temporary import temporary_stack
from onair.fleet import Fleet, Member
from onair_services.registry import SERVICES

Progress = Callable[[str], None]

#: The devstack servers the platform needs.
BACKENDS = ("valkey", "nats", "s3", "kafka")


def available_services() -> list[str]:
    """The services of the registry whose package exists (in registry order)."""
    import importlib.util

    return [name for name in SERVICES if importlib.util.find_spec(f"onair_services.{name}.app") is not None]


def _secrets(root: Path) -> dict[str, str]:
    """Per-deployment secrets, made once under ``root`` and reused by later runs."""
    path = root / "secrets.json"
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    made = {
        "profstore_token": secrets.token_urlsafe(24),
        "auth_key_encryption_secret": secrets.token_urlsafe(32),
    }
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(made))
    path.chmod(0o600)
    return made


def local_env(
    root: Path, *, profiling: bool = False, wallet_faults: bool = False
) -> dict[str, dict[str, str]]:
    """Service-specific environment of a local deployment under ``root`` ('*' applies to all)."""
    s = _secrets(root)
    return {
        "*": {
            "ONAIR_PROFSTORE_TOKEN": s["profstore_token"],
            "ONAIR_PROFILING": "true" if profiling else "false",
            "ONAIR_PROFILE_INTERVAL_S": "20",
            "ONAIR_PROFILE_DURATION_S": "10",
        },
        "gateway": {
            "ONAIR_GATEWAY_STATE_DIR": str(root / "gateway"),
            "ONAIR_GATEWAY_RATE_LIMIT_PER_IP": "0",
            "ONAIR_GATEWAY_READY_UPSTREAMS": "auth",
        },
        "auth": {
            "ONAIR_AUTH_KEY_ENCRYPTION_SECRET": s["auth_key_encryption_secret"],
            "ONAIR_AUTH_LOGIN_LIMIT_PER_IP": "100000/5 minutes",
        },
        "profstore": {
            "ONAIR_PROFSTORE_DIR": str(root / "profiles"),
            "ONAIR_PROFSTORE_RETENTION_S": str(24 * 3600),
        },
        "wallet": {"ONAIR_WALLET_FAULTS": "true" if wallet_faults else "false"},
    }


def platform_fleet(
    root: Path,
    backend_env: Mapping[str, str],
    *,
    services: Sequence[str] | None = None,
    free_ports: bool = True,
    postgres_admin_url: str | None = None,
    database_prefix: str = "onair",
    profiling: bool = False,
    wallet_faults: bool = False,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
) -> Fleet:
    """A :class:`Fleet` of ``services`` (default: all that exist) under ``root``.

    ``free_ports=False`` uses the registry's ports (gateway 8080, ...), as the demo does.
    """
    names = list(services) if services is not None else available_services()
    members = [Member(n, 0 if free_ports else SERVICES[n].port, SERVICES[n].database) for n in names]
    env = local_env(root, profiling=profiling, wallet_faults=wallet_faults)
    common = env.pop("*")
    per_service = {n: {**common, **env.get(n, {}), **(extra_env or {}).get(n, {})} for n in names}
    return Fleet(
        root,
        members,
        backend_env=backend_env,
        postgres_admin_url=postgres_admin_url,
        database_prefix=database_prefix,
        extra_env=per_service,
    )


@dataclass
class RunningPlatform:
    fleet: Fleet
    backend_env: dict[str, str]

    @property
    def gateway_url(self) -> str:
        return self.fleet.url("gateway")

    def url(self, name: str) -> str:
        return self.fleet.url(name)


@contextmanager
def running_platform(
    root: Path,
    *,
    services: Sequence[str] | None = None,
    free_ports: bool = True,
    postgres_admin_url: str | None = None,
    database_prefix: str = "onair",
    profiling: bool = False,
    wallet_faults: bool = False,
    extra_env: Mapping[str, Mapping[str, str]] | None = None,
    devstack_root: Path | None = None,
    progress: Progress | None = None,
) -> Iterator[RunningPlatform]:
    """The devstack and every service, up for the ``with`` block; everything stopped after it."""
    note = progress or (lambda _msg: None)
    with ExitStack() as cleanup:
        backend_env = cleanup.enter_context(temporary_stack(BACKENDS, root=devstack_root, note=note))
        fleet = platform_fleet(
            root,
            backend_env,
            services=services,
            free_ports=free_ports,
            postgres_admin_url=postgres_admin_url,
            database_prefix=database_prefix,
            profiling=profiling,
            wallet_faults=wallet_faults,
            extra_env=extra_env,
        )
        if postgres_admin_url:
            cleanup.callback(fleet.drop_databases)  # after the services stopped (callbacks run LIFO)
        cleanup.callback(fleet.stop_all, note)
        fleet.start(progress=note)
        yield RunningPlatform(fleet, dict(backend_env))
