"""pprof codec: parse and write gzip-compressed pprof protobuf, validate it, merge profiles.

The format is Go's (``github.com/google/pprof/proto/profile.proto``); the generated module is
committed under ``onair.pgo._pb``. ``merge`` follows ``go tool pprof -proto a b > merged``: the same
identity rules for functions, mappings, locations and samples, values of identical stacks summed, units
scaled to the smallest compatible unit, earliest start time and summed duration. Every malformed input
raises :class:`ProfileError` (with a ``kind``) rather than crashing.
"""

from __future__ import annotations

import gc
import gzip
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, compress, repeat
from operator import add, attrgetter
from typing import cast

from google.protobuf.message import DecodeError

from onair.pgo._pb.profile_pb2 import Function, Line, Location, Mapping, Profile, Sample, ValueType

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECOMPRESSED",
    "FunctionStat",
    "Profile",
    "ProfileError",
    "dumps",
    "frames",
    "function_totals",
    "loads",
    "merge",
    "merge_gzip",
    "merge_serialized",
    "sample_index",
    "sample_types",
    "top_functions",
    "validate",
]

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_DECOMPRESSED = 512 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
_U64 = (1 << 64) - 1


class ProfileError(ValueError):
    """A profile that cannot be used. ``kind`` is one of: ``not_gzip``, ``corrupt``, ``truncated``,
    ``too_large``, ``not_pprof``, ``inconsistent``, ``incompatible``, ``empty``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# --------------------------------------------------------------------------------------------------
# Decoding and encoding


def _gunzip(data: bytes, max_decompressed: int) -> bytes:
    """Decompress all gzip members, refusing more than ``max_decompressed`` bytes of output."""
    out: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        buf = rest
        try:
            while buf:
                chunk = d.decompress(buf, _CHUNK)
                total += len(chunk)
                if total > max_decompressed:
                    raise ProfileError(
                        "too_large", f"profile decompresses to more than {max_decompressed} bytes"
                    )
                out.append(chunk)
                buf = d.unconsumed_tail
                if d.eof:
                    break
        except zlib.error as exc:
            raise ProfileError("corrupt", f"corrupt gzip data: {exc}") from None
        if not d.eof:
            raise ProfileError("truncated", "gzip stream is truncated")
        rest = d.unused_data
        if rest and not rest.startswith(_GZIP_MAGIC):
            raise ProfileError("corrupt", "trailing garbage after the gzip stream")
    return b"".join(out)


def loads(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    require_gzip: bool = True,
    check: bool = True,
) -> Profile:
    """Parse a (gzip-compressed) pprof profile; raise :class:`ProfileError` if it is unusable.

    ``max_bytes`` bounds the input and ``max_decompressed`` the decompressed size (gzip bombs).
    With ``check`` (the default) every index is verified (:func:`validate`).
    """
    if len(data) > max_bytes:
        raise ProfileError("too_large", f"profile is {len(data)} bytes, the limit is {max_bytes}")
    if data.startswith(_GZIP_MAGIC):
        raw = _gunzip(data, max_decompressed)
    elif require_gzip:
        raise ProfileError("not_gzip", "not gzip-compressed (pprof profiles are gzip files)")
    else:
        raw = data
        if len(raw) > max_decompressed:
            raise ProfileError("too_large", f"profile is more than {max_decompressed} bytes")
    try:
        profile = Profile.FromString(raw)
    except DecodeError as exc:
        raise ProfileError("not_pprof", f"not a pprof protobuf: {exc}") from None
    except RecursionError:  # pragma: no cover - upb reports depth as DecodeError
        raise ProfileError("not_pprof", "not a pprof protobuf: nested too deeply") from None
    if not profile.string_table or profile.string_table[0] != "":
        raise ProfileError("not_pprof", "not a pprof profile: string table missing or not starting with ''")
    if not profile.sample_type:
        raise ProfileError("not_pprof", "not a pprof profile: no sample types")
    if check:
        validate(profile)
    return profile


def dumps(profile: Profile, *, level: int = 6) -> bytes:
    """Serialise and gzip-compress (the form Go's toolchain reads as ``default.pgo``)."""
    return gzip.compress(profile.SerializeToString(), compresslevel=level, mtime=0)


def _bad(message: str) -> ProfileError:
    return ProfileError("inconsistent", message)


def validate(profile: Profile) -> None:
    """Check the indices of a profile the way Go's parser does; raise ``ProfileError('inconsistent')``."""
    n = len(profile.string_table)
    if n == 0 or profile.string_table[0] != "":
        raise _bad("string table must start with ''")

    def s(idx: int, what: str) -> None:
        if not 0 <= idx < n:
            raise _bad(f"{what}: string index {idx} out of range (table has {n})")

    for vt in profile.sample_type:
        s(vt.type, "sample_type.type")
        s(vt.unit, "sample_type.unit")
    s(profile.period_type.type, "period_type.type")
    s(profile.period_type.unit, "period_type.unit")
    for c in profile.comment:
        s(c, "comment")
    for idx, what in (
        (profile.drop_frames, "drop_frames"),
        (profile.keep_frames, "keep_frames"),
        (profile.default_sample_type, "default_sample_type"),
        (profile.doc_url, "doc_url"),
    ):
        s(idx, what)
    mapping_ids: set[int] = set()
    for m in profile.mapping:
        if m.id == 0 or m.id in mapping_ids:
            raise _bad(f"mapping id {m.id} is zero or repeated")
        mapping_ids.add(m.id)
        s(m.filename, "mapping.filename")
        s(m.build_id, "mapping.build_id")
    function_ids: set[int] = set()
    for f in profile.function:
        if f.id == 0 or f.id in function_ids:
            raise _bad(f"function id {f.id} is zero or repeated")
        function_ids.add(f.id)
        s(f.name, "function.name")
        s(f.system_name, "function.system_name")
        s(f.filename, "function.filename")
    location_ids: set[int] = set()
    for loc in profile.location:
        if loc.id == 0 or loc.id in location_ids:
            raise _bad(f"location id {loc.id} is zero or repeated")
        location_ids.add(loc.id)
        if loc.mapping_id and loc.mapping_id not in mapping_ids:
            raise _bad(f"location {loc.id} refers to missing mapping {loc.mapping_id}")
        for ln in loc.line:
            if ln.function_id and ln.function_id not in function_ids:
                raise _bad(f"location {loc.id} refers to missing function {ln.function_id}")
    nt = len(profile.sample_type)
    samples = profile.sample
    # Whole-list operations run in C (no Python bytecode per sample): ~5x faster than a loop.
    counts = set(map(len, map(_VALUE, samples)))
    if counts and counts != {nt}:
        raise _bad(f"samples have {sorted(counts)} values, the profile has {nt} sample types")
    used = set(chain.from_iterable(map(_LOCS, samples)))
    if any(map(_LABEL, samples)):
        for sample in samples:
            for label in sample.label:
                s(label.key, "label.key")
                s(label.str, "label.str")
                s(label.num_unit, "label.num_unit")
    missing = used - location_ids
    if missing:
        raise _bad(f"samples refer to missing location(s) {sorted(missing)[:5]}")


# --------------------------------------------------------------------------------------------------
# Sample types and units


@dataclass(frozen=True)
class _Unit:
    kind: str
    factor: int  # in the kind's smallest unit


_UNITS: dict[str, _Unit] = {}
for _names, _kind, _factor in (
    (("nanoseconds", "nanosecond", "ns"), "time", 1),
    (("microseconds", "microsecond", "us", "µs"), "time", 1_000),
    (("milliseconds", "millisecond", "ms"), "time", 1_000_000),
    (("seconds", "second", "s", "sec"), "time", 1_000_000_000),
    (("minutes", "minute", "m"), "time", 60_000_000_000),
    (("hours", "hour", "h"), "time", 3_600_000_000_000),
    (("bytes", "byte", "b"), "memory", 1),
    (("kilobytes", "kilobyte", "kb"), "memory", 1 << 10),
    (("megabytes", "megabyte", "mb"), "memory", 1 << 20),
    (("gigabytes", "gigabyte", "gb"), "memory", 1 << 30),
):
    for _n in _names:
        _UNITS[_n] = _Unit(_kind, _factor)


def _scale_factors(kinds: list[tuple[str, str]], what: str) -> list[int]:
    """Integer factors bringing each ``(type, unit)`` to the smallest compatible unit; error otherwise."""
    types = {t for t, _ in kinds}
    if len(types) > 1:
        raise ProfileError("incompatible", f"{what}: different types {sorted(types)}")
    units = [u for _, u in kinds]
    if len(set(units)) == 1:
        return [1] * len(units)
    known = [_UNITS.get(u.lower()) for u in units]
    if any(k is None for k in known) or len({k.kind for k in known if k}) != 1:
        raise ProfileError("incompatible", f"{what}: units {sorted(set(units))} cannot be converted")
    smallest = min(k.factor for k in known if k)
    return [k.factor // smallest for k in known if k]


def sample_types(profile: Profile) -> list[tuple[str, str]]:
    st = profile.string_table
    return [(st[vt.type], st[vt.unit]) for vt in profile.sample_type]


def sample_index(profile: Profile, name: str | None = None) -> int:
    """Index of the sample type called ``name`` (default: the profile's default, else the last)."""
    types = [t for t, _ in sample_types(profile)]
    if name is None:
        default = profile.string_table[profile.default_sample_type] if profile.default_sample_type else ""
        return types.index(default) if default in types else len(types) - 1
    if name not in types:
        raise ProfileError("incompatible", f"no sample type {name!r} (have {types})")
    return types.index(name)


# --------------------------------------------------------------------------------------------------
# Merge


def _min_unit(units: list[str]) -> str:
    known = [(u, _UNITS.get(u.lower())) for u in units]
    return min(known, key=lambda x: x[1].factor if x[1] else 0)[0]


def merge(profiles: Sequence[Profile], *, comment: str | None = None) -> Profile:
    """Merge profiles (see :func:`_merge`); the cyclic GC is paused meanwhile (millions of key tuples)."""
    out, section = _merge_parts(profiles, comment)
    if section:
        out.MergeFromString(section)
    return out


def merge_serialized(profiles: Sequence[Profile], *, comment: str | None = None) -> bytes:
    """:func:`merge`, returned serialised (not compressed): skips building millions of messages."""
    out, section = _merge_parts(profiles, comment)
    return out.SerializeToString() + section


def merge_gzip(profiles: Sequence[Profile], *, comment: str | None = None, level: int = 6) -> bytes:
    """:func:`merge`, returned as a gzip pprof file (``default.pgo``)."""
    return gzip.compress(merge_serialized(profiles, comment=comment), compresslevel=level, mtime=0)


def _merge_parts(profiles: Sequence[Profile], comment: str | None) -> tuple[Profile, bytes]:
    """The cyclic GC is paused meanwhile (millions of key tuples, no cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _merge(profiles, comment)
    finally:
        if enabled:
            gc.enable()


def _merge(profiles: Sequence[Profile], comment: str | None) -> tuple[Profile, bytes]:
    """Merge profiles into one, like ``go tool pprof -proto a b ...``.

    Functions, mappings and locations are identified by content (not by their ids), identical stacks
    (same locations and labels) have their values summed, zero samples are dropped. Sample types must
    have the same names; units are scaled to the smallest compatible unit (``ProfileError`` with kind
    ``incompatible`` otherwise); the period type must match and the merged period is the largest.
    ``time_nanos`` is the earliest start and ``duration_nanos`` the sum of the durations.
    """
    if not profiles:
        raise ProfileError("empty", "nothing to merge")
    headers = [sample_types(p) for p in profiles]
    nt = len(headers[0])
    if nt == 0 or any(len(h) != nt for h in headers):
        raise ProfileError("incompatible", f"different numbers of sample types: {[len(h) for h in headers]}")
    # factors[i][j]: multiply value j of profile i.
    factors: list[list[int]] = [[1] * nt for _ in profiles]
    out_types: list[tuple[str, str]] = []
    for j in range(nt):
        column = [h[j] for h in headers]
        col_factors = _scale_factors(column, f"sample type {j}")
        for i, factor in enumerate(col_factors):
            factors[i][j] = factor
        out_types.append((column[0][0], _min_unit([u for _, u in column])))
    periods = [
        (p.string_table[p.period_type.type], p.string_table[p.period_type.unit], p.period)
        for p in profiles
        if p.HasField("period_type")
    ]
    out_period_type: tuple[str, str] | None = None
    out_period = 0
    if periods:
        pfactors = _scale_factors([(t, u) for t, u, _ in periods], "period type")
        out_period_type = (periods[0][0], _min_unit([u for _, u, _ in periods]))
        out_period = max(v * f for (_, _, v), f in zip(periods, pfactors, strict=True))

    strings: dict[str, int] = {"": 0}

    def intern(s: str) -> int:
        idx = strings.get(s)
        if idx is None:
            idx = strings[s] = len(strings)
        return idx

    functions: dict[tuple[int, int, int, int], int] = {}
    mapping_keys: dict[tuple[int, int, str], int] = {}
    mappings: list[Mapping] = []
    location_keys: dict[tuple[object, ...], int] = {}
    locations: list[tuple[int, int, tuple[tuple[int, int, int], ...], bool]] = []
    acc: dict[object, Sequence[int]] = {}
    labelled = False
    comments: list[int] = []
    time_nanos = 0
    duration = 0
    drop_frames = keep_frames = default_type = doc_url = 0

    for pi, p in enumerate(profiles):
        try:
            sidx = [intern(s) for s in p.string_table]
            st = p.string_table
            if pi == 0:
                drop_frames, keep_frames = sidx[p.drop_frames], sidx[p.keep_frames]
                default_type, doc_url = sidx[p.default_sample_type], sidx[p.doc_url]
            for c in p.comment:
                if sidx[c] not in comments:
                    comments.append(sidx[c])
            if p.time_nanos and (time_nanos == 0 or p.time_nanos < time_nanos):
                time_nanos = p.time_nanos
            duration += p.duration_nanos

            fmap: dict[int, int] = {0: 0}
            for f in p.function:
                fkey = (sidx[f.name], sidx[f.system_name], sidx[f.filename], f.start_line)
                fid = functions.get(fkey)
                if fid is None:
                    fid = functions[fkey] = len(functions) + 1
                fmap[f.id] = fid

            # Mapping identity: rounded size, offset, build id or file (Go's mappingKey). Like Go, a
            # mapping is carried over only when a location uses it (and the first one, the binary).
            src_mappings = {m.id: m for m in p.mapping}
            mmap: dict[int, tuple[int, int]] = {0: (0, 0)}

            def map_mapping(
                src_id: int,
                src_mappings: dict[int, Mapping] = src_mappings,
                st: Sequence[str] = st,
                sidx: list[int] = sidx,
                mmap: dict[int, tuple[int, int]] = mmap,
            ) -> tuple[int, int]:
                m = src_mappings[src_id]
                size = m.memory_limit - m.memory_start
                size = (size + 0xFFF) & ~0xFFF
                mkey = (size, m.file_offset, st[m.build_id] or st[m.filename])
                mid = mapping_keys.get(mkey)
                if mid is None:
                    mid = mapping_keys[mkey] = len(mappings) + 1
                    mappings.append(
                        Mapping(
                            id=mid,
                            memory_start=m.memory_start,
                            memory_limit=m.memory_limit,
                            file_offset=m.file_offset,
                            filename=sidx[m.filename],
                            build_id=sidx[m.build_id],
                            has_functions=m.has_functions,
                            has_filenames=m.has_filenames,
                            has_line_numbers=m.has_line_numbers,
                            has_inline_frames=m.has_inline_frames,
                        )
                    )
                    result = (mid, 0)
                else:
                    result = (mid, mappings[mid - 1].memory_start - m.memory_start)
                mmap[src_id] = result
                return result

            if not mappings and p.mapping:
                map_mapping(p.mapping[0].id)

            lmap: dict[int, int] = {}
            for loc in p.location:
                md = mmap.get(loc.mapping_id)
                mid, delta = md if md is not None else map_mapping(loc.mapping_id)
                addr = (loc.address + delta) & _U64
                lines = tuple((fmap[ln.function_id], ln.line, ln.column) for ln in loc.line)
                rel = addr - mappings[mid - 1].memory_start if mid else addr
                lkey = (mid, rel, lines, loc.is_folded)
                lid = location_keys.get(lkey)
                if lid is None:
                    lid = location_keys[lkey] = len(locations) + 1
                    locations.append((mid, addr, lines, loc.is_folded))
                lmap[loc.id] = lid
        except (KeyError, IndexError) as exc:
            raise _bad(f"profile {pi}: dangling index {exc}") from None

        lget = lmap.__getitem__
        scale = factors[pi]
        samples = p.sample
        try:
            if not any(f != 1 for f in scale) and not any(map(_LABEL, samples)):
                _add_plain(acc, samples, lget, nt, pi)
                continue
            # Labels or unit scaling: one sample at a time, and the output built as messages.
            acc_get = acc.get
            labelled = True
            for sample in samples:
                key: object = tuple(map(lget, sample.location_id))
                if sample.label:
                    key = (key, _label_key(sample.label, sidx))
                if len(sample.value) != nt:
                    raise _bad(f"profile {pi}: a sample has {len(sample.value)} values, expected {nt}")
                vals = list(map(int.__mul__, sample.value, scale))
                cur = acc_get(key)
                acc[key] = vals if cur is None else list(map(add, cur, vals))
        except (KeyError, IndexError) as exc:
            raise _bad(f"profile {pi}: sample refers to missing location/string {exc}") from None

    out = Profile()
    out.sample_type.extend(ValueType(type=intern(t), unit=intern(u)) for t, u in out_types)
    if out_period_type is not None:
        out.period_type.CopyFrom(ValueType(type=intern(out_period_type[0]), unit=intern(out_period_type[1])))
        out.period = out_period
    if comment:
        comments.append(intern(comment))
    out.comment.extend(comments)
    out.time_nanos = time_nanos
    out.duration_nanos = duration
    out.drop_frames, out.keep_frames = drop_frames, keep_frames
    out.default_sample_type, out.doc_url = default_type, doc_url
    out.mapping.extend(mappings)
    out.function.extend(
        Function(id=fid, name=k[0], system_name=k[1], filename=k[2], start_line=k[3])
        for k, fid in functions.items()
    )
    out.location.extend(
        Location(
            id=i,
            mapping_id=mid,
            address=addr,
            is_folded=folded,
            line=[Line(function_id=f, line=ln, column=col) for f, ln, col in lines],
        )
        for i, (mid, addr, lines, folded) in enumerate(locations, 1)
    )
    out.string_table.extend(strings)
    if not labelled:
        return out, _encode_samples(acc, len(locations))
    samples = out.sample
    for key, total in acc.items():
        if not any(total):
            continue
        if key and type(key[0]) is tuple:  # type: ignore[index]
            locs, labels = cast(tuple[tuple[int, ...], tuple[tuple[int, int, int, int], ...]], key)
            samples.add(location_id=locs, value=total, label=[_label(lab) for lab in labels])
        else:
            samples.add(location_id=key, value=total)
    return out, b""


def _uvarint(n: int) -> bytes:
    n &= _U64  # int64 values: two's complement, as protobuf encodes them
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode_samples(acc: dict[object, Sequence[int]], n_locations: int) -> bytes:
    """Encode ``Profile.sample`` entries (field 2) for label-free samples, by whole-list operations.

    Building one upb message per sample costs ~2 µs each; here each piece of every record (location
    ids through a table of their varints, values through a cache, length prefixes) is produced by
    C-level ``map``/``join``, and only distinct value tuples are encoded in Python.
    """
    keys = cast(list[tuple[int, ...]], list(acc.keys()))
    totals = list(acc.values())
    keep = list(map(any, totals))
    if not all(keep):  # all-zero samples are dropped, as Go does
        keys = list(compress(keys, keep))
        totals = list(compress(totals, keep))
    if not keys:
        return b""
    venc = [_uvarint(i) for i in range(n_locations + 1)]
    locb = list(map(b"".join, map(partial(map, venc.__getitem__), keys)))
    value_tuples = list(map(tuple, totals))
    vcache: dict[tuple[int, ...], bytes] = {}
    for t in set(value_tuples):
        payload = b"".join(map(_uvarint, t))
        vcache[t] = b"\x12" + _uvarint(len(payload)) + payload
    valb = list(map(vcache.__getitem__, value_tuples))
    llens = list(map(len, locb))
    lenc = [_uvarint(i) for i in range(max(llens) + 1)]
    llen_enc = list(map(lenc.__getitem__, llens))
    plens = list(map(sum, zip(repeat(1), map(len, llen_enc), llens, map(len, valb), strict=False)))
    top = max(plens)
    lenc.extend(_uvarint(i) for i in range(len(lenc), top + 1))
    plen_enc = map(lenc.__getitem__, plens)
    return b"".join(
        map(b"".join, zip(repeat(b"\x12"), plen_enc, repeat(b"\x0a"), llen_enc, locb, valb, strict=False))
    )


_LOCS = attrgetter("location_id")
_VALUE = attrgetter("value")
_LABEL = attrgetter("label")


def _add_plain(
    acc: dict[object, Sequence[int]], samples: Iterable[Sample], lget: Callable[[int], int], nt: int, pi: int
) -> None:
    """Add samples without labels or scaling, with whole-list operations that run in C.

    Keys are tuples of remapped location ids; the values containers are kept as they are (no copy)
    unless the stack was seen before, in which case the sums are computed for those keys only.
    """
    keys = list(map(tuple, map(partial(map, lget), map(_LOCS, samples))))
    values = list(map(_VALUE, samples))
    counts = set(map(len, values))
    if counts and counts != {nt}:
        raise _bad(f"profile {pi}: samples have {sorted(counts)} values, expected {nt}")
    batch: dict[object, Sequence[int]] = dict(zip(keys, values, strict=True))
    if len(batch) != len(keys):  # the same stack twice inside one profile: sum those
        batch = {}
        for key, vals in zip(keys, values, strict=True):
            cur = batch.get(key)
            batch[key] = vals if cur is None else list(map(add, cur, vals))
    common = batch.keys() & acc.keys()
    sums = {k: list(map(add, acc[k], batch[k])) for k in common}
    acc.update(batch)
    acc.update(sums)


def _label_key(labels: Iterable[object], sidx: list[int]) -> tuple[tuple[int, int, int, int], ...]:
    return tuple(
        sorted(
            (sidx[lab.key], sidx[lab.str], lab.num, sidx[lab.num_unit])  # type: ignore[attr-defined]
            for lab in labels
        )
    )


def _label(t: tuple[int, int, int, int]) -> dict[str, int]:
    return {"key": t[0], "str": t[1], "num": t[2], "num_unit": t[3]}


# --------------------------------------------------------------------------------------------------
# Reading a profile: frames, per-function totals


def frames(profile: Profile) -> dict[int, tuple[str, ...]]:
    """Location id -> function names of its frames, leaf (innermost inlined) first."""
    st = profile.string_table
    names = {f.id: st[f.name] for f in profile.function}
    return {
        loc.id: tuple(names.get(ln.function_id, "?") for ln in loc.line) or ("?",) for loc in profile.location
    }


def stacks(profile: Profile, index: int) -> Iterable[tuple[tuple[str, ...], int]]:
    """(function names leaf first, value) per sample, for sample type ``index``."""
    fr = frames(profile)
    for sample in profile.sample:
        names: list[str] = []
        for lid in sample.location_id:
            names.extend(fr.get(lid, ("?",)))
        yield tuple(names), sample.value[index]


@dataclass(frozen=True)
class FunctionStat:
    name: str
    flat: int
    cum: int


def function_totals(profile: Profile, index: int | None = None) -> dict[str, FunctionStat]:
    """Flat (leaf) and cumulative (anywhere on the stack, counted once) totals per function name."""
    idx = sample_index(profile) if index is None else index
    flat: dict[str, int] = {}
    cum: dict[str, int] = {}
    for names, value in stacks(profile, idx):
        if not names or not value:
            continue
        flat[names[0]] = flat.get(names[0], 0) + value
        for name in set(names):
            cum[name] = cum.get(name, 0) + value
    return {n: FunctionStat(n, flat.get(n, 0), c) for n, c in cum.items()}


def top_functions(profile: Profile, n: int = 20, index: int | None = None) -> list[FunctionStat]:
    """The ``n`` functions with the largest flat value (ties broken by cumulative value)."""
    stats = function_totals(profile, index)
    return sorted(stats.values(), key=lambda s: (-s.flat, -s.cum, s.name))[:n]


# Re-exported message types, for callers building profiles by hand.
__all__ += ["Function", "Line", "Location", "Mapping", "Sample", "ValueType"]
