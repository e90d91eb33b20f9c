"""One canonical msgpack encoding for everything that is hashed or signed.

Rules (a decoder that accepts anything else would let two byte strings stand
for one value, and then a hash or signature would not identify it):

1. Allowed values: ``None``, ``bool``, ``int`` in [-2**63, 2**64), ``bytes``,
   ``str``, ``list`` (tuples encode as lists) and ``dict`` with ``str`` keys.
   Floats are refused: their arithmetic is not reproducible across machines.
2. Every integer and length uses msgpack's shortest form (msgpack-python's
   packer already does; the decoder checks by re-encoding).
3. Map keys are sorted by their UTF-8 bytes and unique.
4. ``str`` is valid UTF-8; ``bytes`` use the bin family, never str.
5. Nothing follows the value; nesting depth and sizes are bounded.

``decode`` re-encodes what it parsed and rejects the input unless the bytes
are identical, which checks rules 2 to 4 in one place.
"""

from __future__ import annotations

from typing import Any

import msgpack

from core.errors import DecodeError

MAX_DEPTH = 32
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _canonical(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DecodeError(f"value nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError(f"integer {value} is outside the 64-bit range")
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v, depth + 1) for v in value]
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise DecodeError(f"map key {k!r} is not a string")
            items.append((k.encode("utf-8"), k, _canonical(v, depth + 1)))
        items.sort(key=lambda item: item[0])
        return {k: v for _, k, v in items}
    raise DecodeError(f"type {type(value).__name__} has no canonical encoding")


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically; raises :class:`DecodeError` for unencodable values."""
    return msgpack.packb(_canonical(value, 0), use_bin_type=True)


def decode(data: bytes, *, max_size: int = 64 * 1024 * 1024) -> Any:
    """Decode canonical bytes, rejecting any other encoding of the same value."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(f"encoded value is {len(data)} bytes, above the {max_size} limit")
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise DecodeError(f"not valid msgpack: {exc}") from None
    except Exception as exc:  # msgpack raises a few undocumented types on hostile input
        raise DecodeError(f"not valid msgpack: {type(exc).__name__}") from None
    if encode(value) != data:
        raise DecodeError("bytes are not the canonical encoding of their value")
    return value


def decode_stored(data: bytes) -> Any:
    """Decode bytes that execution itself encoded into state, without the re-encoding check of
    :func:`decode` (three quarters of its cost on a read-heavy query): state is written only through
    :func:`encode`, and a proven read's bytes are fixed by the state root, whatever they decode to."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # a damaged store, not input: say what it is
        raise DecodeError(f"stored value is not valid msgpack: {type(exc).__name__}") from None
