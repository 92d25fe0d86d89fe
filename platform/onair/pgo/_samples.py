"""The sample section of pprof profiles: decoded, merged and encoded by compiled loops (numba).

A ``Profile.sample`` entry is a small message made only of varints: location ids (field 1, packed
or not), values (field 2, packed or not) and labels (field 3, messages of varints). Building one
protobuf message per sample costs microseconds in Python; here a few loops compiled by numba walk
the decompressed profile directly: one splits the top-level fields into the tables (left to upb)
and the byte ranges of the samples, one decodes every sample's ids and values into arrays, and the
merge hashes, groups and re-encodes the samples the same way. The kernels release the GIL
(``nogil``), so per-profile work runs on a few threads, and are compiled once and cached on disk
(``cache=True``; ``NUMBA_CACHE_DIR`` chooses where — see :func:`onair.pgo.pprof.warm_up`).

Numba does not check bounds: every position a kernel reads from untrusted bytes is checked against
the end of its range first, and malformed input gives an error code (:class:`WireError`).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numba import njit
from numpy.typing import NDArray

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
U32 = NDArray[np.uint32]
U8 = NDArray[np.uint8]
UAny = NDArray[np.unsignedinteger]

T = TypeVar("T")
R = TypeVar("R")

kernel = njit(cache=True, nogil=True)


def workers() -> int:
    """Threads for per-profile work (the kernels and the inflater release the GIL): one per core, at
    most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], n: int | None = None) -> Iterator[R]:
    """``map`` on a few threads (in order); plain ``map`` for one worker or one item."""
    items = list(items)
    n = workers() if n is None else n
    if n <= 1 or len(items) <= 1:
        return map(fn, items)
    with ThreadPoolExecutor(n, thread_name_prefix="pgo") as ex:
        return iter(list(ex.map(fn, items)))


def avoid_hugepage_stalls() -> None:
    """Stop numpy from asking for transparent huge pages (``madvise``) for its big arrays.

    With THP ``defrag`` set to ``madvise`` (a common kernel default), the first touch of each such
    array may compact memory synchronously: on the benchmark VM that added ~1 s to the 32-profile
    merge (hundreds of fresh 25 MB arrays). Same as ``NUMPY_MADVISE_HUGEPAGE=0``; process-wide, so
    the profstore and the benchmark call it, the library does not."""
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            setter = importlib.import_module(mod)._set_madvise_hugepage
        except (ImportError, AttributeError):
            continue
        setter(False)
        return


# Phase timings of the last merges, when a caller sets this to a dict (the benchmark does).
PHASES: dict[str, float] | None = None


def phase(name: str, since: float) -> float:
    """Add the time since ``since`` to ``PHASES[name]`` (if enabled); return the current time."""
    now = time.perf_counter()
    if PHASES is not None:
        PHASES[name] = PHASES.get(name, 0.0) + now - since
    return now


class WireError(ValueError):
    """Malformed protobuf bytes (the caller turns it into ``ProfileError('not_pprof')``)."""


# Error codes of the decoding kernels.
_ERRORS = {
    1: "varint runs past the end of its message",
    2: "varint longer than 10 bytes",
    3: "field number 0",
    4: "unsupported wire type (groups or invalid)",
    5: "field runs past the end of its message",
    6: "packed field ends inside a varint",
    7: "label is not a message",
}


def _check(err: int) -> None:
    if err:
        raise WireError(_ERRORS[err])


# --------------------------------------------------------------------------------------------------
# Decoding


@kernel
def _uvarint(buf, pos, end):  # type: ignore[no-untyped-def]
    """The varint at ``buf[pos:end]``: (value, next position), or (0, -1) if it runs past ``end``,
    (0, -2) if it is longer than 10 bytes."""
    value = np.uint64(0)
    shift = np.uint64(0)
    while pos < end:
        b = buf[pos]
        pos += 1
        value |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += np.uint64(7)
        if shift > 63:
            return np.uint64(0), -2
    return np.uint64(0), -1


@kernel
def _payload(buf, pos, end):  # type: ignore[no-untyped-def]
    """The payload of the length-delimited field whose length starts at ``pos``: (start, stop), or
    (0, -error code) if it runs past ``end``."""
    n, pos = _uvarint(buf, pos, end)
    if pos < 0:
        return 0, pos
    if n > np.uint64(end - pos):
        return 0, -5
    return pos, pos + np.int64(n)


@kernel
def _field(buf, tag, pos, end):  # type: ignore[no-untyped-def]
    """The value of the field with ``tag`` at ``pos``: (field number, start, stop), its varints
    (wire types 0 and 2) being ``buf[start:stop]``; stop < 0 is -(error code)."""
    num = np.int64(min(tag >> np.uint64(3), np.uint64(1 << 32)))
    wt = tag & np.uint64(7)
    if num == 0:
        return num, 0, -3
    if wt == 0:
        _, stop = _uvarint(buf, pos, end)
        return num, pos, stop
    if wt == 2:
        start, stop = _payload(buf, pos, end)
        return num, start, stop
    if wt == 1 or wt == 5:
        stop = pos + (8 if wt == 1 else 4)
        return num, pos, stop if stop <= end else -5
    return num, 0, -4


@kernel
def _split_profile(buf, fill, header, spans):  # type: ignore[no-untyped-def]
    """Walk the top-level fields of a serialised ``Profile``: every field but the samples is copied
    to ``header``, each sample's (start, end) goes to ``spans`` (with ``fill``; without, only
    count). Returns (samples, header bytes, error code)."""
    pos = 0
    end = len(buf)
    k = 0
    h = 0
    while pos < end:
        start = pos
        tag, pos = _uvarint(buf, pos, end)
        if pos < 0:
            return k, h, -pos
        num, s, pos = _field(buf, tag, pos, end)
        if pos < 0:
            return k, h, -pos
        if num == 2 and tag & np.uint64(7) == 2:  # a sample
            if fill:
                spans[k, 0] = s
                spans[k, 1] = pos
            k += 1
            continue
        if fill:
            header[h : h + pos - start] = buf[start:pos]
        h += pos - start
    return k, h, 0


@kernel
def _walk_samples(buf, spans, fill, id_off, value_counts, ids, values, labels):  # type: ignore[no-untyped-def]
    """Decode the ``Sample`` messages at ``spans``. Without ``fill``: count the ids into ``id_off``
    (n + 1, cumulative) and the values into ``value_counts``; with ``fill``: check every varint and
    write the ids, values and label ranges (sample, start, end). Returns the numbers of ids, values
    and labels, the largest id and an error code."""
    ni = 0
    nv = 0
    nl = 0
    top = np.uint64(0)
    for i in range(len(spans)):
        pos = spans[i, 0]
        end = spans[i, 1]
        if pos < 0 or end > len(buf) or pos > end:
            return ni, nv, nl, top, 5
        vi = nv
        while pos < end:
            tag, pos = _uvarint(buf, pos, end)
            if pos < 0:
                return ni, nv, nl, top, -pos
            if tag == 0x0A or tag == 0x12:  # packed ids or values: the usual form, made quick
                num = np.int64(tag >> np.uint64(3))
                start, pos = _payload(buf, pos, end)
            else:
                num, start, pos = _field(buf, tag, pos, end)
            if pos < 0:
                return ni, nv, nl, top, -pos
            wt = tag & np.uint64(7)
            if num == 3:
                if wt != 2:
                    return ni, nv, nl, top, 7
                if fill:
                    if nl == len(labels):
                        return ni, nv, nl, top, 5
                    labels[nl, 0] = i
                    labels[nl, 1] = start
                    labels[nl, 2] = pos
                nl += 1
            elif (num == 1 or num == 2) and (wt == 0 or wt == 2):
                if not fill:  # the count of varints: their last bytes (checked when filling)
                    c = 0
                    for q in range(start, pos):
                        c += buf[q] < 0x80
                    if num == 1:
                        ni += c
                    else:
                        nv += c
                    continue
                while start < pos:  # one varint (wire type 0) or packed varints
                    b = buf[start]
                    if b < 0x80:  # most ids and values: one byte
                        v = np.uint64(b)
                        start += 1
                    else:
                        v, start = _uvarint(buf, start, pos)
                        if start < 0:
                            return ni, nv, nl, top, 6 if start == -1 else -start
                    if num == 1:
                        if ni == len(ids):
                            return ni, nv, nl, top, 6
                        ids[ni] = v
                        top = max(top, v)
                        ni += 1
                    else:
                        if nv == len(values):
                            return ni, nv, nl, top, 6
                        values[nv] = v
                        nv += 1
        if not fill:
            id_off[i + 1] = ni
            value_counts[i] = nv - vi
    return ni, nv, nl, top, 0


@dataclass
class Samples:
    """Decoded samples of one profile: sample ``i`` has the location ids
    ``ids[offsets[i]:offsets[i + 1]]`` (file order, leaf first) and ``value_counts[i]`` values,
    stored one sample after another in ``values``; ``labels`` maps the index of each labelled sample
    (rare in CPU profiles) to its raw ``Label`` messages."""

    offsets: I64
    ids: UAny  # uint32 when every id fits, else uint64
    values: U64  # int64 as two's complement
    value_counts: NDArray[np.int32]
    labels: dict[int, list[bytes]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.offsets) - 1


_NO_SPANS = np.zeros((0, 2), np.int64)
_NO_BYTES = np.zeros(0, np.uint8)


def split_profile(data: bytes) -> tuple[bytes, U8, I64]:
    """A serialised ``Profile`` split into its other fields (serialised, for upb) and the byte
    ranges of its samples: (header, buffer, spans (n, 2))."""
    buf = np.frombuffer(data, np.uint8)
    n, h, err = _split_profile(buf, False, _NO_BYTES, _NO_SPANS)
    _check(err)
    header = np.empty(h, np.uint8)
    spans = np.empty((n, 2), np.int64)
    _split_profile(buf, True, header, spans)
    return header.tobytes(), buf, spans


def decode(buf: U8, spans: I64) -> Samples:
    """Decode the ``Sample`` messages at ``buf[spans[i, 0]:spans[i, 1]]``; :class:`WireError` if
    malformed."""
    n = len(spans)
    offsets = np.zeros(n + 1, np.int64)
    value_counts = np.zeros(n, np.int32)
    no_ids, no_values = np.zeros(0, np.uint32), np.zeros(0, np.uint64)
    ni, nv, nl, _, err = _walk_samples(buf, spans, False, offsets, value_counts, no_ids, no_values, _NO_SPANS)
    _check(err)
    ids: UAny = np.empty(ni, np.uint32)
    values = np.empty(nv, np.uint64)
    labels = np.empty((nl, 3), np.int64)
    *_, top, err = _walk_samples(buf, spans, True, offsets, value_counts, ids, values, labels)
    _check(err)
    if top >> 32:  # ids wider than 32 bits (sparse ids): decode them again as such
        ids = np.empty(ni, np.uint64)
        _walk_samples(buf, spans, True, offsets, value_counts, ids, values, labels)
    by_sample: dict[int, list[bytes]] = {}
    for i, s, e in labels.tolist():
        by_sample.setdefault(i, []).append(buf[s:e].tobytes())
    return Samples(offsets, ids, values, value_counts, by_sample)


# --------------------------------------------------------------------------------------------------
# Location ids


@kernel
def _remap(ids, lut, keys, new, out):  # type: ignore[no-untyped-def]
    """``out[k]``: the new id of ``ids[k]`` — ``lut[ids[k]]`` with a lookup table (dense ids), else
    ``new[j]`` where ``keys[j] == ids[k]`` (sorted keys); 0 means unknown. Returns the position of
    the first unknown id, or -1."""
    n_lut = np.uint64(len(lut))
    for k in range(len(ids)):
        x = np.uint64(ids[k])
        v = np.uint32(0)
        if n_lut:
            if x < n_lut:
                v = lut[x]
        else:
            j = np.searchsorted(keys, x)
            if j < len(keys) and keys[j] == x:
                v = new[j]
        if v == 0:
            return k
        out[k] = v
    return -1


def remap(ids: UAny, old: U64, new: U32, out: U32) -> U64:
    """Write the new id of each of ``ids`` (``old[k] -> new[k]``, new ids > 0) to ``out``; return the
    ids not in ``old`` (empty if none)."""
    if len(out) != len(ids):
        raise ValueError("out must have one place per id")
    if not len(ids):
        return np.zeros(0, np.uint64)
    biggest = int(ids.max())
    if biggest < 4 * len(old) + (1 << 20):  # dense ids (the usual 1..n): a lookup table
        lut = np.zeros(biggest + 1, np.uint32)
        small = old <= np.uint64(biggest)
        lut[old[small].astype(np.int64)] = new[small]
        keys, vals = np.zeros(0, np.uint64), new[:0]
    else:
        order = np.argsort(old)
        lut, keys, vals = np.zeros(0, np.uint32), old[order], new[order]
    first_bad = _remap(ids, lut, keys, vals, out)
    if first_bad < 0:
        return np.zeros(0, np.uint64)
    known = np.isin(ids, old)
    return np.unique(ids[~known]).astype(np.uint64)


# --------------------------------------------------------------------------------------------------
# Merging: identical stacks found by hashing, then checked exactly


@dataclass
class Stacks:
    """The samples of all profiles to merge in one set of arrays: sample ``i`` has the (merged)
    location ids ``ids[offsets[i]:offsets[i + 1]]`` and the values ``values[i]``; the samples of
    profile ``k`` are ``bounds[k]:bounds[k + 1]``. Made by :meth:`allocate`, filled profile by
    profile (:meth:`fill`), merged by :func:`merge`."""

    ids: U32
    offsets: I64
    values: I64  # (samples, value types)
    bounds: I64

    @classmethod
    def allocate(cls, samples: list[Samples], n_types: int) -> Stacks:
        bounds = np.cumsum([0, *(len(s) for s in samples)])
        offsets = np.zeros(int(bounds[-1]) + 1, np.int64)
        for k, s in enumerate(samples):
            offsets[bounds[k] + 1 : bounds[k + 1] + 1] = s.offsets[1:] + offsets[bounds[k]]
        ids = np.empty(int(offsets[-1]), np.uint32)
        return cls(ids, offsets, np.empty((int(bounds[-1]), n_types), np.int64), bounds)

    def fill(self, k: int, s: Samples, old: U64, new: U32, scale: list[int]) -> U64:
        """Profile ``k``'s samples: ids through ``old -> new``, values times ``scale`` (each sample
        must have ``n_types`` values). Returns the unknown ids."""
        lo, hi = int(self.bounds[k]), int(self.bounds[k + 1])
        missing = remap(s.ids, old, new, self.ids[self.offsets[lo] : self.offsets[hi]])
        values = self.values[lo:hi]
        values[:] = s.values.view(np.int64).reshape(values.shape)
        if any(f != 1 for f in scale):
            values *= np.array(scale, np.int64)
        return missing


@kernel
def _stack_keys(ids, offsets, lo, hi, table, mask, bits, out):  # type: ignore[no-untyped-def]
    """``out[i - lo]`` for samples ``lo..hi``: a 64-bit hash of the stack (ANDed with ``mask``) in
    the high bits, the sample index in the low ``bits``, so one sort groups equal hashes with their
    first appearance first."""
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    for i in range(lo, hi):
        h = np.uint64(offsets[i + 1] - offsets[i]) * np.uint64(0xD6E8FEB86659FD93)
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ table[ids[j]]) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
        out[i - lo] = (h & mask & ~low) | np.uint64(i)


@kernel
def _same_stack(ids, offsets, a, b):  # type: ignore[no-untyped-def]
    n = offsets[a + 1] - offsets[a]
    if n != offsets[b + 1] - offsets[b]:
        return False
    for j in range(n):  # noqa: SIM110 - a plain loop compiles to the tightest code
        if ids[offsets[a] + j] != ids[offsets[b] + j]:
            return False
    return True


@kernel
def _split_by_hash(keys, part_bits, out, bounds):  # type: ignore[no-untyped-def]
    """Copy ``keys`` to ``out`` in ``2**part_bits`` parts by their top bits (the hash), ``bounds``
    giving where each part starts: parts can be sorted and grouped apart."""
    shift = np.uint64(64 - part_bits)
    at = np.zeros(len(bounds), np.int64)
    for key in keys:
        at[0 if part_bits == 0 else np.int64(key >> shift)] += 1
    bounds[0] = 0
    bounds[1:] = np.cumsum(at[:-1])
    at[:] = bounds
    for key in keys:
        p = 0 if part_bits == 0 else np.int64(key >> shift)
        out[at[p]] = key
        at[p] += 1


@kernel
def _link_duplicates(keys, bits, ids, offsets, first):  # type: ignore[no-untyped-def]
    """For sorted keys (see :func:`_stack_keys`): ``first[i] = j`` when sample ``j < i`` is the first
    with the same stack as sample ``i``. Within a run of equal hashes every sample is compared id by
    id with the distinct stacks before it in the run, so the result does not depend on the hash.
    Returns the number of samples linked."""
    n = len(keys)
    low = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    linked = 0
    k = 0
    while k < n:
        r = k + 1
        while r < n and (keys[r] ^ keys[k]) <= low:
            r += 1
        for a in range(k + 1, r):  # a run of equal hashes, in sample order
            m = np.int64(keys[a] & low)
            for b in range(k, a):
                f = np.int64(keys[b] & low)
                if first[f] == f and _same_stack(ids, offsets, m, f):
                    first[m] = f
                    linked += 1
                    break
        k = r
    return linked


@kernel
def _sum_groups(first, groups, values):  # type: ignore[no-untyped-def]
    """The first sample of each group (ascending: the order of first appearance) and the groups'
    summed values, groups whose sums are all zero left out. ``first`` (see :func:`_link_duplicates`)
    is overwritten: once sample ``i`` is passed, ``first[i]`` is its group's number if ``i`` is the
    first of its group (later members read their group from ``first[first[i]]``)."""
    nt = values.shape[1]
    reps = np.empty(groups, np.int64)
    sums = np.zeros((groups, nt), np.int64)
    g = 0
    for i in range(len(first)):
        j = first[i]
        if j == i:
            reps[g] = i
            first[i] = gi = g
            g += 1
        else:
            gi = first[j]
        for c in range(nt):
            sums[gi, c] += values[i, c]
    keep = 0
    for g in range(groups):
        nonzero = False
        for c in range(nt):
            nonzero |= sums[g, c] != 0
        if nonzero:
            reps[keep] = reps[g]
            sums[keep] = sums[g]
            keep += 1
    return reps[:keep], sums[:keep]


@kernel
def _vsize(x):  # type: ignore[no-untyped-def]
    """Encoded length of an unsigned varint."""
    n = 1
    while x >= np.uint64(0x80):
        x >>= np.uint64(7)
        n += 1
    return n


@kernel
def _put(out, pos, x):  # type: ignore[no-untyped-def]
    """Write the varint ``x`` at ``out[pos]``; return the next position."""
    while x >= np.uint64(0x80):
        out[pos] = np.uint8((x & np.uint64(0x7F)) | np.uint64(0x80))
        x >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(x)
    return pos + 1


@kernel
def _encode(reps, sums, ids, offsets, sizes_only, starts, out):  # type: ignore[no-untyped-def]
    """The ``Profile.sample`` records ``0x12 len 0x0A len <ids> 0x12 len <values>`` of the groups
    whose first samples are ``reps``, with ``sums``: with ``sizes_only``, each record's size goes to
    ``starts``; else each record is written at ``out[starts[g]:]``."""
    for g in range(len(reps)):
        i = reps[g]
        loc_len = 0
        for j in range(offsets[i], offsets[i + 1]):
            loc_len += _vsize(np.uint64(ids[j]))
        val_len = 0
        for c in range(sums.shape[1]):
            val_len += _vsize(np.uint64(sums[g, c]))
        inner = 2 + _vsize(np.uint64(loc_len)) + loc_len + _vsize(np.uint64(val_len)) + val_len
        if sizes_only:
            starts[g] = 1 + _vsize(np.uint64(inner)) + inner
            continue
        out[starts[g]] = 0x12
        pos = _put(out, starts[g] + 1, np.uint64(inner))
        out[pos] = 0x0A
        pos = _put(out, pos + 1, np.uint64(loc_len))
        for j in range(offsets[i], offsets[i + 1]):
            pos = _put(out, pos, np.uint64(ids[j]))
        out[pos] = 0x12
        pos = _put(out, pos + 1, np.uint64(val_len))
        for c in range(sums.shape[1]):
            pos = _put(out, pos, np.uint64(sums[g, c]))


# Test hook: the hash is ANDed with this (0 makes every stack collide, exercising the exact check).
HASH_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _group(stacks: Stacks, n_locations: int) -> tuple[I64, I64]:
    """Group the samples by stack: :func:`_sum_groups`. Hashes are computed one profile per thread,
    then split by their top bits into one part per thread, each sorted and linked apart."""
    total = len(stacks.values)
    bits = max(1, total.bit_length())
    rng = np.random.default_rng(0x5EED)
    table = rng.integers(0, 1 << 63, n_locations + 1, dtype=np.uint64, endpoint=True) | np.uint64(1)
    keys = np.empty(total, np.uint64)
    bounds = stacks.bounds.tolist()
    t = time.perf_counter()

    def hash_profile(k: int, keys: U64 = keys) -> None:
        lo, hi = bounds[k], bounds[k + 1]
        _stack_keys(stacks.ids, stacks.offsets, lo, hi, table, HASH_MASK, bits, keys[lo:hi])

    for _ in parallel_map(hash_profile, range(len(bounds) - 1)):
        pass
    t = phase("hash", t)
    part_bits = workers().bit_length() - 1
    n_parts = 1 << part_bits
    parts = np.empty_like(keys)
    pb = np.empty(n_parts + 1, np.int64)
    _split_by_hash(keys, part_bits, parts, pb)
    del keys
    first = np.arange(total)

    def link(k: int, parts: U64 = parts) -> int:
        part = parts[pb[k] : pb[k + 1]]
        part.sort()
        return int(_link_duplicates(part, bits, stacks.ids, stacks.offsets, first))

    linked = sum(parallel_map(link, range(n_parts)))
    del parts
    t = phase("sort+link", t)
    reps, sums = _sum_groups(first, total - linked, stacks.values)
    phase("sum", t)
    return reps, sums


def merge(stacks: Stacks, n_locations: int, head: bytes = b"") -> bytes:
    """Sum the values of identical stacks; the merged samples as ``Profile.sample`` records (groups
    whose sums are all zero dropped), in order of first appearance, after ``head``."""
    if len(stacks.values) == 0:
        return head
    reps, sums = _group(stacks, n_locations)
    t = time.perf_counter()
    # Two passes over the groups, in a few chunks on threads: record sizes, then the records.
    chunks = np.linspace(0, len(reps), 4 * workers() + 1).astype(np.int64).tolist()
    starts = np.zeros(len(reps) + 1, np.int64)
    starts[0] = len(head)
    out = np.zeros(0, np.uint8)

    def encode(k: int, sizes_only: bool) -> None:
        lo, hi = chunks[k], chunks[k + 1]
        where = starts[lo + 1 : hi + 1] if sizes_only else starts[lo:hi]
        _encode(reps[lo:hi], sums[lo:hi], stacks.ids, stacks.offsets, sizes_only, where, out)

    for _ in parallel_map(lambda k: encode(k, True), range(len(chunks) - 1)):
        pass
    np.cumsum(starts, out=starts)
    out = np.empty(int(starts[-1]), np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    for _ in parallel_map(lambda k: encode(k, False), range(len(chunks) - 1)):
        pass
    phase("encode", t)
    return out.tobytes()


# --------------------------------------------------------------------------------------------------
# Reading: function-name stacks and per-function totals


@kernel
def _name_frames(loc_index, offsets, loc_off, loc_names, sizes_only, out_off, out):  # type: ignore[no-untyped-def]
    """Each sample's frames (function-name indices), root first: the names of its locations
    (``loc_names[loc_off[l - 1]:loc_off[l]]``, leaf first, for location index ``l``) reversed. With
    ``sizes_only`` only the cumulative counts go to ``out_off``."""
    for i in range(len(offsets) - 1):
        pos = out_off[i + 1] if not sizes_only else out_off[i]
        for j in range(offsets[i], offsets[i + 1]):
            loc = loc_index[j]
            lo, hi = loc_off[loc - 1], loc_off[loc]
            if sizes_only:
                pos += hi - lo
                continue
            for q in range(lo, hi):
                pos -= 1
                out[pos] = loc_names[q]
        if sizes_only:
            out_off[i + 1] = pos


def name_frames(
    loc_index: U32, offsets: I64, loc_off: I64, loc_names: NDArray[np.int32]
) -> tuple[NDArray[np.int32], I64]:
    """:func:`_name_frames`: (frames, offsets). ``loc_index`` must be 1..len(loc_off) - 1."""
    out_off = np.zeros(len(offsets), np.int64)
    _name_frames(loc_index, offsets, loc_off, loc_names, True, out_off, np.zeros(0, np.int32))
    out = np.empty(int(out_off[-1]), np.int32)
    _name_frames(loc_index, offsets, loc_off, loc_names, False, out_off, out)
    return out, out_off


@kernel
def _function_totals(frames, offsets, values, n_names, flat, cum, seen):  # type: ignore[no-untyped-def]
    last = np.full(n_names, -1, np.int64)  # the last sample that counted each name
    for i in range(len(values)):
        v = values[i]
        if v == 0 or offsets[i + 1] == offsets[i]:
            continue
        flat[frames[offsets[i + 1] - 1]] += v
        for j in range(offsets[i], offsets[i + 1]):
            f = frames[j]
            if last[f] != i:
                last[f] = i
                cum[f] += v
                seen[f] = True


def function_totals(
    frames: NDArray[np.int32], offsets: I64, values: I64, n_names: int
) -> tuple[I64, I64, NDArray[np.bool_]]:
    """Flat (leaf) and cumulative (once per sample) sums of ``values`` per name, and which names
    occur in a sample with a non-zero value."""
    flat = np.zeros(n_names, np.int64)
    cum = np.zeros(n_names, np.int64)
    seen = np.zeros(n_names, np.bool_)
    _function_totals(frames, offsets, values, n_names, flat, cum, seen)
    return flat, cum, seen


@kernel
def _counting_order(keys, n_keys, order):  # type: ignore[no-untyped-def]
    """``order`` (a permutation of the current order) stably sorted by ``keys[order]`` (< n_keys)."""
    at = np.zeros(n_keys + 1, np.int64)
    for k in order:
        at[keys[k] + 1] += 1
    at = np.cumsum(at)
    out = np.empty_like(order)
    for k in order:
        out[at[keys[k]]] = k
        at[keys[k]] += 1
    return out


@kernel
def _call_tree(frames, offsets, values, n_names, threshold):  # type: ignore[no-untyped-def]
    """The call tree of stacks of names (sample ``i``: ``frames[offsets[i]:offsets[i + 1]]``, root
    first, with ``values[i]``), level by level: the samples under each node of a level are grouped
    by their next name (two stable counting sorts: by name, then by parent). A node is expanded only
    if the absolute values under it add up to ``threshold`` at least (smaller ones cannot be
    drawn); all its children are kept. Returns each node's parent, name and value (root: node 0)."""
    n_live = 0
    for i in range(len(values)):
        n_live += values[i] != 0 and offsets[i + 1] > offsets[i]
    live = np.empty(n_live, np.int64)
    n_live = 0
    total = np.int64(0)
    for i in range(len(values)):
        total += values[i]
        if values[i] != 0 and offsets[i + 1] > offsets[i]:
            live[n_live] = i
            n_live += 1
    parent = np.zeros(n_live, np.int64)  # of each live sample: its node among the level's parents
    nodes = np.empty((3, 1024), np.int64)  # parent, name, value of each node; grown as needed
    nodes[:, 0] = (-1, -1, total)
    n_nodes = 1
    first = 0  # the node number of the level's first parent
    n_parents = 1
    d = 0
    while len(live):
        name = np.empty(len(live), np.int64)
        for k in range(len(live)):
            name[k] = frames[offsets[live[k]] + d]
        order = _counting_order(parent, n_parents, _counting_order(name, n_names, np.arange(len(live))))
        if nodes.shape[1] < n_nodes + len(live):
            grown = np.empty((3, 2 * (n_nodes + len(live))), np.int64)
            grown[:, :n_nodes] = nodes[:, :n_nodes]
            nodes = grown
        child = np.empty(len(live), np.int64)  # of each live sample: its node among the children
        size = np.zeros(len(live), np.int64)
        c = -1
        for k in order:
            if c < 0 or first + parent[k] != nodes[0, n_nodes + c] or name[k] != nodes[1, n_nodes + c]:
                c += 1
                nodes[0, n_nodes + c] = first + parent[k]
                nodes[1, n_nodes + c] = name[k]
                nodes[2, n_nodes + c] = 0
            child[k] = c
            nodes[2, n_nodes + c] += values[live[k]]
            size[c] += abs(values[live[k]])
        d += 1
        keep = 0  # the samples under expanded children go on, in sample order (sequential reads)
        for k in range(len(live)):
            i = live[k]
            if size[child[k]] >= threshold and offsets[i + 1] - offsets[i] > d:
                live[keep] = i
                child[keep] = child[k]
                keep += 1
        live = live[:keep]
        parent = child[:keep]
        first = n_nodes
        n_parents = c + 1
        n_nodes += c + 1
    return nodes[:, :n_nodes]


def call_tree(frames: NDArray[np.int32], offsets: I64, values: I64, n_names: int, threshold: float) -> I64:
    """:func:`_call_tree`: rows parent, name, value of every node (root first)."""
    return _call_tree(frames, offsets, values, n_names, threshold)


def kernels() -> list[Any]:
    """The compiled kernels (for tests and the warm-up)."""
    return [
        _split_profile,
        _walk_samples,
        _remap,
        _stack_keys,
        _split_by_hash,
        _link_duplicates,
        _sum_groups,
        _encode,
    ]
