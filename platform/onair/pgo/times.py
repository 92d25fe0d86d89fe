"""Durations (``90s``, ``24h``, ``1h30m``, ``7d``) and points in time (unix ms, RFC 3339, ``24h`` ago).

:data:`TIME_PATTERN` is the exact set of texts :func:`parse_time_ms` takes (an API documents it as
the parameter's ``pattern``): every text that matches parses, every other one is refused.
"""

from __future__ import annotations

import calendar
import re
import time

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# Longest duration a text may give (100 years): beyond it a float sum loses its meaning.
MAX_DURATION_MS = 100 * 366 * 86_400_000

_UNIT = "(?:[mM][sS]|[sSmMhHdDwW])"
_DURATION = rf"(?:[0-9]{{1,9}}(?:\.[0-9]{{1,6}})?{_UNIT}){{1,4}}"
_UNIX_MS = "[0-9]{1,15}"
_DATE_TIME = (
    r"(?P<y>[0-9]{4})-(?P<mo>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?P<h>[01][0-9]|2[0-3]):(?P<mi>[0-5][0-9])(?::(?P<s>[0-5][0-9]|60)(?:\.(?P<f>[0-9]{1,9}))?)?"
    r"(?P<tz>[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_DATE_TIME_RE = re.compile(f"^{_DATE_TIME}$")
_DURATION_RE = re.compile(f"^{_DURATION}$")
#: Unix milliseconds, ``now``, a duration meaning that long ago, or an RFC 3339 date-time with its
#: UTC offset (seconds optional). Plain regular-expression syntax, so it is valid in OpenAPI too.
TIME_PATTERN = "^(?:" + "|".join((_UNIX_MS, "now", _DURATION, re.sub(r"\?P<\w+>", "?:", _DATE_TIME))) + ")$"
TIME_RE = re.compile(TIME_PATTERN)


def parse_duration_ms(text: str) -> int:
    """``"24h"`` -> 86400000; raises ``ValueError`` for anything else (also zero or negative)."""
    s = text.strip().lower()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s) or total <= 0 or total > MAX_DURATION_MS:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 30m, 24h, 7d, 1h30m")
    return int(total)


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_time_ms(text: str, *, now: int | None = None) -> int:
    """Unix milliseconds (``1700000000000``), RFC 3339 (``2026-11-27T08:00:00Z``), ``now``, or a
    duration meaning that long ago (``24h``; ``0s`` is now). Exactly the texts of
    :data:`TIME_PATTERN`; times before 1970 (and durations reaching back past it) are 0."""
    s = text.strip()
    ref = now_ms() if now is None else now
    if not TIME_RE.match(s):
        raise ValueError(
            f"invalid time {text!r}: expected unix milliseconds, RFC 3339 with an offset "
            "(2026-11-27T08:00:00Z), 'now' or a duration ago like 24h"
        )
    if s.isdigit():
        return int(s)
    if s == "now":
        return ref
    if _DURATION_RE.match(s):
        ago = sum(float(n) * _UNIT_MS[u] for n, u in _PART.findall(s.lower()))
        return max(0, ref - int(ago))
    m = _DATE_TIME_RE.match(s)
    assert m is not None  # TIME_RE matched and it is none of the others
    year = int(m["y"])
    if year < 1970:
        return 0
    tz = m["tz"]
    offset_min = 0 if tz in ("Z", "z") else (1 if tz[0] == "+" else -1) * (int(tz[1:3]) * 60 + int(tz[4:6]))
    # timegm counts days arithmetically: Feb 30 is Mar 2, a leap second 60 is the next second.
    seconds = calendar.timegm((year, int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"] or 0)))
    ms = (seconds - offset_min * 60) * 1000 + int((m["f"] or "0")[:3].ljust(3, "0"))
    return max(0, ms)
