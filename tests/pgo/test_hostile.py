"""Hostile bytes against the compiled decoder: truncated, flipped, inserted and deleted bytes, and
plain noise, must parse or raise ProfileError — never crash (numba does not check bounds). When
the decoder accepts bytes that upb's full parser accepts too, both see the same samples."""

from __future__ import annotations

import gzip

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onair.pgo import pprof
from onair.pgo.pprof import ProfileError

from .profiles import DATA
from .test_fastmerge import build, field, sample_bytes

STACKS = [
    (["leaf", "f", "main"], [2, 20], {}),
    (["g", "main"], [1, 10], {"route": "/a"}),
    (["h", "g", "main"], [-3, 1 << 40], {}),
    (["f", "main"], [4, 40], {"route": "/b"}),
]
SEEDS = [build(STACKS, [form] * len(STACKS), offset) for form in range(4) for offset in (0, 100_000)]
SEEDS.append(gzip.decompress((DATA / "a.pb.gz").read_bytes()))


def _check(data: bytes) -> None:
    """Every entry point parses ``data`` or raises ProfileError; accepted samples match upb's."""
    try:
        parsed = pprof.load_raw(data, require_gzip=False, check=False)
    except ProfileError:
        return
    try:
        pprof.validate(parsed)
        pprof.merge_serialized([parsed, parsed])
        pprof.loads(data, require_gzip=False)
    except ProfileError:
        pass
    try:
        full = pprof.Profile.FromString(data)
    except DecodeError:
        return
    s = parsed.samples
    assert len(full.sample) == len(s)
    values = s.values.view("int64").tolist()
    at = 0
    for i, sample in enumerate(full.sample):
        assert list(sample.location_id) == s.ids[s.offsets[i] : s.offsets[i + 1]].tolist()
        assert list(sample.value) == values[at : at + s.value_counts[i]]
        at += int(s.value_counts[i])
        assert len(sample.label) == len(s.labels.get(i, []))


edit = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.binary(max_size=0)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=12)),
)


def _apply(data: bytes, op: str, at: int, payload: bytes) -> bytes:
    at %= len(data) + 1
    if op == "truncate":
        return data[:at]
    if op == "flip":
        return data[:at] + payload + data[at + len(payload) :]
    if op == "insert":
        return data[:at] + payload + data[at:]
    return data[:at] + data[at + len(payload) :]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.lists(edit, min_size=1, max_size=4))
def test_mutated_profiles_parse_or_raise_profile_error(
    seed: int, edits: list[tuple[str, int, bytes]]
) -> None:
    data = SEEDS[seed]
    for op, at, payload in edits:
        data = _apply(data, op, at, payload)
    _check(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_noise_parses_or_raises_profile_error(noise: bytes) -> None:
    _check(noise)
    # noise as the samples of a valid header
    _check(SEEDS[0] + field(2, 2, noise))
    _check(SEEDS[0] + b"\x12" + noise)


@pytest.mark.parametrize(
    "sample",
    [
        b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a length of 10 bytes, far past the end
        b"\x0a\x01\xff",  # packed ids end inside a varint
        b"\x0a\x0b" + b"\xff" * 10 + b"\x01",  # a packed varint of 11 bytes
        b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # unpacked value truncated after 9 bytes
        b"\x19\x01\x02",  # fixed64 field truncated
        b"\x1d\x01",  # fixed32 field truncated
        b"\x1a\x05\x08\x01",  # label longer than the sample
        b"\x1e",  # group end (wire type 6? invalid)
        b"\x00\x01",  # field number 0
    ],
)
def test_each_kind_of_broken_sample_is_not_pprof(sample: bytes) -> None:
    data = SEEDS[0] + field(2, 2, sample)
    with pytest.raises(ProfileError) as err:
        pprof.load_raw(data, require_gzip=False)
    assert err.value.kind == "not_pprof"


def test_ids_wider_than_32_bits_are_decoded_exactly() -> None:
    data = SEEDS[0] + field(2, 2, sample_bytes([(1 << 64) - 1, 1 << 33, 5], [1, 2]))
    s = pprof.load_raw(data, require_gzip=False, check=False).samples
    assert s.ids[-3:].tolist() == [(1 << 64) - 1, 1 << 33, 5]
    with pytest.raises(ProfileError) as err:
        pprof.load_raw(data, require_gzip=False)
    assert err.value.kind == "inconsistent"
