"""An on-disk spool of records not yet acknowledged by the broker, replayed in order.

Segments are JSON-lines files named by a sortable number (``000001000000.seg``); a sidecar
``.pos`` file holds how many lines of a segment were already sent. ``append`` adds to the newest
segment, ``prepend`` writes a segment *before* the oldest one (for records older than everything
spooled, e.g. the in-memory buffer spilled when the broker went away), ``peek``/``advance`` read
from the oldest. A torn last line (crash while writing) is skipped on load. Thread-safe.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

_FIRST_SEGMENT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    topic: str
    key: str
    value: bytes
    event_id: str | None = None
    request_id: str | None = None  # sent as the record header ``x-request-id``

    def to_line(self) -> bytes:
        return (
            orjson.dumps([self.topic, self.key, self.value.decode(), self.event_id, self.request_id]) + b"\n"
        )

    @classmethod
    def from_line(cls, line: bytes) -> SpoolRecord | None:
        try:
            topic, key, value, event_id, *rest = orjson.loads(line)  # 4 fields before request ids
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        return cls(topic, key, value.encode(), event_id, rest[0] if rest else None)


class Spool:
    def __init__(self, directory: Path | str, *, segment_records: int = 20_000, fsync: bool = False) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_records = segment_records
        self.fsync = fsync
        self._lock = threading.RLock()
        self._segments: list[int] = sorted(int(p.stem) for p in self.dir.glob("*.seg"))
        self._lines: dict[int, int] = {}  # lines per segment (valid or not)
        self._head_cache: tuple[int, list[SpoolRecord | None]] | None = None
        self._depth = 0
        for seg in self._segments:
            records = self._read(seg)
            self._lines[seg] = len(records)
            self._depth += sum(1 for r in records[self._pos(seg) :] if r is not None)

    # -- paths -----------------------------------------------------------------------------------
    def _seg_path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.seg"

    def _pos_path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.pos"

    def _pos(self, seg: int) -> int:
        try:
            return int(self._pos_path(seg).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _read(self, seg: int) -> list[SpoolRecord | None]:
        try:
            raw = self._seg_path(seg).read_bytes()
        except FileNotFoundError:
            return []
        return [SpoolRecord.from_line(line) for line in raw.splitlines() if line.strip()]

    def _write(self, seg: int, records: list[SpoolRecord], mode: str) -> None:
        with self._seg_path(seg).open(mode) as fh:
            fh.write(b"".join(r.to_line() for r in records))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        self._lines[seg] = self._lines.get(seg, 0) + len(records)
        if self._head_cache is not None and self._head_cache[0] == seg:
            self._head_cache[1].extend(records)

    # -- API -------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._depth

    def __len__(self) -> int:
        return self._depth

    def append(self, records: list[SpoolRecord]) -> None:
        if not records:
            return
        with self._lock:
            i = 0
            while i < len(records):
                if not self._segments or self._lines.get(self._segments[-1], 0) >= self.segment_records:
                    self._segments.append((self._segments[-1] + 1) if self._segments else _FIRST_SEGMENT)
                tail = self._segments[-1]
                room = self.segment_records - self._lines.get(tail, 0)
                part = records[i : i + room]
                self._write(tail, part, "ab")
                i += len(part)
            self._depth += len(records)

    def prepend(self, records: list[SpoolRecord]) -> None:
        """Spool records that are older than everything already spooled."""
        if not records:
            return
        with self._lock:
            seg = (self._segments[0] - 1) if self._segments else _FIRST_SEGMENT
            self._segments.insert(0, seg)
            self._write(seg, records, "wb")
            self._depth += len(records)

    def peek(self, n: int) -> list[SpoolRecord]:
        """Up to ``n`` records from the oldest segment (fewer at a segment end)."""
        with self._lock:
            while self._segments:
                head = self._segments[0]
                if self._head_cache is None or self._head_cache[0] != head:
                    self._head_cache = (head, self._read(head))
                records = self._head_cache[1]
                out: list[SpoolRecord] = []
                for r in records[self._pos(head) :]:
                    if r is not None:
                        out.append(r)
                        if len(out) >= n:
                            break
                if out or head == self._segments[-1]:
                    return out
                self._drop(head)  # an exhausted (or torn-only) older segment
            return []

    def advance(self, n: int) -> None:
        """Mark the first ``n`` valid records returned by :meth:`peek` as sent."""
        with self._lock:
            if not self._segments or n <= 0:
                return
            head = self._segments[0]
            records = (
                self._head_cache[1] if self._head_cache and self._head_cache[0] == head else self._read(head)
            )
            pos = self._pos(head)
            valid = 0
            while pos < len(records) and valid < n:
                if records[pos] is not None:
                    valid += 1
                pos += 1
            while pos < len(records) and records[pos] is None:
                pos += 1  # torn lines
            self._depth -= valid
            if pos >= len(records):
                self._drop(head)
            else:
                self._pos_path(head).write_text(str(pos))

    def _drop(self, seg: int) -> None:
        self._seg_path(seg).unlink(missing_ok=True)
        self._pos_path(seg).unlink(missing_ok=True)
        self._segments.remove(seg)
        self._lines.pop(seg, None)
        if self._head_cache is not None and self._head_cache[0] == seg:
            self._head_cache = None
