"""The consumers' reading of the ``media.*`` log events (docs/contracts.md, "Log events").

liveinfo and search project the same topics; this module is where their data fields are checked,
and how a channel's state follows them (:func:`fold_channel`), once. Each model parses
``Event.data`` of one category: unknown fields are ignored (producers may add some), a missing or
mistyped field raises ``ValueError``, which the projection runner turns into a dead letter
(``apply_failed``) while the projection goes on. The entity of every ``media.*`` event is the
channel id, a username (``^[a-z0-9_]{3,32}$``).

How the state follows the events (the runner has already dropped, per channel and topic, events
older than the last applied one — by ``seq``, else event time):

* ``status`` ``open`` puts the session on air; a ``close`` ends it only if it is the session on
  air (a late close of an older session, e.g. by a lease sweeper after the encoder reconnected
  elsewhere, is ignored);
* ``metadata`` is kept with its session and counts only while that session is on air, whichever
  of the two arrives first (they are different topics: no order between them);
* ``title`` / ``tags`` replace; ``options``: ``visibility`` is the vote rule's decision
  (``Event.decided``; every options event votes, none is dropped as stale), ``adult`` and
  ``chat_mode`` follow the newest options event by ``seq`` (else event time);
* ``updated_us`` is the event time of the newest event applied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from onair.logstream import Event

STATUS = "media.live_stream.status"
METADATA = "media.live_stream.metadata"
TITLE = "media.broad_info.title"
TAGS = "media.broad_info.tags"
OPTIONS = "media.broad_info.options"
VIEWER_COUNT = "media.viewer.count"

CHANNEL_PATTERN = r"^[a-z0-9_]{3,32}$"
_CHANNEL = re.compile(CHANNEL_PATTERN)
M = TypeVar("M", bound=BaseModel)


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StatusData(_Data):
    status: Literal["open", "close"]
    session_id: str = Field(min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=64)


class Source(_Data):
    height: int = Field(ge=0, le=10_000)
    fps: float = Field(ge=0, le=1000)
    codec: str | None = Field(default=None, max_length=32)
    bitrate_kbps: int | None = Field(default=None, ge=0)


class Rendition(_Data):
    name: str = Field(min_length=1, max_length=32)
    height: int = Field(ge=0, le=10_000)
    fps: float = Field(ge=0, le=1000)
    bitrate_kbps: int | None = Field(default=None, ge=0)


class MetadataData(_Data):
    session_id: str = Field(min_length=1, max_length=100)
    source: Source | None = None
    renditions: list[Rendition] = Field(default_factory=list, max_length=32)


class TitleData(_Data):
    title: str = Field(max_length=1000)


class TagsData(_Data):
    tags: list[Annotated[str, Field(max_length=64)]] = Field(max_length=64)


class OptionsData(_Data):
    adult: bool = False
    chat_mode: str = Field(default="open", max_length=16)
    visibility: Literal["public", "hidden"] = "public"


class ViewerCountData(_Data):
    viewers: int = Field(ge=0, le=100_000_000)
    process: str = Field(min_length=1, max_length=200)
    interval_s: float = Field(gt=0, le=3600)


def channel_of(entity: str) -> str:
    """The entity as a channel id; ``ValueError`` (-> dead letter) when it is not one."""
    if not _CHANNEL.match(entity):
        raise ValueError(f"entity {entity[:80]!r} is not a channel id ({CHANNEL_PATTERN})")
    return entity


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """``model`` from event data; a ``ValueError`` naming the fields when it does not fit."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{model.__name__}: {fields}") from None


def new_channel_state(channel: str) -> dict[str, Any]:
    """The state of a channel no event was applied to yet (the columns :func:`fold_channel` uses)."""
    return {
        "channel": channel,
        "title": "",
        "tags": [],
        "adult": False,
        "chat_mode": "open",
        "visibility": "public",
        "options_seq": None,
        "status": "offline",
        "session_id": None,
        "started_us": None,
        "ended_us": None,
        "end_reason": None,
        "meta_session_id": None,
        "source": None,
        "renditions": [],
        "updated_us": 0,
    }


def fold_channel(state: dict[str, Any], event: Event) -> None:
    """Apply one ``media.live_stream.*`` / ``media.broad_info.*`` event to ``state`` (in place)."""
    category = event.envelope.category
    data = event.data
    ts_us = event.envelope.ts_us
    if category == STATUS:
        status = parse(StatusData, data)
        if status.status == "open":
            state.update(
                status="live", session_id=status.session_id, started_us=ts_us, ended_us=None, end_reason=None
            )
        elif state["status"] == "live" and state["session_id"] == status.session_id:
            state.update(status="offline", ended_us=ts_us, end_reason=status.reason)
    elif category == METADATA:
        meta = parse(MetadataData, data)
        state.update(
            meta_session_id=meta.session_id,
            source=meta.source.model_dump() if meta.source is not None else None,
            renditions=[r.model_dump() for r in meta.renditions],
        )
    elif category == TITLE:
        state["title"] = parse(TitleData, data).title
    elif category == TAGS:
        state["tags"] = list(parse(TagsData, data).tags)
    elif category == OPTIONS:
        options = parse(OptionsData, data)
        state["visibility"] = event.decided or options.visibility
        env = event.envelope
        order = env.seq if env.seq is not None else env.ts_us
        if state["options_seq"] is None or order > state["options_seq"]:
            state.update(adult=options.adult, chat_mode=options.chat_mode, options_seq=order)
    else:
        raise ValueError(f"category {category!r} is not a channel event")
    state["updated_us"] = max(int(state["updated_us"]), ts_us)


def current_renditions(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The renditions of the session on air (none when offline or not yet announced)."""
    on_air = state["status"] == "live" and state["meta_session_id"] is not None
    if on_air and state["meta_session_id"] == state["session_id"]:
        return list(state["renditions"] or ())
    return []
