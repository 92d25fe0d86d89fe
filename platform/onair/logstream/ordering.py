"""Out-of-order defence per entity: last applied position, and the opt-in short-window vote counter.

Position rule (per projection, topic and entity): compare ``seq`` when both events have one, else
the envelope ``ts`` (microseconds), else the Kafka offset. An event at or before the last applied
position is *stale* and dropped (counted in ``onair_projection_dropped_stale_total``); an event
with the same ``event_id`` as the last applied one is a duplicate and dropped too.

Flip-flopping states (public, hidden, public arriving as public, public, hidden) can opt into a
:class:`VoteRule`: within a short window of event time each event adds its vote (+1/-1) to a
per-entity counter and the state is decided by the sign of the sum, so arrival order does not
matter; a zero sum keeps the previous decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class EntityPosition:
    """What the runner remembers about the last applied event of one entity (one row)."""

    partition: int
    offset: int
    seq: int | None = None
    ts_us: int | None = None
    event_id: str | None = None
    vote_sum: int | None = None
    vote_window_us: int | None = None
    vote_state: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "seq": self.seq,
            "ts_us": self.ts_us,
            "event_id": self.event_id,
            "vote_sum": self.vote_sum,
            "vote_window_us": self.vote_window_us,
            "vote_state": self.vote_state,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EntityPosition:
        return cls(**{k: row[k] for k in cls.__slots__})


def is_stale(
    last: EntityPosition | None, *, seq: int | None, ts_us: int, partition: int, offset: int, event_id: str
) -> bool:
    """True when an event is not newer than the last applied one of its entity."""
    if last is None:
        return False
    if last.event_id is not None and last.event_id == event_id:
        return True
    if seq is not None and last.seq is not None:
        return seq <= last.seq
    if last.ts_us is not None:
        return ts_us < last.ts_us
    return partition == last.partition and offset <= last.offset


@dataclass(frozen=True)
class VoteRule:
    """Opt-in vote counter: ``field`` of ``data`` carries the state; ``votes`` maps state -> +1/-1.

    ``VoteRule("visibility", {"public": 1, "hidden": -1}, window_s=5.0)``; the decided state is
    passed to ``apply`` as ``Event.decided``.
    """

    field: str
    votes: Mapping[str, int]
    window_s: float = 5.0

    def state_for(self, sign: int) -> str | None:
        for state, vote in self.votes.items():
            if (vote > 0) == (sign > 0):
                return state
        return None


def vote(rule: VoteRule, pos: EntityPosition, value: Any, ts_us: int) -> str | None:
    """Add the vote of ``value`` at event time ``ts_us`` to ``pos``; return the decided state."""
    weight = rule.votes.get(str(value), 0) if value is not None else 0
    window_us = int(rule.window_s * 1_000_000)
    if pos.vote_window_us is None or ts_us >= pos.vote_window_us + window_us:
        # A new window; an event older than the window start (late arrival) still joins the
        # current window rather than opening one in the past.
        pos.vote_window_us = ts_us
        pos.vote_sum = 0
    pos.vote_sum = (pos.vote_sum or 0) + weight
    if pos.vote_sum != 0:
        decided = rule.state_for(pos.vote_sum)
        if decided is not None:
            pos.vote_state = decided
    elif pos.vote_state is None and weight != 0:
        pos.vote_state = str(value)
    return pos.vote_state
