"""The FL contract's records: the update payload, what state keeps per model and round, and what reads return.

They live apart from :mod:`fl_contracts.contract` (which re-exports them) so the
round lifecycle reads as logic; the JSON-RPC reads in :mod:`fl_contracts.queries`
return these same models.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt, StrictStr, model_validator

from core.blobs import BlobRef
from core.wire import WIRE_BYTES
from fl_contracts.fixedpoint import decode_weights
from fl_contracts.spec import ModelSpec

_FROZEN = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)  # bytes stay bytes in state, hex in JSON


class SubmitUpdate(BaseModel):
    """Payload of ``fl.submit_update``; privacy figures are optional, in millionths and billionths."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    model_id: StrictStr
    round: StrictInt = Field(ge=1)
    base_version: StrictInt = Field(ge=0)
    num_samples: StrictInt = Field(ge=1, le=2**53)
    delta: StrictBytes | None = None
    delta_blob: BlobRef | None = None
    """Instead of ``delta``, for a model that declares ``blobs``: the ref of the pushed delta (blob_put)."""
    dp_epsilon_micro: StrictInt | None = Field(default=None, ge=0)
    dp_delta_nano: StrictInt | None = Field(default=None, ge=0)
    patients: list[Annotated[StrictBytes, Field(min_length=32, max_length=32)]] | None = Field(
        default=None, min_length=1)
    """Pseudonyms of the records trained on, strictly ascending (so each counts once)."""

    @model_validator(mode="after")
    def one_delta(self) -> SubmitUpdate:
        if (self.delta is None) == (self.delta_blob is None):
            raise ValueError("send exactly one of delta (inline) and delta_blob (a pushed blob's ref)")
        return self

    def stored(self) -> dict[str, object]:
        """What the open round holds for it: the delta or its ref (the absent one not written at all, so an
        inline update's state entry is the one it was before blobs)."""
        drop = {"model_id", "round", "base_version", "patients", "delta" if self.delta is None else "delta_blob"}
        return self.model_dump(exclude=drop)


class Head(BaseModel):
    model_config = _FROZEN
    version: int
    round: int
    opened_height: int
    deadline_height: int
    pending: int


class ModelVersion(BaseModel):
    """A global model version: fixed-point int64 weights (little-endian bytes) and their hash.

    A model that declares ``blobs`` keeps them in the blob ``weights_blob`` names, and ``weights`` is empty
    here (``client.fl.blob_transport`` pulls and fills them in)."""

    model_config = _FROZEN
    model_id: str
    version: int
    round: int
    height: int
    weights: bytes
    hash: bytes
    weights_blob: BlobRef | None = None

    def state_doc(self) -> dict[str, object]:
        """The state entry: an inline version's has no ``weights_blob`` key, as before blobs existed."""
        return self.model_dump(exclude=set() if self.weights_blob is not None else {"weights_blob"})

    def weights_int(self) -> npt.NDArray[np.int64]:
        return decode_weights(self.weights)

    def unflatten(self, spec: ModelSpec) -> dict[str, npt.NDArray[np.float64]]:
        """Real-valued tensors by layout name, for clients and inference."""
        return spec.unflatten(self.weights_int().astype(np.float64) / spec.fixed_point.scale)


class Participant(BaseModel):
    model_config = _FROZEN
    sender: bytes
    num_samples: int
    weight: int
    norm_clipped: bool
    excluded: str | None = None
    dp_epsilon_micro: int | None = None
    dp_delta_nano: int | None = None
    patients: int | None = None
    """Number of consented patients the update named (its FedAvg weight before the cap); None: none named."""


class RoundRecord(BaseModel):
    model_config = _FROZEN
    model_id: str
    round: int
    base_version: int
    opened_height: int
    deadline_height: int
    closed_height: int | None
    status: Literal["open", "aggregated", "failed"]
    reason: str | None = None
    participants: list[Participant] = []
    accepted: int = 0
    excluded: int = 0
    new_version: int | None = None
    new_hash: bytes | None = None


class PendingUpdate(BaseModel):
    """One hospital's update held by the open round: individual, so private to it and to auditors."""

    model_config = _FROZEN
    model_id: str
    round: int
    sender: bytes
    num_samples: int
    weight: int
    patients: int | None
    delta: bytes
    delta_blob: BlobRef | None = None
    """A blob update's ref (``delta`` is then empty)."""
