"""Titles and tags: how they are normalised, what is accepted, and the patterns that say so.

The OpenAPI patterns describe exactly the input accepted (a contract check generates requests from
them, both ways), so they allow the whitespace that normalisation trims:

* **title**: NFC, trimmed, then 1-140 characters with no control characters (C0/C1, DEL, line
  and paragraph separators, bidirectional embeddings/overrides/isolates). Inner spaces are kept.
* **tag**: NFC, lowercased, trimmed, then 1-30 characters of letters (any script, with their
  combining marks), digits, ``-`` and ``_`` and inner whitespace; each inner whitespace run then
  becomes one ``-`` (so the stored tag is at most as long as the checked one).

"Whitespace" is JavaScript's ``\\s`` (what a JSON-schema pattern means by it), listed explicitly
so Python, the Rust regex engines and ECMAScript agree on it.
"""

from __future__ import annotations

import re
import unicodedata

TITLE_MAX = 140
TAG_MAX = 30
TAGS_MAX = 10

# ECMAScript's \s, spelled out.
WS_CLASS = r"\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
WHITESPACE = "".join(
    ["\t\n\x0b\x0c\r \xa0\u1680", *map(chr, range(0x2000, 0x200B)), "\u2028\u2029\u202f\u205f\u3000\ufeff"]
)
# What a title may not hold: C0/C1 controls, DEL, line/paragraph separators, bidi controls.
FORBIDDEN_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# Tag characters: letters, combining marks, numbers, '-' and '_' (Unicode property classes; the
# marks as their three categories: schemathesis approximates \p{M} with a range that includes
# unassigned code points, so requests it generates from the document would be refused).
TAG_CHAR_CLASS = r"\p{L}\p{Mn}\p{Mc}\p{Me}\p{N}_\-"

TITLE_PATTERN = (
    rf"^[{WS_CLASS}]*[^{WS_CLASS}{FORBIDDEN_CLASS}]"
    rf"(?:[^{FORBIDDEN_CLASS}]{{0,{TITLE_MAX - 2}}}[^{WS_CLASS}{FORBIDDEN_CLASS}])?[{WS_CLASS}]*$"
)
TAG_PATTERN = (
    rf"^[{WS_CLASS}]*[{TAG_CHAR_CLASS}](?:[{TAG_CHAR_CLASS}{WS_CLASS}]{{0,{TAG_MAX - 2}}}"
    rf"[{TAG_CHAR_CLASS}])?[{WS_CLASS}]*$"
)

_FORBIDDEN_RE = re.compile(rf"[{FORBIDDEN_CLASS}]")
_WS_RUN = re.compile(rf"[{WS_CLASS}]+")


def normalize_title(value: str) -> str:
    """The title as stored; ``ValueError`` with the reason when it is not acceptable."""
    title = unicodedata.normalize("NFC", value).strip(WHITESPACE)
    if not title:
        raise ValueError("a title needs at least 1 character besides spaces")
    if len(title) > TITLE_MAX:
        raise ValueError(
            f"a title has at most {TITLE_MAX} characters (after trimming); this one has {len(title)}"
        )
    bad = _FORBIDDEN_RE.search(title)
    if bad is not None:
        raise ValueError(f"a title may not hold control characters (found U+{ord(bad.group()):04X})")
    return title


def _tag_char(ch: str) -> bool:
    return ch in "-_" or unicodedata.category(ch)[0] in "LMN"


def normalize_tag(value: str) -> str:
    """The tag as stored; ``ValueError`` with the reason when it is not acceptable."""
    # "İ" is the one character whose lowercase is two (i + combining dot): Turkish users mean "i"
    tag = unicodedata.normalize("NFC", value).replace("İ", "i").lower().strip(WHITESPACE)
    if not tag:
        raise ValueError("a tag needs at least 1 character besides spaces")
    if len(tag) > TAG_MAX:
        raise ValueError(
            f"a tag has at most {TAG_MAX} characters (after trimming); {tag[:12]!r}... has {len(tag)}"
        )
    if not all(_tag_char(ch) or ch in WHITESPACE for ch in tag):
        raise ValueError(f"tag {tag!r} may hold only letters, digits, '-', '_' and spaces")
    return _WS_RUN.sub("-", tag)
