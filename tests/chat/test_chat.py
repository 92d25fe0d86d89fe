"""chat on real servers: two chat processes, SSE and WebSocket viewers, resume and gaps, moderation,
follows and go-live notifications, donations, the posting rules."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect as ws_connect

from onair_services.chat.models import golive

from .conftest import Chat
from .helpers import SSEReader, eventually, produce, sse, status, title, uid

pytestmark = pytest.mark.asyncio(loop_scope="module")


def ns(reader: SSEReader) -> list[int]:
    return [int(e["id"]) for e in reader.events if "id" in e]


async def test_messages_reach_100_viewers_in_order_across_two_processes(chat: Chat) -> None:
    channel = await chat.room()
    async with contextlib.AsyncExitStack() as stack:
        readers = []
        for i in range(100):
            inst = chat.a if i % 2 == 0 else chat.b
            readers.append(await stack.enter_async_context(sse(inst.http, f"/chat/{channel}/sse")))
        await eventually(
            lambda: _true(chat.a.chat.viewers.here(channel) == 50 and chat.b.chat.viewers.here(channel) == 50)
        )
        for i in range(20):
            inst = chat.a if i % 2 == 0 else chat.b
            r = await chat.post(inst, channel, "alice", f"hello {i}")
            assert r.status_code == 201, r.text
            assert r.json()["n"] == i + 1 and r.json()["id"] == i + 1
        for reader in readers:
            await reader.wait_for(lambda r: len(r.events) >= 20)
        expected = [f"hello {i}" for i in range(20)]
        for reader in readers:
            assert [d["text"] for d in reader.data("message")] == expected
            assert ns(reader) == list(range(1, 21))
            assert all(d["user"] == "alice" for d in reader.data())


async def _true(value: bool) -> bool:
    return value


async def test_concurrent_posts_from_two_processes_are_numbered_without_holes(chat: Chat) -> None:
    channel = await chat.room()
    posts = [chat.post(chat.a if i % 2 else chat.b, channel, f"user{i % 4}", f"m{i}") for i in range(40)]
    results = await asyncio.gather(*posts)
    assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201]
    assert sorted(r.json()["n"] for r in results) == list(range(1, 41))
    recent = (await chat.a.http.get(f"/chat/{channel}/recent", params={"limit": 15})).json()
    assert [m["n"] for m in recent["messages"]] == list(range(26, 41))
    assert recent["last_n"] == 40


async def test_reconnect_with_last_event_id_resumes_with_nothing_lost_or_repeated(chat: Chat) -> None:
    channel = await chat.room()
    for i in range(3):
        assert (await chat.post(chat.a, channel, "alice", f"before {i}")).status_code == 201
    async with sse(chat.a.http, f"/chat/{channel}/sse") as first:
        await first.wait_for(lambda r: len(r.events) >= 3)
        assert (await chat.post(chat.b, channel, "bob", "seen")).status_code == 201
        await first.wait_for(lambda r: len(r.events) >= 4)
    last = ns(first)[-1]
    assert last == 4
    for i in range(5):  # while the viewer is away, through both processes
        assert (
            await chat.post(chat.a if i % 2 else chat.b, channel, "carol", f"away {i}")
        ).status_code == 201
    # the browser's reconnect, to the other process: only what it has not seen, no gap
    async with sse(chat.b.http, f"/chat/{channel}/sse", headers={"Last-Event-ID": str(last)}) as again:
        await again.wait_for(lambda r: len(r.events) >= 5)
        assert (await chat.post(chat.a, channel, "alice", "after")).status_code == 201
        await again.wait_for(lambda r: len(r.events) >= 6)
        await asyncio.sleep(0.1)
    assert ns(again) == [5, 6, 7, 8, 9, 10]
    assert not [e for e in again.events if e.get("event") == "gap"]
    assert [d["text"] for d in again.data()] == [f"away {i}" for i in range(5)] + ["after"]
    # ?last_event_id= works the same (for clients that cannot set the header)
    async with sse(chat.a.http, f"/chat/{channel}/sse?last_event_id=8") as q:
        await q.wait_for(lambda r: len(r.events) >= 2)
    assert ns(q)[:2] == [9, 10]


async def test_an_expired_id_gets_an_exact_gap_marker_then_the_retained_events(chat: Chat) -> None:
    channel = await chat.room()
    for i in range(30):  # the stream retains 20 per room: events 11..30
        assert (await chat.post(chat.a, channel, "alice", f"m{i}")).status_code == 201
    # b's room log started before the posts and still has them all: it resumes exactly
    async with sse(chat.b.http, f"/chat/{channel}/sse", headers={"Last-Event-ID": "2"}) as exact:
        await exact.wait_for(lambda r: len(r.events) >= 28)
    assert ns(exact) == list(range(3, 31))
    # as if b had restarted: its new room log holds what the stream retains
    await chat.b.chat.bridge.release(chat.b.chat.nats.subject("chat", "room", channel))
    async with sse(chat.b.http, f"/chat/{channel}/sse", headers={"Last-Event-ID": "2"}) as reader:
        await reader.wait_for(lambda r: len(r.events) >= 21)
    assert reader.events[0]["event"] == "gap"
    assert reader.events[0]["data"] == {"type": "gap", "missed": 8, "reason": "expired"}
    assert ns(reader) == list(range(11, 31))
    # an id from the future (the room's numbering restarted): an unknown gap, then the joiner's view
    async with sse(chat.a.http, f"/chat/{channel}/sse", headers={"Last-Event-ID": "999"}) as ahead:
        await ahead.wait_for(lambda r: len(r.events) >= 11)
    assert ahead.events[0]["data"] == {"type": "gap", "missed": None, "reason": "reset"}
    assert ns(ahead) == list(range(21, 31))  # history: the last 10
    bad = await chat.a.http.get(f"/chat/{channel}/sse", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "header.last-event-id"


async def test_websocket_joins_resumes_and_gets_gaps(chat: Chat) -> None:
    channel = await chat.room()
    for i in range(25):
        assert (await chat.post(chat.a, channel, "alice", f"m{i}")).status_code == 201
    await chat.b.chat.bridge.release(chat.b.chat.nats.subject("chat", "room", channel))  # b restarted
    ws_url = chat.b.url.replace("http", "ws")
    async with ws_connect(f"{ws_url}/chat/{channel}/ws") as ws:  # no hello: the joiner's last 10
        got = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(10)]
        assert [e["n"] for e in got] == list(range(16, 26))
    async with ws_connect(f"{ws_url}/chat/{channel}/ws") as ws:  # resume by a first message
        await ws.send(orjson.dumps({"last_event_id": 3}).decode())
        gap = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert gap == {"type": "gap", "missed": 2, "reason": "expired"}
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["n"] == 6
    async with ws_connect(f"{ws_url}/chat/{channel}/ws?last_event_id=24") as ws:
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["n"] == 25
        assert (await chat.post(chat.a, channel, "bob", "live")).status_code == 201
        live = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (live["n"], live["text"], live["user"]) == (26, "live", "bob")


async def test_moderation_delete_mute_and_who_may(chat: Chat) -> None:
    channel = await chat.room()
    posted = (await chat.post(chat.a, channel, "bob", "spam spam")).json()
    async with sse(chat.b.http, f"/chat/{channel}/sse") as reader:
        await reader.wait_for(lambda r: len(r.events) >= 1)
        url = f"/chat/{channel}/messages/{posted['id']}"
        not_owner = await chat.a.http.delete(url, headers=chat.who("mallory"))
        assert not_owner.status_code == 403 and not_owner.json()["error"] == "forbidden"
        assert (await chat.a.http.delete(url)).status_code == 401
        assert (await chat.a.http.delete(url, headers=chat.who(channel, "streamer"))).status_code == 204
        await reader.wait_for(lambda r: len(r.events) >= 2)
        assert reader.data()[-1]["type"] == "delete" and reader.data()[-1]["id"] == posted["id"]
        assert reader.data()[-1]["by"] == channel
        again = await chat.a.http.delete(url, headers=chat.who("root", "admin"))  # an admin; already gone
        assert again.status_code == 204
        missing = await chat.a.http.delete(f"/chat/{channel}/messages/999", headers=chat.who(channel))
        assert missing.status_code == 404
    recent = (await chat.b.http.get(f"/chat/{channel}/recent")).json()
    assert recent["messages"] == []  # the deleted message is left out

    mutes = f"/chat/{channel}/mutes"
    by_other = await chat.a.http.post(mutes, json={"user": "bob"}, headers=chat.who("mallory"))
    assert by_other.status_code == 403
    muted = await chat.a.http.post(mutes, json={"user": "bob", "reason": "spam"}, headers=chat.who(channel))
    assert muted.status_code == 201 and muted.json()["until_ms"] is None
    for inst in (chat.a, chat.b):  # both processes see it (Valkey invalidation of the near caches)
        r = await chat.post(inst, channel, "bob", "let me talk")
        assert r.status_code == 403 and r.json()["error"] == "muted"
    assert (await chat.post(chat.b, channel, "carol", "fine")).status_code == 201
    listed = (await chat.b.http.get(mutes, headers=chat.who(channel))).json()["mutes"]
    assert [m["user"] for m in listed] == ["bob"]
    owner = await chat.a.http.post(mutes, json={"user": channel}, headers=chat.who("root", "admin"))
    assert owner.status_code == 422
    assert (await chat.b.http.delete(f"{mutes}/bob", headers=chat.who("mallory"))).status_code == 403
    assert (await chat.b.http.delete(f"{mutes}/bob", headers=chat.who(channel))).status_code == 204
    assert (await chat.b.http.delete(f"{mutes}/bob", headers=chat.who(channel))).status_code == 404
    for inst in (chat.a, chat.b):
        assert (await chat.post(inst, channel, "bob", "thanks")).status_code == 201
    timed = await chat.a.http.post(mutes, json={"user": "dave", "duration_s": 1}, headers=chat.who(channel))
    assert timed.status_code == 201
    assert (await chat.post(chat.a, channel, "dave", "x")).status_code == 403
    await asyncio.sleep(1.1)
    assert (await chat.post(chat.a, channel, "dave", "x")).status_code == 201


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("\x00\x01\x1b\x7f\u202e", "empty"),
        ("x" * 501, "501 characters"),
        ("e\u0301" * 400, "400 characters after NFC is fine"),
        ("a\n" * 11, "11 lines"),
    ],
)
async def test_message_text_rules(chat: Chat, text: str, why: str) -> None:
    channel = await _shared_room(chat)
    r = await chat.post(chat.a, channel, "alice", text)
    if why.endswith("fine"):
        assert r.status_code == 201, r.text
        assert r.json()["text"] == "\u00e9" * 400
        return
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request" and r.json()["fields"][0]["field"] == "body.text"


_ROOMS: dict[str, str] = {}


async def _shared_room(chat: Chat) -> str:
    if "shared" not in _ROOMS:
        _ROOMS["shared"] = await chat.room()
    return _ROOMS["shared"]


async def test_text_is_cleaned_not_refused(chat: Chat) -> None:
    channel = await _shared_room(chat)
    r = await chat.post(chat.a, channel, "alice", "  he\x00llo\u202e\r\nworld\t! \U0001f44d\u200d  ")
    assert r.status_code == 201
    assert r.json()["text"] == "hello\nworld! \U0001f44d\u200d"


async def test_rate_limits_answer_429_with_retry_after(chat: Chat) -> None:
    channel = await chat.room()
    limiter = chat.a.chat.limiter
    # a user limit of 3 per 30 s, with the module's limiter keys
    from onair_services.chat.ratelimit import Limit, PostLimiter

    tight = PostLimiter(limiter.valkey, user=Limit(3, 30), room=Limit(1000, 1))
    chat.a.chat.limiter = tight
    try:
        for i in range(3):
            assert (await chat.post(chat.a, channel, "eve", f"m{i}")).status_code == 201
        r = await chat.post(chat.a, channel, "eve", "too many")
        assert r.status_code == 429 and r.json()["error"] == "rate_limited" and r.json()["limiter"] == "user"
        assert 1 <= int(r.headers["retry-after"]) <= 10
        assert (await chat.post(chat.a, channel, "frank", "another user")).status_code == 201
    finally:
        chat.a.chat.limiter = limiter
    slow = await chat.room("slow")
    assert (await chat.post(chat.b, slow, "gina", "one")).status_code == 201
    r = await chat.post(chat.a, slow, "gina", "two")  # the other process: the limit is shared
    assert r.status_code == 429 and r.json()["limiter"] == "slow"
    assert 25 <= int(r.headers["retry-after"]) <= 30
    assert (await chat.post(chat.a, slow, slow, "the owner is not slowed")).status_code == 201
    assert (await chat.post(chat.a, slow, slow, "twice")).status_code == 201


async def test_followers_only_rooms(chat: Chat) -> None:
    channel = await chat.room("followers")
    r = await chat.post(chat.a, channel, "hank", "hi")
    assert r.status_code == 403 and r.json()["error"] == "followers_only"
    assert (await chat.a.http.put(f"/follows/{channel}", headers=chat.who("hank"))).status_code == 204
    assert (await chat.post(chat.b, channel, "hank", "hi")).status_code == 201


async def test_unknown_room_is_404_everywhere(chat: Chat) -> None:
    nope = uid("nope")
    who = chat.who("alice")
    for r in (
        await chat.a.http.post(f"/chat/{nope}/messages", json={"text": "x"}, headers=who),
        await chat.a.http.get(f"/chat/{nope}/sse"),
        await chat.a.http.get(f"/chat/{nope}/recent"),
        await chat.a.http.get(f"/chat/{nope}/stats"),
        await chat.a.http.put(f"/follows/{nope}", headers=who),
        await chat.a.http.delete(f"/chat/{nope}/messages/1", headers=chat.who(nope)),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "not_found"
    ws_url = chat.a.url.replace("http", "ws")
    with pytest.raises(Exception) as refused:
        async with ws_connect(f"{ws_url}/chat/{nope}/ws"):
            pass
    assert "404" in str(refused.value)
    assert (
        await chat.a.http.post("/chat/Bad-Name/messages", json={"text": "x"}, headers=who)
    ).status_code == 422
    assert (await chat.a.http.post(f"/chat/{nope}/messages", json={"text": "x"})).status_code == 401


async def test_go_live_reaches_a_follower_once(chat: Chat) -> None:
    channel = await chat.room()
    await produce(chat.kafka, [title(channel, "Speedrun night")])
    follower, stranger = chat.who("ivy"), chat.who("jack")
    assert (await chat.b.http.put(f"/follows/{channel}", headers=follower)).status_code == 204
    assert (await chat.b.http.put(f"/follows/{channel}", headers=follower)).status_code == 204  # idempotent
    async with (
        sse(chat.b.http, "/notify/stream", headers=follower) as mine,
        sse(chat.a.http, "/notify/stream", headers=stranger) as theirs,
    ):
        opened = status(channel, "open", f"s-{uid()}")
        await produce(chat.kafka, [opened])
        await mine.wait_for(lambda r: len(r.data("went_live")) >= 1, timeout_s=30)
        note = mine.data("went_live")[0]
        assert note["channel"] == channel and note["id"] == opened.data["session_id"]
        assert note["title"] == "Speedrun night"
        # the same event again (a replay) and the relay running again: no second notification
        await produce(chat.kafka, [opened])
        await chat.a.chat.notifier.publish_pending()
        await chat.b.chat.notifier.publish_pending()
        # as if the process had died after publishing and before marking the row sent: another
        # process publishes it again, and the stream keeps the notification once
        async with chat.b.svc.session() as session, session.begin():
            await session.execute(
                update(golive)
                .where(golive.c.session_id == opened.data["session_id"])
                .values(state="pending", claimed_until_ms=None)
            )
        assert await chat.b.chat.notifier.publish_pending() == 1
        await asyncio.sleep(1.0)
        assert len(mine.data("went_live")) == 1
        assert theirs.data("went_live") == []
    listed = (await chat.a.http.get("/follows", headers=follower)).json()["follows"]
    assert [(f["channel"], f["live"], f["title"]) for f in listed] == [(channel, True, "Speedrun night")]
    # a reconnecting follower gets it from the stream's history (and not again after its id)
    async with sse(chat.a.http, "/notify/stream", headers=follower) as later:
        await later.wait_for(lambda r: len(r.data("went_live")) >= 1)
        seen = later.events[-1]["id"]
    async with sse(chat.a.http, "/notify/stream", headers={**follower, "Last-Event-ID": seen}) as after:
        await asyncio.sleep(0.5)
    assert after.data() == []
    assert (await chat.a.http.get("/notify/stream")).status_code == 401


async def test_a_donation_is_posted_once_even_with_two_processes(chat: Chat) -> None:
    channel = await chat.room()
    async with sse(chat.a.http, f"/chat/{channel}/sse") as reader:
        subject = chat.nats.subject("wallet", "donation", channel)
        js = chat.nats.jetstream()
        announcement = {
            "transfer_id": f"t-{uid()}",
            "donor": "kim",
            "channel": channel,
            "amount": 500,
            "message": "gg\x00 wp",
            "ts": 1,
        }
        await js.publish(subject, orjson.dumps(announcement))
        await js.publish(subject, orjson.dumps(announcement))  # the wallet retried: a duplicate
        await js.publish(subject, b"not json")  # dropped, not redelivered forever
        await reader.wait_for(lambda r: len(r.data("donation")) >= 1)
        await asyncio.sleep(1.0)
    donations = reader.data("donation")
    assert len(donations) == 1
    d = donations[0]
    assert (d["user"], d["amount"], d["text"], d["transfer_id"]) == (
        "kim",
        500,
        "gg wp",
        announcement["transfer_id"],
    )
    recent = (await chat.b.http.get(f"/chat/{channel}/recent")).json()["messages"]
    assert [m["type"] for m in recent] == ["donation"]


async def test_viewer_counts_and_stats_across_processes(chat: Chat) -> None:
    channel = await chat.room()
    async with sse(chat.a.http, f"/chat/{channel}/sse"), sse(chat.a.http, f"/chat/{channel}/sse"):
        async with sse(chat.b.http, f"/chat/{channel}/sse"):
            await eventually(lambda: _true(chat.b.chat.viewers.here(channel) == 1))
            assert (await chat.post(chat.a, channel, "alice", "hi")).status_code == 201
            assert await chat.a.chat.viewers.report() >= 1
            assert await chat.b.chat.viewers.report() >= 1
            stats: dict[str, Any] = (await chat.b.http.get(f"/chat/{channel}/stats")).json()
            assert stats["viewers_here"] == 1 and stats["viewers_total"] == 3 and stats["processes"] == 2
            assert stats["messages_per_min"] == 1 and stats["last_n"] == 1
        await eventually(lambda: _true(chat.b.chat.viewers.here(channel) == 0))
        assert channel in chat.b.chat.viewers._reported
        await chat.b.chat.viewers.report()  # one zero for the room that emptied ...
        assert channel not in chat.b.chat.viewers._reported  # ... and then nothing for it
        stats = (await chat.a.http.get(f"/chat/{channel}/stats")).json()
        assert stats["viewers_total"] == 2 and stats["processes"] == 1
    metrics = (await chat.a.http.get("/metrics")).text
    assert 'onair_chat_viewers{transport="sse"}' in metrics
    assert 'onair_chat_events_posted_total{type="message"}' in metrics
    assert "onair_chat_deliveries_total" in metrics


async def test_room_streams_keep_the_request_id_and_the_metrics(chat: Chat) -> None:
    channel = await chat.room()
    rid = "req-chat-12345678"
    async with chat.a.http.stream("GET", f"/chat/{channel}/sse", headers={"X-Request-ID": rid}) as resp:
        assert resp.status_code == 200 and resp.headers["x-request-id"] == rid
        assert resp.headers["content-type"].startswith("text/event-stream")
    missing = await chat.a.http.get(f"/chat/{uid('nope')}/sse", headers={"X-Request-ID": rid})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert missing.headers["x-request-id"] == rid
    await eventually(lambda: _true(chat.a.chat.viewers.here(channel) == 0))
    metrics = (await chat.a.http.get("/metrics")).text
    assert 'route="/chat/{channel}/sse",service="chat",status="200"' in metrics
    assert 'route="/chat/{channel}/sse",service="chat",status="404"' in metrics
    doc = (await chat.b.http.get("/openapi.json")).json()
    assert "text/event-stream" in doc["paths"]["/chat/{channel}/sse"]["get"]["responses"]["200"]["content"]
    assert {"403", "404", "429"} <= set(doc["paths"]["/chat/{channel}/messages"]["post"]["responses"])
