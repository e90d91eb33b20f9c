"""The canonical codec: one value, one byte string."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import codec
from core.errors import DecodeError

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=64) | st.text(max_size=32)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)


@given(values)
@settings(max_examples=400, deadline=None)
def test_roundtrip_and_reencoding_is_byte_identical(value: object) -> None:
    data = codec.encode(value)
    decoded = codec.decode(data)
    assert decoded == value
    assert codec.encode(decoded) == data


@given(st.dictionaries(st.text(max_size=8), st.integers(0, 10), min_size=2, max_size=8))
def test_map_key_order_does_not_change_the_encoding(d: dict[str, int]) -> None:
    reversed_d = dict(reversed(list(d.items())))
    assert codec.encode(d) == codec.encode(reversed_d)


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({"b": 1, "a": 2}),            # keys out of order
        b"\xcd\x00\x01",                             # uint16 for a value that fits a fixint
        b"\xd9\x01a",                                # str8 for a 1-byte string
        b"\xa1a" + b"\x00",                          # trailing byte
        msgpack.packb(1.5),                          # float
        b"\xa1\xff",                                 # str family holding invalid UTF-8
        msgpack.packb({1: 2}, strict_types=False),   # non-string key
        b"\xc1",                                     # never-used byte
        b"\x92\x01",                                 # truncated array
    ],
)
def test_non_canonical_or_malformed_bytes_are_rejected(data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_unencodable_values_are_refused() -> None:
    for bad in (1.0, 2**64, -(2**63) - 1, {1: "x"}, object()):
        with pytest.raises(DecodeError):
            codec.encode(bad)


def test_depth_is_bounded() -> None:
    deep: list = []
    for _ in range(codec.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(DecodeError):
        codec.encode(deep)
