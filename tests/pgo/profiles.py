"""Helpers for the PGO tests: small hand-made profiles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onair.pgo.pprof import Function, Line, Location, Mapping, Profile, ValueType, dumps

DATA = Path(__file__).parent / "data"


def make_profile(
    stacks: Sequence[tuple[Sequence[str], Sequence[int]]],
    *,
    types: Sequence[tuple[str, str]] = (("samples", "count"), ("cpu", "nanoseconds")),
    period: tuple[str, str, int] | None = ("cpu", "nanoseconds", 10_000_000),
    time_nanos: int = 1_000,
    duration_nanos: int = 10_000,
    id_offset: int = 0,
    labels: Sequence[dict[str, str]] | None = None,
) -> Profile:
    """A profile whose samples are ``(function names leaf first, values)``; one location per
    function; ids start at ``id_offset + 1`` so different profiles use different ids."""
    p = Profile()
    strings: dict[str, int] = {"": 0}

    def s(x: str) -> int:
        return strings.setdefault(x, len(strings))

    p.mapping.append(Mapping(id=id_offset + 1, memory_start=0x1000, memory_limit=0x9000, filename=s("bin")))
    funcs: dict[str, int] = {}
    for names, _ in stacks:
        for name in names:
            if name not in funcs:
                fid = id_offset + len(funcs) + 1
                funcs[name] = fid
                p.function.append(Function(id=fid, name=s(name), filename=s("main.go")))
                # No address: a location is identified by its line (function) alone.
                p.location.append(Location(id=fid, line=[Line(function_id=fid, line=7)]))
    for i, (names, values) in enumerate(stacks):
        sample = p.sample.add(location_id=[funcs[n] for n in names], value=list(values))
        if labels is not None:
            for k, v in labels[i].items():
                sample.label.add(key=s(k), str=s(v))
    p.sample_type.extend(ValueType(type=s(t), unit=s(u)) for t, u in types)
    if period is not None:
        p.period_type.CopyFrom(ValueType(type=s(period[0]), unit=s(period[1])))
        p.period = period[2]
    p.time_nanos = time_nanos
    p.duration_nanos = duration_nanos
    p.string_table.extend(strings)
    return p


def gz(p: Profile) -> bytes:
    return dumps(p)
