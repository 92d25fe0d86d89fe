"""search settings (``ONAIR_SEARCH_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SearchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_SEARCH_", extra="ignore", frozen=True)

    # Read-your-writes: how long a search with a position waits for the index (then 503).
    position_wait_s: float = Field(default=2.0, gt=0, le=30)
    # Relative weight of a match in the title against one in the tags (both engines).
    title_weight: float = Field(default=3.0, ge=1)
