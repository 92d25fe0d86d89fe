"""`onair bench projection` runs end to end with tiny numbers; `onair logs tail` shows events."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator

import pytest
import structlog
from typer.testing import CliRunner

from onair.cli.main import app
from onair.clients import KafkaClient

from .helpers import envelope, produce, uid


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield  # the command configures logging onto the runner's (then closed) stream: undo it
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def test_bench_projection_smoke(kafka_bootstrap: str) -> None:
    args = ["bench", "projection", "--events", "600", "--entities", "20", "--rate", "400"]
    args += ["--lag-seconds", "0.5", "--bootstrap", kafka_bootstrap, "--json"]
    if not os.environ.get("ONAIR_TEST_POSTGRES_URL"):
        args += ["--databases", "sqlite"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    dbs = ["sqlite", "postgres"] if os.environ.get("ONAIR_TEST_POSTGRES_URL") else ["sqlite"]
    for db in dbs:
        for key in (f"{db}.count.events_per_s", f"{db}.upsert.events_per_s", f"{db}.lag_p99_ms_at_5k"):
            assert isinstance(data[key], int | float) and data[key] > 0, key
    assert data["exactly_once_ok"] is True


def test_logs_tail_prints_events_of_matching_categories(kafka_bootstrap: str) -> None:
    stem = uid("tail")
    topic, other = f"{stem}.live_stream.status", f"x{stem}.live_stream.status"

    async def seed() -> None:
        kafka = KafkaClient(kafka_bootstrap, client_id="tail-test")
        await kafka.ensure_topics([topic, other], partitions=1)
        await produce(kafka, [envelope(topic, "ch7", seq=1, state="open"), envelope(other, "nope", seq=1)])
        await kafka.close()

    asyncio.run(seed())
    result = CliRunner().invoke(
        app,
        [
            "logs",
            "tail",
            "--category",
            f"{stem}.*",
            "--bootstrap",
            kafka_bootstrap,
            "--from-beginning",
            "--limit",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ch7" in result.stdout and "state=open" in result.stdout
    assert "nope" not in result.stdout
