"""liveinfo on real servers: projections from produced events, cached reads across instances,
read-your-writes, the vote rule, the ranking and the SSE stream of a channel."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from onair.logstream import Envelope, list_dead_letters
from onair.testing import ServerControl

from .conftest import Live
from .helpers import (
    RENDITIONS,
    SOURCE,
    close,
    event,
    eventually,
    metadata,
    open_,
    options,
    produce,
    tags,
    title,
    ts,
    uid,
    viewers,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


def without(view: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    assert view is not None
    return {k: v for k, v in view.items() if k not in keys}


async def live_list(client: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await client.get("/live", params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return [item["channel"] for item in r.json()["items"]]


async def test_a_channel_going_live_is_seen_by_every_instance(live: Live) -> None:
    ch, session = uid(), "s-" + uid()
    await produce(
        live.kafka,
        [
            title(ch, "Speedrun night", seq=1),
            tags(ch, ["gaming", "speedrun"], seq=2),
            options(ch, adult=True, chat_mode="slow", seq=3),
            metadata(ch, session, seq=1),  # before its "open": kept, shown once the session is on air
            open_(ch, session, seq=2, at=ts(5)),
        ],
    )

    async def complete() -> bool:
        view = await live.b.view(ch)
        return view is not None and view["status"] == "live" and view["renditions"] != [] and view["adult"]

    await eventually(complete)
    view = await live.b.view(ch)
    assert without(view, "version", "updated_at", "started_at", "viewers") == {
        "channel": ch,
        "title": "Speedrun night",
        "tags": ["gaming", "speedrun"],
        "adult": True,
        "chat_mode": "slow",
        "visibility": "public",
        "status": "live",
        "session_id": session,
        "ended_at": None,
        "end_reason": None,
        "source": SOURCE,
        "renditions": RENDITIONS,
    }
    for inst in (live.a, live.c):
        await eventually(lambda inst=inst: _same(inst, ch, view))  # type: ignore[misc]
    assert ch in await live_list(live.b.http)
    assert ch in await live_list(live.c.http, tag="GAMING")  # tags are normalised like liveapi does
    assert ch not in await live_list(live.b.http, tag="cooking")
    assert (await live.b.http.get(f"/live/{uid('nope')}")).json()["error"] == "not_found"

    # The encoder drops: the channel leaves the list; the view says offline and why.
    await produce(live.kafka, [close(ch, session, reason="heartbeat_timeout", seq=3)])
    await eventually(lambda: _status(live, ch, "offline"))
    view = await live.b.view(ch)
    assert view is not None and view["end_reason"] == "heartbeat_timeout" and view["renditions"] == []
    await eventually(lambda: _not_listed(live, ch))


async def _same(inst: Any, ch: str, view: dict[str, Any] | None) -> bool:
    return bool(await inst.view(ch) == view)


async def settle(live: Live, positions: list[Any]) -> None:
    """Return once every position is applied (a read with a position waits for it)."""
    for pos in positions:
        for _ in range(20):  # 503 not_yet_applied: the projection may be catching up with the topics
            r = await live.b.http.get("/live", params={"position": str(pos), "limit": 1})
            if r.status_code != 503:
                break
        assert r.status_code == 200, r.text


async def _status(live: Live, ch: str, status: str) -> bool:
    view = await live.b.view(ch)
    return view is not None and view["status"] == status


async def _not_listed(live: Live, ch: str) -> bool:
    return ch not in await live_list(live.b.http)


async def test_a_late_close_of_an_old_session_leaves_the_new_one_on_air(live: Live) -> None:
    ch = uid()
    # media instance 1 opened s1 and crashed; the encoder reconnected to instance 2 (s2); then the
    # lease sweeper closes s1. The close is newer than the open of s2, but about another session.
    await produce(live.kafka, [open_(ch, "s1", at=ts(0)), open_(ch, "s2", at=ts(10))])
    [pos] = await produce(live.kafka, [close(ch, "s1", reason="lease_expired", at=ts(20))])
    view = await live.b.view(ch, position=str(pos))
    assert view is not None and view["status"] == "live" and view["session_id"] == "s2"


async def test_events_out_of_order_and_twice_give_the_same_view(live: Live) -> None:
    in_order, shuffled = uid("ord"), uid("shf")
    t0 = datetime.now(UTC)

    def story(ch: str) -> list[Envelope]:
        def at(i: int) -> str:
            return ts(i, t0)

        return [
            title(ch, "first", seq=1, at=at(1)),
            options(ch, "public", adult=False, seq=2, at=at(2)),
            tags(ch, ["a"], seq=3, at=at(3)),
            open_(ch, "s1", seq=1, at=at(4)),
            metadata(ch, "s1", renditions=RENDITIONS[:1], seq=1, at=at(5)),
            title(ch, "second", seq=4, at=at(6)),
            options(ch, "hidden", adult=True, seq=5, at=at(7)),
            close(ch, "s1", seq=2, at=at(8)),
            tags(ch, ["b", "c"], seq=6, at=at(9)),
            open_(ch, "s2", seq=3, at=at(10)),
            metadata(ch, "s2", seq=2, at=at(11)),
            options(ch, "public", adult=True, chat_mode="followers", seq=7, at=at(12)),
            title(ch, "third", seq=8, at=at(13)),
        ]

    ordered = story(in_order)
    other = story(shuffled)
    rng = random.Random(7)
    replay = other[:]
    rng.shuffle(replay)
    again = other[:]
    rng.shuffle(again)
    positions = await produce(live.kafka, ordered + replay + again)
    await settle(live, positions)
    a = await live.a.model.load_channel(in_order)
    b = await live.a.model.load_channel(shuffled)
    assert a is not None and a["title"] == "third" and a["session_id"] == "s2"
    assert a["visibility"] == "public" and a["chat_mode"] == "followers" and a["adult"] is True
    assert without(a, "channel", "version") == without(b, "channel", "version")


async def test_visibility_flip_flops_are_decided_by_the_vote(live: Live) -> None:
    shown, hidden = uid("vis"), uid("hid")
    # public, hidden, public — arriving as public, public, hidden: public, whatever the order.
    # hidden, public, hidden — arriving as hidden, hidden, public: hidden.
    envs = [
        open_(shown, "s1"),
        options(shown, "public", seq=1, at=ts(0)),
        options(shown, "public", seq=3, at=ts(200)),
        options(shown, "hidden", seq=2, at=ts(100)),
        open_(hidden, "s1"),
        options(hidden, "hidden", seq=1, at=ts(0)),
        options(hidden, "hidden", seq=3, at=ts(200)),
        options(hidden, "public", seq=2, at=ts(100)),
    ]
    positions = await produce(live.kafka, envs)
    await settle(live, positions)
    v_shown = await live.b.view(shown, position=str(positions[3]))
    v_hidden = await live.b.view(hidden, position=str(positions[7]))
    assert v_shown is not None and v_shown["visibility"] == "public"
    # a hidden channel is unlisted: its page still answers, with visibility "hidden"
    assert v_hidden is not None and v_hidden["visibility"] == "hidden" and v_hidden["status"] == "live"
    listed = await live_list(live.b.http, position=str(positions[7]))
    assert shown in listed and hidden not in listed


async def test_a_replica_never_serves_an_invalidated_title(live: Live) -> None:
    ch = uid()
    await produce(live.kafka, [title(ch, "old title", seq=1), open_(ch, "s1")])

    async def has(inst_title: str) -> bool:
        view = await live.b.view(ch)
        return view is not None and view["title"] == inst_title

    await eventually(lambda: has("old title"))
    reader = live.b.model.channels
    hits = reader.near.hits
    for _ in range(5):
        assert (await live.b.view(ch) or {})["title"] == "old title"
    assert reader.near.hits >= hits + 4, "the replica's near cache does not serve the channel"

    [pos] = await produce(live.kafka, [title(ch, "new title", seq=2)])
    # committed by the projecting instance...
    assert (await live.a.view(ch, position=str(pos)) or {})["title"] == "new title"
    # ...and the replica's near cache hears of it through Valkey (it runs no projection itself)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await eventually(lambda: has("new title"), timeout_s=3)
    assert loop.time() - started < 3
    for _ in range(20):
        assert (await live.b.view(ch) or {})["title"] == "new title"

    # the replica without a near cache reads Valkey every time, and is just as right
    c = live.c.model.channels
    calls = c.valkey_calls
    for _ in range(5):
        assert (await live.c.view(ch) or {})["title"] == "new title"
    assert c.near.hits == 0 and c.valkey_calls >= calls + 5


async def test_read_your_writes_with_a_position(live: Live) -> None:
    ch = uid()
    await produce(live.kafka, [open_(ch, "s1"), title(ch, "t0", seq=1)])
    await eventually(lambda: _status(live, ch, "live"))
    for i in range(1, 6):
        [pos] = await produce(live.kafka, [title(ch, f"t{i}", seq=i + 1)])
        if i % 2:
            view = await live.b.view(ch, position=str(pos))
        else:
            r = await live.b.http.get(f"/live/{ch}", headers={"X-Onair-Position": str(pos)})
            view = r.json()
        assert view is not None and view["title"] == f"t{i}"

    unknown = await live.b.http.get(f"/live/{ch}", params={"position": "media.broad_info.publish_key:0:0"})
    assert unknown.status_code == 409 and unknown.json()["error"] == "unknown_position"
    future = await live.b.http.get(
        f"/live/{ch}", params={"position": f"{pos.topic}:{pos.partition}:999999999"}
    )
    assert future.status_code == 503 and future.json()["error"] == "not_yet_applied"
    assert future.headers["retry-after"] == "1"
    bad = await live.b.http.get(f"/live/{ch}", params={"position": "nonsense"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "query.position"


async def test_the_ranking_sums_the_fresh_counts_of_every_chat_process(live: Live) -> None:
    r1, r2, hid = uid("rk"), uid("rk"), uid("rk")
    mine = {r1, r2, hid}
    t0 = datetime.now(UTC)
    setup = [open_(c, "s1") for c in sorted(mine)] + [options(hid, "hidden", seq=1)]
    await settle(live, await produce(live.kafka, setup))
    await produce(
        live.kafka,
        [
            viewers(r1, 10, "chat-1", at=ts(0, t0)),
            viewers(r1, 5, "chat-2", at=ts(0, t0)),
            viewers(r2, 7, "chat-1", at=ts(0, t0)),
            viewers(hid, 100, "chat-1", at=ts(0, t0)),  # hidden channels are not ranked
        ],
    )

    async def ranking(inst: Any) -> list[tuple[str, int]]:
        r = await inst.http.get("/live/ranking", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return [(e["channel"], e["viewers"]) for e in r.json()["items"] if e["channel"] in mine]

    async def ranked(expected: list[tuple[str, int]]) -> bool:
        return await ranking(live.b) == expected

    await eventually(lambda: ranked([(r1, 15), (r2, 7)]))
    assert (await live.b.view(r1) or {})["viewers"] == 15

    # a newer count of a process replaces its older one; an older one never does
    *_, pos = await produce(
        live.kafka, [viewers(r1, 1, "chat-1", at=ts(1000, t0)), viewers(r1, 50, "chat-2", at=ts(-1000, t0))]
    )
    await eventually(lambda: ranked([(r2, 7), (r1, 6)]))
    assert await ranking(live.c) == [(r2, 7), (r1, 6)]
    fresh = await live.b.http.get("/live/ranking", params={"limit": 1000, "position": str(pos)})
    assert [(e["channel"], e["viewers"]) for e in fresh.json()["items"] if e["channel"] in mine] == [
        (r2, 7),
        (r1, 6),
    ]

    # chat-2 stops reporting: its count stops counting after 3 intervals (swept)
    await produce(live.kafka, [viewers(r2, 3, "chat-2", interval_s=1.0)])
    await eventually(lambda: ranked([(r2, 10), (r1, 6)]))
    await eventually(lambda: ranked([(r2, 7), (r1, 6)]), timeout_s=10)
    assert (await live.b.view(r2) or {})["viewers"] == 7


async def test_the_live_stream_of_a_channel(live: Live) -> None:
    ch = uid()
    positions = await produce(live.kafka, [open_(ch, "s1"), title(ch, "before", seq=1)])
    await settle(live, positions)

    async with live.b.http.stream("GET", f"/live/{ch}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        views = _sse_views(r)
        first = await anext(views)
        assert first["title"] == "before"
        await produce(live.kafka, [title(ch, "after", seq=2)])
        async with asyncio.timeout(10):
            second = await anext(views)
        assert second["title"] == "after" and second["version"] > first["version"]
        await produce(live.kafka, [viewers(ch, 42, "chat-1")])
        async with asyncio.timeout(10):
            third = await anext(views)
        assert third["viewers"] == 42 and third["title"] == "after" and third["version"] > second["version"]
        assert live.b.model.bridge.log_for(live.b.model.subject(ch)) is not None

    # the last viewer left: the channel's NATS subscription goes soon after
    async def released() -> bool:
        return live.b.model.bridge.log_for(live.b.model.subject(ch)) is None

    await eventually(released, timeout_s=5)

    missing = await live.b.http.get(f"/live/{uid('nope')}/events")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def _sse_views(r: httpx.Response) -> Any:
    data: list[str] = []
    async for line in r.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield orjson.loads("\n".join(data))
            data = []


async def test_poison_events_are_dead_lettered_and_the_projection_goes_on(live: Live) -> None:
    ch = uid()
    bad_entity = event("media.broad_info.title", "Not A Channel!", title="x")
    bad_data = event("media.broad_info.title", ch, title=123, seq=1)
    await produce(
        live.kafka,
        [bad_entity, bad_data],
        raw=[("media.broad_info.title", ch.encode(), b"{not json")],
    )
    [pos] = await produce(live.kafka, [title(ch, "fine", seq=2)])
    assert (await live.b.view(ch, position=str(pos)) or {})["title"] == "fine"
    async with live.a.svc.session() as session:
        letters = await list_dead_letters(session, "liveinfo.channels")
    ours = {(d.reason, d.key) for d in letters if d.key in (ch.encode(), b"Not A Channel!")}
    assert ours == {
        ("apply_failed", b"Not A Channel!"),
        ("apply_failed", ch.encode()),
        ("undecodable", ch.encode()),
    }


async def test_metrics_count_reads_and_their_cost(live: Live) -> None:
    ch = uid()
    [pos] = await produce(live.kafka, [open_(ch, "s1")])
    await live.b.view(ch, position=str(pos))
    for _ in range(3):
        await live.b.view(ch)
    text = (await live.b.http.get("/metrics")).text
    for name in (
        'onair_liveinfo_reads_total{view="channel"}',
        'onair_liveinfo_read_db_queries_total{view="channel"}',
        'onair_liveinfo_valkey_commands_total{side="read"}',
        'onair_liveinfo_valkey_commands_total{side="write"}',
        'onair_cache_near_hits_total{cache="liveinfo.channel"}',
        # the plain read is served by the fast path: still counted under its route template
        'onair_http_requests_total{method="GET",route="/live/{channel}",service="liveinfo",status="200"}',
    ):
        assert name in text, name


async def test_the_fast_path_answers_like_the_route(live: Live) -> None:
    ch = uid()
    await settle(live, await produce(live.kafka, [open_(ch, "s1"), title(ch, "same answer", seq=1)]))
    fast = await live.b.http.get(f"/live/{ch}", headers={"X-Request-ID": "fastpath-0001"})
    routed = await live.b.http.get(f"/live/{ch}", params={"page": "ignored"})  # a query: the app
    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json() and fast.headers["content-type"] == "application/json"
    assert fast.headers["x-request-id"] == "fastpath-0001"  # the skeleton's middleware still runs
    missing = uid("nope")
    fast_404 = await live.b.http.get(f"/live/{missing}")
    routed_404 = await live.b.http.get(f"/live/{missing}", params={"x": "1"})
    assert fast_404.status_code == routed_404.status_code == 404
    assert fast_404.json() == routed_404.json() == {"error": "not_found", "detail": f"no channel {missing!r}"}
    assert (await live.b.http.get("/live/ranking")).json().keys() == {"items"}  # not a channel
    bad = await live.b.http.get("/live/NOT-a-channel")
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "path.channel"


async def test_openapi_documents_the_stream_and_the_errors(live: Live) -> None:
    doc = (await live.b.http.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/live/{channel}"]["get"]["responses"]) >= {"200", "404", "409", "422", "503"}
    assert "text/event-stream" in paths["/live/{channel}/events"]["get"]["responses"]["200"]["content"]
    assert {"200", "409", "422"} <= set(paths["/live"]["get"]["responses"])


async def test_with_valkey_down_reads_come_from_the_database(live: Live, servers: ServerControl) -> None:
    """Last in the module: Valkey stops, reads (cached or not) and the projection go on."""
    ch = uid()
    await settle(live, await produce(live.kafka, [open_(ch, "s1"), title(ch, "before the outage", seq=1)]))
    assert (await live.b.view(ch) or {})["title"] == "before the outage"
    servers.stop("valkey")
    try:
        [pos] = await produce(live.kafka, [title(ch, "during the outage", seq=2)])
        assert (await live.b.view(ch, position=str(pos)) or {})["title"] == "during the outage"
        for inst in (live.a, live.b, live.c):
            assert (await inst.view(ch) or {})["title"] == "during the outage"
            assert ch in await live_list(inst.http)
            ranking = await inst.http.get("/live/ranking")
            assert ranking.status_code == 200, ranking.text
    finally:
        servers.start("valkey")

    async def served(inst: Any) -> bool:
        return (await inst.view(ch) or {}).get("title") == "during the outage"

    for inst in (live.a, live.b, live.c):
        await eventually(lambda inst=inst: served(inst))  # type: ignore[misc]
    [pos] = await produce(live.kafka, [title(ch, "after the outage", seq=3)])
    assert (await live.a.view(ch, position=str(pos)) or {})["title"] == "after the outage"
    await eventually(lambda: _title_is(live, ch, "after the outage"), timeout_s=10)
    for _ in range(5):
        assert (await live.b.view(ch) or {})["title"] == "after the outage"


async def _title_is(live: Live, ch: str, title_: str) -> bool:
    return (await live.b.view(ch) or {}).get("title") == title_
