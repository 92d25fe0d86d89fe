"""pprof codec: parse and write gzip-compressed pprof protobuf, validate it, merge profiles.

The format is Go's (``github.com/google/pprof/proto/profile.proto``); the generated module is
committed under ``onair.pgo._pb``. ``merge`` follows ``go tool pprof -proto a b > merged``: the same
identity rules for functions, mappings, locations and samples, values of identical stacks summed, units
scaled to the smallest compatible unit, earliest start time and summed duration. Every malformed input
raises :class:`ProfileError` (with a ``kind``) rather than crashing.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from onair.pgo import _samples
from onair.pgo._pb.profile_pb2 import Function, Label, Line, Location, Mapping, Profile, Sample, ValueType

_inflate: Any = zlib
try:  # ISA-L inflate: the same API and output as zlib's, about twice as fast
    from isal import isal_zlib

    _inflate = isal_zlib
except ImportError:  # pragma: no cover
    pass
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate.error)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECOMPRESSED",
    "FunctionStat",
    "NameStacks",
    "Profile",
    "ProfileError",
    "RawProfile",
    "dumps",
    "frames",
    "function_totals",
    "gzip_members",
    "load_raw",
    "load_raw_all",
    "loads",
    "merge",
    "merge_gzip",
    "merge_serialized",
    "name_stacks",
    "raw",
    "sample_index",
    "sample_types",
    "top_functions",
    "top_of",
    "totals_of",
    "validate",
    "warm_up",
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
        d = _inflate.decompressobj(16 + zlib.MAX_WBITS)
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
        except _INFLATE_ERRORS as exc:
            raise ProfileError("corrupt", f"corrupt gzip data: {exc}") from None
        if not d.eof:
            raise ProfileError("truncated", "gzip stream is truncated")
        rest = d.unused_data
        if rest and not rest.startswith(_GZIP_MAGIC):
            raise ProfileError("corrupt", "trailing garbage after the gzip stream")
    return b"".join(out)


def _decompress(data: bytes, max_bytes: int, max_decompressed: int, require_gzip: bool) -> bytes:
    if len(data) > max_bytes:
        raise ProfileError("too_large", f"profile is {len(data)} bytes, the limit is {max_bytes}")
    if data.startswith(_GZIP_MAGIC):
        return _gunzip(data, max_decompressed)
    if require_gzip:
        raise ProfileError("not_gzip", "not gzip-compressed (pprof profiles are gzip files)")
    if len(data) > max_decompressed:
        raise ProfileError("too_large", f"profile is more than {max_decompressed} bytes")
    return data


def _not_pprof(exc: object) -> ProfileError:
    return ProfileError("not_pprof", f"not a pprof protobuf: {exc}")


def _check_header(header: Profile) -> None:
    if not header.string_table or header.string_table[0] != "":
        raise ProfileError("not_pprof", "not a pprof profile: string table missing or not starting with ''")
    if not header.sample_type:
        raise ProfileError("not_pprof", "not a pprof profile: no sample types")


@dataclass
class RawProfile:
    """A profile parsed for merging and checking: everything but the samples as a :class:`Profile`
    message (``header``, small), the samples decoded into numpy arrays (``samples``) without one
    protobuf message per sample. Made by :func:`load_raw` or :func:`raw`; accepted by :func:`merge`,
    :func:`merge_serialized`, :func:`merge_gzip` and :func:`validate`."""

    header: Profile
    samples: _samples.Samples

    def __len__(self) -> int:
        """The number of samples."""
        return len(self.samples)


def _parse_raw(raw: bytes) -> RawProfile:
    """Parse serialised (not compressed) pprof; only the wire format is checked here."""
    try:
        header_bytes, buf, spans = _samples.split_profile(raw)
        header = Profile.FromString(header_bytes)
        _check_header(header)
        samples = _samples.decode(buf, spans)
    except (_samples.WireError, DecodeError) as exc:
        raise _not_pprof(exc) from None
    except RecursionError:  # pragma: no cover - upb reports depth as DecodeError
        raise _not_pprof("nested too deeply") from None
    return RawProfile(header, samples)


def raw(profile: Profile | RawProfile) -> RawProfile:
    """The :class:`RawProfile` of a profile message (serialised and re-read in C, no per-sample work)."""
    if isinstance(profile, RawProfile):
        return profile
    return _parse_raw(profile.SerializeToString())


def load_raw(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    require_gzip: bool = True,
    check: bool = True,
) -> RawProfile:
    """Like :func:`loads`, but returns a :class:`RawProfile` (samples as arrays): the fast way to
    check an upload or read profiles to merge."""
    parsed = _parse_raw(_decompress(data, max_bytes, max_decompressed, require_gzip))
    if check:
        validate(parsed)
    return parsed


def load_raw_all(
    blobs: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    require_gzip: bool = True,
    check: bool = True,
    threads: int | None = None,
) -> list[RawProfile | ProfileError]:
    """:func:`load_raw` of each blob, a few at a time on threads (decompression and the array work
    release the GIL); an unusable blob gives its :class:`ProfileError` in its place."""

    def one(data: bytes) -> RawProfile | ProfileError:
        try:
            return load_raw(
                data,
                max_bytes=max_bytes,
                max_decompressed=max_decompressed,
                require_gzip=require_gzip,
                check=check,
            )
        except ProfileError as exc:
            return exc

    return list(_samples.parallel_map(one, blobs, threads))


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
    raw_bytes = _decompress(data, max_bytes, max_decompressed, require_gzip)
    if check:
        validate(_parse_raw(raw_bytes))
    try:
        profile = Profile.FromString(raw_bytes)
    except DecodeError as exc:
        raise _not_pprof(exc) from None
    except RecursionError:  # pragma: no cover - upb reports depth as DecodeError
        raise _not_pprof("nested too deeply") from None
    _check_header(profile)
    return profile


def dumps(profile: Profile, *, level: int = 6) -> bytes:
    """Serialise and gzip-compress (the form Go's toolchain reads as ``default.pgo``)."""
    return gzip.compress(profile.SerializeToString(), compresslevel=level, mtime=0)


def _bad(message: str) -> ProfileError:
    return ProfileError("inconsistent", message)


def validate(profile: Profile | RawProfile) -> None:
    """Check the indices of a profile the way Go's parser does; raise ``ProfileError('inconsistent')``
    (or ``not_pprof`` for a message that is not pprof at all)."""
    parsed = raw(profile)
    location_ids = _check_tables(parsed.header)
    _check_samples(parsed, location_ids)


def _check_tables(profile: Profile) -> list[int]:
    """Check every index outside the samples; return the location ids."""
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
    mapping_ids = _unique_ids(profile.mapping, "mapping")
    for m in profile.mapping:
        s(m.filename, "mapping.filename")
        s(m.build_id, "mapping.build_id")
    function_ids = _unique_ids(profile.function, "function")
    for f in profile.function:
        s(f.name, "function.name")
        s(f.system_name, "function.system_name")
        s(f.filename, "function.filename")
    _unique_ids(profile.location, "location")
    for loc in profile.location:
        if loc.mapping_id and loc.mapping_id not in mapping_ids:
            raise _bad(f"location {loc.id} refers to missing mapping {loc.mapping_id}")
        for ln in loc.line:
            if ln.function_id and ln.function_id not in function_ids:
                raise _bad(f"location {loc.id} refers to missing function {ln.function_id}")
    return [loc.id for loc in profile.location]


def _unique_ids(items: Iterable[Any], kind: str) -> set[int]:
    """The ids of ``items`` (mappings, functions or locations); zero or repeated is an error."""
    ids: set[int] = set()
    for item in items:
        if item.id == 0 or item.id in ids:
            raise _bad(f"{kind} id {item.id} is zero or repeated")
        ids.add(item.id)
    return ids


def _check_values(parsed: RawProfile, what: str = "") -> None:
    nt = len(parsed.header.sample_type)
    vc = parsed.samples.value_counts
    if len(vc) and not (vc == nt).all():
        counts = sorted(set(np.unique(vc).tolist()))
        raise _bad(f"{what}samples have {counts} values, the profile has {nt} sample types")


def _check_samples(parsed: RawProfile, location_ids: list[int]) -> None:
    _check_values(parsed)
    ids = parsed.samples.ids
    old, new = _id_map(location_ids, range(1, len(location_ids) + 1))
    _check_ids(_samples.remap(ids, old, new, np.empty(len(ids), np.uint32)))
    n = len(parsed.header.string_table)
    for labels in parsed.samples.labels.values():
        for data in labels:
            lab = _parse_label(data)
            for idx, what in (
                (lab.key, "label.key"),
                (lab.str, "label.str"),
                (lab.num_unit, "label.num_unit"),
            ):
                if not 0 <= idx < n:
                    raise _bad(f"{what}: string index {idx} out of range (table has {n})")


def _id_map(old: Iterable[int], new: Iterable[int]) -> tuple[NDArray[np.uint64], NDArray[np.uint32]]:
    return np.fromiter(old, np.uint64), np.fromiter(new, np.uint32)


def _check_ids(missing: NDArray[np.uint64], what: str = "") -> None:
    if len(missing):
        raise _bad(f"{what}samples refer to missing location(s) {missing[:5].tolist()}")


def _parse_label(data: bytes) -> Label:
    try:
        return Label.FromString(data)
    except DecodeError as exc:
        raise _not_pprof(f"label: {exc}") from None


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


AnyProfile = Profile | RawProfile


def merge(profiles: Sequence[AnyProfile], *, comment: str | None = None) -> Profile:
    """Merge profiles (see :func:`_merge`) into a :class:`Profile` message."""
    out, section = _merge(profiles, comment)
    if section:
        out.MergeFromString(section)
    return out


def merge_serialized(profiles: Sequence[AnyProfile], *, comment: str | None = None) -> bytes:
    """:func:`merge`, returned serialised (not compressed): no message is built per sample."""
    return _merge(profiles, comment, head=True)[1]


def merge_gzip(profiles: Sequence[AnyProfile], *, comment: str | None = None, level: int = 1) -> bytes:
    """:func:`merge`, returned as a gzip pprof file (``default.pgo``). ``level`` 1 by default, as Go's
    ``profile.Write`` (BestSpeed)."""
    return gzip_members(merge_serialized(profiles, comment=comment), level=level)


_MEMBER = 8 << 20


def gzip_members(data: bytes, *, level: int = 1) -> bytes:
    """Gzip ``data`` as consecutive gzip members of 8 MiB input each, compressed on a few threads
    (zlib releases the GIL). A multi-member file is one gzip stream to every reader: Go's
    ``gzip.Reader`` (multistream by default, as ``go tool pprof`` and the compiler use it), Python's
    ``gzip`` and :func:`loads`. Deterministic (mtime 0)."""
    if len(data) <= _MEMBER:
        return gzip.compress(data, compresslevel=level, mtime=0)
    view = memoryview(data)
    chunks = [view[i : i + _MEMBER] for i in range(0, len(data), _MEMBER)]
    return b"".join(_samples.parallel_map(lambda c: gzip.compress(c, compresslevel=level, mtime=0), chunks))


def _merge(inputs: Sequence[AnyProfile], comment: str | None, *, head: bool = False) -> tuple[Profile, bytes]:
    """Merge profiles into one, like ``go tool pprof -proto a b ...``: the merged profile without its
    samples, and the samples serialised (preceded by that profile serialised, with ``head``: the
    whole result in one buffer).

    Functions, mappings and locations are identified by content (not by their ids), identical stacks
    (same locations and labels) have their values summed, zero samples are dropped. Sample types must
    have the same names; units are scaled to the smallest compatible unit (``ProfileError`` with kind
    ``incompatible`` otherwise); the period type must match and the merged period is the largest.
    ``time_nanos`` is the earliest start and ``duration_nanos`` the sum of the durations.
    """
    if not inputs:
        raise ProfileError("empty", "nothing to merge")
    t = time.perf_counter()
    parsed = [raw(p) for p in inputs]
    profiles = [p.header for p in parsed]
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
    lmaps: list[dict[int, int]] = []
    sidxs: list[list[int]] = []
    labelled: dict[LabelledKey, NDArray[np.int64]] = {}
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

        lmaps.append(lmap)
        sidxs.append(sidx)

    t = _samples.phase("tables", t)
    stacks = _samples.Stacks.allocate([p.samples for p in parsed], nt)

    def prepare(k: int) -> list[tuple[LabelledKey, NDArray[np.int64]]]:
        return _prepare_samples(stacks, k, parsed[k], lmaps[k], factors[k], sidxs[k])

    for lab in _samples.parallel_map(prepare, range(len(parsed))):
        for key, vals in lab:
            cur = labelled.get(key)
            labelled[key] = vals if cur is None else cur + vals

    t = _samples.phase("remap", t)
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
    _samples.phase("tables", t)
    section = _samples.merge(stacks, len(locations), out.SerializeToString() if head else b"")
    if labelled:
        extra = Profile()
        for (locs, labels), total in labelled.items():
            if total.any():
                extra.sample.add(
                    location_id=locs, value=total.tolist(), label=[_label(lab) for lab in labels]
                )
        section += extra.SerializeToString()
    return out, section


LabelledKey = tuple[tuple[int, ...], tuple[tuple[int, int, int, int], ...]]


def _prepare_samples(
    stacks: _samples.Stacks,
    k: int,
    parsed: RawProfile,
    lmap: dict[int, int],
    scale: list[int],
    sidx: list[int],
) -> list[tuple[LabelledKey, NDArray[np.int64]]]:
    """Profile ``k``'s samples into ``stacks`` with merged location ids and scaled values. Labelled
    samples are merged apart: returned as (stack and labels, values), their values in ``stacks``
    zeroed."""
    s = parsed.samples
    _check_values(parsed, f"profile {k}: ")
    old, new = _id_map(lmap, lmap.values())
    _check_ids(stacks.fill(k, s, old, new, scale), f"profile {k}: ")
    lab: list[tuple[LabelledKey, NDArray[np.int64]]] = []
    if not s.labels:
        return lab
    first = int(stacks.bounds[k])
    values = stacks.values[first : int(stacks.bounds[k + 1])]
    try:
        for i in sorted(s.labels):
            ids = stacks.ids[stacks.offsets[first + i] : stacks.offsets[first + i + 1]]
            labels = _label_key([_parse_label(b) for b in s.labels[i]], sidx)
            lab.append(((tuple(ids.tolist()), labels), values[i].copy()))
            values[i] = 0
    except IndexError as exc:
        raise _bad(f"profile {k}: label refers to a missing string {exc}") from None
    return lab


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


@dataclass
class NameStacks:
    """Every sample's stack as function names, root first: sample ``i`` has the frames
    ``names[frames[offsets[i]:offsets[i + 1]]]`` (inlined frames apart) and ``values[i]``, the
    value of one sample type. Made by :func:`name_stacks` without one object per sample."""

    names: list[str]
    frames: NDArray[np.int32]
    offsets: NDArray[np.int64]
    values: NDArray[np.int64]


def name_stacks(profile: Profile | RawProfile, index: int) -> NameStacks:
    """The samples of ``profile`` as function-name stacks, for sample type ``index`` (a location
    that is missing or has no lines is one frame ``?``, as in :func:`frames`)."""
    parsed = raw(profile)
    _check_values(parsed)
    header, s = parsed.header, parsed.samples
    by_name: dict[str, int] = {"?": 0}
    loc_ids: list[int] = []
    loc_names: list[int] = []
    loc_off = [0]
    for lid, names in frames(header).items():
        loc_ids.append(lid)
        loc_names.extend(by_name.setdefault(n, len(by_name)) for n in names)
        loc_off.append(len(loc_names))
    loc_index = np.empty(len(s.ids), np.uint32)
    old, new = _id_map(loc_ids, range(1, len(loc_ids) + 1))
    missing = _samples.remap(s.ids, old, new, loc_index)
    if len(missing):  # unknown locations: one more location each, named "?"
        old = np.concatenate([old, missing])
        new = np.arange(1, len(old) + 1, dtype=np.uint32)
        loc_off.extend(range(len(loc_names) + 1, len(loc_names) + len(missing) + 1))
        loc_names.extend([0] * len(missing))
        _samples.remap(s.ids, old, new, loc_index)
    frames_, offsets = _samples.name_frames(
        loc_index, s.offsets, np.array(loc_off, np.int64), np.array(loc_names, np.int32)
    )
    values = s.values.view(np.int64).reshape(len(s), -1)[:, index] if len(s) else np.zeros(0, np.int64)
    return NameStacks(list(by_name), frames_, offsets, np.ascontiguousarray(values))


def stacks(profile: Profile | RawProfile, index: int) -> Iterable[tuple[tuple[str, ...], int]]:
    """(function names leaf first, value) per sample, for sample type ``index``."""
    ns = name_stacks(profile, index)
    for i, value in enumerate(ns.values.tolist()):
        yield (
            tuple(ns.names[f] for f in reversed(ns.frames[ns.offsets[i] : ns.offsets[i + 1]].tolist())),
            value,
        )


@dataclass(frozen=True)
class FunctionStat:
    name: str
    flat: int
    cum: int


def function_totals(profile: Profile | RawProfile, index: int | None = None) -> dict[str, FunctionStat]:
    """Flat (leaf) and cumulative (anywhere on the stack, counted once) totals per function name."""
    header = profile.header if isinstance(profile, RawProfile) else profile
    idx = sample_index(header) if index is None else index
    return totals_of(name_stacks(profile, idx))


def totals_of(ns: NameStacks) -> dict[str, FunctionStat]:
    """:func:`function_totals` of name stacks."""
    flat, cum, seen = _samples.function_totals(ns.frames, ns.offsets, ns.values, len(ns.names))
    return {
        ns.names[i]: FunctionStat(ns.names[i], int(flat[i]), int(cum[i]))
        for i in np.flatnonzero(seen).tolist()
    }


def top_functions(profile: Profile | RawProfile, n: int = 20, index: int | None = None) -> list[FunctionStat]:
    """The ``n`` functions with the largest flat value (ties broken by cumulative value)."""
    return top_of(function_totals(profile, index), n)


def top_of(stats: dict[str, FunctionStat], n: int) -> list[FunctionStat]:
    return sorted(stats.values(), key=lambda s: (-s.flat, -s.cum, s.name))[:n]


def warm_up() -> float:
    """Compile every kernel of the codec and the merge (or load them from numba's on-disk cache,
    ``NUMBA_CACHE_DIR``) by loading, merging and reading two tiny profiles, one with small location
    ids and one with ids wider than 32 bits; return the seconds it took. A long-running service calls it at
    start-up, in a thread, so that its first request does not pay for the compilation."""
    t = time.perf_counter()

    def tiny(loc_id: int) -> bytes:
        p = Profile(string_table=["", "samples", "count", "f"], sample_type=[ValueType(type=1, unit=2)])
        p.function.add(id=1, name=3)
        p.location.add(id=loc_id, line=[Line(function_id=1)])
        p.sample.add(location_id=[loc_id, loc_id], value=[1])
        return dumps(p, level=1)

    merged = merge_serialized([load_raw(tiny(1)), load_raw(tiny(1 << 40))])
    ns = name_stacks(load_raw(merged, require_gzip=False, check=False), 0)
    totals_of(ns)
    _samples.call_tree(ns.frames, ns.offsets, ns.values, len(ns.names), 0.0)  # the profstore's view
    return time.perf_counter() - t


# Re-exported message types, for callers building profiles by hand.
__all__ += ["Function", "Line", "Location", "Mapping", "Sample", "ValueType"]
