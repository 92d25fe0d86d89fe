"""chat's request and response bodies (what OpenAPI shows)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from onair_services.media_events import CHANNEL_PATTERN

USERNAME_PATTERN = r"^[a-z0-9_]{3,32}$"

Channel = Annotated[
    str, Path(pattern=CHANNEL_PATTERN, description="Channel id (the streamer's username); one room each")
]


class NewMessage(BaseModel):
    text: str = Field(
        min_length=1,
        max_length=4000,
        description=(
            "The message. Normalised to NFC; control characters (other than newlines) and bidi "
            "overrides are removed, ends trimmed; then 1-500 characters and at most 10 lines."
        ),
    )


class ChatEvent(BaseModel):
    """One room event as viewers receive it (SSE ``data:``, WebSocket text, ``/recent``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="message | delete | donation | system")
    id: int = Field(description="The message's id (for a delete: the id of the deleted message)")
    n: int = Field(description="The room's event number: 1, 2, 3 ... (the SSE id; resume after it)")
    ts: int = Field(description="Epoch milliseconds")
    user: str | None = None
    user_id: str | None = None
    text: str | None = None


class Recent(BaseModel):
    channel: str
    messages: list[ChatEvent] = Field(description="Oldest first; deleted messages left out")
    last_n: int = Field(description="The room's newest event number (0: none yet)")


class Stats(BaseModel):
    channel: str
    live: bool
    chat_mode: str
    viewers_here: int = Field(description="Viewers connected to the process that answered")
    viewers_total: int = Field(description="Viewers in every chat process (reports of the last intervals)")
    processes: int = Field(description="Chat processes with viewers in this room")
    messages_per_min: int = Field(description="Messages posted in the last 60 s")
    last_n: int


class NewMute(BaseModel):
    user: str = Field(pattern=USERNAME_PATTERN, description="Username to mute in this room")
    duration_s: int | None = Field(
        default=None, ge=1, le=30 * 24 * 3600, description="Length of the mute; none: until lifted"
    )
    reason: str | None = Field(default=None, max_length=200)


class Mute(BaseModel):
    channel: str
    user: str
    muted_by: str
    reason: str | None
    created_ms: int
    until_ms: int | None = Field(description="End of the mute (epoch ms); null: until lifted")


class Mutes(BaseModel):
    mutes: list[Mute]


class Follow(BaseModel):
    channel: str
    since_ms: int
    live: bool
    title: str


class Follows(BaseModel):
    follows: list[Follow]
