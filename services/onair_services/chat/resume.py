"""Where a viewer's stream starts: the last ``history`` room events, or right after the event it
last saw, or a gap that says exactly how many events it can no longer get.

A room log (one per room per process, fed from JetStream) holds at least everything the stream
still retains for the room (``room_retention``), in room order; events carry their room number
``n`` with no holes. For a viewer that last saw event ``L``:

* ``L`` at or after the oldest retained event: it resumes at ``L + 1`` (nothing lost, nothing
  repeated);
* older: ``{"type":"gap","missed": first - 1 - L, "reason":"expired"}`` (exact), then everything
  retained;
* newer than the newest event (the room's history was wiped and numbering started again, or the
  id is not one of ours): ``{"type":"gap","missed":null,"reason":"reset"}``, then the last
  ``history`` events.

The encoders make each event's SSE frame (``id: <n>``) and WebSocket text once per message for
every connection (:meth:`onair.fanout.FanoutLog.view`).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from onair.fanout import FanoutLog, Gap
from onair.fanout.bridge import FanoutMessage
from onair_services.chat.streams import event_n


@dataclass(frozen=True)
class Start:
    """The log sequence number of the first entry to send, and the gap to announce before it."""

    cursor: int
    gap: dict[str, object] | None = None

    def sse_initial(self) -> list[bytes]:
        return [b"event: gap\ndata: " + orjson.dumps(self.gap) + b"\n\n"] if self.gap else []

    def ws_initial(self) -> list[str]:
        return [orjson.dumps(self.gap).decode()] if self.gap else []


def _gap(missed: int | None, reason: str) -> dict[str, object]:
    return {"type": "gap", "missed": missed, "reason": reason}


def _n_at_or_after(flog: FanoutLog[FanoutMessage], seq: int) -> int | None:
    """``n`` of the first message at or after log position ``seq`` (skipping gap markers)."""
    for s in range(seq, flog.head):
        item = flog.entry(s)
        if isinstance(item, FanoutMessage):
            return event_n(item)
    return None


def start_for(flog: FanoutLog[FanoutMessage], last_seen: int | None, history: int) -> Start:
    """Where a subscription on ``flog`` starts for a viewer that last saw event ``last_seen``."""
    joiner = Start(max(flog.tail, flog.head - history))
    if last_seen is None:
        return joiner
    first = _n_at_or_after(flog, flog.tail)
    if first is None:  # nothing retained
        return Start(flog.head, _gap(None, "reset") if last_seen > 0 else None)
    if last_seen < first - 1:
        return Start(flog.tail, _gap(first - 1 - last_seen, "expired"))
    # Binary search for the first entry whose n is greater than last_seen.
    lo, hi = flog.tail, flog.head
    while lo < hi:
        mid = (lo + hi) // 2
        n = _n_at_or_after(flog, mid)
        if n is None or n > last_seen:
            hi = mid
        else:
            lo = mid + 1
    if lo == flog.head:
        last = _n_at_or_after(flog, _last_message(flog))
        if last is not None and last_seen > last:  # ahead of the room: its numbering restarted
            return Start(joiner.cursor, _gap(None, "reset"))
    return Start(lo)


def _last_message(flog: FanoutLog[FanoutMessage]) -> int:
    for s in range(flog.head - 1, flog.tail - 1, -1):
        if isinstance(flog.entry(s), FanoutMessage):
            return s
    return flog.tail


def gap_payload(gap: Gap) -> bytes:
    """A gap met while streaming (a slow viewer fell out of the window, NATS was away)."""
    return orjson.dumps({"type": "gap", "missed": gap.missed, "reason": gap.reason})


def sse_frame(item: FanoutMessage) -> bytes:
    """``id: <n>`` and the event's JSON (one line: JSON text has no raw newlines)."""
    return b"id: %d\ndata: %s\n\n" % (event_n(item), item.data)


def sse_gap(gap: Gap) -> bytes:
    return b"event: gap\ndata: " + gap_payload(gap) + b"\n\n"


def ws_text(item: FanoutMessage) -> str:
    return item.data.decode()


def ws_gap(gap: Gap) -> str:
    return gap_payload(gap).decode()


def notify_sse_frame(item: FanoutMessage) -> bytes:
    """A notification's frame: ``id:`` is its stream sequence (per-user subjects share the stream)."""
    return b"id: %d\ndata: %s\n\n" % (item.stream_seq or 0, item.data)
