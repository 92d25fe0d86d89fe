"""What a chat message's text may be: NFC-normalised, control characters stripped, bounded.

Rules (docs/chat.md): the text is normalised to NFC; CR LF and CR become LF and newlines are
**kept** (a pasted list or a short poem reads as written; the clients render them), at most
``max_lines`` lines; every other control character (Unicode category Cc: NUL, ESC, tab, DEL, C1
controls ...), lone surrogates, and the bidirectional overrides and isolates (U+202A-202E,
U+2066-2069, which can disguise what a message says) are removed; whitespace at both ends is
trimmed. What is left must be 1 to ``max_chars`` code points. Zero-width joiners and variation
selectors stay (emoji sequences need them).
"""

from __future__ import annotations

import re
import unicodedata

_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
_NEWLINES = re.compile(r"\r\n?")


class TextError(ValueError):
    """The text breaks a rule; the message says which."""


def _dropped(ch: str) -> bool:
    if ch == "\n":
        return False
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cs") or ord(ch) in _BIDI


def clean(text: str, *, max_chars: int, max_lines: int) -> str:
    """The text as it will be posted, or :class:`TextError`."""
    text = _NEWLINES.sub("\n", text)
    text = "".join(ch for ch in text if not _dropped(ch))
    text = unicodedata.normalize("NFC", text).strip()
    if not text:
        raise TextError("the message is empty (or only control characters and spaces)")
    if len(text) > max_chars:
        raise TextError(f"the message has {len(text)} characters; at most {max_chars} are allowed")
    lines = text.count("\n") + 1
    if lines > max_lines:
        raise TextError(f"the message has {lines} lines; at most {max_lines} are allowed")
    return text
