"""The shapes the BFF answers (for the OpenAPI document; the handlers return the same as JSON).

Pass-through objects (a channel view, a chat message, a search hit) allow the fields their
service adds later (``extra="allow"``): the BFF does not hide what it is not told to trim.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEGRADED_DOC = (
    "Parts answered without their data (their field is null): the upstream failed, was slower "
    "than its deadline, or is skipped while its circuit breaker is open. Empty when complete."
)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    type: str = Field(description="message | donation (deletes are applied: deleted messages are left out)")
    id: int
    n: int = Field(description="The room's event number; resume the chat stream after the last one")
    ts: int = Field(description="Epoch milliseconds")
    user: str | None = None
    text: str | None = None
    amount: int | None = Field(default=None, description="Donations: minor units")


class WebChat(BaseModel):
    messages: list[ChatMessage] = Field(description="The newest messages, oldest first")
    last_n: int = Field(description="The room's newest event number (SSE: resume with last_event_id)")
    viewers: int = Field(description="Viewers in the room, every chat process")
    messages_per_min: int
    chat_mode: str | None = Field(
        description="open | followers | slow (null: chat does not know the room yet)"
    )


class MobileChat(BaseModel):
    messages: list[ChatMessage]
    last_n: int
    viewers: int


class Donor(_Open):
    donor: str
    amount: int = Field(description="Credited donations, minor units")
    donations: int | None = None


class Related(_Open):
    channel: str
    title: str


class Balance(_Open):
    balance: int = Field(description="Spendable, minor units")


class FollowState(BaseModel):
    following: bool


class WebChannel(_Open):
    """liveinfo's view of the channel, as it is (``GET /live/{channel}``)."""

    channel: str
    title: str
    tags: list[str]
    status: str = Field(description="live | offline")
    viewers: int
    version: int = Field(description="Grows with every change (the live stream sends newer ones)")


class MobileChannel(BaseModel):
    channel: str
    title: str
    tags: list[str]
    adult: bool
    status: str
    started_at: str | None
    ended_at: str | None
    end_reason: str | None
    viewers: int
    version: int
    renditions: list[str] = Field(description="Rendition names only, e.g. 720p")


class WebLivePage(BaseModel):
    channel: WebChannel
    chat: WebChat | None
    donors: list[Donor] | None
    related: list[Related] | None = Field(description="Channels on air sharing the channel's tags")
    wallet: Balance | None = Field(description="The caller's balance (signed in only)")
    follow: FollowState | None = Field(description="Whether the caller follows the channel (signed in only)")
    signed_in: bool
    degraded: list[str] = Field(description=DEGRADED_DOC)


class MobileDonor(BaseModel):
    donor: str
    amount: int


class MobileRelated(BaseModel):
    channel: str
    title: str


class MobileBalance(BaseModel):
    balance: int


class MobileLivePage(BaseModel):
    channel: MobileChannel
    chat: MobileChat | None
    donors: list[MobileDonor] | None
    related: list[MobileRelated] | None
    wallet: MobileBalance | None
    follow: FollowState | None
    signed_in: bool
    degraded: list[str] = Field(description=DEGRADED_DOC)


class OnAirItem(_Open):
    channel: str
    title: str
    tags: list[str]
    viewers: int | None = Field(description="From the ranking (null when the ranking is degraded)")


class OnAir(BaseModel):
    items: list[OnAirItem]
    total: int


class RankingEntry(_Open):
    rank: int
    channel: str
    title: str
    viewers: int


class HomePage(BaseModel):
    on_air: OnAir | None
    ranking: list[RankingEntry] | None
    degraded: list[str] = Field(description=DEGRADED_DOC)
