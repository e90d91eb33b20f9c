"""Hex for every binary value on the wire, in one place.

JSON has no bytes, so every binary value a validator answers with, and every
one a client sends, is a lower-case hex string without ``0x``. Two mechanisms
keep that rule, both read the same way by server and client:

- ``HexBytes``/``Hash32``: the annotated type of the RPC's own param models
  and result dataclasses. It validates a hex string (or raw bytes, for
  in-process callers) into ``bytes`` and serialises back to hex.
- :data:`WIRE_BYTES`: a pydantic config for models whose schema belongs to a
  contract (``fl_contracts``, ``ids``) and that also live in state. Their bytes
  stay bytes in Python and in state (``model_dump()``), and become hex only in
  JSON (``mode="json"`` dumps and ``validate_json``), so the on-chain encoding
  and the contracts' strict validation of transaction payloads are untouched.

:func:`to_wire` turns any result into plain JSON values under the same rule;
:func:`from_wire` reads one back into its declared type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import ConfigDict, PlainSerializer, PlainValidator, TypeAdapter, WithJsonSchema

from core.hashing import HASH_SIZE

HEX_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$", "contentEncoding": "base16"}

WIRE_BYTES = ConfigDict(ser_json_bytes="hex", val_json_bytes="hex")
"""Merge into a contract model's config: bytes are hex in JSON, bytes everywhere else."""


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
            # length means the string was hex digits only, without a regex pass.
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
    """Plain JSON value for ``value``: bytes become hex, dataclasses and models objects, tuples lists."""
    return _WIRE.dump_python(value, mode="json")


def from_wire(tp: Any, value: Any) -> Any:
    """``value`` (plain JSON, as :func:`to_wire` made it) validated back into ``tp``, hex into bytes.

    It goes through JSON text because pydantic reads hex as bytes only from JSON input; the
    round trip costs one ``json.dumps`` of the answer.
    """
    return _adapter(tp).validate_json(json.dumps(value))


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(tp)
    if adapter is None:
        adapter = _ADAPTERS[tp] = TypeAdapter(tp)
    return adapter
