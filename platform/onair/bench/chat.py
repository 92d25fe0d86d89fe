"""``onair bench chat``: SSE viewers of one chat room, messages posted at a rate, go-live notices.

``--direct`` runs the scale part against one ``onair serve chat`` it starts (10,000 viewers by
default); ``--gateway-url`` runs against a deployment through its gateway. The measurement lives in
:mod:`onair.bench.chat_harness`; with ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("chat")
    def chat(
        direct: Annotated[
            bool, typer.Option("--direct", help="Scale run on one chat process this command starts.")
        ] = False,
        viewers: Annotated[
            int | None, typer.Option(help="SSE viewers (default 10,000 direct, 1,000 via a gateway).")
        ] = None,
        rate: Annotated[float, typer.Option(help="Messages posted per second.")] = 20.0,
        seconds: Annotated[float, typer.Option(help="Posting time.")] = 10.0,
        client_procs: Annotated[int, typer.Option(help="Viewer client processes.")] = 2,
        sample_every: Annotated[
            int, typer.Option(help="Record latency on every n-th viewer (loss: all).")
        ] = 10,
        followers: Annotated[int, typer.Option(help="Direct: followers on /notify/stream (0: skip).")] = 100,
        golives: Annotated[int, typer.Option(help="Direct: channels that go live for them.")] = 10,
        gateway_url: Annotated[
            str | None, typer.Option(help="Run through this gateway (a deployment).")
        ] = None,
        room: Annotated[str | None, typer.Option(help="Gateway run: an existing channel.")] = None,
        token: Annotated[
            str | None, typer.Option(help="Gateway run: a user's access token for the posts.")
        ] = None,
        valkey_url: Annotated[
            str | None, typer.Option(help="Direct: this Valkey (default: start one).")
        ] = None,
        nats_url: Annotated[str | None, typer.Option(help="Direct: this NATS, with JetStream.")] = None,
        kafka_bootstrap: Annotated[str | None, typer.Option(help="Direct: this Kafka.")] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print one JSON object as the last line.")
        ] = False,
    ) -> None:
        """Chat: post-to-view latency and loss for many SSE viewers, memory per viewer, notify latency."""
        import json

        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from onair.bench.chat_harness import ChatBenchConfig, run_benchmark
        from onair.cli.common import fail

        if direct == bool(gateway_url):
            fail("choose one: --direct (start a chat process) or --gateway-url URL (a deployment)")
        if gateway_url and not (room and token):
            fail("--gateway-url needs --room (an existing channel) and --token (a user's access token)")
        servers = {
            "ONAIR_VALKEY_URL": valkey_url,
            "ONAIR_NATS_URL": nats_url,
            "ONAIR_KAFKA_BOOTSTRAP": kafka_bootstrap,
        }
        given = {k: v for k, v in servers.items() if v}
        if given and len(given) != len(servers):
            fail("give --valkey-url, --nats-url and --kafka-bootstrap together (or none: they are started)")
        cfg = ChatBenchConfig(
            viewers=viewers or (10_000 if direct else 1_000),
            rate=rate,
            seconds=seconds,
            client_procs=max(1, client_procs),
            sample_every=max(1, sample_every),
            followers=followers,
            golives=max(1, golives),
            gateway_url=gateway_url,
            room=room,
            token=token,
            backend=given or None,
        )
        console = Console(stderr=True)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("chat benchmark", total=None)
            result = run_benchmark(cfg, lambda msg: progress.update(task, description=msg))
        table = Table(title=f"chat: {cfg.viewers} SSE viewers, {cfg.rate} msg/s for {cfg.seconds} s")
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in result.items():
            table.add_row(key, str(value))
        Console(width=max(Console().width, 100)).print(table)
        if as_json:
            print(json.dumps(result))
