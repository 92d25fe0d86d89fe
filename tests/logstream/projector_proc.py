"""A projector process for the SIGKILL test: ``python projector_proc.py BOOTSTRAP DB_URL NAME TOPIC``.

It applies the benchmark's counting projection slowly (50 ms inside each batch transaction) and
prints a line per applied batch, so the test can kill it with SIGKILL in the middle of one.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from onair.bench.projection_harness import apply_count
from onair.clients import KafkaClient
from onair.db import create_engine
from onair.logging import configure_logging
from onair.logstream import Event, Projection, ProjectionRunner


async def slow_apply(batch: Sequence[Event], session: AsyncSession) -> None:
    await apply_count(batch, session)
    print(f"applying {len(batch)}", flush=True)
    await asyncio.sleep(0.05)  # still inside the transaction


async def main(bootstrap: str, url: str, name: str, topic: str) -> None:
    configure_logging("projector", level="WARNING", stream=sys.stderr)
    kafka = KafkaClient(bootstrap, client_id="projector-proc")
    runner = ProjectionRunner(
        kafka,
        create_engine(url),
        Projection(name, [topic], slow_apply),
        batch_max=100,
        consumer_overrides={"session_timeout_ms": 6000},
    )
    await runner.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
