"""Synthetic CPU profiles shaped like Go's, for the benchmark and the tests.

A fixed "binary" (functions in a random call graph, several program counters per function, a few
inlined frames) is shared by all profiles of one seed, as for one service's replicas; each profile
draws its own stacks (deep random walks down the call graph), so merging them both sums identical
stacks and adds new ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from onair.pgo.pprof import Function, Line, Location, Mapping, Profile, ValueType, dumps

PERIOD_NS = 10_000_000


@dataclass
class Binary:
    names: list[str]
    callees: list[list[int]]
    locations: list[list[int]]  # function index -> location ids
    profile: Profile  # tables only (strings, mappings, functions, locations)


def make_binary(n_functions: int = 300, pcs_per_function: int = 6, seed: int = 1) -> Binary:
    rng = random.Random(seed)
    pkgs = ["main", "net/http", "encoding/json", "onair/stream", "onair/ingest", "runtime", "sync", "bytes"]
    names = ["runtime.main", "main.main"] + [
        f"{rng.choice(pkgs)}.{rng.choice(['handle', 'encode', 'decode', 'read', 'write', 'serve'])}"
        f"{rng.choice(['Frame', 'Chunk', 'Request', 'Segment', 'Header', 'Batch'])}{i}"
        for i in range(n_functions - 2)
    ]
    callees: list[list[int]] = []
    for i in range(n_functions):
        later = list(range(i + 1, n_functions))
        callees.append(sorted(rng.sample(later, min(len(later), rng.randint(2, 6)))) if later else [])
    p = Profile()
    strings: dict[str, int] = {"": 0}

    def s(x: str) -> int:
        return strings.setdefault(x, len(strings))

    p.mapping.append(
        Mapping(
            id=1,
            memory_start=0x400000,
            memory_limit=0x400000 + 0x2000000,
            filename=s("/usr/local/bin/onair-edge"),
            build_id=s(f"{seed:040x}"),
            has_functions=True,
            has_filenames=True,
            has_line_numbers=True,
            has_inline_frames=True,
        )
    )
    locations: list[list[int]] = []
    lid = 0
    for fi, name in enumerate(names):
        file = s(f"/src/{name.rsplit('.', 1)[0]}/file{fi % 17}.go")
        p.function.append(
            Function(id=fi + 1, name=s(name), system_name=s(name), filename=file, start_line=fi * 10)
        )
        ids = []
        for pc in range(pcs_per_function):
            lid += 1
            lines = [Line(function_id=fi + 1, line=fi * 10 + pc + 1)]
            if pc == 0 and callees[fi]:  # an inlined callee, as Go's inliner leaves behind
                callee = callees[fi][0]
                lines.insert(0, Line(function_id=callee + 1, line=callee * 10 + 1))
            p.location.append(
                Location(id=lid, mapping_id=1, address=0x401000 + fi * 0x400 + pc * 0x10, line=lines)
            )
            ids.append(lid)
        locations.append(ids)
    p.string_table.extend(strings)
    return Binary(names, callees, locations, p)


def make_profile(
    binary: Binary,
    samples: int,
    *,
    seed: int = 0,
    start_ns: int = 1_700_000_000_000_000_000,
    duration_ns: int = 10_000_000_000,
    max_depth: int = 48,
) -> Profile:
    """A CPU profile of ``binary`` with ``samples`` stacks (mostly distinct), Go's sample types."""
    rng = random.Random(seed)
    p = Profile()
    p.CopyFrom(binary.profile)
    st = {s: i for i, s in enumerate(p.string_table)}
    extra = ["samples", "count", "cpu", "nanoseconds"]
    for x in extra:
        if x not in st:
            st[x] = len(st)
            p.string_table.append(x)
    p.sample_type.extend(
        [ValueType(type=st["samples"], unit=st["count"]), ValueType(type=st["cpu"], unit=st["nanoseconds"])]
    )
    p.period_type.CopyFrom(ValueType(type=st["cpu"], unit=st["nanoseconds"]))
    p.period = PERIOD_NS
    p.time_nanos = start_ns
    p.duration_nanos = duration_ns
    callees, locs = binary.callees, binary.locations
    seen: dict[tuple[int, ...], int] = {}
    for _ in range(samples):
        stack = [locs[0][0], locs[1][rng.randrange(len(locs[1]))]]
        f = 1
        depth = rng.randint(8, max_depth)
        while len(stack) < depth and callees[f]:
            f = rng.choice(callees[f])
            pcs = locs[f]
            stack.append(pcs[rng.randrange(len(pcs))])
        key = tuple(reversed(stack))
        seen[key] = seen.get(key, 0) + rng.choice((1, 1, 1, 2, 3))
    for key, n in seen.items():
        p.sample.add(location_id=key, value=[n, n * PERIOD_NS])
    return p


def make_profiles(count: int, target_bytes: int, *, seed: int = 1, n_functions: int = 300) -> list[bytes]:
    """``count`` gzip profiles of about ``target_bytes`` each, all of one binary."""
    binary = make_binary(n_functions, seed=seed)
    trial = dumps(make_profile(binary, 2000, seed=seed))
    table = len(dumps(binary.profile))
    per_sample = max(1.0, (len(trial) - table) / 2000)
    n = max(1, int((target_bytes - table) / per_sample))
    return [
        dumps(make_profile(binary, n, seed=seed * 1000 + i, start_ns=1_700_000_000_000_000_000 + i * 10**10))
        for i in range(count)
    ]
