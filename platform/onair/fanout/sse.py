"""Serve a fan-out subscription as Server-Sent Events (sse-starlette).

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

from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, TypeVar

import orjson
from sse_starlette import EventSourceResponse
from starlette.types import Message, Send

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
