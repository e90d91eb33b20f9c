"""Hex for every binary value on the wire, in one place.

``HexBytes`` is the annotated type used by param models and result dataclasses:
it validates a hex string (or raw bytes, for in-process callers) into
``bytes``, serialises back to lower-case hex, and documents itself in the
JSON schema that the OpenRPC document is generated from. ``to_wire`` turns
any result the node returns — dataclasses, dicts with bytes inside, tuples,
frozensets — into plain JSON values with the same hex rule.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, PlainSerializer, PlainValidator, TypeAdapter, WithJsonSchema

from core.hashing import HASH_SIZE

HEX_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^([0-9a-f]{2})*$", "contentEncoding": "base16"}


def _from_hex(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a hex string")
    if value.startswith(("0x", "0X")):
        raise ValueError("hex without a 0x prefix is expected")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError("is not valid hex (an even number of 0-9a-f digits)") from None


def _hex_type(size: int | None) -> Any:
    schema = dict(HEX_SCHEMA)
    if size is not None:
        schema.update(minLength=2 * size, maxLength=2 * size)
    checks: list[Any] = [PlainValidator(_from_hex)]
    if size is not None:
        checks.append(Field(min_length=size, max_length=size))
    return Annotated[bytes, *checks, PlainSerializer(lambda b: b.hex(), return_type=str), WithJsonSchema(schema)]


HexBytes = _hex_type(None)
"""Any byte string, as hex."""

Hash32 = _hex_type(HASH_SIZE)
"""A SHA-256 hash or an Ed25519 public key: exactly 32 bytes, 64 hex digits."""

_WIRE = TypeAdapter(Any, config=ConfigDict(ser_json_bytes="hex"))


def to_wire(value: Any) -> Any:
    """Plain JSON value for ``value``: bytes become hex, dataclasses objects, tuples lists."""
    return _WIRE.dump_python(value, mode="json")
