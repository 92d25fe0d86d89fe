"""Logs are the events: the log-stream producer (a structlog sink) and the projection runner.

Producer: :class:`LogStreamSink` turns log lines with a ``category`` into Kafka records (topic =
category, key = entity, value = :class:`Envelope`), never blocking the caller (buffer, on-disk
spool, replay). Consumer: a :class:`Projection` (topics + ``apply(batch, session)``) run by a
:class:`ProjectionRunner`, which applies each batch exactly once in one transaction with its
offsets, drops stale events per entity, dead-letters poison records and lets reads wait for a
:class:`Position` (read-your-writes). See docs/logstream.md.
"""

from onair.logstream.deadletter import DeadLetter, list_dead_letters
from onair.logstream.envelope import ENVELOPE_VERSION, Envelope, EnvelopeError, new_event_id
from onair.logstream.ordering import VoteRule
from onair.logstream.positions import (
    NotYetApplied,
    Position,
    ReadYourWritesError,
    UnknownPosition,
    install_fastapi_handler,
    wait_for_position,
)
from onair.logstream.projection import Event, Projection
from onair.logstream.runner import ProjectionRunner
from onair.logstream.schema import ensure_schema, excluded, metadata, upsert
from onair.logstream.sink import LogStreamSink, PositionUnavailable
from onair.logstream.spool import Spool
from onair.logstream.topics import TopicRegistry

__all__ = [
    "ENVELOPE_VERSION",
    "DeadLetter",
    "Envelope",
    "EnvelopeError",
    "Event",
    "LogStreamSink",
    "NotYetApplied",
    "Position",
    "PositionUnavailable",
    "Projection",
    "ProjectionRunner",
    "ReadYourWritesError",
    "Spool",
    "TopicRegistry",
    "UnknownPosition",
    "VoteRule",
    "ensure_schema",
    "excluded",
    "install_fastapi_handler",
    "list_dead_letters",
    "metadata",
    "new_event_id",
    "upsert",
    "wait_for_position",
]
