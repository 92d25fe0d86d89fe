"""NearCache bounds (count and bytes), TTL, LRU order and counters; Codec round trips."""

import pytest

from onair.cache import MISSING, Codec, CodecError, NearCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_count_bound_evicts_least_recently_used() -> None:
    near = NearCache(max_entries=3, max_bytes=10_000, ttl_s=60)
    for k in "abc":
        near.put(k, k.upper(), 10)
    assert near.get("a") == "A"  # a becomes most recently used
    near.put("d", "D", 10)
    assert near.get("b") is MISSING
    assert [near.get(k) for k in "acd"] == ["A", "C", "D"]
    assert len(near) == 3
    assert near.evictions == 1


def test_byte_bound_evicts_until_it_fits_and_rejects_oversized() -> None:
    overhead = NearCache.ENTRY_OVERHEAD
    near = NearCache(max_entries=100, max_bytes=3 * (100 + overhead), ttl_s=60)
    for k in "abc":
        near.put(k, k, 100)
    assert near.bytes == 3 * (100 + overhead)
    near.put("big", "x", 200)  # needs the room of two entries
    assert near.get("a") is MISSING and near.get("b") is MISSING
    assert near.get("c") == "c" and near.get("big") == "x"
    assert near.bytes <= near.max_bytes
    assert near.put("huge", "y", 10_000) is False
    assert near.get("huge") is MISSING


def test_ttl_expires_entries_and_counts() -> None:
    clock = Clock()
    near = NearCache(max_entries=10, max_bytes=10_000, ttl_s=5, clock=clock)
    near.put("k", None, 1)  # None is a cacheable value
    assert near.get("k") is None
    clock.now += 4.9
    assert "k" in near
    clock.now += 0.2
    assert near.get("k") is MISSING
    assert near.expirations == 1
    near.put("short", 1, 1, ttl_s=1)
    clock.now += 1.01
    assert near.get("short") is MISSING
    assert near.hits == 1 and near.misses == 2
    assert near.bytes == 0


def test_invalidate_and_clear() -> None:
    near = NearCache(max_entries=10, max_bytes=10_000, ttl_s=5)
    near.put("a", 1, 1)
    near.put("b", 2, 1)
    assert near.invalidate("a") is True
    assert near.invalidate("a") is False
    assert near.clear() == 1
    assert len(near) == 0 and near.bytes == 0


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_codec_round_trip_and_compression(fmt: str) -> None:
    codec = Codec(fmt, compress_over=64)  # type: ignore[arg-type]
    small = {"id": 1, "name": "x"}
    big = {"text": "abc" * 1000, "n": list(range(10))}
    enc_small, enc_big = codec.encode(small), codec.encode(big)
    assert enc_small[:1] in (b"m", b"j")
    assert enc_big[:1] in (b"M", b"J")  # compressed
    assert len(enc_big) < 1000
    assert codec.decode(enc_small) == small
    assert codec.decode(enc_big) == big
    assert Codec(fmt, compress_over=None).encode(big)[:1] in (b"m", b"j")
    assert codec.decode(codec.encode(None)) is None


def test_codec_rejects_foreign_bytes() -> None:
    with pytest.raises(CodecError):
        Codec().decode(b"\x00Tombstone")
