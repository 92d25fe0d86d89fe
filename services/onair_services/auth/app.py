"""auth's app: the service skeleton with its database, Valkey (login limits, revocations), the log
stream (``auth.user.created``) and the gateway identity (``/auth/me``, ``/auth/logout``).

At start: the keys table gets a signing key if it has none that signs now or later (one, however
many auth processes start at once), the key ring loads; then a background loop re-reads the keys
every ``key_poll_interval_s`` (rotation without a restart), finishes pending access-token
revocations, and re-logs users whose event the broker did not acknowledge.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI

from onair.auth import RevocationList
from onair.cache import TokenCache
from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.auth import routes
from onair_services.auth.keyring import KeyRing, KeyStore
from onair_services.auth.passwords import PasswordHasher
from onair_services.auth.ratelimit import LoginLimiter
from onair_services.auth.sessions import SessionStore
from onair_services.auth.settings import AuthSettings
from onair_services.auth.users import UserStore, relog_pass

PRUNE_INTERVAL_S = 600.0

SPEC = ServiceSpec(
    name="auth",
    title="onair auth",
    description="Users, passwords (argon2id), login sessions with rotating refresh tokens, and the "
    "signing keys of access tokens (EdDSA JWTs, published as a JWKS, rotated without a restart).",
    migrations="onair_services.auth:migrations",
    valkey=True,
    tracking=True,
    # The revocation list writes under the TokenCache prefixes (docs/auth.md).
    tracking_prefixes=("token:", "token-blocked:"),
    kafka=True,
    identity=True,
)


def create_app(
    settings: RuntimeSettings | None = None,
    auth: AuthSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    own = auth or AuthSettings()

    def setup(svc: Service) -> None:
        svc.state["settings"] = own

        @svc.on_start
        async def start(svc: Service) -> None:
            assert svc.valkey is not None and svc.tracker is not None
            key_store = KeyStore(svc.sessions, own.encryption_password())
            await key_store.ensure_signing_key(own.key_alg)
            keyring = KeyRing(key_store)
            await keyring.refresh()
            revocations = RevocationList(TokenCache(svc.valkey, svc.tracker))
            users = UserStore(svc.sessions)
            state = routes.AuthState(
                settings=own,
                keyring=keyring,
                users=users,
                sessions=SessionStore(svc.sessions, keyring, revocations, own),
                hasher=PasswordHasher(
                    time_cost=own.argon2_time_cost,
                    memory_cost=own.argon2_memory_kib,
                    parallelism=own.argon2_parallelism,
                    concurrency=own.hash_concurrency,
                ),
                limiter=LoginLimiter(
                    svc.valkey,
                    per_account=own.account_limit(),
                    per_ip=own.ip_limit(),
                    failure_cost=own.login_failure_cost,
                ),
                revocations=revocations,
            )
            svc.state["auth"] = state
            svc.background(_maintenance(svc, state), "maintenance")
            svc.background(_relog(svc, state), "relog")

        async def signing_key() -> bool | str:
            state: routes.AuthState | None = svc.state.get("auth")
            if state is None:
                return "starting"
            try:
                state.keyring.signer()
            except ConnectionError as exc:
                return str(exc)
            return True

        svc.ready_check("signing_key", signing_key)

    return create_service_app(
        SPEC, [routes.router, routes.wellknown], settings=settings, setup=setup, configure_logs=configure_logs
    )


async def _maintenance(svc: Service, state: routes.AuthState) -> None:
    """Re-read the keys and finish pending access-token revocations every poll interval; delete
    sessions that ended more than a day ago every ``PRUNE_INTERVAL_S``."""
    next_prune = time.monotonic() + PRUNE_INTERVAL_S
    while True:
        await asyncio.sleep(state.settings.key_poll_interval_s)
        if time.monotonic() >= next_prune:
            next_prune = time.monotonic() + PRUNE_INTERVAL_S
            try:
                pruned = await state.sessions.prune()
                if pruned:
                    svc.log.info("auth.sessions.pruned", sessions=pruned)
            except Exception as exc:
                svc.log.warning("auth.sessions.prune_failed", error=repr(exc))
        try:
            await state.keyring.refresh()
        except Exception as exc:  # the database may be down: keep the keys we have
            svc.log.warning("auth.keys.refresh_failed", error=repr(exc))
        try:
            await state.sessions.sweep()
        except Exception as exc:  # Valkey or the database down: the next pass retries
            svc.log.warning("auth.revocation.sweep_failed", error=repr(exc))


async def _relog(svc: Service, state: routes.AuthState) -> None:
    """Log again the users whose auth.user.created the broker did not acknowledge (at start, then
    every ``relog_interval_s``)."""
    settings = state.settings
    while True:
        try:
            await relog_pass(svc, state.users, settings.relog_grace_s, settings.event_ack_timeout_s)
        except Exception as exc:  # the database may be down: try again next time
            svc.log.warning("auth.relog_failed", error=repr(exc))
        await asyncio.sleep(settings.relog_interval_s)
