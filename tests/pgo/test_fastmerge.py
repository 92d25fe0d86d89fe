"""The vectorised sample codec and merge: every wire form of a sample (packed or not, labels,
unknown fields), exactness under forced hash collisions, bad ids, and a randomized comparison with a
plain reference merge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onair.pgo import _samples, pprof
from onair.pgo.pprof import ProfileError

from .profiles import DATA, make_profile

NAMES = ["main", "f", "g", "h", "k", "leaf"]


def uvarint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(num: int, wt: int, payload: bytes | int) -> bytes:
    tag = uvarint(num << 3 | wt)
    if wt == 0:
        assert isinstance(payload, int)
        return tag + uvarint(payload)
    assert isinstance(payload, bytes)
    return tag + uvarint(len(payload)) + payload


def sample_bytes(
    locs: Sequence[int], values: Sequence[int], labels: Sequence[tuple[int, int]] = (), *, form: int = 0
) -> bytes:
    """A Sample message in one of several legal encodings (form 0 packed, 1 unpacked, 2 mixed and
    reordered with an unknown field, 3 packed in two chunks)."""
    lab = b"".join(field(3, 2, field(1, 0, k) + field(2, 0, v)) for k, v in labels)
    packed_locs = field(1, 2, b"".join(map(uvarint, locs)))
    packed_vals = field(2, 2, b"".join(map(uvarint, values)))
    unpacked_locs = b"".join(field(1, 0, i) for i in locs)
    unpacked_vals = b"".join(field(2, 0, v) for v in values)
    if form == 0:
        return packed_locs + packed_vals + lab
    if form == 1:
        return unpacked_locs + unpacked_vals + lab
    if form == 2:  # values first, an unknown varint field and an unknown fixed64 field in between
        return lab + unpacked_vals + field(9, 0, 77) + b"\x51" + b"\x80" * 8 + unpacked_locs
    half = len(locs) // 2
    return (
        field(1, 2, b"".join(map(uvarint, locs[:half])))
        + packed_vals
        + field(1, 2, b"".join(map(uvarint, locs[half:])))
        + lab
    )


def build(
    stacks: Sequence[tuple[Sequence[str], Sequence[int], dict[str, str]]],
    forms: Sequence[int],
    offset: int = 0,
) -> bytes:
    """Serialised profile whose samples are written by hand in the given forms."""
    p = make_profile(
        [(names, vals) for names, vals, _ in stacks], id_offset=offset, labels=[lab for _, _, lab in stacks]
    )
    st_index = {s: i for i, s in enumerate(p.string_table)}
    names = {p.string_table[f.name]: f.id for f in p.function}
    body = b""
    for (stack, vals, lab), form in zip(stacks, forms, strict=True):
        labels = [(st_index[k], st_index[v]) for k, v in sorted(lab.items())]
        body += field(2, 2, sample_bytes([names[n] for n in stack], vals, labels, form=form))
    del p.sample[:]
    return p.SerializeToString() + body


def bag(p: pprof.Profile) -> Counter[tuple[object, ...]]:
    fr = pprof.frames(p)
    st = p.string_table
    out: Counter[tuple[object, ...]] = Counter()
    for s in p.sample:
        names = tuple(n for lid in s.location_id for n in fr[lid])
        labels = tuple(sorted((st[x.key], st[x.str]) for x in s.label))
        out[(names, labels, tuple(s.value))] += 1
    return out


def reference(profiles: Sequence[Sequence[tuple[Sequence[str], Sequence[int], dict[str, str]]]]) -> Counter:
    acc: dict[tuple[object, ...], list[int]] = {}
    for stacks in profiles:
        for names, vals, lab in stacks:
            key = (tuple(names), tuple(sorted(lab.items())))
            cur = acc.setdefault(key, [0] * len(vals))
            for i, v in enumerate(vals):
                cur[i] += v
    return Counter((k[0], k[1], tuple(v)) for k, v in acc.items() if any(v))


def test_every_wire_form_decodes_to_the_same_profile() -> None:
    stacks = [(["leaf", "f", "main"], [2, 20], {}), (["g", "main"], [1, 10], {"route": "/a"})] * 2
    want = pprof.Profile.FromString(build(stacks, [0] * 4))
    for form in range(4):
        data = build(stacks, [form] * 4)
        parsed = pprof.load_raw(data, require_gzip=False)
        assert len(parsed) == 4
        assert bag(pprof.merge([parsed])) == bag(pprof.merge([want]))
        # loads (the message parser) agrees on every sample
        assert bag(pprof.loads(data, require_gzip=False)) == bag(want)


def test_labels_are_part_of_the_identity() -> None:
    a = [
        (["f", "main"], [1, 10], {"r": "a"}),
        (["f", "main"], [2, 20], {}),
        (["f", "main"], [3, 30], {"r": "b"}),
    ]
    b = [(["f", "main"], [4, 40], {"r": "a"}), (["f", "main"], [5, 50], {})]
    merged = pprof.merge(
        [
            pprof.load_raw(build(a, [0, 1, 2]), require_gzip=False),
            pprof.load_raw(build(b, [1, 0], 40), require_gzip=False),
        ]
    )
    assert bag(merged) == reference([a, b])
    pprof.validate(merged)


def test_forced_hash_collisions_still_give_the_exact_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pprof.loads((DATA / "a.pb.gz").read_bytes()), pprof.loads((DATA / "b.pb.gz").read_bytes())
    normal = pprof.merge_serialized([a, b, a])
    for mask in (0, 1, 0xFF):
        monkeypatch.setattr(_samples, "HASH_MASK", np.uint64(mask))
        collided = pprof.merge_serialized([a, b, a])
        assert bag(pprof.Profile.FromString(collided)) == bag(pprof.Profile.FromString(normal))
        assert len(collided) == len(normal)


@pytest.mark.parametrize("bad_id", [0, 999, 1 << 40, (1 << 64) - 1])
def test_location_ids_out_of_range_are_inconsistent(bad_id: int) -> None:
    stacks = [(["f", "main"], [1, 10], {})]
    p = pprof.Profile.FromString(build(stacks, [0]))
    del p.sample[:]
    data = p.SerializeToString() + field(2, 2, sample_bytes([1, bad_id], [1, 10]))
    with pytest.raises(ProfileError) as err:
        pprof.load_raw(data, require_gzip=False)
    assert err.value.kind == "inconsistent"
    with pytest.raises(ProfileError) as err:
        pprof.merge([pprof.load_raw(data, require_gzip=False, check=False)])
    assert err.value.kind == "inconsistent"


@pytest.mark.parametrize(
    "sample",
    [
        b"\x0a\x05\x01\x02",  # packed ids longer than the sample
        b"\x0a\x02\x01\x82",  # packed ids end inside a varint
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint of 11 bytes
        b"\x0b\x01",  # a group (wire type 3)
        b"\x08",  # a tag without its value
    ],
)
def test_malformed_sample_bytes_are_not_pprof(sample: bytes) -> None:
    p = pprof.Profile.FromString(build([(["f"], [1, 10], {})], [0]))
    del p.sample[:]
    data = p.SerializeToString() + field(2, 2, sample)
    with pytest.raises(ProfileError) as err:
        pprof.load_raw(data, require_gzip=False)
    assert err.value.kind == "not_pprof"


def test_wrong_value_counts_are_inconsistent() -> None:
    p = pprof.Profile.FromString(build([(["f"], [1, 10], {})], [0]))
    del p.sample[:]
    data = p.SerializeToString() + field(2, 2, sample_bytes([1], [1, 2, 3]))
    with pytest.raises(ProfileError) as err:
        pprof.load_raw(data, require_gzip=False)
    assert err.value.kind == "inconsistent"


def test_empty_and_zero_samples() -> None:
    empty = make_profile([])
    assert pprof.merge([empty, empty]).sample == []
    zero = make_profile([(["f"], [0, 0]), ([], [1, 1])])
    m = pprof.merge([zero])
    assert [(list(s.location_id), list(s.value)) for s in m.sample] == [([], [1, 1])]


def test_big_values_and_negative_values_round_trip() -> None:
    big = [(["f"], [-5, (1 << 61) + 3], {}), (["g"], [1 << 40, -(1 << 50)], {})]
    m = pprof.merge([pprof.load_raw(build(big, [0, 1]), require_gzip=False)] * 2)
    assert bag(m) == reference([big, big])


stack_st = st.lists(st.sampled_from(NAMES), min_size=0, max_size=6)
label_st = st.sampled_from([{}, {}, {}, {"r": "a"}, {"r": "b"}, {"r": "a", "s": "x"}])
sample_st = st.tuples(stack_st, st.lists(st.integers(-3, 1000), min_size=2, max_size=2), label_st)
profile_st = st.lists(st.tuples(sample_st, st.integers(0, 3)), min_size=0, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(profile_st, min_size=1, max_size=4), st.booleans())
def test_fast_merge_equals_a_plain_reference_merge(
    profiles: list[list[tuple[tuple[list[str], list[int], dict[str, str]], int]]], collide: bool
) -> None:
    parsed = []
    for i, items in enumerate(profiles):
        stacks = [s for s, _ in items]
        forms = [f for _, f in items]
        parsed.append(pprof.load_raw(build(stacks, forms, offset=100 * i), require_gzip=False))
    saved = _samples.HASH_MASK
    try:
        if collide:
            _samples.HASH_MASK = np.uint64(3)
        merged = pprof.merge(parsed)
    finally:
        _samples.HASH_MASK = saved
    assert bag(merged) == reference([[s for s, _ in items] for items in profiles])
    assert pprof.Profile.FromString(pprof.merge_serialized(parsed)) == pprof.merge(parsed)


def test_big_outputs_are_gzipped_in_members_that_read_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pprof, "_MEMBER", 1000)
    a, b = pprof.loads((DATA / "a.pb.gz").read_bytes()), pprof.loads((DATA / "b.pb.gz").read_bytes())
    data = pprof.merge_gzip([a, b])
    assert data.count(b"\x1f\x8b\x08") > 2  # several members
    assert pprof.loads(data) == pprof.merge([a, b])


def test_large_location_ids_take_the_long_varint_path() -> None:
    stacks = [(["leaf", "f", "main"], [2, 20], {}), (["g", "main"], [1, 10], {})]
    a = pprof.load_raw(build(stacks, [0, 1], offset=100_000), require_gzip=False)  # 3-byte ids
    b = pprof.load_raw(build(stacks, [0, 0], offset=(1 << 40)), require_gzip=False)  # sparse ids
    assert a.samples.ids.max() > 100_000
    assert bag(pprof.merge([a, b])) == reference([stacks, stacks])


def test_warm_up_compiles_every_kernel_a_merge_uses() -> None:
    assert pprof.warm_up() >= 0
    compiled = {k: set(k.signatures) for k in _samples.kernels()}
    assert all(compiled.values())
    a = pprof.loads((DATA / "a.pb.gz").read_bytes())
    wide = build([(["f", "main"], [1, 10], {})], [0], offset=1 << 40)
    pprof.merge_gzip([pprof.load_raw(pprof.dumps(a)), pprof.load_raw(wide, require_gzip=False)])
    assert {k: set(k.signatures) for k in _samples.kernels()} == compiled
