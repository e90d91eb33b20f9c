"""Hex for every binary value on the wire, in one place.

``HexBytes`` is the annotated type used by param models and result dataclasses:
it validates a hex string (or raw bytes, for in-process callers) into
``bytes``, serialises back to lower-case hex, and documents itself in the
JSON schema that the OpenRPC document is generated from. ``to_wire`` turns
any result the node returns — dataclasses, dicts with bytes inside, tuples,
frozensets — into plain JSON values with the same hex rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import ConfigDict, PlainSerializer, PlainValidator, TypeAdapter, WithJsonSchema

from core.hashing import HASH_SIZE

HEX_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$", "contentEncoding": "base16"}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _hex_validator(size: int | None) -> Callable[[object], bytes]:
    def from_hex(value: object) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif not isinstance(value, str):
            raise ValueError("must be a hex string")
        elif value.startswith(("0x", "0X")):
            raise ValueError("must be hex without a 0x prefix")
        else:
            # fromhex takes hex digit pairs and skips whitespace, so a result of exactly half the
            # length means the string was hex digits only (what _HEX describes), without a regex pass.
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raw = None
            if raw is None or 2 * len(raw) != len(value):
                raise ValueError("is not valid hex (an even number of 0-9a-f digits)")
        if size is not None and len(raw) != size:
            raise ValueError(f"must be {size} bytes ({2 * size} hex digits), got {len(raw)}")
        return raw

    return from_hex


def _hex_type(size: int | None) -> Any:
    schema = dict(HEX_SCHEMA)
    if size is not None:
        schema.update(minLength=2 * size, maxLength=2 * size)
    return Annotated[bytes, PlainValidator(_hex_validator(size)), PlainSerializer(lambda b: b.hex(), return_type=str),
                     WithJsonSchema(schema)]


HexBytes = _hex_type(None)
"""Any byte string, as hex."""

Hash32 = _hex_type(HASH_SIZE)
"""A SHA-256 hash or an Ed25519 public key: exactly 32 bytes, 64 hex digits."""

_WIRE = TypeAdapter(Any, config=ConfigDict(ser_json_bytes="hex"))


def to_wire(value: Any) -> Any:
    """Plain JSON value for ``value``: bytes become hex, dataclasses objects, tuples lists."""
    return _WIRE.dump_python(value, mode="json")
