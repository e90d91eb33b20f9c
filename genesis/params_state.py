"""The chain parameters as state: genesis's from height 1, then each governance decision's from its height.

One entry per height from which a set of :class:`genesis.schema.ChainParams`
holds (``params/<height>``, 8 bytes big endian), like the validator sets of
``core.validators``. The validator writes them (genesis, and ``params.set`` in
``node.chain_params``); the ``chain_params`` read is defined here once, so a
light client checks its proof with the same function the validator answers it
with.
"""

from __future__ import annotations

from pydantic import BaseModel

from core import codec
from core.api import NoParams, Query
from core.state import StateView
from genesis.schema import ChainParams
from genesis.types import STRICT

PREFIX = b"params/"


def params_key(height: int) -> bytes:
    return PREFIX + height.to_bytes(8, "big")


def encode_params(params: ChainParams) -> bytes:
    return codec.encode(params.model_dump())


def decode_params(raw: bytes) -> ChainParams:
    return ChainParams.model_validate(codec.decode(raw))


def schedule(state: StateView) -> list[tuple[int, ChainParams]]:
    """Every set the chain decided and the first height it holds for, in height order."""
    return [(int.from_bytes(key[len(PREFIX):], "big"), decode_params(raw)) for key, raw in state.scan(PREFIX)]


class ScheduledParams(BaseModel):
    """Chain parameters and the first height they hold for."""

    model_config = STRICT
    start: int
    params: ChainParams


def scheduled_params(state: StateView, p: NoParams) -> list[ScheduledParams]:
    return [ScheduledParams(start=start, params=params) for start, params in schedule(state)]


CHAIN_PARAMS: Query[NoParams, list[ScheduledParams]] = Query(
    "chain_params", "Every set of chain parameters the chain decided and the first height each holds for "
    "(genesis's from 1; a params.set decision adds one two blocks after it).", NoParams, list[ScheduledParams])
STATE_QUERIES = ((CHAIN_PARAMS, scheduled_params),)
