"""``onair bench gateway``: one route called directly and through the gateway, same concurrency.

The measurement lives in :mod:`onair.bench.gateway_harness`; this module is the command: options,
the Valkey to use (given, or a devstack one started and stopped here), progress, a table, and with
``--json`` one JSON object as the last line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("gateway")
    def gateway(
        concurrency: Annotated[
            int, typer.Option(help="Connections of the load generator in the throughput phases.")
        ] = 16,
        latency_concurrency: Annotated[
            int, typer.Option(help="Connections in the latency phases (the hop's own latency).")
        ] = 1,
        seconds: Annotated[float, typer.Option(help="Measured seconds per phase.")] = 5.0,
        rounds: Annotated[int, typer.Option(help="Direct/gateway phase pairs (medians are reported).")] = 3,
        warmup: Annotated[float, typer.Option(help="Unmeasured seconds before each phase.")] = 1.0,
        access_log: Annotated[
            bool, typer.Option("--access-log/--no-access-log", help="The gateway writes its access log.")
        ] = True,
        valkey_url: Annotated[
            str | None,
            typer.Option(envvar="ONAIR_VALKEY_URL", help="Valkey to use (default: a devstack one)."),
        ] = None,
        root: Annotated[
            Path | None,
            typer.Option("--root", envvar="ONAIR_DEVSTACK_DIR", help="Devstack folder to reuse."),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """The gateway's cost: throughput and latency against calling the upstream directly."""
        import contextlib
        import json

        from rich.console import Console
        from rich.table import Table

        from onair.bench.gateway_harness import run
        from onair.cli.common import fail
        from onair.devstack import DevstackError, temporary_stack

        console = Console(stderr=True)
        if concurrency < 1 or latency_concurrency < 1 or seconds <= 0 or rounds < 1:
            fail("--concurrency, --latency-concurrency and --rounds must be >= 1 and --seconds > 0")
        with contextlib.ExitStack() as stack:
            if valkey_url is None:
                try:
                    env = stack.enter_context(
                        temporary_stack(["valkey"], root=root, note=lambda m: console.print(m))
                    )
                except DevstackError as exc:
                    fail(f"could not start Valkey: {exc}")
                valkey_url = env["ONAIR_VALKEY_URL"]
            try:
                result = run(
                    valkey_url=valkey_url,
                    concurrency=concurrency,
                    latency_concurrency=latency_concurrency,
                    seconds=seconds,
                    rounds=rounds,
                    warmup_s=warmup,
                    access_log=access_log,
                    note=lambda m: console.print(f"[dim]{m}[/dim]"),
                )
            except (RuntimeError, OSError) as exc:
                fail(f"gateway benchmark failed: {str(exc).splitlines()[0]}")
        table = Table(
            title=f"gateway vs direct: rps at {concurrency} connections, latency at {latency_concurrency}; "
            f"{rounds} x {seconds:g} s each"
        )
        for col in ("path", "rps", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right" if col != "path" else "left")
        table.add_row(
            "direct",
            f"{result['direct_rps']:,.0f}",
            f"{result['direct_p50_ms']:.3f}",
            f"{result['direct_p99_ms']:.3f}",
        )
        table.add_row(
            "gateway",
            f"{result['gateway_rps']:,.0f}",
            f"{result['gateway_p50_ms']:.3f}",
            f"{result['gateway_p99_ms']:.3f}",
        )
        Console(width=100).print(table)
        Console(width=100).print(
            f"ratio {result['gateway_rps_ratio']}, overhead p50 {result['overhead_p50_ms']} ms, "
            f"p99 {result['overhead_p99_ms']} ms, "
            f"Valkey commands/request {result['valkey_cmds_per_request']}, "
            f"targets met: {result['targets_met']}"
        )
        if as_json:
            print(json.dumps(result))
