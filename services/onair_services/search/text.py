"""Words of titles, tags and queries: one tokenizer in Python for both search engines.

Why not leave it to the engines: SQLite's ``unicode61`` tokenizer and PostgreSQL's parser with the
``simple`` configuration both split on spaces and punctuation only. Korean separates words by
spaces but glues particles and compounds on (``게임방송``, ``게임을``); Chinese and Japanese (and
Thai, Lao, Khmer, Myanmar) do not separate words at all, so ``今日はゲーム配信`` is *one* token to
either engine and ``ゲーム`` is never found. PostgreSQL's parser also has its own ideas (``v1.2`` is
a version, ``hello-world`` three lexemes) that differ from FTS5's.

So both engines get text that is already a list of plain tokens separated by spaces:

* NFKC (full-width Latin and half-width kana become their usual forms), case-folded, Latin
  diacritics removed (``Café`` -> ``cafe``);
* a word is a run of letters, digits and marks (with at least one letter or digit); anything else
  separates words;
* inside a word, runs of the scripts written without spaces (Hangul, Han, kana, Thai, Lao, Khmer,
  Myanmar) become overlapping **bigrams** plus the run's last character on its own: ``게임방송``
  -> ``게임 임방 방송 송``. A query does the same without the trailing character, so any part of
  such a run is found (``방송`` and ``게임`` find ``게임방송``; a one-character query ``송`` matches
  by prefix);
* the engine sees a word of the query as a *phrase* of its tokens (consecutive), the last token a
  prefix (``gam`` finds ``gaming``, ``게임방`` finds ``게임방송``), and all words must match.

Tokens hold only letters, digits and marks, so nothing a user types reaches the engines' query
syntax (quotes, ``*``, ``-``, ``NEAR``, ``:``, ``&``, ``|``...): hostile queries cannot fail.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: Scripts written without spaces between words (code point ranges).
_CONTINUOUS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK extensions B..
)

MAX_QUERY_WORDS = 32


@lru_cache(maxsize=65536)
def _kind(ch: str) -> int:
    """0: separator, 1: word character, 2: word character of a continuous script, 3: mark."""
    cat = unicodedata.category(ch)
    if cat[0] not in "LNM":
        return 0
    if cat[0] == "M":
        return 3
    cp = ord(ch)
    for lo, hi in _CONTINUOUS:
        if lo <= cp <= hi:
            return 2
    return 1


def normalize(text: str) -> str:
    """NFKC, case-folded, marks on Latin letters removed (``Café`` -> ``cafe``, ``İ`` -> ``i``)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    out: list[str] = []
    latin = False
    for ch in decomposed:
        if unicodedata.category(ch) == "Mn":
            if latin:
                continue
        else:
            latin = ch.isascii() and ch.isalpha()
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _words(text: str) -> list[list[tuple[int, str]]]:
    """Words of ``text``, each a list of (kind, run) segments: plain runs and continuous-script runs."""
    words: list[list[tuple[int, str]]] = []
    segments: list[tuple[int, str]] = []
    run: list[str] = []
    run_kind = 0
    has_letter = False

    def end_run() -> None:
        nonlocal run, run_kind
        if run:
            segments.append((run_kind, "".join(run)))
        run, run_kind = [], 0

    def end_word() -> None:
        nonlocal segments, has_letter
        end_run()
        if segments and has_letter:
            words.append(segments)
        segments, has_letter = [], False

    for ch in normalize(text):
        kind = _kind(ch)
        if kind == 0:
            end_word()
            continue
        if kind == 3:  # a mark stays with the run it follows
            if run:
                run.append(ch)
            continue
        has_letter = True
        if run and kind != run_kind:
            end_run()
        run_kind = kind
        run.append(ch)
    end_word()
    return words


def _bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_terms(text: str) -> str:
    """The text an engine indexes for ``text``: tokens separated by single spaces."""
    tokens: list[str] = []
    for segments in _words(text):
        for kind, run in segments:
            if kind == 2 and len(run) > 1:
                tokens += _bigrams(run)
                tokens.append(run[-1])
            else:
                tokens.append(run)
    return " ".join(tokens)


@dataclass(frozen=True)
class QueryWord:
    """One word of a query: its tokens must appear consecutively; the last one is a prefix."""

    tokens: tuple[str, ...]


def query_words(query: str) -> list[QueryWord]:
    """The words of a user's query (at most :data:`MAX_QUERY_WORDS`; duplicates dropped)."""
    out: list[QueryWord] = []
    seen: set[tuple[str, ...]] = set()
    for segments in _words(query):
        tokens: list[str] = []
        for kind, run in segments:
            tokens += _bigrams(run) if kind == 2 else [run]
        key = tuple(tokens)
        if key not in seen:
            seen.add(key)
            out.append(QueryWord(key))
        if len(out) >= MAX_QUERY_WORDS:
            break
    return out


def normalize_tag(tag: str) -> str:
    """As liveapi normalises tags: NFC, lowercased, trimmed, inner whitespace runs -> ``-``."""
    return "-".join(unicodedata.normalize("NFC", tag).lower().split())
