"""Serve a fan-out subscription as Server-Sent Events: sse-starlette, or a lean ASGI stream.

``sse_response(sub)`` is an sse-starlette ``EventSourceResponse`` for any route; ``SSEStream(sub)``
is the same stream as a bare ASGI app for the hot path (see its docstring).

Each wake-up writes every ready entry in one chunk (frames are encoded once per message and
shared by all connections), so a busy stream costs one send per connection per wake-up, not one
per message. Heartbeats are SSE comments (``: ping``) every ``heartbeat_s``; a client that goes away
is noticed by sse-starlette (``http.disconnect``) and its cursor is closed.

Slow clients: a client that reads slower than the stream makes its sends block, so its cursor
falls behind; when it falls out of the log's window (or further than ``max_lag`` entries) the
connection's policy applies:

* ``"skip"``: send ``event: gap`` with ``{"missed": n, "reason": ...}`` and carry on from the oldest
  retained entry (or from the newest one, for ``max_lag``);
* ``"disconnect"``: send that gap event, then end the response (counted in
  ``onair_fanout_slow_client_disconnects_total{transport="sse"}``).

Gaps that come from upstream (NATS was down) are forwarded as ``event: gap`` under both policies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, TypeVar

import orjson
from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

from onair.fanout import metrics
from onair.fanout.log import Gap, Subscription

T = TypeVar("T")
SlowClientPolicy = Literal["skip", "disconnect"]


def default_sse_encode(item: Any) -> bytes:
    """An entry's SSE frame: ``item.sse_frame()`` when it has one (encoded once), else ``data: str``."""
    frame = getattr(item, "sse_frame", None)
    if frame is not None:
        return frame()
    lines = str(item).splitlines() or [""]
    return ("".join(f"data: {line}\n" for line in lines) + "\n").encode()


def gap_frame(gap: Gap) -> bytes:
    return b"event: gap\ndata: " + orjson.dumps({"missed": gap.missed, "reason": gap.reason}) + b"\n\n"


async def sse_stream(
    sub: Subscription[T],
    *,
    encode: Callable[[T], bytes] = default_sse_encode,
    slow_client: SlowClientPolicy = "skip",
    max_lag: int | None = None,
    batch: int = 512,
    on_close: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    """The body of an SSE response: chunks of encoded frames, ``event: gap`` where entries were lost."""
    view = sub.log.view(encode, gap_frame)  # each entry encoded once, shared by every connection
    try:
        while await sub.wait():
            if max_lag is not None and sub.lag > max_lag:
                gap = Gap(sub.skip_to_head(), "slow-client")
                yield gap_frame(gap)
                if slow_client == "disconnect":
                    metrics.slow_client_disconnect("sse")
                    return
                continue
            behind, frames = sub.drain_encoded(view, batch)
            if behind is not None:
                yield gap_frame(behind)
                if slow_client == "disconnect":
                    metrics.slow_client_disconnect("sse")
                    return
            elif frames:
                yield frames[0] if len(frames) == 1 else b"".join(frames)
    finally:
        sub.close()
        if on_close is not None:
            on_close()


class _EventSource(EventSourceResponse):
    """sse-starlette's response, minus the per-write cancel scope when there is no send timeout."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


def sse_response(
    sub: Subscription[T],
    *,
    encode: Callable[[T], bytes] = default_sse_encode,
    heartbeat_s: float = 15.0,
    slow_client: SlowClientPolicy = "skip",
    max_lag: int | None = None,
    send_timeout_s: float | None = None,
    batch: int = 512,
    on_close: Callable[[], None] | None = None,
) -> EventSourceResponse:
    """An ``EventSourceResponse`` streaming ``sub`` (closed when the client goes away).

    ``send_timeout_s`` ends the response when one write blocks that long (a client that stopped
    reading altogether), whatever the policy.
    """
    return _EventSource(
        sse_stream(
            sub, encode=encode, slow_client=slow_client, max_lag=max_lag, batch=batch, on_close=on_close
        ),
        ping=heartbeat_s,
        send_timeout=send_timeout_s,
        sep="\n",
        headers={"Cache-Control": "no-store"},
    )


class SSEStream:
    """The same stream as a bare ASGI app, for the hot path of a big fan-out.

    Equivalent to :func:`sse_response` (same frames, gap events, heartbeats, slow-client policy,
    disconnect detection) without the layers a general-purpose response adds to every write (a
    cancel scope per send, the middleware stack when mounted before the framework): with a thousand
    connections the cost per write is what bounds the latency. Use it as the ASGI app of one
    request: ``await SSEStream(sub)(scope, receive, send)``.
    """

    def __init__(
        self,
        sub: Subscription[T],
        *,
        encode: Callable[[T], bytes] = default_sse_encode,
        heartbeat_s: float = 15.0,
        slow_client: SlowClientPolicy = "skip",
        max_lag: int | None = None,
        batch: int = 512,
    ) -> None:
        self.sub: Subscription[Any] = sub
        self.encode: Callable[[Any], bytes] = encode
        self.heartbeat_s = heartbeat_s
        self.slow_client = slow_client
        self.max_lag = max_lag
        self.batch = batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.sub
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock()  # the heartbeat and the stream never interleave inside a write
        last_write = loop.time()

        async def write(body: bytes) -> None:
            nonlocal last_write
            async with lock:
                await send({"type": "http.response.body", "body": body, "more_body": True})
                last_write = loop.time()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            sub.close()  # wakes the stream loop, which then ends

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(max(0.0, last_write + self.heartbeat_s - loop.time()))
                if loop.time() - last_write >= self.heartbeat_s:
                    await write(b": ping\n\n")

        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        helpers = [asyncio.create_task(watch_disconnect())]
        if self.heartbeat_s > 0:
            helpers.append(asyncio.create_task(heartbeat()))
        view = sub.log.view(self.encode, gap_frame)
        try:
            while await sub.wait():
                if self.max_lag is not None and sub.lag > self.max_lag:
                    await write(gap_frame(Gap(sub.skip_to_head(), "slow-client")))
                    if self.slow_client == "disconnect":
                        metrics.slow_client_disconnect("sse")
                        break
                    continue
                behind, frames = sub.drain_encoded(view, self.batch)
                if behind is not None:
                    await write(gap_frame(behind))
                    if self.slow_client == "disconnect":
                        metrics.slow_client_disconnect("sse")
                        break
                elif frames:
                    await write(frames[0] if len(frames) == 1 else b"".join(frames))
            async with lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            sub.close()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
