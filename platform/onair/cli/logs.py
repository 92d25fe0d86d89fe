"""``onair logs``: watch the log-event stream in a terminal.

``onair logs tail --category 'media.*'`` follows every topic whose name matches the glob (new
topics are picked up every few seconds) and prints one line per event: time, category, entity,
seq, service and data. ``--from-beginning`` replays what the topics hold; ``--json`` prints the
raw envelopes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os

import typer

from onair.cli.common import fail, out

app = typer.Typer(no_args_is_help=True)


@app.command()
def tail(
    category: str = typer.Option("*", "--category", "-c", help="Glob over topics, e.g. 'media.*'."),
    bootstrap: str = typer.Option(
        None, "--bootstrap", envvar="ONAIR_KAFKA_BOOTSTRAP", help="Kafka bootstrap (default: settings)."
    ),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Replay the topics first."),
    as_json: bool = typer.Option(False, "--json", help="Print raw envelopes, one JSON per line."),
    limit: int = typer.Option(0, "--limit", help="Stop after this many events (0: follow forever)."),
    idle_exit_s: float = typer.Option(
        0.0, "--idle-exit", help="Stop after this many idle seconds (0: never)."
    ),
) -> None:
    """Follow log events of the categories matching a glob."""
    try:
        asyncio.run(_tail(category, bootstrap, from_beginning, as_json, limit, idle_exit_s))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        fail(f"cannot reach the broker: {exc}")


async def _tail(
    pattern: str, bootstrap: str | None, from_beginning: bool, as_json: bool, limit: int, idle_exit_s: float
) -> None:
    from aiokafka import TopicPartition
    from aiokafka.errors import KafkaConnectionError

    from onair.clients import KafkaClient

    kafka = KafkaClient(bootstrap or os.environ.get("ONAIR_KAFKA_BOOTSTRAP"), client_id="onair-logs-tail")
    try:
        consumer = await kafka.consumer(group_id=None, auto_offset_reset="earliest")
    except KafkaConnectionError as exc:
        fail(f"cannot reach the broker at {kafka.bootstrap}: {exc}")
    shown = 0
    assigned: set[TopicPartition] = set()
    loop = asyncio.get_running_loop()
    last_event = loop.time()
    next_refresh = 0.0
    try:
        while True:
            if loop.time() >= next_refresh:
                topics = sorted(t for t in await consumer.topics() if fnmatch.fnmatchcase(t, pattern))
                wanted = {
                    TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
                }
                if wanted != assigned:
                    new = wanted - assigned
                    consumer.assign(sorted(wanted))
                    if new and not from_beginning and assigned:
                        await consumer.seek_to_beginning(*new)  # topics created while tailing
                    elif not from_beginning and not assigned:
                        await consumer.seek_to_end(*wanted)
                    elif from_beginning and not assigned:
                        await consumer.seek_to_beginning(*wanted)
                    assigned = wanted
                next_refresh = loop.time() + 3.0
            if not assigned:
                await asyncio.sleep(0.5)
                continue
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    last_event = loop.time()
                    shown += 1
                    _print(r.topic, r.partition, r.offset, r.value, as_json)
                    if limit and shown >= limit:
                        return
            if idle_exit_s and loop.time() - last_event > idle_exit_s:
                return
    finally:
        await kafka.close()


def _print(topic: str, partition: int, offset: int, value: bytes | None, as_json: bool) -> None:
    from onair.logstream.envelope import Envelope, EnvelopeError

    if as_json:
        out.print((value or b"").decode(errors="replace"), markup=False, highlight=False, soft_wrap=True)
        return
    try:
        env = Envelope.from_bytes(value)
    except EnvelopeError as exc:
        out.print(f"[red]{topic}:{partition}:{offset} invalid record: {exc}[/]", soft_wrap=True)
        return
    data = " ".join(f"{k}={v}" for k, v in env.data.items())
    seq = f" seq={env.seq}" if env.seq is not None else ""
    out.print(
        f"[dim]{env.ts}[/] [cyan]{env.category}[/] [bold]{env.entity}[/]{seq} "
        f"[dim]{env.service}[/] {env.event or ''} {data}",
        soft_wrap=True,
        highlight=False,
    )
