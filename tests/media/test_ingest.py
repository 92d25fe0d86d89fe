"""The ingest WebSocket, the simulated encoder routes and the events they log (one media app)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from onair.logstream import list_dead_letters
from onair_services.media.encoder import EncoderRefused, EncoderResult, run_encoder

from .conftest import METADATA, SOURCE_1080P60, STATUS, Media, produce

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _refusal(ws: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    rcvd = closed.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, "")


async def _hello(media: Media, channel: str, message: Any) -> tuple[int | None, str]:
    async with connect(f"{media.ws_url}/{channel}") as ws:
        try:
            await ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())
        except ConnectionClosed as closed:  # refused before the hello (a bad channel name)
            rcvd = closed.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, "")
        return await _refusal(ws)


async def test_refusals_close_with_a_reason_and_log_nothing(media: Media) -> None:
    await media.add_key("refuse_me", "right-key")
    hello = {"type": "hello", "source": SOURCE_1080P60}
    assert await _hello(media, "refuse_me", {**hello, "key": "wrong-key"}) == (4403, "invalid publish key")
    assert await _hello(media, "refuse_me", hello) == (4403, "invalid publish key")  # no key at all
    assert await _hello(media, "unknown_ch", {**hello, "key": "right-key"}) == (4403, "invalid publish key")
    code, reason = await _hello(media, "refuse_me", "not json")
    assert code == 4400 and reason.startswith("bad hello")
    code, reason = await _hello(
        media, "refuse_me", {**hello, "key": "right-key", "source": {"height": 99999}}
    )
    assert code == 4400 and "source.height" in reason
    assert await _hello(media, "Bad-Name", {**hello, "key": "right-key"}) == (4400, "invalid channel name")
    async with connect(f"{media.ws_url}/refuse_me") as ws:  # says nothing
        code, reason = await _refusal(ws)
    assert code == 4408 and reason.startswith("hello_timeout")
    await asyncio.sleep(0.5)
    assert media.reader.events(topic=STATUS, entity="refuse_me") == []
    assert media.reader.events(topic=METADATA, entity="refuse_me") == []
    metrics = (await media.http.get("/metrics")).text
    assert 'onair_media_sessions_refused_total{reason="invalid_key"}' in metrics


async def test_connect_opens_with_metadata_and_disconnect_closes(media: Media) -> None:
    await media.add_key("open_close", "k-open")
    async with connect(f"{media.ws_url}/open_close") as ws:
        await ws.send(orjson.dumps({"type": "hello", "key": "k-open", "source": SOURCE_1080P60}).decode())
        ready = orjson.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["heartbeat_interval_s"] == 0.3
        names = [(r["name"], r["fps"]) for r in ready["renditions"]]
        assert names == [("1080p", 60), ("720p", 60), ("480p", 30), ("360p", 30)]
        (opened,) = await media.status("open_close", 1)
        assert dict(opened.data) == {"status": "open", "session_id": ready["session_id"]}
        (meta,) = await media.reader.wait_for(lambda e: len(e) >= 1, topic=METADATA, entity="open_close")
        assert meta.seq == opened.seq and meta.data["session_id"] == ready["session_id"]
        assert meta.data["source"] == SOURCE_1080P60 and meta.data["renditions"] == ready["renditions"]
        await ws.send(orjson.dumps({"type": "heartbeat", "n": 1}).decode())
        ack = orjson.loads(await ws.recv())
        assert ack["type"] == "heartbeat_ack" and ack["n"] == 1
        live = await media.http.get("/media/channels/open_close/session", headers=media.owner("open_close"))
        assert live.status_code == 200 and live.json()["live"] is True
        assert live.json()["session"]["kind"] == "encoder"
    events = await media.status("open_close", 2)
    closed = events[-1]
    assert dict(closed.data) == {
        "status": "close",
        "session_id": ready["session_id"],
        "reason": "encoder_closed",
    }
    assert closed.seq == opened.seq + 1
    after = (
        await media.http.get("/media/channels/open_close/session", headers=media.owner("open_close"))
    ).json()
    assert after["live"] is False and after["session"]["close_reason"] == "encoder_closed"

    # the key may come in a header instead; the next session's events continue the seq
    async with connect(
        f"{media.ws_url}/open_close", additional_headers={"X-Onair-Publish-Key": "k-open"}
    ) as ws:
        await ws.send(orjson.dumps({"type": "hello", "source": {"height": 720, "fps": 30}}).decode())
        ready = orjson.loads(await ws.recv())
        assert [r["name"] for r in ready["renditions"]] == ["720p", "480p", "360p"]
        await ws.send(orjson.dumps({"type": "bye"}).decode())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    events = await media.status("open_close", 4)
    assert [e.seq for e in events] == [opened.seq + i for i in range(4)]
    assert events[-1].data["reason"] == "encoder_closed"


async def test_silence_is_a_heartbeat_timeout(media: Media) -> None:
    await media.add_key("quiet_one", "k-quiet")
    async with connect(f"{media.ws_url}/quiet_one") as ws:
        await ws.send(orjson.dumps({"type": "hello", "key": "k-quiet"}).decode())
        assert orjson.loads(await ws.recv())["type"] == "ready"
        code, reason = await _refusal(ws)  # sends nothing more
    assert (code, reason) == (4408, "heartbeat_timeout")
    events = await media.status("quiet_one", 2)
    assert [e.data["status"] for e in events] == ["open", "close"]
    assert events[-1].data["reason"] == "heartbeat_timeout"

    # an encoder that keeps beating outlives the timeout several times over
    result = await run_encoder(media.ws_url, "quiet_one", "k-quiet", SOURCE_1080P60, seconds=2.5)
    assert result.stopped and result.heartbeats_acked >= 5
    events = await media.status("quiet_one", 4)
    assert events[-1].data["reason"] == "encoder_closed"


async def test_a_second_encoder_is_refused(media: Media) -> None:
    await media.add_key("one_only", "k-one")
    stop = asyncio.Event()
    first = asyncio.create_task(run_encoder(media.ws_url, "one_only", "k-one", SOURCE_1080P60, stop=stop))
    await media.status("one_only", 1)
    with pytest.raises(EncoderRefused) as refused:
        await run_encoder(media.ws_url, "one_only", "k-one", SOURCE_1080P60, seconds=1)
    assert refused.value.code == 4409 and "already live" in refused.value.reason
    simulated = await media.http.post("/media/channels/one_only/simulate", headers=media.owner("one_only"))
    assert simulated.status_code == 409 and simulated.json()["error"] == "already_live"
    stop.set()
    assert (await first).stopped
    events = await media.status("one_only", 2)
    assert [e.data["status"] for e in events] == ["open", "close"]


async def test_a_rotated_key_replaces_the_old_one(media: Media) -> None:
    await media.add_key("rotating", "old-key", seq=1)
    result = await run_encoder(media.ws_url, "rotating", "old-key", SOURCE_1080P60, seconds=0.2)
    assert result.stopped
    await media.add_key("rotating", "new-key", seq=2)  # liveapi's rotation, applied by the projection
    with pytest.raises(EncoderRefused) as refused:
        await run_encoder(media.ws_url, "rotating", "old-key", SOURCE_1080P60, seconds=0.2)
    assert (refused.value.code, refused.value.reason) == (4403, "invalid publish key")
    assert (await run_encoder(media.ws_url, "rotating", "new-key", SOURCE_1080P60, seconds=0.2)).stopped
    # an older event arriving late (seq 1 again) does not bring the old key back
    await produce(
        media.kafka,
        "media.broad_info.publish_key",
        "rotating",
        1,
        {"owner_id": "u-rotating", "key_sha256": hashlib.sha256(b"old-key").hexdigest()},
    )
    await media.add_key("rotating_probe", "probe")  # a later record: the stale one was handled by then
    known = await media.manager.store.publish_key("rotating")
    assert known is not None and known.key_sha256 == hashlib.sha256(b"new-key").hexdigest()


async def test_a_poison_key_event_is_dead_lettered(media: Media) -> None:
    await produce(
        media.kafka, "media.broad_info.publish_key", "poisoned", 1, {"owner_id": "u-x", "key_sha256": "zz"}
    )
    await media.add_key("after_poison", "k-after")
    assert await media.manager.store.publish_key("poisoned") is None
    async with media.app.state.service.session() as session:
        letters = await list_dead_letters(session, "media.publish_keys")
    assert any(d.reason == "apply_failed" and "key_sha256" in d.error for d in letters)


async def test_simulated_encoder_routes(media: Media) -> None:
    await media.add_key("sim_ch", "k-sim")
    owner = media.owner("sim_ch")
    path = "/media/channels/sim_ch/simulate"
    assert (await media.http.post(path)).status_code == 401
    assert (await media.http.post(path, headers=media.owner("mallory"))).status_code == 403
    assert (await media.http.post("/media/channels/no_such_ch/simulate", headers=owner)).status_code == 404
    bad = await media.http.post(path, json={"height": 1080, "fps": "fast"}, headers=owner)
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "body.fps"

    started = await media.http.post(path, json={"height": 720, "fps": 60}, headers=owner)
    assert started.status_code == 201, started.text
    session = started.json()
    assert session["kind"] == "simulated" and session["state"] == "open"
    assert [r["name"] for r in session["renditions"]] == ["720p", "480p", "360p"]
    opened = (await media.status("sim_ch", 1))[0]
    assert opened.data["session_id"] == session["id"]
    shown = (await media.http.get("/media/channels/sim_ch/session", headers=owner)).json()
    assert shown["live"] is True and shown["session"]["id"] == session["id"]

    stopped = await media.http.delete(path, headers=media.owner("root", "admin"))
    assert stopped.status_code == 200 and stopped.json()["close_reason"] == "stopped"
    events = await media.status("sim_ch", 2)
    assert dict(events[-1].data) == {"status": "close", "session_id": session["id"], "reason": "stopped"}
    assert (await media.http.delete(path, headers=owner)).status_code == 404

    # a real encoder's session is not the simulator's to stop
    stop = asyncio.Event()
    encoder = asyncio.create_task(run_encoder(media.ws_url, "sim_ch", "k-sim", SOURCE_1080P60, stop=stop))
    await media.status("sim_ch", 3)
    busy = await media.http.delete(path, headers=owner)
    assert busy.status_code == 409 and busy.json()["error"] == "not_simulated"
    stop.set()
    result: EncoderResult = await encoder
    assert result.stopped


async def test_a_crash_between_commit_and_log_is_relogged(media: Media) -> None:
    """The store commits as the ingest would, and nothing is logged: the re-logger logs it."""
    store = media.manager.store
    opened = await store.open(
        "crashy",
        "c0ffee",
        instance="gone",
        kind="encoder",
        source=SOURCE_1080P60,
        renditions=[],
        lease_ms=600_000,
    )
    events = await media.status("crashy", 1)
    assert events[0].seq == opened.seq and events[0].data["status"] == "open"
    meta = await media.reader.wait_for(lambda e: len(e) >= 1, topic=METADATA, entity="crashy")
    assert meta[0].data["session_id"] == "c0ffee" and meta[0].seq == opened.seq
    closed = await store.close("c0ffee", "encoder_closed")
    assert closed is not None
    events = await media.status("crashy", 2)
    assert events[-1].seq == closed.seq and dict(events[-1].data) == {
        "status": "close",
        "session_id": "c0ffee",
        "reason": "encoder_closed",
    }


async def test_the_cli_encoder(media: Media) -> None:
    await media.add_key("cli_ch", "k-cli")
    base = [sys.executable, "-m", "onair.cli.main", "encoder", "cli_ch", "--url", media.ws_url]
    proc = await asyncio.create_subprocess_exec(
        *base, "--key", "k-cli", "--height", "720", "--fps", "30", "--seconds", "1.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "live cli_ch" in out.decode() and "720p30, 480p30, 360p30" in out.decode()
    assert "stopped cli_ch" in out.decode()
    events = await media.status("cli_ch", 2)
    assert [e.data["status"] for e in events] == ["open", "close"] and events[-1].data[
        "reason"
    ] == "encoder_closed"

    proc = await asyncio.create_subprocess_exec(
        *base, "--key", "wrong", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert lines == ["error: cli_ch: refused by the ingest: invalid publish key (close code 4403)"], (
        err.decode()
    )
