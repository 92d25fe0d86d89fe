"""FanoutBridge on a real NATS server: one NATS subscription for thousands of local viewers,
a gap (not silence) when NATS restarts, JetStream history for joiners."""

from __future__ import annotations

import asyncio
import uuid

from onair.clients import NatsClient
from onair.fanout import Gap, Subscription
from onair.fanout.bridge import FanoutBridge, FanoutMessage
from onair.testing import ServerControl


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


async def read(sub: Subscription[FanoutMessage], n: int) -> list[FanoutMessage | Gap]:
    out: list[FanoutMessage | Gap] = []
    async for item in sub:
        out.append(item)
        if len(out) == n:
            break
    return out


async def flowing(pub: NatsClient, sub: Subscription[FanoutMessage], subject: str) -> None:
    """Publish probes until one comes back through the bridge (both connections are up)."""
    async with asyncio.timeout(30):
        while True:
            await pub.publish(subject, b"probe")
            try:
                item = await asyncio.wait_for(anext(sub), 0.5)
            except TimeoutError:
                continue
            assert isinstance(item, FanoutMessage)  # no (second) gap: one outage, one marker
            if item.text() == "probe":
                return


async def read_numbers(sub: Subscription[FanoutMessage], n: int) -> list[FanoutMessage | Gap]:
    """Like read(), skipping probes still in flight."""
    out: list[FanoutMessage | Gap] = []
    async for item in sub:
        if isinstance(item, FanoutMessage) and item.text() == "probe":
            continue
        out.append(item)
        if len(out) == n:
            break
    return out


def payloads(items: list[FanoutMessage | Gap]) -> list[str]:
    return [i.text() if isinstance(i, FanoutMessage) else f"gap:{i.reason}" for i in items]


async def test_thousands_of_local_subscribers_share_one_nats_subscription(nats_url: str) -> None:
    p = prefix()
    async with (
        NatsClient(nats_url, subject_prefix=p) as sub_client,
        NatsClient(nats_url, subject_prefix=p) as pub,
    ):
        bridge = FanoutBridge(sub_client, capacity=256)
        pattern = sub_client.subject("live", "*")
        subs = [await bridge.subscribe(pattern) for _ in range(3000)]
        assert len(sub_client.raw._subs) == 1  # one NATS subscription for 3,000 viewers
        readers = [asyncio.create_task(read(s, 200)) for s in subs]
        for i in range(200):
            await pub.publish(pub.subject("live", "room1"), str(i).encode())
        await pub.raw.flush()
        results = await asyncio.wait_for(asyncio.gather(*readers), 60)
        expected = [str(i) for i in range(200)]
        for got in results:
            assert payloads(got) == expected
        first = results[0][0]
        assert isinstance(first, FanoutMessage) and first.subject == f"{p}.live.room1" and first.seq == 0
        assert results[1][0] is first  # stored once, shared by every reader
        await bridge.close()
        assert await asyncio.wait_for(read(subs[0], 1), 2) == []  # closed bridge ends subscriptions


async def test_nats_restart_mid_stream_gives_a_gap_not_silence(nats_url: str, servers: ServerControl) -> None:
    p = prefix()
    up = asyncio.Event()
    async with (
        NatsClient(nats_url, subject_prefix=p) as client,
        NatsClient(nats_url, subject_prefix=p) as pub,
    ):

        async def on_reconnect() -> None:
            up.set()

        client.on_reconnect(on_reconnect)
        bridge = FanoutBridge(client, capacity=128)
        subject = client.subject("chat", "r")
        sub = await bridge.subscribe(subject)
        await flowing(pub, sub, subject)
        for i in range(20):
            await pub.publish(subject, str(i).encode())
        before = await asyncio.wait_for(read_numbers(sub, 20), 10)
        assert payloads(before) == [str(i) for i in range(20)]

        await asyncio.to_thread(servers.stop, "nats", hard=True)
        # While NATS is down the reader is told, it does not just go quiet.
        gap = (await asyncio.wait_for(read_numbers(sub, 1), 15))[0]
        assert gap == Gap(None, "disconnected")

        await asyncio.to_thread(servers.start, "nats")
        await asyncio.wait_for(up.wait(), 30)
        # The publisher reconnects too; probe until a message makes the round trip again.
        await flowing(pub, sub, subject)
        for i in range(20, 30):
            await pub.publish(subject, str(i).encode())
        after = await asyncio.wait_for(read_numbers(sub, 10), 10)
        assert payloads(after) == [str(i) for i in range(20, 30)]
        await bridge.close()


async def test_jetstream_history_for_joiners(nats_url: str) -> None:
    p = prefix()
    async with NatsClient(nats_url, subject_prefix=p) as client:
        js = client.jetstream()
        stream = f"S{p}"
        await js.add_stream(name=stream, subjects=[client.subject("hist", ">")])
        subject = client.subject("hist", "room")
        for i in range(30):
            await js.publish(subject, str(i).encode())
        bridge = FanoutBridge(client, capacity=64)
        flog = await bridge.feed(subject, history=10)
        async with asyncio.timeout(10):
            while flog.head < 10:  # noqa: ASYNC110 - the history arrives through the NATS callback
                await asyncio.sleep(0.01)
        joiner = await bridge.subscribe(subject, last=5)
        live_only = await bridge.subscribe(subject)
        await js.publish(subject, b"30")
        got = await asyncio.wait_for(read(joiner, 6), 10)
        assert payloads(got) == ["25", "26", "27", "28", "29", "30"]
        assert [m.stream_seq for m in got if isinstance(m, FanoutMessage)] == [26, 27, 28, 29, 30, 31]
        assert payloads(await asyncio.wait_for(read(live_only, 1), 10)) == ["30"]
        assert [m.text() for _, m in flog.retained() if isinstance(m, FanoutMessage)][:10] == [
            str(i) for i in range(20, 30)
        ]
        await bridge.close()
        await js.delete_stream(stream)


async def test_history_is_the_last_n_of_the_subject_in_a_shared_stream(nats_url: str) -> None:
    """A room among many in one stream: its own last N messages, in the log when feed() returns,
    one set-up for concurrent callers, and a released feed ends its readers."""
    p = prefix()
    async with NatsClient(nats_url, subject_prefix=p) as client:
        js = client.jetstream()
        stream = f"S{p}"
        await js.add_stream(name=stream, subjects=[client.subject("rooms", ">")])
        quiet, busy = client.subject("rooms", "quiet"), client.subject("rooms", "busy")
        for i in range(12):
            await js.publish(quiet, str(i).encode())
            for j in range(20):  # the busy room pushes the quiet one far back in the stream
                await js.publish(busy, f"b{i}.{j}".encode())
        bridge = FanoutBridge(client, capacity=64)
        logs = await asyncio.gather(*(bridge.feed(quiet, history=5) for _ in range(3)))
        assert logs[0] is logs[1] is logs[2]
        flog = logs[0]
        assert [m.text() for _, m in flog.retained() if isinstance(m, FanoutMessage)] == [
            "7",
            "8",
            "9",
            "10",
            "11",
        ]
        empty = await bridge.feed(client.subject("rooms", "nobody"), history=5)
        assert empty.head == 0 and bridge.log_for(client.subject("rooms", "nobody")) is empty
        small = await bridge.feed(busy, history=500, capacity=300)  # fewer retained than asked: all
        assert small.capacity == 300 and small.head == 240
        reader = flog.subscribe(last=2)
        await js.publish(quiet, b"12")
        assert payloads(await asyncio.wait_for(read(reader, 3), 10)) == ["10", "11", "12"]
        assert await bridge.release(quiet) is True and await bridge.release(quiet) is False
        assert flog.closed and bridge.log_for(quiet) is None
        assert await asyncio.wait_for(read(reader, 1), 5) == []  # the reader ends
        await bridge.close()
        await js.delete_stream(stream)


async def test_coalesced_wakeups_deliver_everything_in_order(nats_url: str) -> None:
    p = prefix()
    async with NatsClient(nats_url, subject_prefix=p) as client:
        bridge = FanoutBridge(client, capacity=512, coalesce_s=0.02)
        subject = client.subject("busy")
        subs = [await bridge.subscribe(subject) for _ in range(50)]
        readers = [asyncio.create_task(read(s, 300)) for s in subs]
        for i in range(300):
            await client.publish(subject, str(i).encode())
        results = await asyncio.wait_for(asyncio.gather(*readers), 20)
        for got in results:
            assert payloads(got) == [str(i) for i in range(300)]
        await bridge.close()


async def test_messages_dropped_by_nats_py_become_an_exact_gap(nats_url: str) -> None:
    """A full pending queue in nats-py (slow consumer) drops messages: the log says how many, where."""
    p = prefix()
    async with (
        NatsClient(nats_url, subject_prefix=p) as client,
        NatsClient(nats_url, subject_prefix=p) as pub,
    ):
        bridge = FanoutBridge(client, capacity=4096, pending_msgs_limit=5)
        subject = client.subject("burst")
        sub = await bridge.subscribe(subject)
        total = 2000
        for i in range(total):  # one burst: the client parses many per socket read, the queue holds 5
            await pub.publish(subject, str(i).encode())
        await pub.raw.flush()
        seen: list[int] = []
        gaps: list[Gap] = []
        async with asyncio.timeout(20):
            async for item in sub:
                if isinstance(item, Gap):
                    assert item.reason == "upstream" and item.missed
                    gaps.append(item)
                else:
                    seen.append(int(item.text()))
                if len(seen) + sum(g.missed or 0 for g in gaps) == total:
                    break
        assert gaps, "nats-py did not drop anything: the test did not test"
        assert seen == sorted(seen) and seen[0] == 0
        assert len(seen) + sum(g.missed or 0 for g in gaps) == total  # nothing lost silently
        await bridge.close()
