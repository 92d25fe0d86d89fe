"""``onair wallet audit`` passes on the books the wallet keeps and names what is wrong once they are
tampered with (a balance, a ledger row, a stuck saga); the database itself refuses a negative
balance."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from onair.cli.main import app as cli

from .conftest import WalletApp
from .helpers import eventually, make_people, sql

pytestmark = pytest.mark.asyncio(loop_scope="module")

# the service audits itself every half second here and exports what it finds
WALLET_SETTINGS = {"audit_interval_s": 0.5, "saga_lease_s": 1.0}


async def audit_metric(w: WalletApp, check: str) -> float | None:
    prefix = f'onair_wallet_audit_problems{{check="{check}"}} '
    for line in (await w.http.get("/metrics")).text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


async def audit(database_url: str, *args: str) -> tuple[int, str]:
    """Run the CLI (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["wallet", "audit", "--database-url", database_url, *args]
    )
    return result.exit_code, result.output


def failing_checks(output: str) -> dict[str, list[str]]:
    # (the app under test runs in this process: its log lines may land in the captured output too)
    [report] = [r for r in map(_json, output.splitlines()) if isinstance(r, dict) and "checks" in r]
    return {c["name"]: c["examples"] for c in report["checks"] if not c["ok"]}


def _json(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


async def test_audit_passes_then_names_each_tampering(wallet_app: WalletApp) -> None:
    w = wallet_app
    (viewer, other), (streamer,) = await make_people(w.http, w.issuer, w.kafka_bootstrap, 2, 1)
    assert (await viewer.buy(1000)).status_code == 201
    assert (await other.buy(300)).status_code == 201
    assert (await viewer.donate(streamer.name, 250)).status_code == 201
    assert (
        await other.donate(streamer.name, 50, **{"X-Onair-Wallet-Fault": "credit_fail"})
    ).status_code == 502
    db = w.database_url

    code, output = await audit(db)
    assert code == 0, output
    assert "balances_match_ledger" in output and "FAILED" not in output
    await eventually(lambda: _metric_is(w, "money_conserved", 0.0), 10, "the service audited itself")
    code, output = await audit(db, "--json")
    [report] = [r for r in map(_json, output.splitlines()) if isinstance(r, dict) and "checks" in r]
    assert code == 0 and report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {
        "balances_match_ledger",
        "money_conserved",
        "sagas_finished",
    }

    # a balance that is not the sum of its ledger (and money that was never bought)
    account = f"user:{viewer.id}"
    await sql(db, "UPDATE accounts SET balance = balance + 7 WHERE id = :a", a=account)
    await eventually(lambda: _metric_is(w, "balances_match_ledger", 1.0), 10, "the service's audit saw it")
    code, output = await audit(db)
    assert code == 1
    assert "balances_match_ledger (1)" in output and "money_conserved" in output  # the last line, on stderr
    code, output = await audit(db, "--json")
    failing = failing_checks(output)
    assert code == 1 and set(failing) == {"balances_match_ledger", "money_conserved"}
    assert failing["balances_match_ledger"] == [f"{account}: balance 757 != ledger 750"]
    await sql(db, "UPDATE accounts SET balance = balance - 7 WHERE id = :a", a=account)
    await eventually(lambda: _metric_is(w, "balances_match_ledger", 0.0), 10, "the service's audit is clean")

    # a ledger row changed: its transfer no longer sums to zero
    [(row_id, transfer_id)] = await sql(
        db,
        "SELECT l.id, l.transfer_id FROM ledger l JOIN transfers t ON t.id = l.transfer_id "
        "WHERE t.step = 'credit' AND l.amount > 0",
    )
    await sql(db, "UPDATE ledger SET amount = amount + 1 WHERE id = :i", i=row_id)
    code, output = await audit(db, "--json")
    failing = failing_checks(output)
    assert code == 1 and "transfers_balanced" in failing and transfer_id in failing["transfers_balanced"][0]
    await sql(db, "UPDATE ledger SET amount = amount - 1 WHERE id = :i", i=row_id)

    # a saga left running (leased for an hour by a process that is gone: the sweep leaves it be)
    now = int(time.time() * 1000)
    await sql(
        db,
        "UPDATE sagas SET state = 'running', step = 'announce', lease_owner = 'gone', "
        "lease_until_ms = :until, updated_ms = :now WHERE state = 'completed' AND kind = 'donation'",
        until=now + 3_600_000,
        now=now,
    )
    code, output = await audit(db)
    assert code == 1 and "sagas_finished" in output
    assert (await audit(db, "--grace", "3600"))[0] == 0  # one that changed recently is still running
    await sql(
        db,
        "UPDATE sagas SET state = 'completed', lease_owner = NULL, lease_until_ms = 0 "
        "WHERE state = 'running' AND kind = 'donation'",
    )

    assert (await audit(db))[0] == 0
    # the database refuses a negative balance outright (whatever the code above it does)
    with pytest.raises(IntegrityError):
        await sql(db, "UPDATE accounts SET balance = -1 WHERE id = :a", a=account)


async def _metric_is(w: WalletApp, check: str, value: float) -> bool:
    return await audit_metric(w, check) == value
