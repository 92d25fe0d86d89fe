"""Projection ``media.publish_keys``: ``media.broad_info.publish_key`` into media's own table.

Ingest checks keys against this table, never by calling liveapi. The runner hands ``apply`` the
events in order with stale ones (older ``seq``) already dropped, so the last event of a channel in
a batch is its current key. An event without a 64-hex-digit ``key_sha256`` or an ``owner_id`` is
refused (dead-lettered by the runner) rather than stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from onair.logstream import Event, Projection, upsert
from onair_services.media.models import publish_keys

TOPIC = "media.broad_info.publish_key"
NAME = "media.publish_keys"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _row(event: Event) -> dict[str, Any]:
    data = event.data
    digest = data.get("key_sha256")
    owner = data.get("owner_id")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("key_sha256 must be 64 lowercase hex digits")
    if not isinstance(owner, str) or not owner:
        raise ValueError("owner_id must be a non-empty string")
    return {
        "channel": event.entity,
        "owner_id": owner,
        "key_sha256": digest,
        "seq": event.envelope.seq,
        "updated_at": datetime.now(UTC),
    }


async def apply_publish_keys(batch: Sequence[Event], session: AsyncSession) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for event in batch:
        rows[event.entity] = _row(event)
    await upsert(session, publish_keys, list(rows.values()), ["channel"])


def publish_keys_projection() -> Projection:
    return Projection(name=NAME, topics=[TOPIC], apply=apply_publish_keys)
