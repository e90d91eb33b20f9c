"""The blob messages validators exchange on the transport's BLOB channel.

``have`` announces a complete, verified blob; a peer that lacks it answers
with ``get`` for the chunks it needs (several in flight), and the holder
answers each with ``chunk`` (the bytes and their proof) or ``missing``. Every
message is one canonical msgpack map with a ``t`` tag; a message of any
other shape is the sender's misbehaviour (:class:`core.errors.BadBlobMessage`),
never this node's error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt, TypeAdapter, ValidationError

from core import codec
from core.blobs import CHUNK_BYTES, MAX_CHUNKS, MAX_PROOF_HASHES, BlobRef
from core.errors import BadBlobMessage, FbciError
from core.hashing import HASH_SIZE

_MSG = ConfigDict(extra="forbid", strict=True, frozen=True)
_Hash = StrictBytes


class Have(BaseModel):
    model_config = _MSG
    t: Literal["have"] = "have"
    ref: BlobRef


class Get(BaseModel):
    model_config = _MSG
    t: Literal["get"] = "get"
    ref: BlobRef
    index: StrictInt = Field(ge=0, lt=MAX_CHUNKS)


class Chunk(BaseModel):
    model_config = _MSG
    t: Literal["chunk"] = "chunk"
    ref: BlobRef
    index: StrictInt = Field(ge=0, lt=MAX_CHUNKS)
    chunk: StrictBytes = Field(max_length=CHUNK_BYTES)
    proof: list[_Hash] = Field(max_length=MAX_PROOF_HASHES)


class Missing(BaseModel):
    """The asked peer does not hold that chunk (pruned, or never had it): ask another one."""

    model_config = _MSG
    t: Literal["missing"] = "missing"
    ref: BlobRef
    index: StrictInt = Field(ge=0, lt=MAX_CHUNKS)


BlobMessage = Union[Have, Get, Chunk, Missing]
_ADAPTER: TypeAdapter[BlobMessage] = TypeAdapter(Annotated[BlobMessage, Field(discriminator="t")])


def encode(message: BlobMessage) -> bytes:
    return codec.encode(message.model_dump())


def decode(payload: bytes) -> BlobMessage:
    """A peer's message, or :class:`BadBlobMessage` naming what is wrong with it."""
    try:
        value: Any = codec.decode(payload)
        message = _ADAPTER.validate_python(value)
    except FbciError as exc:
        raise BadBlobMessage(f"blob message: {exc.message}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadBlobMessage(f"blob message: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if isinstance(message, Chunk) and any(len(h) != HASH_SIZE for h in message.proof):
        raise BadBlobMessage("blob message: a proof holds 32-byte hashes")
    return message
