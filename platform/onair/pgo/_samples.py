"""The sample section of pprof profiles, decoded and encoded in bulk with numpy.

A ``Profile.sample`` entry is a small message made only of varints: location ids (field 1, packed
or not), values (field 2, packed or not) and labels (field 3, messages of varints). Building one
protobuf message per sample costs microseconds in Python; here all samples of a profile are walked
together, one field at a time (a few steps per profile), and every location id and value is decoded
by whole-array operations. Encoding works the same way backwards: each merged sample is laid out as
``0x12 len 0x0A len <ids> 0x12 len <values>`` by array operations on all samples of a profile.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from numpy.typing import NDArray

from onair.pgo._pb import profile_pb2

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
U8 = NDArray[np.uint8]
UAny = NDArray[np.unsignedinteger]

_SHIFT7 = np.uint64(7)


T = TypeVar("T")
T_co = TypeVar("T_co", bound=np.generic, covariant=True)
R = TypeVar("R")


def workers() -> int:
    """Threads for per-profile work (numpy and zlib release the GIL): one per core, at most 4."""
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


def gather(table: NDArray[T_co], idx: NDArray[np.integer]) -> NDArray[T_co]:
    """``table[idx]``; ``take`` for narrow index types (fancy indexing first converts a uint16 index
    array to intp, which costs more than the lookup itself)."""
    if idx.dtype.itemsize < 8 or idx.dtype == np.intp:
        return table.take(idx)
    return table[idx]


class WireError(ValueError):
    """Malformed sample bytes (the caller turns it into ``ProfileError('not_pprof')``)."""


# --------------------------------------------------------------------------------------------------
# ProfileRaw: the Profile message with ``repeated bytes sample = 2`` (upb hands out the samples'
# bytes without building a message per sample). Built at import from the committed descriptor.


def _raw_profile_class() -> type[Message]:
    name = "perftools.profiles.ProfileRaw"
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName(name)
    except KeyError:
        src = descriptor_pb2.FileDescriptorProto()
        profile_pb2.DESCRIPTOR.CopyToProto(src)
        raw = descriptor_pb2.FileDescriptorProto(
            name="onair/pgo/profile_raw.proto",
            package="perftools.profiles",
            syntax="proto3",
            dependency=[profile_pb2.DESCRIPTOR.name],
        )
        msg = raw.message_type.add()
        msg.CopyFrom(next(m for m in src.message_type if m.name == "Profile"))
        msg.name = "ProfileRaw"
        for f in msg.field:
            if f.number == 2:
                f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                f.ClearField("type_name")
        pool.Add(raw)
        desc = pool.FindMessageTypeByName(name)
    return message_factory.GetMessageClass(desc)


ProfileRaw = _raw_profile_class()


# --------------------------------------------------------------------------------------------------
# Decoding


@dataclass
class Samples:
    """Decoded samples of one profile: sample ``i`` has ``counts[i]`` location ids, stored one after
    another in ``ids`` (file order, leaf first), and ``values[i]``; ``labels`` maps the index of each
    labelled sample (rare in CPU profiles) to its raw ``Label`` messages."""

    counts: I64
    ids: UAny  # uint16 when every id is below 16384, else uint64
    values: U64  # all values, sample after sample (int64 as two's complement)
    value_counts: I64
    labels: dict[int, list[bytes]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> I64:
        off = np.zeros(len(self.counts) + 1, np.int64)
        np.cumsum(self.counts, out=off[1:])
        return off


def _varint_at(buf: U8, pos: I64, limit: I64) -> tuple[U64, I64]:
    """Decode the varint starting at each ``pos`` (each must end before ``limit``): (values, next)."""
    b = buf[pos]
    v = (b & 0x7F).astype(np.uint64)
    nxt = pos + 1
    idx = np.flatnonzero(b >= 0x80)
    shift = 7
    while idx.size:
        if shift > 63:
            raise WireError("varint longer than 10 bytes")
        q = nxt[idx]
        if (q >= limit[idx]).any():
            raise WireError("varint runs past the end of its message")
        b = buf[q]
        v[idx] |= (b & 0x7F).astype(np.uint64) << np.uint64(shift)
        nxt[idx] = q + 1
        idx = idx[b >= 0x80]
        shift += 7
    return v, nxt


def _decode_ranges(buf: U8, starts: I64, ends: I64) -> tuple[UAny, I64]:
    """All varints inside the byte ranges ``[starts[k], ends[k])`` (disjoint, in increasing order,
    each preceded by the last byte of a varint): their values in file order and the count per range.
    Works on whole byte arrays: a mask of the ranges, the varints' last bytes, two-byte values."""
    counts = np.zeros(len(starts), np.int64)
    if not len(starts) or not (ends > starts).any():
        return np.zeros(0, np.uint64), counts
    nonempty = ends > starts
    if (buf[ends[nonempty] - 1] >= 0x80).any():
        raise WireError("packed field ends inside a varint")
    # Run lengths: gap before range 0, range 0, gap, range 1, ..., tail.
    runs = np.empty(2 * len(starts) + 1, np.int64)
    runs[0] = starts[0]
    runs[2:-1:2] = starts[1:] - ends[:-1]
    runs[1:-1:2] = ends - starts
    runs[-1] = len(buf) - ends[-1]
    if (runs < 0).any():
        raise WireError("overlapping fields")
    flags = np.zeros(len(runs), np.bool_)
    flags[1::2] = True
    inside = np.repeat(flags, runs)
    inside &= buf < 0x80
    e = np.flatnonzero(inside)  # the last byte of every varint in the ranges, in file order
    del inside
    first = np.searchsorted(e, starts)  # sorted keys: numpy reuses the last position
    counts[:-1] = first[1:] - first[:-1]
    counts[-1] = len(e) - first[-1]
    hi = buf[e]
    # The byte before a range is the end of a varint (never 0x80+), so a continuation byte before
    # a varint's last byte lies in its range; two of them: some varint has 3 bytes or more.
    e1 = e - 1
    lo = buf[e1]
    two = lo >= 0x80
    e1 -= 1
    long_varints = bool(two.any()) and bool((buf[e1[two]] >= 0x80).any())
    if not long_varints:  # the usual case (ids < 16384): 16-bit arithmetic, no per-byte loop
        v16 = hi.astype(np.uint16)
        v16 <<= two.view(np.uint8) * np.uint8(7)
        lo &= 0x7F
        lo *= two.view(np.uint8)
        v16 |= lo
        return v16, counts
    v = hi.astype(np.uint64)
    idx = np.flatnonzero(two)
    b = lo[idx]
    k = 1
    while idx.size:
        if k > 9:
            raise WireError("varint longer than 10 bytes")
        v[idx] = (v[idx] << _SHIFT7) | (b & 0x7F).astype(np.uint64)
        k += 1
        b = buf[e[idx] - k]
        more = b >= 0x80
        idx, b = idx[more], b[more]
    return v, counts


def decode(samples: list[bytes]) -> Samples:
    """Decode serialised ``Sample`` messages; raise :class:`WireError` if malformed."""
    n = len(samples)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Samples(z, np.zeros(0, np.uint64), np.zeros(0, np.uint64), z)
    lens = np.fromiter(map(len, samples), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(samples), dtype=np.uint8)
    ends = np.cumsum(lens)
    starts = ends - lens
    return decode_buffer(buf, starts, ends)


def decode_buffer(buf: U8, starts: I64, ends: I64) -> Samples:
    """Decode the ``Sample`` messages at ``buf[starts[i]:ends[i]]`` (in increasing order)."""
    n = len(starts)
    fast = _decode_usual(buf, starts, ends)
    if fast is not None:
        return fast
    pos = starts.copy()
    act = np.flatnonzero(pos < ends)
    loc: list[tuple[I64, I64, I64]] = []
    val: list[tuple[I64, I64, I64]] = []
    lab: list[tuple[I64, I64, I64]] = []
    while act.size:
        p = pos[act]
        lim = ends[act]
        tag, p1 = _varint_at(buf, p, lim)
        num = tag >> np.uint64(3)
        wt = (tag & np.uint64(7)).astype(np.int8)
        if (num == 0).any():
            raise WireError("field number 0")
        new = np.empty_like(p)
        i0 = np.flatnonzero(wt == 0)
        i2 = np.flatnonzero(wt == 2)
        i1 = np.flatnonzero(wt == 1)
        i5 = np.flatnonzero(wt == 5)
        if len(i0) + len(i2) + len(i1) + len(i5) != len(act):
            raise WireError("unsupported wire type (groups or invalid)")
        if i0.size:
            q0 = p1[i0]
            if (q0 >= lim[i0]).any():
                raise WireError("sample field truncated")
            _, q1 = _varint_at(buf, q0, lim[i0])
            new[i0] = q1
            _route(num[i0], act[i0], q0, q1, loc, val, None)
        if i2.size:
            q0 = p1[i2]
            if (q0 >= lim[i2]).any():
                raise WireError("sample field truncated")
            x, q1 = _varint_at(buf, q0, lim[i2])
            if (x > (lim[i2] - q1).astype(np.uint64)).any():
                raise WireError("length-delimited field runs past the end of its sample")
            re = q1 + x.astype(np.int64)
            new[i2] = re
            _route(num[i2], act[i2], q1, re, loc, val, lab)
        if i1.size:
            new[i1] = p1[i1] + 8
        if i5.size:
            new[i5] = p1[i5] + 4
        if (new > lim).any():
            raise WireError("sample field runs past the end of its sample")
        pos[act] = new
        act = act[new < lim]

    ids, id_counts = _collect(buf, loc, n)
    values, value_counts = _collect_values(buf, val, n)
    return Samples(id_counts, ids, values, value_counts, _labels(buf, lab))


Ranges = list[tuple[I64, I64, I64]]


def _decode_usual(buf: U8, starts: I64, ends: I64) -> Samples | None:
    """The layout Go writes, checked for every sample at once: ``0x0A len <ids> 0x12 len <values>``
    with one-byte lengths. ``None`` if any sample differs (the general walk then decodes them)."""
    n = len(starts)
    if not n or len(buf) < 4 or ((ends - starts) < 4).any():
        return None
    if (buf[starts] != 0x0A).any():
        return None
    l1 = buf[starts + 1]
    if (l1 >= 0x80).any():
        return None
    e1 = starts + 2
    e1 += l1
    if (e1 + 2 > ends).any():
        return None
    if (buf[e1] != 0x12).any():
        return None
    l2 = buf[e1 + 1]
    if (l2 >= 0x80).any():
        return None
    v0 = e1 + 2
    if (v0 + l2 != ends).any():
        return None
    ids, id_counts = _decode_ranges(buf, starts + 2, e1)  # one range per sample, in order
    values, value_counts = _collect_values(buf, [(np.arange(n, dtype=np.int64), v0, ends)], n)
    return Samples(id_counts, ids, values, value_counts)


def _route(num: U64, who: I64, rs: I64, re: I64, loc: Ranges, val: Ranges, lab: Ranges | None) -> None:
    for fnum, out in ((1, loc), (2, val), (3, lab)):
        sel = np.flatnonzero(num == fnum)
        if sel.size:
            if out is None:
                raise WireError("label is not a message")
            out.append((who[sel], rs[sel], re[sel]))


def _collect(buf: U8, ranges: list[tuple[I64, I64, I64]], n: int) -> tuple[UAny, I64]:
    if not ranges:
        return np.zeros(0, np.uint64), np.zeros(n, np.int64)
    if len(ranges) == 1:
        who, rs, re = ranges[0]
    else:
        who = np.concatenate([r[0] for r in ranges])
        rs = np.concatenate([r[1] for r in ranges])
        re = np.concatenate([r[2] for r in ranges])
        order = np.argsort(rs, kind="stable")  # file order (ranges came one field step at a time)
        who, rs, re = who[order], rs[order], re[order]
    vals, counts = _decode_ranges(buf, rs, re)
    per = np.bincount(who, weights=counts, minlength=n).astype(np.int64)
    return vals, per


def _collect_values(buf: U8, ranges: Ranges, n: int) -> tuple[U64, I64]:
    """Values are few per sample: decode the k-th varint of every range at once, k = 0, 1, ..."""
    if not ranges:
        return np.zeros(0, np.uint64), np.zeros(n, np.int64)
    who, rs, re = ranges[0] if len(ranges) == 1 else [np.concatenate(x) for x in zip(*ranges, strict=True)]
    if len(ranges) > 1:
        order = np.argsort(rs, kind="stable")
        who, rs, re = who[order], rs[order], re[order]
    got: list[tuple[I64, U64]] = []
    cur = rs.copy()
    act = np.flatnonzero(cur < re)
    while act.size:
        v, nxt = _varint_at(buf, cur[act], re[act])
        got.append((act, v))
        cur[act] = nxt
        act = act[nxt < re[act]]
    counts = np.zeros(len(rs), np.int64)
    for act, _ in got:
        counts[act] += 1
    off = np.cumsum(counts) - counts
    out = np.empty(int(counts.sum()), np.uint64)
    for k, (act, v) in enumerate(got):
        out[off[act] + k] = v
    per = np.bincount(who, weights=counts, minlength=n).astype(np.int64)
    return out, per


def _labels(buf: U8, ranges: Ranges) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    if not ranges:
        return out
    who = np.concatenate([r[0] for r in ranges])
    rs = np.concatenate([r[1] for r in ranges])
    re = np.concatenate([r[2] for r in ranges])
    order = np.argsort(rs, kind="stable")  # file order
    data = buf.tobytes() if len(order) > 64 else None
    for i, s, e in zip(who[order].tolist(), rs[order].tolist(), re[order].tolist(), strict=True):
        out.setdefault(i, []).append(data[s:e] if data is not None else buf[s:e].tobytes())
    return out


# --------------------------------------------------------------------------------------------------
# Encoding


def varint_sizes(x: U64) -> NDArray[np.uint8]:
    """Encoded length of each unsigned value (1..10)."""
    n = np.ones(x.shape, np.uint8)
    if x.size == 0:
        return n
    top = int(x.max())
    for k in range(1, 10):
        if top < 1 << (7 * k):
            break
        n += x >= np.uint64(1 << (7 * k))
    return n


def _columns(columns: list[U64 | int], n: int) -> tuple[U8, I64]:
    """Varint-encode ``n`` rows of columns (arrays, or one constant small int), row after row: the
    bytes, and each row's length."""
    all_sizes = [None if isinstance(col, int) else varint_sizes(col) for col in columns]
    widths = [1 if sz is None else int(sz.max()) for sz in all_sizes]
    matrix = np.empty((n, sum(widths)), np.uint8)  # one block of columns per value, written in place
    mask = np.ones((n, sum(widths)), np.bool_)
    row_len = np.zeros(n, np.int64)
    at = 0
    for col, sizes, width in zip(columns, all_sizes, widths, strict=True):
        if isinstance(col, int) or sizes is None:
            matrix[:, at] = col
            row_len += 1
            at += 1
            continue
        rest = col
        for k in range(width):
            byte = (rest & np.uint64(0x7F)).astype(np.uint8)
            if k + 1 < width:
                byte |= (sizes > k + 1).view(np.uint8) << 7
                rest = rest >> _SHIFT7
            matrix[:, at + k] = byte
            if k:
                np.greater(sizes, k, out=mask[:, at + k])
        row_len += sizes
        at += width
    return matrix[mask], row_len


@dataclass
class IdCodec:
    """Varint bytes of location ids ``0..n``: one lookup per id (ids of merged profiles are small)."""

    words: NDArray[np.uint32]  # the varint bytes of id i, little-endian (ids < 2**28)
    sizes: NDArray[np.uint8]
    width: int

    @property
    def sizes64(self) -> I64:
        return self._sizes64

    def __post_init__(self) -> None:
        self._sizes64: I64 = self.sizes.astype(np.int64)

    @classmethod
    def for_ids(cls, n: int) -> IdCodec:
        if n >= 1 << 28:  # pragma: no cover - 268 M locations
            raise ValueError("too many locations")
        ids = np.arange(n + 1, dtype=np.uint64)
        sizes = varint_sizes(ids)
        words = np.zeros(n + 1, np.uint32)
        rest = ids.copy()
        for k in range(int(sizes.max())):
            byte = (rest & np.uint64(0x7F)) | ((sizes > k + 1).astype(np.uint64) << np.uint64(7))
            words |= (byte << np.uint64(8 * k)).astype(np.uint32)
            rest >>= _SHIFT7
        return cls(words, sizes, int(sizes.max()))

    def encode(self, ids: NDArray[np.unsignedinteger]) -> U8:
        """The varints of ``ids``, concatenated."""
        if self.width == 1:
            return gather(self.words, ids).astype(np.uint8)
        cols = 2 if self.width == 2 else 4
        words = gather(self.words, ids)
        matrix = words.astype(np.uint16).view(np.uint8) if cols == 2 else words.view(np.uint8)
        mask = np.zeros((len(ids), cols), np.bool_)
        mask[:, 0] = True
        for k in range(1, self.width):
            np.greater_equal(ids, 1 << (7 * k), out=mask[:, k])
        return matrix[mask.ravel()]


def encode_samples(codec: IdCodec, ids: NDArray[np.unsignedinteger], counts: I64, values: I64) -> U8:
    """``Profile.sample`` records (field 2 of Profile, tag and length included) for samples whose
    location ids (already final, concatenated) are ``ids`` with ``counts`` per sample."""
    n = len(counts)
    if n == 0:
        return np.zeros(0, np.uint8)
    starts = np.zeros(n, np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    loc_len = np.zeros(n, np.int64)
    nz = counts > 0
    if nz.any():
        loc_len[nz] = np.add.reduceat(gather(codec.sizes64, ids), starts[nz])
    loc_bytes = codec.encode(ids)
    uvals = values.view(np.uint64)
    val_len = varint_sizes(uvals).sum(axis=1, dtype=np.int64)
    u_loc_len = loc_len.astype(np.uint64)
    u_val_len = val_len.astype(np.uint64)
    inner = 2 + varint_sizes(u_loc_len) + loc_len + varint_sizes(u_val_len) + val_len
    # Everything but the location ids, record after record: 0x12 len 0x0A len | 0x12 len v1..vn
    cols: list[U64 | int] = [0x12, inner.astype(np.uint64), 0x0A, u_loc_len]
    head_len = 2 + varint_sizes(cols[1]) + varint_sizes(u_loc_len)  # type: ignore[arg-type]
    other, other_len = _columns([*cols, 0x12, u_val_len, *(uvals[:, j] for j in range(uvals.shape[1]))], n)
    # Interleave: head_0 | ids_0 | tail_0 | head_1 | ids_1 | tail_1 ...
    seg = np.empty((n, 3), np.int64)
    seg[:, 0] = head_len
    seg[:, 1] = loc_len
    seg[:, 2] = other_len - head_len
    is_loc = np.repeat(np.tile(np.array([False, True, False]), n), seg.ravel())
    out = np.empty(len(is_loc), np.uint8)
    out[is_loc] = loc_bytes
    np.logical_not(is_loc, out=is_loc)
    out[is_loc] = other
    return out


# --------------------------------------------------------------------------------------------------
# Merging: identical stacks found by hashing, then checked exactly


@dataclass
class Part:
    """Samples of one profile ready to merge: final location ids, counts, scaled values (n, nt)."""

    ids: NDArray[np.unsignedinteger]
    counts: I64
    values: I64


# Test hook: the hash is ANDed with this (0 makes every stack collide, exercising the exact check).
HASH_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_K = 0x9E3779B97F4A7C15  # odd: invertible mod 2**64
_K_INV = pow(_K, -1, 1 << 64)
_powers: dict[int, tuple[U64, U64]] = {}


def _power_tables(n: int) -> tuple[U64, U64]:
    """``K**t`` and ``K**-t`` (mod 2**64) for ``t < n``."""
    have = _powers.get(0)
    if have is None or len(have[0]) < n:
        size = max(2 * n, 1 << 16)
        pw = np.empty(size, np.uint64)
        inv = np.empty(size, np.uint64)
        pw[0] = inv[0] = 1
        np.cumprod(np.full(size - 1, _K, np.uint64), out=pw[1:])
        np.cumprod(np.full(size - 1, _K_INV, np.uint64), out=inv[1:])
        have = _powers[0] = (pw, inv)
    return have


def _stack_hashes(part: Part, table: U64) -> U64:
    """A position-weighted hash of each sample's stack: sum of table[id_j] * K**j, mixed with the
    length. Computed as one weighted sum over the whole profile, then shifted per sample by K**-start."""
    n = len(part.counts)
    m = len(part.ids)
    h = np.zeros(n, np.uint64)
    if m:
        pw, inv = _power_tables(m)
        w = gather(table, part.ids)
        w *= pw[:m]
        starts = np.zeros(n, np.int64)
        np.cumsum(part.counts[:-1], out=starts[1:])
        nz = np.flatnonzero(part.counts > 0)
        h[nz] = np.add.reduceat(w, starts[nz]) * inv[starts[nz]]
    h += part.counts.astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93)
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    return h & HASH_MASK


def _expand(starts: I64, lens: I64) -> I64:
    """Concatenated ``arange(starts[i], starts[i] + lens[i])``."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    off = np.cumsum(lens) - lens
    return np.arange(total, dtype=np.int64) + np.repeat(starts - off, lens)


def merge_parts(parts: list[Part], n_locations: int, n_types: int) -> bytes:
    """Sum the values of identical stacks over all parts; encode the result (all-zero sums dropped).

    Samples are grouped by a 64-bit hash of their stack; every member of a group is then compared
    with the group's first sample id by id, and a group whose members differ (a hash collision) is
    split exactly, so the result does not depend on the hash. Output order: first appearance."""
    sizes = [len(p.counts) for p in parts]
    total = sum(sizes)
    if total == 0:
        return b""
    rng = np.random.default_rng(0x5EED)
    table = rng.integers(0, 1 << 63, n_locations + 1, dtype=np.uint64, endpoint=True) | np.uint64(1)
    _power_tables(max(len(p.ids) for p in parts))
    t = time.perf_counter()
    hashes = np.concatenate(list(parallel_map(lambda p: _stack_hashes(p, table), parts)))
    t = phase("hash", t)
    counts = np.concatenate([p.counts for p in parts])
    ids = np.concatenate([p.ids for p in parts]) if len(parts) > 1 else parts[0].ids
    values = np.concatenate([p.values for p in parts]) if len(parts) > 1 else parts[0].values
    offsets = np.zeros(total + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])

    # Sort (hash, index) packed in one uint64: the high bits of the hash, then the sample index, so
    # that one plain sort groups equal hashes with their first appearance first.
    bits = max(1, total.bit_length())
    low = np.uint64((1 << bits) - 1)
    keys = hashes
    keys &= ~low
    keys |= np.arange(total, dtype=np.uint64)
    keys.sort()
    perm = (keys & low).astype(np.int64)
    keys >>= np.uint64(bits)
    first = np.ones(total, np.bool_)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    del keys, hashes
    starts = np.flatnonzero(first)
    sums = np.empty((len(starts), n_types), np.int64)

    def group_sums(j: int, sums: I64 = sums, perm: I64 = perm) -> None:
        sums[:, j] = np.add.reduceat(np.take(values[:, j], perm), starts)

    for _ in parallel_map(group_sums, range(n_types)):  # a column per thread
        pass
    reps = perm[starts]

    t = phase("group", t)
    # Exact check of every non-first member against its group's first member.
    dup = np.flatnonzero(~first)
    extra_reps: list[int] = []
    extra_sums: list[I64] = []
    if dup.size:
        run = np.cumsum(first)[dup] - 1
        m = perm[dup]
        r = reps[run]
        bad = counts[m] != counts[r]
        ok = np.flatnonzero(~bad)
        if ok.size:
            lens = counts[m[ok]]
            same = ids[_expand(offsets[m[ok]], lens)] == ids[_expand(offsets[r[ok]], lens)]
            if not same.all():
                tok_owner = np.repeat(np.arange(ok.size), lens)
                bad[ok[np.unique(tok_owner[~same])]] = True
        if bad.any():
            for g in np.unique(run[bad]).tolist():
                lo = int(starts[g])
                hi = int(starts[g + 1]) if g + 1 < len(starts) else total
                groups: dict[bytes, list[int]] = {}
                for i in perm[lo:hi].tolist():  # ascending sample index
                    groups.setdefault(ids[offsets[i] : offsets[i + 1]].tobytes(), []).append(i)
                for k, members in enumerate(groups.values()):
                    if k == 0:
                        continue  # the group of the first member keeps the run's place
                    part_sum = values[members].sum(axis=0)
                    sums[g] -= part_sum
                    extra_reps.append(members[0])
                    extra_sums.append(part_sum)
    if extra_reps:
        reps = np.concatenate([reps, np.array(extra_reps, np.int64)])
        sums = np.concatenate([sums, np.array(extra_sums, np.int64).reshape(-1, n_types)])

    t = phase("verify", t)
    # First-appearance order, all-zero sums dropped.
    is_rep = np.zeros(total, np.bool_)
    is_rep[reps] = True
    rank = np.cumsum(is_rep) - 1
    out_sums = np.empty_like(sums)
    where = rank[reps]
    for j in range(n_types):  # column by column: faster than one scatter of rows
        out_sums[where, j] = sums[:, j]
    out_reps = np.flatnonzero(is_rep)
    keep = (out_sums != 0).any(axis=1)
    if not keep.all():
        out_reps, out_sums = out_reps[keep], out_sums[keep]
    del is_rep, rank, perm, sums

    t = phase("order", t)
    codec = IdCodec.for_ids(n_locations)
    bounds = np.searchsorted(out_reps, np.cumsum([0, *sizes]))
    bases = np.cumsum([0, *sizes])

    def block(k: int) -> bytes:
        p, lo, hi = parts[k], int(bounds[k]), int(bounds[k + 1])
        if hi <= lo:
            return b""
        local = out_reps[lo:hi] - bases[k]
        sel = np.zeros(len(p.counts), np.bool_)
        sel[local] = True
        pids = p.ids[np.repeat(sel, p.counts)]
        return encode_samples(codec, pids, p.counts[local], out_sums[lo:hi]).tobytes()

    blocks = list(parallel_map(block, range(len(parts))))
    t = phase("encode", t)
    return b"".join(blocks)
