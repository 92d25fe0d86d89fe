"""``TIME_PATTERN`` (what the profstore's OpenAPI promises) and ``parse_time_ms`` (what it does)
agree: every text the pattern allows parses, to a time >= 0; every other text is refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onair.pgo.times import TIME_PATTERN, TIME_RE, parse_duration_ms, parse_time_ms

NOW = 1_800_000_000_000


@settings(max_examples=200, deadline=None)
@given(st.from_regex(re.compile(TIME_PATTERN.removesuffix("$") + r"\Z")))
def test_every_text_the_pattern_allows_parses(text: str) -> None:
    assert parse_time_ms(text, now=NOW) >= 0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789.:-+TZtzmshdwnoW ", max_size=30))
def test_the_parser_takes_nothing_the_pattern_refuses(text: str) -> None:
    try:
        parse_time_ms(text.strip(), now=NOW)
    except ValueError:
        assert not TIME_RE.match(text.strip())
    else:
        assert TIME_RE.match(text.strip())


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("now", NOW),
        ("24h", NOW - 86_400_000),
        ("1h30m", NOW - 5_400_000),
        ("0s", NOW),
        ("2026-11-27T08:00:00Z", 1_795_766_400_000),
        ("2026-11-27T09:00+01:00", 1_795_766_400_000),
        ("1970-01-01T00:00:00.25Z", 250),
        ("1900-01-01T00:00:00Z", 0),  # before 1970: 0, not a negative time
        ("999999999w", 0),  # further back than 1970: 0
    ],
)
def test_examples(text: str, ms: int) -> None:
    assert parse_time_ms(text, now=NOW) == ms


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-11-27", "-5", "1" * 16, "9" * 400 + "s", "1h1h1h1h1h"]
)
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time_ms(text, now=NOW)


def test_huge_durations_are_refused_not_a_crash() -> None:
    with pytest.raises(ValueError):
        parse_duration_ms("9" * 400 + "s")  # was OverflowError (float infinity)
