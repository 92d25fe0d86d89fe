"""sse_stream(initial=..., keep=...): a snapshot first, then only the entries this connection keeps."""

import asyncio

import orjson

from onair.fanout.log import FanoutLog
from onair.fanout.sse import sse_stream


async def test_initial_frames_come_first_and_keep_filters_per_connection() -> None:
    log: FanoutLog[str] = FanoutLog(8)
    sub_all, sub_new = log.subscribe(), log.subscribe()
    newest = [2]

    def newer(item: str) -> bool:  # e.g. skip versions not newer than the snapshot sent
        version = int(item)
        if version <= newest[0]:
            return False
        newest[0] = version
        return True

    everything = sse_stream(sub_all, encode=lambda s: f"data: {s}\n\n".encode())
    filtered = sse_stream(
        sub_new, encode=lambda s: f"data: {s}\n\n".encode(), initial=[b"data: snapshot-2\n\n"], keep=newer
    )
    assert await anext(filtered) == b"data: snapshot-2\n\n"  # before anything is published
    for v in ("1", "2", "3", "2", "4"):
        log.publish(v)
    assert await anext(everything) == b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 2\n\ndata: 4\n\n"
    assert await anext(filtered) == b"data: 3\n\ndata: 4\n\n"  # 1, 2 and the late 2 are not newer

    log.mark_gap("disconnected")  # gaps always go through
    assert b"event: gap" in await anext(filtered)
    for v in range(5, 15):  # more than the window: the filtered reader falls behind
        log.publish(str(v))
    behind = await anext(filtered)
    assert behind.startswith(b"event: gap")
    assert orjson.loads(behind.split(b"data: ", 1)[1]) == {"missed": 2, "reason": "behind"}
    assert await anext(filtered) == b"".join(f"data: {v}\n\n".encode() for v in range(7, 15))
    log.close()
    async with asyncio.timeout(1):
        assert [chunk async for chunk in filtered] == []
    await everything.aclose()
