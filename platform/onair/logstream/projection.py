"""What a projection declares: its name, the topics it reads, and ``apply(batch, session)``.

``apply`` receives the decoded, ordered, de-duplicated events of one batch and writes the read
model through ``session``; the runner commits that session together with the consumed offsets,
so ``apply`` must not commit. It should be a pure function of the events and the database state:
after a crash the same batch is applied again from the last committed offsets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream.envelope import Envelope
from onair.logstream.ordering import VoteRule


@dataclass(slots=True)
class Event:
    """One decoded record handed to ``apply``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    envelope: Envelope
    kafka_ts_ms: int
    decided: str | None = None  # the vote counter's decision (projections with a VoteRule)

    @property
    def entity(self) -> str:
        return self.envelope.entity

    @property
    def data(self) -> Mapping[str, Any]:
        return self.envelope.data


ApplyFn = Callable[[Sequence[Event], AsyncSession], Awaitable[None]]
AfterCommitFn = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass
class Projection:
    """A read model built from log-event topics.

    ``ordering="entity"`` (default) drops events older than the last applied one per entity;
    ``"none"`` hands every event to ``apply`` (for projections that are order-independent).
    ``votes`` maps a topic to a :class:`VoteRule` for flip-flopping states.
    ``after_commit`` (optional) runs after each committed batch with its applied events and before
    the batch's position counts as applied in this process: the place to invalidate cached views
    of what changed, or to publish the news (its errors are logged, the batch stays committed).
    """

    name: str
    topics: Sequence[str]
    apply: ApplyFn
    ordering: Literal["entity", "none"] = "entity"
    votes: Mapping[str, VoteRule] = field(default_factory=dict)
    after_commit: AfterCommitFn | None = None

    @property
    def group_id(self) -> str:
        return f"projection.{self.name}"
