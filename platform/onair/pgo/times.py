"""Durations (``90s``, ``24h``, ``1h30m``, ``7d``) and points in time (unix ms, RFC 3339, ``24h`` ago)."""

from __future__ import annotations

import re
import time
from datetime import datetime

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration_ms(text: str) -> int:
    """``"24h"`` -> 86400000; raises ``ValueError`` for anything else (also zero or negative)."""
    s = text.strip().lower()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s) or total <= 0:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 30m, 24h, 7d, 1h30m")
    return int(total)


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_time_ms(text: str, *, now: int | None = None) -> int:
    """Unix milliseconds (``1700000000000``), RFC 3339 (``2026-11-27T08:00:00Z``), ``now``, or a
    duration meaning that long ago (``24h``)."""
    s = text.strip()
    ref = now_ms() if now is None else now
    if s.isdigit():
        return int(s)
    if s == "now":
        return ref
    try:
        return max(0, ref - parse_duration_ms(s))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: expected unix milliseconds, RFC 3339, 'now' or a duration ago like 24h"
        ) from None
    if dt.tzinfo is None:
        raise ValueError(f"invalid time {text!r}: give a timezone (e.g. Z)")
    return int(dt.timestamp() * 1000)
