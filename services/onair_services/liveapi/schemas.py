"""liveapi's request and response bodies, with the normalisation and limits of titles and tags.

The constraints live in the models, so a bad field is a 422 naming it and the OpenAPI document
shows them as patterns that match exactly the accepted input (:mod:`onair_services.liveapi.text`):

* title: NFC-normalised and trimmed, then 1-140 characters, no control characters;
* tags: at most 10, each normalised (NFC, lowercased, trimmed, inner spaces to ``-``) and 1-30
  letters (any script)/digits/``-``/``_``; duplicates (after normalisation) dropped, first kept;
* options: ``adult`` (a real boolean), ``chat_mode`` ``open|followers|slow``, ``visibility``
  ``public|hidden``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from onair_services.liveapi.text import TAG_PATTERN, TAGS_MAX, TITLE_PATTERN, normalize_tag, normalize_title

CHANNEL_PATTERN = r"^[a-z0-9_]{3,32}$"


def _title(value: Any) -> Any:
    return normalize_title(value) if isinstance(value, str) else value  # non-strings: type error


def _tag(value: Any) -> Any:
    return normalize_tag(value) if isinstance(value, str) else value


def _dedupe(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _no_null_in_schema(schema: dict[str, Any]) -> None:
    """The fields of a patch are optional but never null: say so in the JSON schema."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches is not None:
            kept = [b for b in branches if b != {"type": "null"}]
            if len(kept) == 1:
                del prop["anyOf"]
                prop.update(kept[0])
        if prop.get("default", ...) is None:
            del prop["default"]


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null (leave the field out to keep it unchanged)")
    return value


Title = Annotated[
    str,
    AfterValidator(_title),
    Field(
        description="1-140 characters after NFC normalisation and trimming (surrounding whitespace "
        "is dropped); no control characters",
        json_schema_extra={"pattern": TITLE_PATTERN},
        examples=["Late-night speedruns", "오늘도 즐거운 방송"],
    ),
]
Tag = Annotated[
    str,
    AfterValidator(_tag),
    Field(
        description="1-30 letters (any script), digits, '-', '_' and inner spaces after NFC "
        "normalisation, lowercasing and trimming; each inner whitespace run becomes one '-'",
        json_schema_extra={"pattern": TAG_PATTERN},
    ),
]
Tags = Annotated[
    list[Tag],
    Field(max_length=TAGS_MAX, description="At most 10 tags; duplicates (after normalisation) dropped"),
    AfterValidator(_dedupe),
]
ChatMode = Literal["open", "followers", "slow"]
Visibility = Literal["public", "hidden"]


class ChannelOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adult: StrictBool = Field(default=False, description="Adult content (viewers must opt in)")
    chat_mode: ChatMode = Field(default="open", description="Who may chat: everyone, followers, or slow mode")
    visibility: Visibility = Field(default="public", description="Listed in /live and search, or hidden")


class OptionsPatch(BaseModel):
    """Options to change; the ones left out keep their value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_in_schema)

    adult: StrictBool | None = None
    chat_mode: ChatMode | None = None
    visibility: Visibility | None = None

    _no_nulls = field_validator("adult", "chat_mode", "visibility", mode="before")(_not_null)


class NewChannel(BaseModel):
    """Optional initial settings of a new channel (default title: the username)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_in_schema)

    title: Title | None = None
    tags: Tags = Field(default_factory=list)
    options: ChannelOptions = Field(default_factory=ChannelOptions)

    _no_nulls = field_validator("title", "tags", "options", mode="before")(_not_null)


def _patch_schema(schema: dict[str, Any]) -> None:
    _no_null_in_schema(schema)
    schema["minProperties"] = 1


class ChannelPatch(BaseModel):
    """Any of title, tags and options; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_patch_schema)

    title: Title | None = None
    tags: Tags | None = None
    options: OptionsPatch | None = None

    _no_nulls = field_validator("title", "tags", "options", mode="before")(_not_null)

    @model_validator(mode="after")
    def _something(self) -> ChannelPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of title, tags, options")
        return self


class ChannelView(BaseModel):
    """The write-side view of a channel (its owner's and admins'); never the publish key."""

    id: str
    owner_id: str
    title: str
    tags: list[str]
    options: ChannelOptions
    key_fingerprint: str = Field(description="'sha256:' + the first 8 hex digits of the key's SHA-256")
    key_rotated_at: datetime
    version: int = Field(description="Bumped by every write; the seq of its events")
    logged_version: int = Field(description="Every write up to this version has its events on the log")
    created_at: datetime
    updated_at: datetime


Positions = dict[str, str]
POSITIONS_DESCRIPTION = (
    "Where each logged event landed (`topic:partition:offset`), by field; give one to a reader "
    "(X-Onair-Position) for read-your-writes. A field is missing when the broker did not "
    "acknowledge in time (the event is still delivered)."
)


class ChannelWritten(BaseModel):
    channel: ChannelView
    positions: Positions = Field(description=POSITIONS_DESCRIPTION)


class ChannelWithKey(BaseModel):
    channel: ChannelView
    publish_key: str = Field(description="The publish key for the encoder: shown this once, never again")
    positions: Positions = Field(description=POSITIONS_DESCRIPTION)
