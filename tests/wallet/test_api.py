"""The wallet's API on real servers (SQLite and PostgreSQL): purchases, donations and their saga,
idempotency keys, validation, the events it logs and announces, and the audit on the result."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from onair.bench.wallet_harness import WalletBenchConfig, run_benchmark
from onair.clients import KafkaClient, NatsClient
from onair_services.wallet.audit import run_audit

from .conftest import WalletApp
from .helpers import Person, eventually, make_people, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def people(w: WalletApp, viewers: int = 2, streamers: int = 1) -> tuple[list[Person], list[Person]]:
    return await make_people(w.http, w.issuer, w.kafka_bootstrap, viewers, streamers)


async def ledger_rows(w: WalletApp) -> int:
    return int((await sql(w.database_url, "SELECT COUNT(*) FROM ledger"))[0][0])


async def test_purchase_credits_the_buyer_and_shows_in_the_history(wallet_app: WalletApp) -> None:
    (alice,), _ = await people(wallet_app, 1, 1)
    r = await alice.buy(2500)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "completed" and r.json()["amount"] == 2500
    assert await alice.balance() == (2500, 0)
    page = (await wallet_app.http.get("/wallet/ledger", headers=alice.headers())).json()
    assert page["has_more"] is False
    [entry] = page["entries"]
    assert (
        entry["kind"] == "purchase"
        and entry["amount"] == 2500
        and entry["reference"] == r.json()["purchase_id"]
    )


async def test_donation_moves_money_and_is_announced(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(1000)).status_code == 201
    nats = NatsClient(wallet_app.nats_url, name="wallet-test")
    async with nats:
        got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_msg(msg: Any) -> None:
            await got.put(orjson.loads(msg.data))

        await nats.subscribe(nats.subject("wallet", "donation", streamer.name), cb=on_msg)
        r = await viewer.donate(streamer.name, 300, message="  Great\u0007 stream!  ")
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["state"] == "completed" and body["message"] == "Great stream!"
        announced = await asyncio.wait_for(got.get(), 5)
    assert announced["donation_id"] == body["donation_id"]
    assert announced["transfer_id"] == f"{body['donation_id']}:credit"
    assert (announced["donor"], announced["channel"], announced["amount"]) == (
        viewer.name,
        streamer.name,
        300,
    )
    assert await viewer.balance() == (700, 0)
    assert await streamer.balance() == (300, 0)
    top = (await wallet_app.http.get(f"/wallet/top-donors/{streamer.name}")).json()
    assert top == {
        "channel": streamer.name,
        "donors": [{"donor": viewer.name, "amount": 300, "donations": 1}],
    }
    mine = await wallet_app.http.get(f"/wallet/donations/{body['donation_id']}", headers=viewer.headers())
    assert mine.status_code == 200 and mine.json()["state"] == "completed"
    theirs = await wallet_app.http.get(f"/wallet/donations/{body['donation_id']}", headers=streamer.headers())
    assert theirs.status_code == 404


async def test_ledger_movements_are_logged_as_events(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    bought = (await viewer.buy(50)).json()["purchase_id"]
    donated = (await viewer.donate(streamer.name, 20)).json()["donation_id"]
    wanted = {f"{bought}:deposit", f"{donated}:debit", f"{donated}:credit"}
    kafka = KafkaClient(wallet_app.kafka_bootstrap, client_id="wallet-test")
    seen: dict[str, dict[str, Any]] = {}
    try:
        consumer = await kafka.consumer("wallet.ledger.entry", group_id=None)
        async with asyncio.timeout(30):
            while not wanted <= set(seen):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for rec in records:
                        env = orjson.loads(rec.value)
                        seen[env["entity"]] = env["data"]
    finally:
        await kafka.close()
    deposit = seen[f"{bought}:deposit"]
    assert deposit == {
        "transfer_id": f"{bought}:deposit",
        "saga_id": bought,
        "kind": "purchase",
        "step": "deposit",
        "debit_account": "system:provider",
        "credit_account": f"user:{viewer.id}",
        "amount": 50,
    }
    credit = seen[f"{donated}:credit"]
    assert (
        credit["kind"] == "donation" and credit["channel"] == streamer.name and credit["donor"] == viewer.name
    )
    assert (credit["debit_account"], credit["credit_account"]) == (f"hold:{viewer.id}", f"user:{streamer.id}")


async def test_a_failing_credit_is_compensated(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(500)).status_code == 201
    r = await viewer.donate(streamer.name, 200, **{"X-Onair-Wallet-Fault": "credit_fail"})
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "donation_failed" and r.json()["state"] == "compensated"
    assert r.json()["reason"] == "credit_failed"
    assert await viewer.balance() == (500, 0)
    assert await streamer.balance() == (0, 0)
    steps = [
        e["step"]
        for e in (await wallet_app.http.get("/wallet/ledger", headers=viewer.headers())).json()["entries"]
    ]
    assert steps == ["refund", "debit", "deposit"]
    top = (await wallet_app.http.get(f"/wallet/top-donors/{streamer.name}")).json()
    assert top["donors"] == []


async def test_the_payment_provider_declining_or_timing_out(wallet_app: WalletApp) -> None:
    (buyer,), _ = await people(wallet_app, 1, 1)
    declined = await buyer.buy(100, **{"X-Onair-Wallet-Fault": "decline"})
    assert declined.status_code == 402 and declined.json()["error"] == "payment_declined"
    timed_out = await buyer.buy(100, **{"X-Onair-Wallet-Fault": "timeout"})
    assert timed_out.status_code == 504 and timed_out.json()["error"] == "payment_timeout"
    assert timed_out.json()["state"] == "compensated"
    assert await buyer.balance() == (0, 0)
    bad = await buyer.buy(100, **{"X-Onair-Wallet-Fault": "explode"})
    assert bad.status_code == 400
    provider = wallet_app.wallet.provider
    assert timed_out.json()["purchase_id"] not in provider.charges  # refunded if it went through


async def test_a_donation_larger_than_the_balance_is_409_and_changes_nothing(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(100)).status_code == 201
    rows = await ledger_rows(wallet_app)
    key = uuid.uuid4().hex
    r = await viewer.donate(streamer.name, 101, key=key)
    assert r.status_code == 409, r.text
    assert r.json() == {
        "error": "insufficient_funds",
        "detail": "the donation needs 101; your balance is 100",
        "balance": 100,
        "amount": 101,
    }
    assert await viewer.balance() == (100, 0) and await streamer.balance() == (0, 0)
    assert await ledger_rows(wallet_app) == rows
    again = await viewer.donate(streamer.name, 101, key=key)  # the first answer, even now
    assert again.status_code == 409 and again.json() == r.json()
    assert again.headers["idempotent-replayed"] == "true"
    sagas = await sql(
        wallet_app.database_url,
        "SELECT COUNT(*) FROM sagas WHERE owner_id = :o AND kind = 'donation'",
        o=viewer.id,
    )
    assert sagas[0][0] == 0


async def test_idempotency_keys(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    no_key = await wallet_app.http.post("/wallet/purchase", json={"amount": 5}, headers=viewer.headers())
    assert no_key.status_code == 400 and no_key.json()["error"] == "idempotency_key_required"
    bad_key = await viewer.buy(5, key="has spaces in it")
    assert bad_key.status_code == 400 and bad_key.json()["error"] == "bad_idempotency_key"
    first = await viewer.buy(1000, key="buy-1")
    repeat = await viewer.buy(1000, key="buy-1")
    assert first.status_code == repeat.status_code == 201
    assert repeat.json() == first.json() and repeat.headers["idempotent-replayed"] == "true"
    other_body = await viewer.buy(999, key="buy-1")
    assert other_body.status_code == 422 and other_body.json()["error"] == "idempotency_key_reused"
    other_route = await viewer.donate(streamer.name, 1000, key="buy-1")
    assert other_route.status_code == 422 and other_route.json()["error"] == "idempotency_key_reused"
    assert await viewer.balance() == (1000, 0)
    # another user may use the same key for their own request
    (other,), _ = await people(wallet_app, 1, 1)
    assert (await other.buy(7, key="buy-1")).status_code == 201
    # a compensated donation's answer is the same on a repeat
    failed = await viewer.donate(streamer.name, 10, key="d-1", **{"X-Onair-Wallet-Fault": "credit_fail"})
    failed_again = await viewer.donate(streamer.name, 10, key="d-1")
    assert failed.status_code == failed_again.status_code == 502 and failed_again.json() == failed.json()


async def test_concurrent_requests_with_one_key_execute_once(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(1000)).status_code == 201
    key = uuid.uuid4().hex
    answers = await asyncio.gather(*(viewer.donate(streamer.name, 100, key=key) for _ in range(20)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["donation_id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 19
    assert await viewer.balance() == (900, 0) and await streamer.balance() == (100, 0)
    sagas = await sql(
        wallet_app.database_url,
        "SELECT COUNT(*) FROM sagas WHERE owner_id = :o AND kind = 'donation'",
        o=viewer.id,
    )
    assert sagas[0][0] == 1
    buys = await asyncio.gather(*(viewer.buy(50, key="same-buy") for _ in range(10)))
    assert {b.status_code for b in buys} == {201} and len({b.json()["purchase_id"] for b in buys}) == 1
    assert await viewer.balance() == (950, 0)


BAD_AMOUNTS: list[Any] = [0, -5, 1.5, "10", None, True, 10**12, 10_000_001]


async def test_bad_amounts_are_422_and_change_nothing(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(100)).status_code == 201
    rows = await ledger_rows(wallet_app)
    for amount in BAD_AMOUNTS:
        for r in (await viewer.buy(amount), await viewer.donate(streamer.name, amount)):
            assert r.status_code == 422, (amount, r.text)
            assert r.json()["error"] == "invalid_request"
            assert "body.amount" in [f["field"] for f in r.json()["fields"]], (amount, r.text)
    assert await ledger_rows(wallet_app) == rows
    assert await viewer.balance() == (100, 0)


async def test_other_bad_input(wallet_app: WalletApp) -> None:
    (viewer, plain), (streamer,) = await people(wallet_app, 2, 1)
    assert (await viewer.buy(100)).status_code == 201
    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": streamer.name}, "body.amount"),
        ({"channel": "No Such Channel!", "amount": 5}, "body.channel"),
        ({"channel": streamer.name, "amount": 5, "message": "x" * 201}, "body.message"),
        ({"channel": streamer.name, "amount": 5, "tip": 1}, "body.tip"),
    ]
    for body, field in cases:
        r = await wallet_app.http.post(
            "/wallet/donations", json=body, headers=viewer.headers(uuid.uuid4().hex)
        )
        assert r.status_code == 422 and field in [f["field"] for f in r.json()["fields"]], (body, r.text)
    unknown = await viewer.donate("nobody_here_xyz", 5)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    not_a_channel = await viewer.donate(plain.name, 5)  # a user, but not a streamer
    assert not_a_channel.status_code == 404
    assert (await streamer.buy(10)).status_code == 201
    own = await streamer.donate(streamer.name, 5)
    assert own.status_code == 422 and own.json()["fields"][0]["field"] == "body.channel"
    anonymous = await wallet_app.http.post("/wallet/donations", json={"channel": streamer.name, "amount": 1})
    assert anonymous.status_code == 401
    assert (await wallet_app.http.get("/wallet/balance")).status_code == 401
    assert (await wallet_app.http.get("/wallet/top-donors/nobody_here_xyz")).status_code == 404
    assert (await wallet_app.http.get("/wallet/ledger?limit=0", headers=viewer.headers())).status_code == 422
    assert await viewer.balance() == (100, 0)


async def test_history_pages(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(100)).status_code == 201
    for _ in range(5):
        assert (await viewer.donate(streamer.name, 1)).status_code == 201
    first = (await wallet_app.http.get("/wallet/ledger?limit=4", headers=viewer.headers())).json()
    second = (await wallet_app.http.get("/wallet/ledger?limit=4&page=2", headers=viewer.headers())).json()
    assert first["has_more"] is True and second["has_more"] is False
    entries = first["entries"] + second["entries"]
    assert [e["amount"] for e in entries] == [-1, -1, -1, -1, -1, 100]
    assert sum(e["amount"] for e in entries) == (await viewer.balance())[0]
    streamer_page = (await wallet_app.http.get("/wallet/ledger", headers=streamer.headers())).json()
    assert [e["amount"] for e in streamer_page["entries"]] == [1] * 5


async def test_openapi_tells_the_statuses(wallet_app: WalletApp) -> None:
    doc = (await wallet_app.http.get("/openapi.json")).json()
    donate = doc["paths"]["/wallet/donations"]["post"]
    assert {"201", "202", "400", "401", "404", "409", "422", "502", "503"} <= set(donate["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in donate["parameters"])
    assert "X-Onair-Wallet-Fault" not in {p["name"] for p in donate["parameters"]}
    purchase = doc["paths"]["/wallet/purchase"]["post"]
    assert {"201", "400", "402", "422", "504"} <= set(purchase["responses"])
    assert doc["components"]["schemas"]["PurchaseRequest"]["properties"]["amount"]["exclusiveMinimum"] == 0


async def test_readiness_includes_the_writer(wallet_app: WalletApp) -> None:
    ready = await wallet_app.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "nats": "ok", "writer": "ok"}


async def test_metrics_count_sagas_and_replays(wallet_app: WalletApp) -> None:
    (viewer,), (streamer,) = await people(wallet_app, 1, 1)
    assert (await viewer.buy(100)).status_code == 201
    assert (await viewer.donate(streamer.name, 10, key="m-1")).status_code == 201
    assert (await viewer.donate(streamer.name, 10, key="m-1")).status_code == 201
    assert (
        await viewer.donate(streamer.name, 10, **{"X-Onair-Wallet-Fault": "credit_fail"})
    ).status_code == 502
    text = (await wallet_app.http.get("/metrics")).text
    assert 'onair_wallet_sagas_total{kind="donation",outcome="completed"}' in text
    assert 'onair_wallet_sagas_total{kind="donation",outcome="compensated"}' in text
    assert 'onair_wallet_compensations_total{kind="donation",step="refund"}' in text
    assert 'onair_wallet_idempotent_replays_total{route="donation"}' in text


async def test_the_benchmark_harness_against_a_running_wallet(wallet_app: WalletApp, tmp_path: Path) -> None:
    """``onair bench wallet --base-url`` (how it will run through the gateway): each user's headers
    from a file, the audit on the wallet's database; a small run, every error count 0."""
    viewers, streamers = await people(wallet_app, 3, 2)
    users = {
        "viewers": [{"username": v.name, "headers": v.headers()} for v in viewers],
        "streamers": [{"username": s.name, "headers": s.headers()} for s in streamers],
    }
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps(users))
    cfg = WalletBenchConfig(
        donations=120,
        warmup=0,
        concurrency=8,
        duplicate_ratio=0.1,
        base_url=wallet_app.url,
        users_file=users_file,
        database_url=wallet_app.database_url,
    )
    result = await run_benchmark(cfg)
    assert result["donations"] == 120 and result["completed"] == 120, result
    assert result["balance_errors"] == result["double_spends"] == result["sagas_unfinished"] == 0, result
    assert result["donations_per_s"] > 0


async def test_everything_above_passes_the_audit(wallet_app: WalletApp) -> None:
    async def settled() -> bool:
        rows = await sql(
            wallet_app.database_url, "SELECT COUNT(*) FROM sagas WHERE state IN ('running', 'compensating')"
        )
        return rows[0][0] == 0

    await eventually(settled, 20, "every saga finished")
    report = await run_audit(wallet_app.wallet.db)
    assert report.ok, report.as_dict()
    assert report.totals["sagas"] == report.totals["sagas_completed"] + report.totals["sagas_compensated"] > 0
