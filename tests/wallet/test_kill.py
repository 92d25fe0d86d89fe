"""A wallet process killed with SIGKILL in the middle of its sagas: started again, it finishes or
compensates every one of them, and clients that lost their answer get it by asking again with the
same Idempotency-Key.

The wallet runs as a real process (``onair serve wallet``) told to pause inside a step (the credit
step, inside its database transaction; or the announcement, after JetStream acknowledged it and
before the saga recorded it), is killed there, and is started again without the pause and with the
credit step failing half of the time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from onair.bench.wallet_harness import wallet_env
from onair.clients import NatsClient
from onair.fleet import Fleet, Member
from onair.testing import IdentityIssuer
from onair_services.wallet.audit import run_audit
from onair_services.wallet.db import WalletDb

from .helpers import eventually, migrated, seeded_people, sql

DONATIONS = 12
BASE = {"faults": True, "saga_lease_s": 2, "sweep_interval_s": 0.5, "credit_attempts": 1}


async def count(database_url: str, where: str) -> int:
    return int(
        (await sql(database_url, f"SELECT COUNT(*) FROM sagas WHERE kind = 'donation' AND {where}"))[0][0]
    )


@pytest.mark.parametrize("pause_step", ["credit", "announce"])
async def test_a_killed_wallet_finishes_or_compensates_every_saga(
    pause_step: str,
    database_url: str,
    nats_url: str,
    kafka_bootstrap: str,
    identity_issuer: IdentityIssuer,
    tmp_path: Path,
) -> None:
    backend = {"ONAIR_NATS_URL": nats_url, "ONAIR_KAFKA_BOOTSTRAP": kafka_bootstrap}

    def env(**settings: Any) -> dict[str, str]:
        return wallet_env(
            database_url=database_url,
            backend=backend,
            jwks_url=identity_issuer.jwks_url,
            settings={**BASE, **settings},
            ONAIR_SPOOL_DIR=str(tmp_path / "spool"),
        )

    fleet = Fleet(
        tmp_path / "fleet", [Member("wallet")], extra_env={"wallet": env(fault_pause_step=pause_step)}
    )
    fleets = [fleet]
    await migrated(database_url)
    fleet.start()
    try:
        async with httpx.AsyncClient(base_url=fleet.url("wallet"), timeout=60) as http:
            viewers, streamers = await seeded_people(http, identity_issuer, database_url, 4, 2)
            assert {(await v.buy(1000)).status_code for v in viewers} == {201}
            plan = [
                (viewers[i % len(viewers)], streamers[i % len(streamers)], 10 + i, uuid.uuid4().hex)
                for i in range(DONATIONS)
            ]
            sent = [asyncio.create_task(v.donate(s.name, amount, key=key)) for v, s, amount, key in plan]

            if pause_step == "announce":  # every saga pauses after its announcement: all of them get there
                target = "state = 'running' AND step = 'announce'"
                await eventually(lambda: _equals(database_url, target, DONATIONS), 30, "sagas at announce")
            else:  # the writer pauses inside the first transaction with a credit: some sagas wait behind it
                await eventually(lambda: _at_least(database_url, "step = 'credit'", 1), 30, "sagas at credit")
                await asyncio.sleep(1.0)
            before = await count(database_url, "state IN ('running', 'compensating')")
            assert before > 0
            fleet.kill("wallet")  # SIGKILL: no shutdown, open transactions die with the process
            lost = await asyncio.gather(*sent, return_exceptions=True)
            assert all(isinstance(r, httpx.TransportError) for r in lost), lost
            assert await count(database_url, "state IN ('running', 'compensating')") == before

        # started again (on a fresh port: the old one may linger in TIME_WAIT), same database
        again = Fleet(
            tmp_path / "again", [Member("wallet")], extra_env={"wallet": env(fault_credit_failure_rate=0.5)}
        )
        fleets.append(again)
        again.start()
        async with httpx.AsyncClient(base_url=again.url("wallet"), timeout=60) as http:
            await eventually(
                lambda: _equals(database_url, "state IN ('running', 'compensating')", 0), 60, "sagas resumed"
            )
            # the clients that lost their answer ask again with the same key
            for person in (*viewers, *streamers):
                person.http = http
            answers = [await v.donate(s.name, amount, key=key) for v, s, amount, key in plan]
            statuses = Counter(a.status_code for a in answers)
            assert set(statuses) <= {201, 502}, [a.text for a in answers]
            ids = [a.json()["donation_id"] for a in answers]
            assert len(set(ids)) == DONATIONS
            rows = await sql(database_url, "SELECT id, state FROM sagas WHERE kind = 'donation'")
            assert len(rows) == DONATIONS  # a repeat never started a second saga
            states = dict(rows)
            for answer, donation_id in zip(answers, ids, strict=True):
                assert states[donation_id] == ("completed" if answer.status_code == 201 else "compensated")

            spent: Counter[str] = Counter()
            received: Counter[str] = Counter()
            for (viewer, streamer, amount, _), answer in zip(plan, answers, strict=True):
                if answer.status_code == 201:
                    spent[viewer.name] += amount
                    received[streamer.name] += amount
            for v in viewers:
                assert await v.balance() == (1000 - spent[v.name], 0)
            for s in streamers:
                assert await s.balance() == (received[s.name], 0)
            if pause_step == "announce":  # killed after the ack, published again on resume: deduplicated
                assert statuses == {201: DONATIONS}
                await _assert_announced_once(
                    nats_url, [s.name for s in streamers], received_counts(plan, answers)
                )
    finally:
        for f in fleets:
            f.stop_all()

    from onair.db import create_engine

    engine = create_engine(database_url)
    try:
        report = await run_audit(WalletDb(engine))
    finally:
        await engine.dispose()
    assert report.ok, report.as_dict()


async def _equals(database_url: str, where: str, n: int) -> bool:
    return await count(database_url, where) == n


async def _at_least(database_url: str, where: str, n: int) -> bool:
    return await count(database_url, where) >= n


def received_counts(plan: list[Any], answers: list[httpx.Response]) -> Counter[str]:
    return Counter(s.name for (_, s, _, _), a in zip(plan, answers, strict=True) if a.status_code == 201)


async def _assert_announced_once(nats_url: str, channels: list[str], expected: Counter[str]) -> None:
    async with NatsClient(nats_url, name="wallet-kill-test") as nats:
        js = nats.jetstream()
        for channel in channels:
            subject = nats.subject("wallet", "donation", channel)
            info = await js.stream_info("WALLET", subjects_filter=subject)
            assert (info.state.subjects or {}).get(subject, 0) == expected[channel], channel
