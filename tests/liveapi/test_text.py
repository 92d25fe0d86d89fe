"""Titles and tags: normalisation, the reasons given, and the OpenAPI patterns agreeing with both."""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from onair_services.liveapi.schemas import ChannelPatch, NewChannel
from onair_services.liveapi.text import TAG_PATTERN, TITLE_PATTERN, normalize_tag, normalize_title


def test_titles_are_nfc_and_trimmed() -> None:
    decomposed = unicodedata.normalize("NFD", "오늘의 방송 Café")
    assert len(decomposed) > len("오늘의 방송 Café")
    assert normalize_title(f"  {decomposed}\u3000\n") == "오늘의 방송 Café"
    assert normalize_title("x" * 140) == "x" * 140
    # 140 syllables sent decomposed (jamo, ~2.5 code points each) still fit: counted after NFC
    assert normalize_title(unicodedata.normalize("NFD", "가" * 140)) == "가" * 140


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("", "at least 1 character"),
        (" \t\u3000 ", "at least 1 character"),
        ("x" * 141, "at most 140"),
        ("a\tb", "U+0009"),
        ("line\nbreak", "U+000A"),
        ("evil\u202etxt", "U+202E"),
        ("nul\x00", "U+0000"),
    ],
)
def test_bad_titles_say_why(title: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalize_title(title)


def test_tags_are_normalised() -> None:
    assert normalize_tag("  League of   Legends ") == "league-of-legends"
    assert normalize_tag("게임") == "게임"
    assert normalize_tag("ÉTÉ") == "été"
    assert normalize_tag(unicodedata.normalize("NFD", "ÉTÉ")) == "été"
    assert normalize_tag("हिन्दी") == "हिन्दी"  # combining marks belong to letters of their script
    assert normalize_tag("speed_run-2") == "speed_run-2"
    assert normalize_tag("İSTANBUL") == "istanbul"  # not i + combining dot: one character each


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("", "at least 1"),
        ("   ", "at least 1"),
        ("x" * 31, "at most 30"),
        ("c++", "only letters"),
        ("a.b", "only"),
    ],
)
def test_bad_tags_say_why(tag: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalize_tag(tag)


def test_models_name_the_field_and_drop_duplicate_tags() -> None:
    patch = ChannelPatch.model_validate({"tags": ["  롤 ", "LOL", "lol", "Lol "]})
    assert patch.tags == ["롤", "lol"]
    with pytest.raises(ValidationError) as bad:
        ChannelPatch.model_validate({"tags": ["ok", "not ok!"], "title": None, "options": {"adult": "yes"}})
    locs = {tuple(e["loc"]) for e in bad.value.errors()}
    assert locs == {("tags", 1), ("title",), ("options", "adult")}
    with pytest.raises(ValidationError):
        ChannelPatch.model_validate({"tags": [f"t{i}" for i in range(11)]})
    with pytest.raises(ValidationError):
        ChannelPatch.model_validate({})
    assert NewChannel.model_validate({}).options.chat_mode == "open"


def test_openapi_shows_the_constraints() -> None:
    schema = ChannelPatch.model_json_schema()
    props = schema["properties"]
    assert props["title"]["pattern"] == TITLE_PATTERN and props["title"]["type"] == "string"
    assert props["tags"]["maxItems"] == 10 and props["tags"]["items"]["pattern"] == TAG_PATTERN
    assert schema["additionalProperties"] is False and schema["minProperties"] == 1
    options = schema["$defs"]["OptionsPatch"]["properties"]
    assert options["chat_mode"]["enum"] == ["open", "followers", "slow"]
    assert "null" not in str(props)  # optional, never null


# -- the documented patterns accept exactly what the validators accept ---------------------------


@cache
def _category_class(prefixes: str) -> str:
    """A Python character class body for the Unicode categories starting with ``prefixes``."""
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp))[0] in prefixes:
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def _python(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace(r"\p{L}\p{Mn}\p{Mc}\p{Me}\p{N}", _category_class("LMN")))


def _accepted(fn: object, value: str) -> bool:
    try:
        fn(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


# Characters that exercise every rule: whitespace of all kinds, controls, marks, letters, symbols.
_TRICKY = " \t\n\x0b\r\x1c\x85\xa0\u2003\u2028\u3000\ufeffaZ9가é\u0301\u093f_-!.\u202e\x00"
_texts = st.one_of(st.text(alphabet=st.sampled_from(_TRICKY), max_size=36), st.text(max_size=36))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_texts)
def test_patterns_agree_with_the_validators(text: str) -> None:
    if any(unicodedata.category(c) == "Cn" for c in text):  # unassigned here, maybe not in the engine
        return
    assert bool(_python(TITLE_PATTERN).match(text)) == _accepted(normalize_title, text), repr(text)
    if len(unicodedata.normalize("NFC", text).lower()) == len(text):  # the pattern counts as sent
        assert bool(_python(TAG_PATTERN).match(text)) == _accepted(normalize_tag, text), repr(text)
