"""The versioned JSON envelope a log event travels in on Kafka, and its validation.

A log line with a ``category`` becomes one Kafka record: topic = category, key = entity, value =
this envelope (schema version :data:`ENVELOPE_VERSION`, documented in docs/logging.md)::

    {"v": 1, "event_id": "…", "ts": "2026-11-27T07:40:01.123456Z", "service": "live",
     "category": "media.broad_info.title", "entity": "ch42", "seq": 7,
     "event": "title changed", "request_id": "…", "data": {"title": "Hello"}}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from onair.logging import CATEGORY_RE, LogContractError

ENVELOPE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_VALID_CATEGORIES: set[str] = set()  # categories already checked against CATEGORY_RE
# Fields of a log line that are envelope fields, not free-form data.
_RESERVED = frozenset(
    {"ts", "level", "service", "event", "request_id", "category", "entity", "seq", "event_id", "v"}
)


class EnvelopeError(ValueError):
    """A record value is not a valid envelope (undecodable JSON, missing or mistyped fields)."""


def new_event_id() -> str:
    return uuid.uuid4().hex


def ts_to_us(ts: str) -> int:
    """RFC 3339 timestamp -> microseconds since the epoch (raises ``ValueError``)."""
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {ts!r} has no time zone")
    return (dt - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    ts: str
    service: str
    category: str
    entity: str
    seq: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    event: str | None = None
    request_id: str | None = None
    v: int = ENVELOPE_VERSION
    _ts_us: int | None = field(default=None, compare=False, repr=False)

    @property
    def ts_us(self) -> int:
        """``ts`` in microseconds since the epoch (parsed once when the envelope was decoded)."""
        return self._ts_us if self._ts_us is not None else ts_to_us(self.ts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "event_id": self.event_id,
            "ts": self.ts,
            "service": self.service,
            "category": self.category,
            "entity": self.entity,
            "seq": self.seq,
            "event": self.event,
            "request_id": self.request_id,
            "data": dict(self.data),
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict(), default=str)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Envelope:
        if raw is None:
            raise EnvelopeError("record has no value")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"value is not JSON: {exc}") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> Envelope:
        if not isinstance(obj, dict):
            raise EnvelopeError("envelope must be a JSON object")
        v = obj.get("v")
        if v != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {v!r} (expected {ENVELOPE_VERSION})")
        for name in ("event_id", "ts", "service", "category", "entity"):
            value = obj.get(name)
            if value.__class__ is not str or not value:
                raise EnvelopeError(f"field {name!r} must be a non-empty string")
        category = obj["category"]
        if category not in _VALID_CATEGORIES:
            if not CATEGORY_RE.match(category):
                raise EnvelopeError(f"category {category!r} must be 2-3 dotted lowercase levels")
            if len(_VALID_CATEGORIES) < 10_000:
                _VALID_CATEGORIES.add(category)
        seq = obj.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise EnvelopeError("field 'seq' must be a non-negative integer or null")
        try:
            ts_us = ts_to_us(obj["ts"])
        except ValueError as exc:
            raise EnvelopeError(f"field 'ts': {exc}") from None
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise EnvelopeError("field 'data' must be an object")
        for name in ("event", "request_id"):
            if obj.get(name) is not None and not isinstance(obj[name], str):
                raise EnvelopeError(f"field {name!r} must be a string or null")
        return cls(
            event_id=obj["event_id"],
            ts=obj["ts"],
            service=obj["service"],
            category=obj["category"],
            entity=obj["entity"],
            seq=seq,
            data=data,
            event=obj.get("event"),
            request_id=obj.get("request_id"),
            _ts_us=ts_us,
        )


def from_log_event(ed: Mapping[str, Any]) -> Envelope:
    """Build the envelope of a (contract-checked) structlog event dict that has a ``category``."""
    seq = ed.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise LogContractError(
            f"log event {ed.get('event')!r}: seq must be a non-negative integer, got {seq!r}"
        )
    data = {k: v for k, v in ed.items() if k not in _RESERVED and not k.startswith("_")}
    return Envelope(
        event_id=str(ed.get("event_id") or new_event_id()),
        ts=str(ed["ts"]),
        service=str(ed.get("service", "onair")),
        category=str(ed["category"]),
        entity=str(ed["entity"]),
        seq=seq,
        data=data,
        event=str(ed["event"]) if ed.get("event") is not None else None,
        request_id=ed.get("request_id"),
    )
