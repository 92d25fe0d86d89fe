"""What the (simulated) transcoder offers: the rendition ladder derived from an encoder's source.

Rungs at or below the source height only — never upscaled, never a higher frame rate than the
source: 1080p and 720p keep the source frame rate up to 60, 480p and 360p are capped at 30. A
source whose height is not a standard rung (e.g. 900p or 1440p) is offered as-is on top. Bitrates
come from a fixed table and never exceed the source's. ``1080p60`` source ->
``1080p60 / 720p60 / 480p30 / 360p30``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Codec = Literal["h264", "h265", "av1", "vp9"]

# height -> (highest fps, bitrate kbps at > 30 fps, bitrate kbps at <= 30 fps)
_RUNGS: dict[int, tuple[int, int, int]] = {
    2160: (60, 20000, 14000),
    1440: (60, 12000, 9000),
    1080: (60, 6000, 4500),
    720: (60, 3000, 2500),
    480: (30, 1200, 1200),
    360: (30, 800, 800),
}
_STANDARD_TOP = 2160


def _json_integer(value: Any) -> Any:
    """JSON's integers (``1080`` and ``1080.0``), not strings or booleans."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class Source(BaseModel):
    """What the encoder sends (its hello's ``source``)."""

    model_config = ConfigDict(extra="forbid")

    height: JsonInt = Field(default=1080, ge=144, le=4320, description="Picture height in pixels")
    fps: JsonInt = Field(default=60, ge=1, le=120, description="Frames per second")
    codec: Codec = "h264"
    bitrate_kbps: JsonInt = Field(default=6000, ge=100, le=100_000)


class Rendition(BaseModel):
    name: str = Field(description="e.g. '720p'")
    height: int
    fps: int
    bitrate_kbps: int


def _bitrate(height: int, fps: int) -> int:
    if height in _RUNGS:
        _, high, low = _RUNGS[height]
        return high if fps > 30 else low
    # a non-standard source height: scale the next rung below (or the top one) by pixel count
    below = max((h for h in _RUNGS if h < height), default=min(_RUNGS))
    ref = below if height < _STANDARD_TOP else _STANDARD_TOP
    _, high, low = _RUNGS[ref]
    return round((high if fps > 30 else low) * (height / ref) ** 2)


def ladder(source: Source) -> list[Rendition]:
    """The renditions offered for ``source``, highest first."""
    heights = sorted((h for h in _RUNGS if h <= source.height), reverse=True)
    if source.height not in _RUNGS:
        heights.insert(0, source.height)
    out: list[Rendition] = []
    for height in heights:
        cap = _RUNGS[height][0] if height in _RUNGS else 60
        fps = min(source.fps, cap)
        out.append(
            Rendition(
                name=f"{height}p",
                height=height,
                fps=fps,
                bitrate_kbps=min(_bitrate(height, fps), source.bitrate_kbps),
            )
        )
    return out
