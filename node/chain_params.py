"""The chain parameters as state, and the governance action ``params.set`` that changes them.

Genesis writes its :class:`genesis.schema.ChainParams` as the parameters of
height 1 (``genesis.params_state``, like the validator sets of ``node.validator_set``),
so they are in the trie and provable like any other read. A ``params.set``
decision executed in block H writes the merged parameters at H + 2, the rule
validator-set changes keep: when block H + 1 is proposed every validator
already knows the limits H + 2 runs under, and each block is judged by the
parameters of its own height.

Only the parameters in :data:`GOVERNABLE` change, and only to values
genesis's own schema accepts, its cross-field rules included. Two of them are
also edge limits that a running validator sizes once, when it starts (the
JSON-RPC body limit, the peer frame limit, the decoding bound of stored
blocks), so ``max_tx_bytes`` and ``max_block_bytes`` may be lowered and raised
back, but never above their genesis values. :data:`FIXED` says why each other
parameter stays genesis's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from core.errors import InvalidInput, ParamNotGovernable, ParamValueRefused
from core.state import StateView, TxContext
from core.tx import parse_payload, sender_of
from genesis.params_state import decode_params, encode_params, params_key, schedule
from genesis.schema import ChainParams
from genesis.types import STRICT
from genesis.validation import validate_model
from node.ledger import BLOCK_OVERHEAD_BYTES
from node.validator_set import EFFECT_DELAY

GOVERNABLE = frozenset({
    "max_tx_bytes", "max_block_bytes", "max_block_txs", "max_clock_drift_ms", "mempool_max_txs",
    "mempool_max_bytes", "member_block_bytes", "member_window_bytes", "snapshot_interval",
})
CEILINGED = ("max_tx_bytes", "max_block_bytes")
"""Governable up to their genesis values: the edges of a running validator are sized from genesis."""

FIXED = {
    "tick_ms": "the consensus timers of every replica are built from it when the validator starts",
    "base_timeout_ticks": "the consensus timers of every replica are built from it when the validator starts",
    "block_interval_ms": "the proposer's heartbeat is set from it when the validator starts",
    "propose_delay_ms": "the proposer's batching window is set from it when the validator starts",
    "rpc_requests_per_second": "a limit of each validator's own JSON-RPC edge, not of the chain",
    "rpc_burst": "a limit of each validator's own JSON-RPC edge, not of the chain",
    "quota_window_blocks": "quota windows are numbered height // n: a new n would count a sender's bytes in "
                           "an unrelated window",
}
"""Why each parameter that is not governable stays genesis's (what ``params.set`` answers)."""

_FIELDS: dict[str, TypeAdapter[int]] = {
    name: TypeAdapter(Annotated[info.annotation, *info.metadata])  # type: ignore[name-defined]
    for name, info in ChainParams.model_fields.items() if name in GOVERNABLE}


def init_params(state: StateView, params: ChainParams) -> None:
    """Genesis: its parameters decide from height 1."""
    state.set(params_key(1), encode_params(params))


class ParamsSchedule:
    """The application's copy of the parameters of each height: read from state once, then extended by
    each block that decides new ones. ``fallback``: genesis's, for a state written before parameters
    were state (it holds none, so they are genesis's for good)."""

    def __init__(self, fallback: ChainParams) -> None:
        self._fallback = fallback
        self._entries: list[tuple[int, ChainParams]] | None = None

    def forget(self) -> None:
        """State was rewritten (genesis, a restored snapshot): read it again."""
        self._entries = None

    def at(self, state: StateView, height: int) -> ChainParams:
        """The parameters ``height`` runs under (beyond the decided heights, the latest decided)."""
        found = self._fallback
        for start, params in self._load(state):
            if start > height:
                break
            found = params
        return found

    def after_block(self, state: StateView, height: int) -> ChainParams | None:
        """The parameters the block at ``height`` (just executed into ``state``) decided, if any."""
        raw = state.get(params_key(height + EFFECT_DELAY))
        if raw is None:
            return None
        decided = decode_params(raw)
        entries = self._load(state)
        if entries and entries[-1][0] == height + EFFECT_DELAY:
            entries.pop()
        entries.append((height + EFFECT_DELAY, decided))
        return decided

    def _load(self, state: StateView) -> list[tuple[int, ChainParams]]:
        if self._entries is None:
            self._entries = schedule(state)
        return self._entries


class SetPayload(BaseModel):
    model_config = STRICT
    changes: dict[str, int] = Field(min_length=1, max_length=len(GOVERNABLE))
    """Parameter name -> its new value."""


def check_set(params: dict[str, Any]) -> None:
    """When proposed, without state: every name governable, every value within its field's own bounds
    (the cross-field rules need the chain's parameters: :func:`admit_set`)."""
    p = parse_payload(SetPayload, params)
    for name in sorted(p.changes):
        _require_governable(name)
        try:
            _FIELDS[name].validate_python(p.changes[name], strict=True)
        except ValidationError as exc:
            raise ParamValueRefused(f"payload.changes.{name}: {exc.errors()[0]['msg']}") from None


def admit_set(state: StateView, ctx: TxContext, params: dict[str, Any]) -> None:
    """When proposed: the change is refused now if the parameters it would replace refuse it."""
    _merged(state, parse_payload(SetPayload, params))


def set_params(state: StateView, ctx: TxContext, params: dict[str, Any]) -> dict[str, Any]:
    """``params.set``: the latest decided parameters with the changes, in effect from H + 2."""
    p = parse_payload(SetPayload, params)
    merged = _merged(state, p)
    effective = ctx.height + EFFECT_DELAY
    state.set(params_key(effective), encode_params(merged))
    return {"effective_height": effective, "params": {k: getattr(merged, k) for k in sorted(p.changes)}}


def _merged(state: StateView, p: SetPayload) -> ChainParams:
    for name in sorted(p.changes):
        _require_governable(name)
    decided = schedule(state)
    if not decided:
        raise ParamValueRefused("this chain's state holds no parameters (its store predates governable "
                                "parameters); they are genesis's for good")
    genesis, latest = decided[0][1], decided[-1][1]
    return _validated(latest.model_dump() | p.changes, ceiling=genesis)


def _validated(values: dict[str, Any], ceiling: ChainParams) -> ChainParams:
    merged = validate_model(ChainParams, values, source="params", error=ParamValueRefused)
    for name in CEILINGED:
        if getattr(merged, name) > getattr(ceiling, name):
            raise ParamValueRefused(f"params.{name}: {getattr(merged, name)} is above its genesis value "
                                    f"{getattr(ceiling, name)}, which sizes each validator's RPC and peer limits "
                                    f"when it starts; it may be lowered and raised back, not beyond")
    return merged


def _require_governable(name: str) -> None:
    if name in GOVERNABLE:
        return
    if name in FIXED:
        raise ParamNotGovernable(f"payload.changes.{name}: fixed at genesis: {FIXED[name]}")
    raise ParamNotGovernable(f"payload.changes.{name[:64]}: no such chain parameter; governable: "
                             f"{sorted(GOVERNABLE)}")


def within_limits(txs: Sequence[bytes], params: ChainParams) -> list[bytes]:
    """The proposer's part: ``txs`` in order within the count and byte limits of the block's height, less
    every sender's transactions from its first one above ``max_tx_bytes`` on (admitted under a higher
    limit; its later nonces cannot go without it)."""
    kept: list[bytes] = []
    cut: set[bytes | None] = set()
    room = params.max_block_bytes - BLOCK_OVERHEAD_BYTES
    for raw in txs:  # a sender is read only once one is cut: the common block has none above the limit
        if len(raw) > params.max_tx_bytes:
            cut.add(sender_of(raw))
            continue
        if cut and sender_of(raw) in cut:
            continue
        if len(kept) == params.max_block_txs or len(raw) > room:
            break
        kept.append(raw)
        room -= len(raw)
    return kept


def check_sizes(txs: Sequence[bytes], params: ChainParams) -> None:
    """A validator's part: raise :class:`InvalidInput` if a block breaks its height's byte limits (a block
    whose transactions were all seen before skips their decoding, so the sizes are checked here)."""
    for i, raw in enumerate(txs):
        if len(raw) > params.max_tx_bytes:
            raise InvalidInput(f"block tx {i} is {len(raw)} bytes; max_tx_bytes is {params.max_tx_bytes}")
    total = sum(len(raw) for raw in txs)
    if total > params.max_block_bytes:
        raise InvalidInput(f"block carries {total} transaction bytes; max_block_bytes is {params.max_block_bytes}")
