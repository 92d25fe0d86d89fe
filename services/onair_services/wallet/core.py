"""The wallet's operations: purchase, donate, and the reads; the parts wired together once.

:class:`Wallet` owns the database access (:class:`WalletDb`), the ledger, the saga orchestrator
with the donation and purchase sagas, the simulated payment provider, the JetStream announcer and
fault injection. Routes call it; the background tasks (saga sweep, idempotency-key expiry, the
periodic audit) run on it.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from onair.auth import Identity
from onair.logging import get_logger
from onair.service import ApiError, Service, Unavailable
from onair_services.wallet import idempotency as idem
from onair_services.wallet import ledger, metrics
from onair_services.wallet.announcer import Announcer
from onair_services.wallet.answers import Answer, donation_answer, donation_settled, purchase_answer
from onair_services.wallet.db import WalletDb, now_ms
from onair_services.wallet.donations import donation_saga
from onair_services.wallet.faults import Faults
from onair_services.wallet.ledger import (
    PROVIDER,
    Accounts,
    Movement,
    hold_account,
    movement_event,
    user_account,
)
from onair_services.wallet.models import users
from onair_services.wallet.provider import SimulatedProvider
from onair_services.wallet.purchases import purchase_saga
from onair_services.wallet.sagas import Orchestrator, Saga, new_saga_id
from onair_services.wallet.settings import WalletSettings
from onair_services.wallet.writer import BatchWriter

log = get_logger("onair.wallet")

MESSAGE_MAX = 200


def clean_message(text: str | None) -> str | None:
    """NFC, control characters dropped, trimmed; None when nothing is left."""
    if text is None:
        return None
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch == " ")
    text = " ".join(text.split())
    return text or None


class Wallet:
    def __init__(self, svc: Service, settings: WalletSettings) -> None:
        if svc.engine is None or svc.nats is None:
            raise RuntimeError("the wallet needs its database and NATS (ServiceSpec)")
        self.svc = svc
        self.settings = settings
        self.db = WalletDb(svc.engine)
        self.accounts = Accounts(self.db)
        self.writer = BatchWriter(
            self.db, self._posted, max_batch=settings.write_batch_max, concurrency=settings.writers
        )
        self.faults = Faults(settings)
        self.provider = SimulatedProvider(self.faults, settings.provider_timeout_s)
        self.announcer = Announcer(
            svc.nats,
            stream=settings.stream,
            max_age_s=settings.stream_max_age_s,
            timeout_s=settings.announce_timeout_s,
            replicas=settings.stream_replicas,
        )
        self.orchestrator = Orchestrator(
            self.db,
            self.writer,
            {
                "donation": donation_saga(self.announcer, self.faults, settings.credit_attempts),
                "purchase": purchase_saga(self.provider, settings.provider_attempts),
            },
            lease_s=settings.saga_lease_s,
            max_backoff_s=settings.max_backoff_s,
        )
        self.orchestrator.pause = lambda saga, step: self.faults.pause(saga.id, step)
        self._streamers: dict[str, str] = {}  # channel -> streamer's user id (users are never removed)

    # -- events ----------------------------------------------------------------------------------
    def _posted(self, m: Movement) -> None:
        metrics.MOVED.labels(m.kind, m.step).inc(m.amount)
        self.svc.log.info(
            "ledger entry", category="wallet.ledger.entry", entity=m.transfer_id, **movement_event(m)
        )

    # -- lookups ---------------------------------------------------------------------------------
    async def streamer_of(self, channel: str) -> str:
        """The user id of the streamer whose channel this is (404 when there is none)."""
        cached = self._streamers.get(channel)
        if cached is not None:
            return cached
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(users.c.user_id).where(users.c.username == channel, users.c.streamer.is_(True))
                )
            ).first()
        if row is None:
            raise ApiError(404, "not_found", f"no channel {channel!r}")
        self._streamers[channel] = str(row[0])
        return str(row[0])

    def _deadline(self) -> int:
        return now_ms() + int(self.settings.request_wait_s * 1000)

    # -- purchase --------------------------------------------------------------------------------
    async def purchase(self, caller: Identity, amount: int, key: str, fault: str | None) -> Answer:
        deadline = self._deadline()
        forced = self.faults.forced("purchase", fault)
        digest = idem.request_hash("purchase", {"amount": amount})
        saga_id = new_saga_id()
        await self.accounts.ensure([user_account(caller.user_id), PROVIDER])
        op = self.orchestrator.begin(
            "purchase",
            saga_id=saga_id,
            owner_id=caller.user_id,
            amount=amount,
            payload={"buyer": caller.username, "fault": forced},
        )
        op.claim = idem.Claim(caller.user_id, key, "purchase", digest, saga_id)
        result = await self.writer.submit(op)
        if result.status == "earlier":
            assert result.earlier is not None
            return await self._replay(caller, key, "purchase", result.earlier, digest, deadline)
        assert result.saga is not None
        saga = await self.orchestrator.drive(Saga.of(result.saga), deadline_ms=deadline)
        return purchase_answer(saga)

    # -- donation --------------------------------------------------------------------------------
    async def donate(
        self, caller: Identity, channel: str, amount: int, message: str | None, key: str, fault: str | None
    ) -> Answer:
        deadline = self._deadline()
        streamer_id = await self.streamer_of(channel)
        if streamer_id == caller.user_id:
            raise ApiError(
                422,
                "invalid_request",
                "body.channel: you cannot donate to your own channel",
                fields=[{"field": "body.channel", "message": "is your own channel"}],
            )
        forced = self.faults.forced("donation", fault)
        message = clean_message(message)
        digest = idem.request_hash("donation", {"channel": channel, "amount": amount, "message": message})
        saga_id = new_saga_id()
        await self.accounts.ensure(
            [user_account(caller.user_id), hold_account(caller.user_id), user_account(streamer_id)]
        )
        op = self.orchestrator.begin(
            "donation",
            saga_id=saga_id,
            owner_id=caller.user_id,
            amount=amount,
            payload={
                "donor_id": caller.user_id,
                "donor": caller.username,
                "channel": channel,
                "streamer_id": streamer_id,
                "message": message,
                "fault": forced,
            },
        )
        op.claim = idem.Claim(caller.user_id, key, "donation", digest, saga_id)
        op.refusal = lambda short: (
            409,
            {
                "error": "insufficient_funds",
                "detail": f"the donation needs {short.needed}; your balance is {short.balance}",
                "balance": short.balance,
                "amount": short.needed,
            },
        )
        result = await self.writer.submit(op)
        if result.status == "earlier":
            assert result.earlier is not None
            return await self._replay(caller, key, "donation", result.earlier, digest, deadline)
        if result.status == "short":
            assert result.short is not None and op.refusal is not None
            metrics.REJECTIONS.labels("insufficient_funds").inc()
            status, body = op.refusal(result.short)
            return Answer(status, body)
        assert result.saga is not None
        saga = await self.orchestrator.drive(Saga.of(result.saga), deadline_ms=deadline)
        return donation_answer(saga)

    # -- repeats ---------------------------------------------------------------------------------
    async def _replay(
        self, caller: Identity, key: str, route: str, earlier: idem.Earlier, digest: str, deadline: int
    ) -> Answer:
        earlier.check_same(route, digest)
        metrics.IDEMPOTENT_REPLAYS.labels(route).inc()
        saga = await self.orchestrator.load(earlier.saga_id) if earlier.saga_id else None
        if saga is None:
            # no saga: the first request was refused; read its answer (it may have been written in
            # the very transaction that told us about the key)
            stored = await idem.lookup(self.db, caller.user_id, key)
            if stored is None or stored.status is None or stored.body is None:
                raise Unavailable("the answer of the first request with this key")
            return Answer(stored.status, dict(stored.body), replayed=True)
        saga = await self._wait(saga, route, deadline)
        answer = donation_answer(saga) if route == "donation" else purchase_answer(saga)
        return Answer(answer.status, answer.body, replayed=True, headers=answer.headers)

    async def _wait(self, saga: Saga, route: str, deadline: int) -> Saga:
        """The saga once it can be answered (as its first request would), or as it is at the deadline."""
        settled: Callable[[Saga], bool] = donation_settled if route == "donation" else (lambda s: s.finished)
        delay = 0.01
        while not settled(saga) and now_ms() < deadline:
            if saga.lease_until_ms <= now_ms():  # nobody drives it (its process died): we do
                saga = await self.orchestrator.drive(saga, deadline_ms=deadline)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            saga = await self.orchestrator.load(saga.id) or saga
        return saga

    async def saga_of(self, caller: Identity, saga_id: str, kind: str) -> Saga:
        saga = await self.orchestrator.load(saga_id)
        if saga is None or saga.kind != kind or saga.owner_id != caller.user_id:
            raise ApiError(404, "not_found", f"no {kind} {saga_id!r} of yours")
        return saga

    # -- reads -----------------------------------------------------------------------------------
    async def balance(self, caller: Identity) -> dict[str, Any]:
        async with self.db.read() as conn:
            spendable, held = await ledger.balances(conn, caller.user_id)
        return {"user_id": caller.user_id, "balance": spendable, "held": held}

    async def history(self, caller: Identity, page: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        async with self.db.read() as conn:
            return await ledger.history(conn, caller.user_id, page, limit)

    async def top_donors(self, channel: str, limit: int) -> list[dict[str, Any]]:
        await self.streamer_of(channel)
        async with self.db.read() as conn:
            return await ledger.top_donors(conn, channel, limit)

    # -- background ------------------------------------------------------------------------------
    async def expire_keys(self) -> None:
        while True:
            await asyncio.sleep(min(3600.0, self.settings.idempotency_ttl_s / 4))
            try:
                removed = await idem.forget_expired(self.db, self.settings.idempotency_ttl_s)
                if removed:
                    log.info("idempotency keys expired", removed=removed)
            except Exception as exc:
                log.warning("idempotency key expiry failed", error=repr(exc))
