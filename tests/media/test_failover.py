"""A second media instance, run as a real process (``onair serve media``) on the same database.

* killed (SIGKILL, no shutdown at all): its session's lease is not renewed, and the in-test
  instance's reaper closes it with ``lease_expired``;
* stopped (SIGTERM): uvicorn closes the encoder's WebSocket with 1012 and the stop hook closes
  every session of the process with ``shutdown`` (the simulated one too).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import pytest_asyncio

from onair.fanout.app import free_port
from onair_services.media.encoder import run_encoder

from .conftest import FAST, SOURCE_1080P60, Media

pytestmark = pytest.mark.asyncio(loop_scope="module")


@asynccontextmanager
async def media_process(media: Media, name: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``onair serve media`` sharing the test instance's database; yields (process, base URL)."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": media.database_url,
        "ONAIR_KAFKA_BOOTSTRAP": media.kafka.bootstrap,
        "ONAIR_IDENTITY_JWKS_URL": media.issuer.jwks_url,
        "ONAIR_SPOOL_DIR": str(media.tmp / f"spool-{name}"),
        "ONAIR_LOG_LEVEL": "INFO",
        "ONAIR_MEDIA_INSTANCE_ID": name,
        **{f"ONAIR_MEDIA_{k.upper()}": str(v) for k, v in FAST.items()},
        "ONAIR_MEDIA_HEARTBEAT_TIMEOUT_S": "30",  # only the lease or the shutdown may end it
    }
    env.pop("ONAIR_PROFSTORE_URL", None)
    log = open(media.tmp / f"{name}.log", "wb")  # noqa: SIM115, ASYNC230 - closed below
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "onair.cli.main", "serve", "media", "--port", str(port),
        env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http, asyncio.timeout(60):
            while True:
                assert proc.returncode is None, (media.tmp / f"{name}.log").read_text()[-3000:]
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield proc, url
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def keys(media: Media) -> AsyncIterator[Media]:
    """Every key these tests use, applied before a second instance joins (and rebalances) the
    projection's consumer group: a killed member holds its partitions until its session times out."""
    for channel in ("lease_ch", "shut_ws", "shut_sim"):
        await media.add_key(channel, f"k-{channel}")
    yield media
    # leave the group as found: wait until the killed members are evicted and this instance owns
    # every partition again (the next module's instance would otherwise wait for them to join)
    runner = media.app.state.service.runners["media.publish_keys"]

    def owns_all() -> bool:
        return all(
            runner.applied_offset(runner.topics[0], p) is not None for p in range(runner.kafka.partitions)
        )

    async with asyncio.timeout(90):
        while not owns_all():  # noqa: ASYNC110 - polls the runner's assignment
            await asyncio.sleep(0.2)


async def test_a_killed_instance_loses_its_sessions_to_the_reaper(keys: Media) -> None:
    media = keys
    async with media_process(media, "media-a") as (proc, url):
        ws_url = url.replace("http://", "ws://") + "/ingest"
        ready = asyncio.Event()
        encoder = asyncio.create_task(
            run_encoder(ws_url, "lease_ch", "k-lease_ch", SOURCE_1080P60, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 15)
        (opened,) = await media.status("lease_ch", 1)
        row = await media.manager.store.live_session("lease_ch")
        assert row is not None and row.instance == "media-a"
        proc.send_signal(signal.SIGKILL)  # no shutdown, no close, no lease renewal
        await proc.wait()
    result = await encoder
    assert not result.stopped and result.code != 1000  # the connection just died
    events = await media.status("lease_ch", 2, timeout_s=20)
    closed = events[-1]
    assert dict(closed.data) == {
        "status": "close",
        "session_id": opened.data["session_id"],
        "reason": "lease_expired",
    }
    assert closed.seq == opened.seq + 1
    row = await media.manager.store.session(opened.data["session_id"])
    assert row is not None and row.state == "closed" and row.close_reason == "lease_expired"
    metrics = (await media.http.get("/metrics")).text  # the survivor reaped it
    assert 'onair_media_sessions_closed_total{reason="lease_expired"}' in metrics
    # and the channel can go live again at once, on the surviving instance
    again = await run_encoder(media.ws_url, "lease_ch", "k-lease_ch", SOURCE_1080P60, seconds=0.3)
    assert again.stopped


async def test_a_stopped_instance_closes_its_sessions_with_shutdown(keys: Media) -> None:
    media = keys
    async with media_process(media, "media-c") as (proc, url):
        ws_url = url.replace("http://", "ws://") + "/ingest"
        ready = asyncio.Event()
        encoder = asyncio.create_task(
            run_encoder(ws_url, "shut_ws", "k-shut_ws", SOURCE_1080P60, on_ready=lambda _: ready.set())
        )
        await asyncio.wait_for(ready.wait(), 15)
        async with httpx.AsyncClient(base_url=url) as http:
            sim = await http.post("/media/channels/shut_sim/simulate", headers=media.owner("shut_sim"))
            assert sim.status_code == 201, sim.text
        await media.status("shut_ws", 1)
        await media.status("shut_sim", 1)
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status says SIGTERM
        assert await asyncio.wait_for(proc.wait(), 30) in (0, -signal.SIGTERM)
    result = await encoder
    assert result.code == 1012 and not result.stopped  # "service restart"
    for channel in ("shut_ws", "shut_sim"):
        events = await media.status(channel, 2)
        assert [e.data["status"] for e in events] == ["open", "close"]
        assert events[-1].data["reason"] == "shutdown", channel
        assert events[-1].seq == events[0].seq + 1
    assert await media.manager.store.live_session("shut_ws") is None
