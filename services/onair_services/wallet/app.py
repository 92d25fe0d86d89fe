"""wallet (``onair serve wallet``, port 8107): accounts, a double-entry ledger, purchases and
donations as orchestrated sagas, idempotent writes. See docs/wallet.md."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from onair.service import RuntimeSettings, Service, ServiceSpec, create_service_app
from onair_services.wallet import metrics, routes
from onair_services.wallet.audit import run_audit
from onair_services.wallet.core import Wallet
from onair_services.wallet.projections import users_projection
from onair_services.wallet.settings import WalletSettings

SPEC = ServiceSpec(
    name="wallet",
    title="onair wallet",
    description="Accounts in minor units, a double-entry ledger, purchases and donations as sagas.",
    migrations="onair_services.wallet:migrations",
    nats=True,
    kafka=True,
    projections=lambda svc: [users_projection(svc)],
)


def create_app(
    settings: RuntimeSettings | None = None,
    wallet_settings: WalletSettings | None = None,
    *,
    configure_logs: bool = True,
) -> FastAPI:
    ws = wallet_settings or WalletSettings()

    def setup(svc: Service) -> None:
        @svc.on_start
        async def start(svc: Service) -> None:
            wallet = Wallet(svc, ws)
            svc.state["wallet"] = wallet
            wallet.writer.start()

            async def writer_ready() -> bool | str:
                return True if wallet.writer.running else "the writer is not running"

            svc.ready_check("writer", writer_ready)
            svc.background(wallet.orchestrator.run_sweeper(ws.sweep_interval_s), "saga-sweep")
            svc.background(wallet.expire_keys(), "idempotency-expiry")
            if ws.audit_interval_s > 0:
                svc.background(audit_loop(wallet, ws.audit_interval_s), "audit")

        @svc.on_stop
        async def stop(svc: Service) -> None:
            wallet: Wallet | None = svc.state.get("wallet")
            if wallet is not None:
                await wallet.writer.stop()

    return create_service_app(
        SPEC, [routes.router], settings=settings, setup=setup, configure_logs=configure_logs
    )


async def audit_loop(wallet: Wallet, interval_s: float) -> None:
    """Run the audit every ``interval_s`` and export what it finds (``onair_wallet_audit_problems``)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            report = await run_audit(wallet.db, grace_s=max(60.0, 6 * wallet.settings.saga_lease_s))
        except Exception as exc:
            metrics.AUDIT_RUNS.labels("error").inc()
            wallet.svc.log.warning("wallet audit failed to run", error=repr(exc))
            continue
        for check in report.checks:
            metrics.AUDIT_PROBLEMS.labels(check.name).set(check.count)
        metrics.AUDIT_RUNS.labels("ok" if report.ok else "problems").inc()
        if not report.ok:
            wallet.svc.log.error(
                "wallet audit found problems",
                failing={c.name: c.count for c in report.failing},
                examples={c.name: c.problems for c in report.failing},
            )
