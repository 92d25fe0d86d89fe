"""``onair bench wallet``: concurrent donations with failures in the credit step, checked to the unit.

The measurement lives in :mod:`onair.bench.wallet_harness`; this module is the command: options,
progress, a table, and with ``--json`` one JSON object as the last line. Targets:
``donations_per_s >= 300`` on PostgreSQL, ``balance_errors == double_spends == sagas_unfinished == 0``
(the command exits non-zero when an error count is not 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("wallet")
    def wallet(
        donations: Annotated[int, typer.Option(help="Measured donations.")] = 6000,
        concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 48,
        viewers: Annotated[int, typer.Option(help="Donating viewers.")] = 20,
        streamers: Annotated[int, typer.Option(help="Streamers (channels) receiving.")] = 5,
        failure_rate: Annotated[
            float, typer.Option(help="Probability that the credit step fails (direct mode).")
        ] = 0.2,
        credit_attempts: Annotated[
            int, typer.Option(help="Credit attempts before a donation is refunded (direct mode).")
        ] = 1,
        duplicate_ratio: Annotated[
            float, typer.Option(help="Share of donations sent twice at once with one Idempotency-Key.")
        ] = 0.02,
        warmup: Annotated[int, typer.Option(help="Donations before measuring.")] = 300,
        database: Annotated[str, typer.Option(help="Direct mode: postgres or sqlite.")] = "postgres",
        replicas: Annotated[
            int, typer.Option(help="Direct mode: wallet processes sharing the database (round-robin).")
        ] = 1,
        postgres_url: Annotated[
            str | None, typer.Option(help="PostgreSQL server (default: ONAIR_TEST_POSTGRES_URL).")
        ] = None,
        base_url: Annotated[
            str | None,
            typer.Option(help="Run against this wallet (or the gateway) instead of starting one."),
        ] = None,
        users_file: Annotated[
            Path | None,
            typer.Option(help='With --base-url: {"viewers": [{"username", "headers"}], "streamers": [...]}.'),
        ] = None,
        database_url: Annotated[
            str | None, typer.Option(help="With --base-url: the wallet's database, for the audit.")
        ] = None,
        seed: Annotated[int, typer.Option(help="Random seed of the donation mix.")] = 7,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """Wallet: donations/s among viewers and streamers with credit failures; no money lost or doubled."""
        import asyncio
        import json
        import sys

        from rich.console import Console
        from rich.table import Table

        from onair.bench.wallet_harness import WalletBenchConfig, default_postgres_url, run_benchmark
        from onair.cli.common import fail
        from onair.logging import configure_logging

        configure_logging("bench", level="WARNING", stream=sys.stderr)
        if database not in ("postgres", "sqlite"):
            fail(f"--database must be postgres or sqlite, got {database!r}")
        if min(donations, concurrency, viewers, streamers, credit_attempts, replicas) < 1:
            fail(
                "--donations, --concurrency, --viewers, --streamers, --credit-attempts and --replicas "
                "must be positive"
            )
        if not 0 <= failure_rate <= 1 or not 0 <= duplicate_ratio <= 1:
            fail("--failure-rate and --duplicate-ratio must be between 0 and 1")
        if base_url and users_file is None:
            fail("--base-url needs --users-file (each user's identity headers)")
        if users_file is not None and not users_file.is_file():
            fail(f"--users-file {users_file} does not exist")
        if not base_url and database == "postgres" and not (postgres_url or default_postgres_url()):
            fail(
                "a PostgreSQL run needs ONAIR_TEST_POSTGRES_URL or --postgres-url (or use --database sqlite)"
            )
        cfg = WalletBenchConfig(
            viewers=viewers,
            streamers=streamers,
            donations=donations,
            warmup=warmup,
            concurrency=concurrency,
            credit_failure_rate=failure_rate,
            credit_attempts=credit_attempts,
            duplicate_ratio=duplicate_ratio,
            seed=seed,
            database=database,
            replicas=replicas,
            postgres_url=postgres_url,
            base_url=base_url,
            users_file=users_file,
            database_url=database_url,
        )
        console = Console(stderr=True)
        with console.status("wallet benchmark") as status:
            result = asyncio.run(run_benchmark(cfg, note=lambda m: status.update(m)))

        table = Table(
            title=f"Wallet: {result['donations']:,} donations, {concurrency} clients ({result['mode']})"
        )
        for col in (
            "donations/s",
            "completed",
            "compensated",
            "p50 ms",
            "p99 ms",
            "balance errors",
            "double spends",
            "unfinished sagas",
        ):
            table.add_column(col, justify="right")
        table.add_row(
            f"{result['donations_per_s']:,}",
            f"{result['completed']:,}",
            f"{result['compensated']:,}",
            f"{result['latency_p50_ms']}",
            f"{result['latency_p99_ms']}",
            f"{result['balance_errors']}",
            f"{result['double_spends']}",
            f"{result['sagas_unfinished']}",
        )
        Console().print(table)
        if as_json:
            print(json.dumps(result))
        if result["balance_errors"] or result["double_spends"] or result["sagas_unfinished"]:
            raise typer.Exit(1)
