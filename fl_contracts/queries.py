"""The reads of the FL contract's state that a validator serves and a hospital reads back.

Each is one :class:`core.api.Query` (path, params, typed result) plus the pure
function that answers it over a :class:`core.state.StateView`; the node
registers the pair behind its application's ``query`` and JSON-RPC serves it
under the path's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.api import Access, NoParams, Params, Query
from core.errors import NotFound
from core.state import StateView
from core.wire import WIRE_BYTES, Hash32
from fl_contracts import contract, secagg_queries
from fl_contracts.contract import ModelVersion, PendingUpdate, RoundRecord
from fl_contracts.sampling import Draw, load_draw
from fl_contracts.spec import ModelSpec


class RegisteredModel(BaseModel):
    """A model declared on chain and the hash of its declaration."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    spec: ModelSpec
    hash: bytes


MAX_VERSION = 2**64 - 1
"""Versions are stored under 8-byte big-endian keys: a larger number is invalid input, not a lookup."""


class ModelGetParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    version: int | None = Field(None, ge=0, le=MAX_VERSION, description="omit for the latest version")
    patient: Hash32 | None = Field(None, description="the patient pseudonym this read will score (a prediction): "
                                   "the answer is the same, and the audit trail records who read that "
                                   "patient's predictions")


MAX_ROUNDS_PAGE = 500


class RoundsParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    from_round: int | None = Field(None, ge=1, le=2**64 - 1, description="first round of the page (the cursor: "
                                   "the last round of the previous page + 1); omit for the newest rounds")
    limit: int = Field(100, ge=1, le=MAX_ROUNDS_PAGE, description="entries per page")


class UpdateGetParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    hospital: Hash32 = Field(description="the submitting hospital's public key, hex")


MODEL_READERS = Access(frozenset({"admin", "validator", "hospital", "gateway", "clinician", "auditor"}), private=True)
"""Global models and round records are the consortium's: private by default, any member role reads them
(a gateway scores with the IDS model, a clinician's screen with the deterioration model)."""

FL_MODELS: Query[NoParams, list[RegisteredModel]] = Query(
    "fl_models", "Registered federated-learning models.", NoParams, list[RegisteredModel])
FL_MODEL_GET: Query[ModelGetParams, ModelVersion] = Query(
    "fl_model_get", "One version of a global model (default: latest).", ModelGetParams, ModelVersion, MODEL_READERS)
FL_ROUNDS: Query[RoundsParams, list[RoundRecord]] = Query(
    "fl_rounds", "One page of a model's round history, oldest first: by default the newest `limit` rounds, the "
    "last entry the open round; with from_round, `limit` rounds from that one on (the open round ends the last "
    "page).", RoundsParams, list[RoundRecord], MODEL_READERS)


class DrawParams(Params):
    model_id: str = Field(min_length=1, max_length=128)
    round: int | None = Field(None, ge=1, le=MAX_VERSION, description="omit for the open round")


FL_DRAW: Query[DrawParams, Draw] = Query(
    "fl_draw", "The hospitals a sampled model's round drew, with the seed and roster size to recompute it "
    "(default: the open round).", DrawParams, Draw, MODEL_READERS)


FL_UPDATE_GET: Query[UpdateGetParams, PendingUpdate] = Query(
    "fl_update_get", "One hospital's individual update in the open round (its own hospital and auditors only).",
    UpdateGetParams, PendingUpdate, Access(frozenset({"hospital", "auditor"}), private=True))


def _models(state: StateView, params: NoParams) -> list[RegisteredModel]:
    return [RegisteredModel(spec=spec, hash=spec.hash) for spec in contract.list_models(state)]


def _model(state: StateView, params: ModelGetParams) -> ModelVersion:
    return contract.get_model(state, params.model_id, params.version)


def _rounds(state: StateView, params: RoundsParams) -> list[RoundRecord]:
    return contract.round_page(state, params.model_id, params.from_round, params.limit)


def _draw(state: StateView, params: DrawParams) -> Draw:
    spec = contract.get_spec(state, params.model_id)
    if spec.sample_rate_ppm is None:
        raise NotFound(f"model {spec.id} does not sample its rounds: every hospital takes part in each")
    rnd = contract.current_round(state, spec.id).round if params.round is None else params.round
    draw = load_draw(state, spec.id, rnd)
    if draw is None:
        raise NotFound(f"model {spec.id} has no round {rnd} yet")
    return draw


STATE_QUERIES: tuple[tuple[Query[Any, Any], Callable[[StateView, Any], Any]], ...] = (
    (FL_MODELS, _models), (FL_MODEL_GET, _model), (FL_ROUNDS, _rounds),
    (FL_UPDATE_GET, lambda state, p: contract.pending_update(state, p.model_id, p.hospital)),
    (FL_DRAW, _draw),
    *secagg_queries.STATE_QUERIES,
)
