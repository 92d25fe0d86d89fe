"""The events liveapi logs: one ``media.broad_info.<field>`` line per changed field of a write.

Data fields are docs/contracts.md's: ``owner_id`` plus ``key_sha256`` (never the key), ``title``,
``tags`` or ``adult``/``chat_mode``/``visibility``; ``seq`` is the channel's version. The events of
one write are logged together and their acknowledgements awaited together; the write then counts
as logged (``logged_version``) only if all of them were acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from onair.logstream import Position
from onair.service import Service
from onair_services.liveapi.store import Channel, ChannelStore, Write

CATEGORY = "media.broad_info.{}"

EVENTS = Counter("onair_liveapi_events_total", "Events logged by liveapi", ["field", "acknowledged"])
WRITES = Counter("onair_liveapi_writes_total", "Channel writes committed", ["op"])
RELOGGED = Counter("onair_liveapi_relogged_channels_total", "Channels whose state was re-logged")

_SENTENCES = {
    "publish_key": "publish key set",
    "title": "title changed",
    "tags": "tags changed",
    "options": "options changed",
}


def event_data(channel: Channel, name: str) -> dict[str, Any]:
    """The data fields of the ``media.broad_info.<name>`` event for the channel's current state."""
    data: dict[str, Any] = {"owner_id": channel.owner_id}
    if name == "publish_key":
        data["key_sha256"] = channel.key_sha256
    elif name == "title":
        data["title"] = channel.title
    elif name == "tags":
        data["tags"] = list(channel.tags)
    elif name == "options":
        data.update(channel.options)
    else:  # pragma: no cover - a programming error
        raise ValueError(f"no event for field {name!r}")
    return data


async def log_fields(
    svc: Service, channel: Channel, names: Sequence[str], *, timeout_s: float, sentence: str | None = None
) -> dict[str, Position | None]:
    """Log one event per field (seq = the channel's version); their positions, None if not acked.

    Each line is handed to the log-stream sink in order before any acknowledgement is awaited.
    """
    calls = [
        svc.log_event(
            sentence or _SENTENCES[name],
            category=CATEGORY.format(name),
            entity=channel.id,
            seq=channel.version,
            timeout_s=timeout_s,
            **event_data(channel, name),
        )
        for name in names
    ]
    positions = await asyncio.gather(*calls)
    for name, pos in zip(names, positions, strict=True):
        EVENTS.labels(name, "yes" if pos is not None else "no").inc()
    return dict(zip(names, positions, strict=True))


async def log_write(
    svc: Service, store: ChannelStore, write: Write, *, timeout_s: float
) -> dict[str, Position | None]:
    """Log the events of a committed write, then advance ``logged_version`` if all were acked."""
    if not write.changed:
        return {}
    positions = await log_fields(svc, write.channel, write.changed, timeout_s=timeout_s)
    if all(p is not None for p in positions.values()):
        try:
            await store.mark_logged(write.channel.id, write.channel.version, write.previous_version)
        except Exception as exc:  # the write and its events are done; the re-logger repeats them
            svc.log.warning(
                "could not record the events as logged", channel=write.channel.id, error=repr(exc)
            )
    return positions


async def relog(svc: Service, store: ChannelStore, channel: Channel, *, timeout_s: float) -> bool:
    """Log the whole current state of a lagging channel (consumers drop what they had by seq)."""
    positions = await log_fields(
        svc,
        channel,
        ("publish_key", "title", "tags", "options"),
        timeout_s=timeout_s,
        sentence="state re-logged",
    )
    if any(p is None for p in positions.values()):
        return False
    await store.mark_relogged(channel.id, channel.version)
    RELOGGED.inc()
    return True
