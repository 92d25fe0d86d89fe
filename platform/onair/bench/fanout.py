"""``onair bench fanout``: FanoutLog against a queue per subscriber, then NATS -> SSE end to end.

The measurement itself lives in :mod:`onair.bench.fanout_harness`; this module is the command: options,
rich progress, a table, and with ``--json`` one JSON object as the last line.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("fanout")
    def fanout(
        subscribers: Annotated[int, typer.Option(help="In-process subscribers.")] = 1000,
        messages: Annotated[int, typer.Option(help="In-process messages.")] = 10_000,
        buffer: Annotated[int, typer.Option(help="Window: log capacity / queue size.")] = 100,
        clients: Annotated[int, typer.Option(help="End to end: SSE connections.")] = 1000,
        rate: Annotated[int, typer.Option(help="End to end: messages per second.")] = 1000,
        seconds: Annotated[float, typer.Option(help="End to end: publishing time.")] = 10.0,
        client_procs: Annotated[int, typer.Option(help="End to end: client processes.")] = 1,
        sample_every: Annotated[
            int, typer.Option(help="End to end: record latency on every n-th connection (loss: all).")
        ] = 10,
        coalesce_ms: Annotated[
            float,
            typer.Option(help="End to end: wake SSE readers at most once per this many ms (0: per message)."),
        ] = 0.0,
        sse_endpoint: Annotated[
            str, typer.Option(help="End to end: 'fast' (SSEStream) or 'sse-starlette' (EventSourceResponse).")
        ] = "fast",
        nats_url: Annotated[
            str | None, typer.Option(help="NATS to use (default: start one with the devstack code).")
        ] = None,
        skip_sse: Annotated[bool, typer.Option("--skip-sse", help="Only the in-process part.")] = False,
        skip_inproc: Annotated[bool, typer.Option("--skip-inproc", help="Only the end-to-end part.")] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """Fan-out: shared log vs a queue per subscriber; NATS -> 1,000 SSE clients latency and loss."""
        import json

        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from onair.bench.fanout_harness import run_e2e, run_inproc

        console = Console(stderr=True)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("fan-out benchmark", total=None)

            def note(msg: str) -> None:
                progress.update(task, description=msg)

            inproc = None if skip_inproc else run_inproc(subscribers, messages, buffer, note)
            sse = (
                None
                if skip_sse
                else run_e2e(
                    clients,
                    rate,
                    seconds,
                    nats_url=nats_url,
                    client_procs=client_procs,
                    sample_every=sample_every,
                    fast_sse=sse_endpoint != "sse-starlette",
                    coalesce_s=coalesce_ms / 1000,
                    progress=note,
                )
            )

        out = Console(width=max(Console().width, 100))
        if inproc is not None:
            table = Table(title=f"Fan-out: {subscribers} subscribers x {messages} messages, buffer {buffer}")
            for col in (
                "consumer",
                "design",
                "wall s",
                "deliveries/s",
                "peak traced",
                "speedup",
                "mem ratio",
            ):
                table.add_column(col, justify="right" if col not in ("consumer", "design") else "left")
            for label, block in (("batched", inproc), ("per item", inproc["per_item"])):
                table.add_row(
                    label,
                    "shared log",
                    f"{block['fanoutlog_s']:.3f}",
                    f"{block['fanoutlog_deliveries_per_s']:,}",
                    f"{block['fanoutlog_peak_bytes'] / 1024:,.0f} KiB",
                    f"{block['speedup']}x",
                    f"{block['mem_ratio']}",
                )
                table.add_row(
                    "",
                    "queue/sub",
                    f"{block['queue_s']:.3f}",
                    f"{block['queue_deliveries_per_s']:,}",
                    f"{block['queue_peak_bytes'] / 1024:,.0f} KiB",
                    "",
                    "",
                )
            out.print(table)
        if sse is not None:
            t2 = Table(
                title=f"NATS -> {sse['clients']} SSE clients at {sse['rate']} msg/s for {sse['seconds']} s"
            )
            for col in ("deliveries", "p50 ms", "p99 ms", "max ms", "lost", "gap events", "CPU s srv/cli"):
                t2.add_column(col, justify="right")
            t2.add_row(
                f"{sse['deliveries']:,}",
                str(sse["p50_ms"]),
                str(sse["p99_ms"]),
                str(sse["max_ms"]),
                str(sse["lost"]),
                str(sse["gap_events"]),
                f"{sse['server_cpu_s']}/{sse['clients_cpu_s']}",
            )
            out.print(t2)
        if as_json:
            print(json.dumps({"inproc": inproc, "sse": sse}))
