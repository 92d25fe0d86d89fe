"""``onair bench cache``: plain cache-aside vs valkey-py's built-in client cache vs onair's.

The measurement lives in :mod:`onair.bench.cache_harness`; this module is the command: options, the
Valkey to use (given, or a devstack one started and stopped here), rich progress, a table, and
with ``--json`` one JSON object as the last line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("cache")
    def cache(
        readers: Annotated[int, typer.Option(help="Reader processes (P).")] = 2,
        reads: Annotated[int, typer.Option(help="Measured reads per reader process.")] = 20_000,
        keys: Annotated[int, typer.Option(help="Key space (Zipf over it).")] = 10_000,
        zipf: Annotated[float, typer.Option(help="Zipf exponent s.")] = 1.1,
        write_ratio: Annotated[float, typer.Option(help="Writes per read (from one writer process).")] = 0.01,
        write_mode: Annotated[
            str, typer.Option(help="set: commit then SET the new value; delete: commit then DEL/tombstone.")
        ] = "set",
        strategies: Annotated[
            str, typer.Option(help="Comma-separated subset of cache_aside,valkey_builtin,onair.")
        ] = "cache_aside,valkey_builtin,onair",
        seed: Annotated[int, typer.Option(help="Random seed of the key draws.")] = 1,
        rate: Annotated[
            float, typer.Option(help="Reads per second per reader process (0: as fast as possible).")
        ] = 5000.0,
        valkey_url: Annotated[
            str | None,
            typer.Option(envvar="ONAIR_VALKEY_URL", help="Valkey to use (default: a devstack one)."),
        ] = None,
        root: Annotated[
            Path | None,
            typer.Option(
                "--root",
                envvar="ONAIR_DEVSTACK_DIR",
                help="Devstack folder to reuse (default: a temporary one).",
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """Cached reads: Valkey commands, DB loads, latency, stale reads, invalidation delay."""
        import contextlib
        import json

        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from onair.bench.cache_harness import STRATEGIES, BenchConfig, run, summary_json
        from onair.cli.common import fail
        from onair.devstack import DevstackError, temporary_stack

        chosen = tuple(s.strip() for s in strategies.split(",") if s.strip())
        unknown = [s for s in chosen if s not in STRATEGIES]
        if unknown or not chosen:
            fail(
                f"--strategies: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(STRATEGIES)}"
            )
        if write_mode not in ("set", "delete"):
            fail("--write-mode must be set or delete")
        if readers < 1 or reads < 1 or keys < 1 or not 0 <= write_ratio < 1:
            fail("--readers, --reads and --keys must be positive and --write-ratio in [0, 1)")

        console = Console(stderr=True)
        with contextlib.ExitStack() as cleanup:
            if valkey_url is None:
                try:
                    with console.status("starting Valkey (devstack)…"):
                        env = cleanup.enter_context(temporary_stack(("valkey",), root=root))
                except DevstackError as exc:
                    fail(str(exc))
                valkey_url = env["ONAIR_VALKEY_URL"]
            cfg = BenchConfig(
                valkey_url=valkey_url,
                readers=readers,
                reads=reads,
                keys=keys,
                write_ratio=write_ratio,
                zipf_s=zipf,
                write_mode=write_mode,
                seed=seed,
                rate=rate,
                strategies=chosen,
            )
            with Progress(
                TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
            ) as progress:
                task = progress.add_task("cache benchmark", total=1.0)

                def note(msg: str, done: float) -> None:
                    progress.update(task, description=msg, completed=done)

                out = run(cfg, note)

        table = Table(
            "strategy",
            "Valkey cmds / 1000 reads",
            "DB loads",
            "p50 µs",
            "p99 µs",
            "stale reads",
            "inval p50 ms",
            "inval p99 ms",
            "writes",
            title=f"{readers} readers x {reads:,} reads, Zipf({zipf}) over {keys:,} keys, "
            f"{write_ratio:.1%} writes ({write_mode})",
        )
        for name, r in out["results"].items():
            table.add_row(
                name,
                f"{r.cmds_per_1000:.1f}",
                str(r.db_loads),
                f"{r.p50_us:.1f}",
                f"{r.p99_us:.1f}",
                str(r.stale_reads),
                "-" if r.inval_p50_ms is None else f"{r.inval_p50_ms:.3f}",
                "-" if r.inval_p99_ms is None else f"{r.inval_p99_ms:.3f}",
                str(r.writes),
            )
        out_console = Console(width=max(Console().width, 130))
        out_console.print(table)
        out_console.print(
            f"single-flight: 1,000 concurrent misses of one key -> {out['singleflight']} database load(s)"
        )
        if as_json:
            typer.echo(json.dumps(summary_json(out)))
