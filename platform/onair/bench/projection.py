"""``onair bench projection``: applied events/s, end-to-end lag at 5,000/s, exactly-once check.

The measurement lives in :mod:`onair.bench.projection_harness`; this module is the command: options,
rich progress, a table, and with ``--json`` one JSON object as the last line.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("projection")
    def projection(
        events: Annotated[int, typer.Option(help="Events to produce and project.")] = 200_000,
        entities: Annotated[int, typer.Option(help="Distinct entities (Kafka keys).")] = 1_000,
        partitions: Annotated[int, typer.Option(help="Partitions of the topic.")] = 6,
        rate: Annotated[int, typer.Option(help="Offered rate for the lag measurement (events/s).")] = 5_000,
        lag_seconds: Annotated[float, typer.Option(help="Duration of the offered-rate phase.")] = 10.0,
        batch_max: Annotated[int, typer.Option(help="Largest batch the runner applies at once.")] = 5_000,
        databases: Annotated[str, typer.Option(help="Comma-separated: sqlite,postgres.")] = "sqlite,postgres",
        bootstrap: Annotated[
            str | None,
            typer.Option(help="Kafka bootstrap (default: start a broker with the devstack code)."),
        ] = None,
        postgres_url: Annotated[
            str | None,
            typer.Option(help="PostgreSQL server (default: ONAIR_TEST_POSTGRES_URL or DATABASE_URL)."),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """Projection runner: events/s (count, upsert) on SQLite and PostgreSQL, lag p50/p99, exactly-once."""
        import asyncio
        import json
        import sys

        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from onair.bench.projection_harness import default_postgres_url, run_benchmark
        from onair.cli.common import fail
        from onair.logging import configure_logging

        configure_logging("bench", level="WARNING", stream=sys.stderr)
        dbs = [d.strip() for d in databases.split(",") if d.strip()]
        if not dbs or any(d not in ("sqlite", "postgres") for d in dbs):
            fail(f"--databases must list sqlite and/or postgres, got {databases!r}")
        console = Console(stderr=True)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("projection benchmark", total=None)

            def note(msg: str) -> None:
                progress.update(task, description=msg)

            result = asyncio.run(
                run_benchmark(
                    bootstrap=bootstrap,
                    postgres_url=postgres_url or default_postgres_url(),
                    databases=dbs,
                    events=events,
                    entities=entities,
                    partitions=partitions,
                    rate=rate,
                    lag_seconds=lag_seconds,
                    batch_max=batch_max,
                    note=note,
                )
            )

        table = Table(
            title=f"Projection: {events:,} events, {entities:,} entities, {partitions} partitions "
            f"(produced at {result['produce_events_per_s']:,}/s)"
        )
        for col in (
            "database",
            "count ev/s",
            "upsert ev/s",
            f"lag p50 ms @{rate}/s",
            f"lag p99 ms @{rate}/s",
            "exact",
        ):
            table.add_column(col, justify="right")
        for db in dbs:
            if f"{db}.upsert.events_per_s" not in result:
                table.add_row(db, "skipped", "", "", "", "")
                continue
            table.add_row(
                db,
                f"{result[f'{db}.count.events_per_s']:,}",
                f"{result[f'{db}.upsert.events_per_s']:,}",
                f"{result[f'{db}.lag_p50_ms_at_5k']}",
                f"{result[f'{db}.lag_p99_ms_at_5k']}",
                "yes" if result[f"{db}.exactly_once_ok"] else "NO",
            )
        Console().print(table)
        if as_json:
            print(json.dumps(result))
        if not result.get("exactly_once_ok", False):
            raise typer.Exit(1)
