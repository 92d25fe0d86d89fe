"""The pprof codec: round trip, merge against hand-computed totals and against Go's own merge,
unit scaling, and every kind of malformed input."""

from __future__ import annotations

import gzip
from typing import NamedTuple

import pytest

from onair.pgo import pprof
from onair.pgo.pprof import ProfileError

from .profiles import DATA, gz, make_profile


def totals(p: pprof.Profile, index: int = 1) -> dict[str, tuple[int, int]]:
    return {n: (s.flat, s.cum) for n, s in pprof.function_totals(p, index).items()}


def test_round_trip_is_lossless() -> None:
    p = make_profile([(["leaf", "mid", "main"], [3, 30]), (["other", "main"], [1, 10])])
    data = pprof.dumps(p)
    assert data[:2] == b"\x1f\x8b"
    q = pprof.loads(data)
    assert q == p
    assert pprof.dumps(q) == data  # deterministic (mtime 0)


def test_merge_sums_identical_stacks_and_keeps_the_rest() -> None:
    a = make_profile(
        [(["leaf", "mid", "main"], [3, 30]), (["other", "main"], [1, 10])], time_nanos=500, duration_nanos=10
    )
    # Same functions, different ids and a different order: identity is by content.
    b = make_profile(
        [(["other", "main"], [2, 20]), (["leaf", "mid", "main"], [4, 40]), (["leaf", "main"], [5, 50])],
        id_offset=100,
        time_nanos=200,
        duration_nanos=15,
    )
    m = pprof.merge([a, b])
    pprof.validate(m)
    assert len(m.sample) == 3  # leaf<mid<main and other<main summed, leaf<main new
    assert len(m.function) == 4
    stacks = {names: v for names, v in pprof.stacks(m, 1)}
    assert stacks == {("leaf", "mid", "main"): 70, ("other", "main"): 30, ("leaf", "main"): 50}
    assert totals(m) == {"leaf": (120, 120), "mid": (0, 70), "main": (0, 150), "other": (30, 30)}
    assert totals(m, 0)["main"] == (0, 15)
    assert m.time_nanos == 200 and m.duration_nanos == 25
    assert pprof.sample_types(m) == [("samples", "count"), ("cpu", "nanoseconds")]
    assert m.period == 10_000_000
    # The merged profile survives its own round trip.
    assert pprof.loads(pprof.dumps(m)) == m


def test_merge_keeps_labels_apart_and_drops_zero_samples() -> None:
    a = make_profile(
        [(["f", "main"], [1, 10]), (["f", "main"], [2, 20]), (["g", "main"], [0, 0])],
        labels=[{"route": "/a"}, {"route": "/b"}, {}],
    )
    b = make_profile([(["f", "main"], [4, 40])], labels=[{"route": "/a"}], id_offset=50)
    m = pprof.merge([a, b])
    st = m.string_table
    by_label = {st[s.label[0].str]: s.value[1] for s in m.sample if s.label}
    assert by_label == {"/a": 50, "/b": 20}
    assert all(any(s.value) for s in m.sample)
    assert "g" not in totals(m)


def test_merge_scales_compatible_units_to_the_smallest() -> None:
    ns = make_profile([(["f"], [1, 10_000_000])], period=("cpu", "nanoseconds", 10_000_000))
    ms = make_profile(
        [(["f"], [2, 20])],
        types=[("samples", "count"), ("cpu", "milliseconds")],
        period=("cpu", "milliseconds", 10),
        id_offset=9,
    )
    m = pprof.merge([ns, ms])
    assert pprof.sample_types(m)[1] == ("cpu", "nanoseconds")
    assert totals(m)["f"] == (30_000_000, 30_000_000)
    assert totals(m, 0)["f"] == (3, 3)
    assert m.period == 10_000_000


@pytest.mark.parametrize(
    "other",
    [
        {"types": [("alloc_objects", "count"), ("alloc_space", "bytes")]},
        {"types": [("samples", "count")]},
        {"types": [("samples", "count"), ("cpu", "bytes")]},
        {"period": ("space", "bytes", 512)},
    ],
)
def test_merge_refuses_incompatible_profiles(other: dict) -> None:
    cpu = make_profile([(["f"], [1, 10])])
    odd = make_profile([(["f"], [1, 10][: len(other.get("types", [1, 2]))])], **other)
    with pytest.raises(ProfileError) as err:
        pprof.merge([cpu, odd])
    assert err.value.kind == "incompatible"


def test_merge_of_nothing_is_an_error() -> None:
    with pytest.raises(ProfileError, match="nothing to merge"):
        pprof.merge([])


# -- real Go profiles --------------------------------------------------------------------------------


def go(name: str) -> pprof.Profile:
    return pprof.loads((DATA / name).read_bytes())


class NamedFunction(NamedTuple):
    name: str
    start_line: int


def named_functions(p: pprof.Profile) -> list[NamedFunction]:
    return [NamedFunction(p.string_table[f.name], f.start_line) for f in p.function]


def test_go_1_27_profiles_carry_start_lines() -> None:
    a = go("go1.27/a.pb.gz")
    assert any(f.start_line for f in named_functions(a))
    merged = pprof.loads(pprof.merge_gzip([a, go("go1.27/b.pb.gz")]))
    assert {f for f in named_functions(merged) if f.start_line} >= {
        f for f in named_functions(a) if f.start_line
    }


def test_real_go_profiles_parse() -> None:
    a = go("a.pb.gz")
    assert pprof.sample_types(a) == [("samples", "count"), ("cpu", "nanoseconds")]
    hot = {s.name for s in pprof.top_functions(a, 5)}
    assert "crypto/sha256.block" in hot
    assert {"main.hashLoop", "main.sortLoop", "main.fibLoop"} <= set(pprof.function_totals(a))


@pytest.mark.parametrize("folder", [".", "go1.27"])
def test_merge_equals_go_tool_pprof_merge(folder: str) -> None:
    a, b, theirs = go(f"{folder}/a.pb.gz"), go(f"{folder}/b.pb.gz"), go(f"{folder}/merged.pb.gz")
    ours = pprof.merge([a, b])
    for index in (0, 1):
        assert totals(ours, index) == totals(theirs, index)
    assert len(ours.sample) == len(theirs.sample)
    assert len(ours.location) == len(theirs.location)
    assert len(ours.function) == len(theirs.function)
    assert len(ours.mapping) == len(theirs.mapping)
    assert ours.time_nanos == theirs.time_nanos
    assert ours.duration_nanos == theirs.duration_nanos
    assert ours.period == theirs.period

    # Sample for sample: the same multiset of (stack of function names, values).
    def bag(p: pprof.Profile) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
        fr = pprof.frames(p)
        return sorted((tuple(n for lid in s.location_id for n in fr[lid]), tuple(s.value)) for s in p.sample)

    assert bag(ours) == bag(theirs)
    # Go >= 1.20 records each function's start line, and `go build -pgo` refuses a profile without it.
    starts = {(f.name, f.start_line) for p in (ours, theirs) for f in named_functions(p)}
    assert starts == {(f.name, f.start_line) for f in named_functions(theirs)}
    # Merging is associative with Go's result: merged + a == a + a + b.
    assert totals(pprof.merge([theirs, a])) == totals(pprof.merge([a, a, b]))


# -- malformed input ---------------------------------------------------------------------------------


def good() -> bytes:
    return gz(make_profile([(["f", "main"], [1, 10])]))


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "not_gzip"),
        (b"hello, this is not a profile", "not_gzip"),
        (gzip.compress(b"\x00\x01\x02garbage" * 10), "not_pprof"),
        (gzip.compress(b"plain text, gzipped"), "not_pprof"),
        (good()[:-12], "truncated"),
        (good()[:20], "truncated"),
        (good()[:10] + b"\xff" * 40, "corrupt"),
    ],
)
def test_malformed_inputs_raise_a_clear_error(data: bytes, kind: str) -> None:
    with pytest.raises(ProfileError) as err:
        pprof.loads(data)
    assert err.value.kind == kind
    assert str(err.value)


def test_size_limits_cover_input_and_decompressed_size() -> None:
    with pytest.raises(ProfileError) as err:
        pprof.loads(good(), max_bytes=10)
    assert err.value.kind == "too_large"
    bomb = gzip.compress(b"\x00" * (20 << 20))  # 20 MiB of zeros in ~20 KiB
    assert len(bomb) < 100_000
    with pytest.raises(ProfileError) as err:
        pprof.loads(bomb, max_decompressed=1 << 20)
    assert err.value.kind == "too_large"


@pytest.mark.parametrize(
    "breakage", ["sample_location", "function_name", "line_function", "values", "mapping"]
)
def test_inconsistent_indices_are_reported_not_crashed(breakage: str) -> None:
    p = make_profile([(["f", "main"], [1, 10])])
    if breakage == "sample_location":
        p.sample[0].location_id.append(999)
    elif breakage == "function_name":
        p.function[0].name = 999
    elif breakage == "line_function":
        p.location[0].line[0].function_id = 999
    elif breakage == "values":
        p.sample[0].value.append(5)
    else:
        p.location[0].mapping_id = 999
    data = gz(p)
    with pytest.raises(ProfileError) as err:
        pprof.loads(data)
    assert err.value.kind == "inconsistent"
    # merge() checks too, even when parsing skipped the checks.
    with pytest.raises(ProfileError) as err:
        pprof.merge([pprof.loads(data, check=False)])
    assert err.value.kind == "inconsistent"


def test_serialized_and_gzip_merges_equal_the_message_merge() -> None:
    plain = [go("a.pb.gz"), go("b.pb.gz")]
    labelled = [
        make_profile([(["f", "main"], [1, 10]), (["f", "main"], [2, 20])], labels=[{"r": "a"}, {"r": "b"}]),
        make_profile([(["f", "main"], [4, 40])], labels=[{"r": "a"}], id_offset=50),
    ]
    for profiles in (plain, labelled):
        m = pprof.merge(profiles, comment="c")
        assert pprof.Profile.FromString(pprof.merge_serialized(profiles, comment="c")) == m
        assert pprof.loads(pprof.merge_gzip(profiles, comment="c")) == m
        assert m.string_table[m.comment[-1]] == "c"


def test_sample_index_uses_the_default_type_or_the_last() -> None:
    p = make_profile([(["f"], [1, 10])])
    assert pprof.sample_index(p) == 1
    p.default_sample_type = list(p.string_table).index("samples")
    assert pprof.sample_index(p) == 0
    p.default_sample_type = 0  # unset
    assert pprof.sample_index(p, "cpu") == 1
    with pytest.raises(ProfileError):
        pprof.sample_index(p, "alloc_space")


def test_wrong_value_count_is_caught_on_every_merge_path() -> None:
    ms_types = [("samples", "count"), ("cpu", "milliseconds")]
    for labels, types in ((None, None), ([{"k": "v"}], None), (None, ms_types)):
        kw = {"types": types, "period": None} if types else {}
        p = make_profile([(["f"], [1, 10])], labels=labels, **kw)  # type: ignore[arg-type]
        p.sample[0].value.append(3)
        ns = make_profile([(["f"], [1, 1])], period=None, id_offset=5)
        with pytest.raises(ProfileError) as err:
            pprof.merge([ns, p])  # plain, labelled, and scaled (ms -> ns) paths
        assert err.value.kind == "inconsistent"
