"""``onair bench e2e``: going live on the whole platform (started and stopped by the command).

The measurement lives in :mod:`onair.bench.e2e_harness`; this module is the command: options,
progress, a table of the figures against their targets, and with ``--json`` one JSON object as
the last line.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("e2e")
    def e2e(
        channels: Annotated[int, typer.Option(help="Streamers (channels) made; half go live.")] = 200,
        seconds: Annotated[float, typer.Option(help="Length of the mixed phase.")] = 20.0,
        read_rate: Annotated[
            float, typer.Option(help="Background reads of GET /live/{channel} per second (gateway).")
        ] = 300.0,
        writes_per_s: Annotated[float, typer.Option(help="Title changes per second.")] = 4.0,
        golive_per_s: Annotated[float, typer.Option(help="Channels taken on air per second.")] = 0.5,
        capacity_seconds: Annotated[float, typer.Option(help="Length of each capacity phase.")] = 8.0,
        concurrency: Annotated[int, typer.Option(help="Connections in the capacity phases.")] = 32,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """Write-to-read and go-live latencies under load, and what liveinfo's near cache buys."""
        import json

        from rich.console import Console
        from rich.table import Table

        from onair.bench.e2e_harness import TARGETS, run
        from onair.cli.common import fail
        from onair.devstack import DevstackError

        console = Console(stderr=True)
        if channels < 2 or seconds <= 0 or read_rate < 0 or writes_per_s <= 0 or concurrency < 1:
            fail("--channels >= 2, --seconds > 0, --writes-per-s > 0, --concurrency >= 1, --read-rate >= 0")
        try:
            with console.status("end-to-end benchmark") as status:

                def note(message: str) -> None:
                    console.print(f"[dim]{message}[/dim]")
                    status.update(message)

                result = run(
                    channels=channels,
                    seconds=seconds,
                    read_rate=read_rate,
                    writes_per_s=writes_per_s,
                    golive_per_s=golive_per_s,
                    capacity_seconds=capacity_seconds,
                    concurrency=concurrency,
                    note=note,
                )
        except (DevstackError, RuntimeError, OSError) as exc:
            fail(f"end-to-end benchmark failed: {str(exc).splitlines()[0]}")
        table = Table(title="onair bench e2e")
        table.add_column("figure")
        table.add_column("value", justify="right")
        table.add_column("target", justify="right")
        rows = [
            ("write_to_read_p99_ms", "<= 300"),
            ("write_to_search_p99_ms", "<= 500"),
            ("go_live_to_listed_p99_ms", ""),
            ("liveinfo_rps", ""),
            ("uncached_rps", ""),
            ("cache_speedup", ">= 3"),
            ("liveinfo_valkey_cmds_per_read", "<= 0.05"),
            ("liveinfo_db_queries_per_read", ""),
            ("stale_reads", "0"),
            ("lost", "0"),
            ("gateway_read_rps", ""),
        ]
        for key, target in rows:
            table.add_row(key, str(result[key]), target)
        console.print(table)
        met = (
            result["write_to_read_p99_ms"] <= TARGETS["write_to_read_p99_ms"]
            and result["write_to_search_p99_ms"] <= TARGETS["write_to_search_p99_ms"]
            and result["liveinfo_valkey_cmds_per_read"] <= TARGETS["liveinfo_valkey_cmds_per_read"]
            and result["cache_speedup"] >= TARGETS["cache_speedup"]
            and result["stale_reads"] == 0
        )
        result["targets_met"] = met
        console.print("targets met" if met else "[yellow]some targets not met[/yellow]")
        if as_json:
            print(json.dumps(result))
