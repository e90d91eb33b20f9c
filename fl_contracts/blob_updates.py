"""Updates and global versions of a large model, carried as content-addressed blobs (``core.blobs``).

A model whose genesis spec declares ``blobs`` is too large for a transaction
(``max_tx_bytes`` holds about 250k int32 coordinates). Its ``fl.submit_update``
carries a ``delta_blob`` :class:`~core.blobs.BlobRef` instead of the delta, and
every global version after genesis lives in a blob too; an inline model keeps
the inline path unchanged. The choice is the spec's, not the payload's size,
so a model's updates all take one path and its version hashes one form.

Rules, in the order a round meets them:

1. Accept. The ref must name exactly ``num_params * 4`` bytes (int32 quanta);
   anything else is ``wrong_shape`` before any write. The contract writes the
   ``blob/need`` entry for it, which tells validators to fetch and attest it.
2. Close. A blob update enters the aggregate only if a quorum (2f + 1) of the
   validator set deciding the closing height attested this very ref in blocks
   before it (:func:`core.blobs.available_ref`); otherwise it is excluded with
   reason ``blob_unavailable``. Its bytes come from the node's
   :class:`ModelBlobs`, and then it is checked exactly like an inline delta at
   submission (length, ``max_abs``): those checks can only run at close, so a
   failing blob is excluded (``out_of_bounds``) rather than rejected. The
   survivors go through the same validation, rule, norm bounding and
   rounding as inline deltas, so the aggregate is bit for bit the inline one.
   The round's need entries are deleted at close.
3. A round of a blob model closes early (full, or every drawn hospital in)
   only once every blob it holds is available; otherwise it waits for its
   deadline, so a full round never closes before its blobs could be attested.
4. Versions. Every validator computes the new weights (int64 little-endian)
   itself, names them with :func:`core.blobs.blob_ref`, writes them into its
   own store (:class:`ModelBlobs`) and records a ``blob/keep`` entry, so no validator transfers a
   version; a state-syncing node fetches it by that entry. The version's hash
   commits to the ref (:func:`version_hash`), so a client that pulls the bytes
   checks them against it. The open round's base version is in the need
   index too, so a validator that joined by state sync fetches it in time.

An honest validator's store never misses at close: the node fetched every
available, needed blob before executing the block. A store that misses anyway
raises :class:`core.errors.BlobUnknown` out of the hook, which differs from
the other validators' state: that validator's app hash disagrees, never
silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from core import codec
from core.blobs import (
    BlobRef, BlobSource, Keep, Need, available_ref, blob_ref, chunk_hashes, chunk_proof, need_key, put_keep, put_need,
    split,
)
from core.errors import BlobMismatch, BlobUnknown, ContractRejected
from core.hashing import sha256
from core.state import StateView
from core.validators import schedule, set_at
from fl_contracts.fixedpoint import WIRE_DTYPE, decode_delta, decode_weights, encode_weights
from fl_contracts.spec import ModelSpec

UNAVAILABLE = "blob_unavailable"
OUT_OF_BOUNDS = "out_of_bounds"
VERSION_DOMAIN = "fbci/fl/model-blob/1"


class ModelBlobs(BlobSource, Protocol):
    """The node's blob store (``node.blobs.store.BlobStore``) as the FL contract uses it: read updates,
    write the versions it computes chunk by chunk, as any blob arrives."""

    def put_chunk(self, ref: BlobRef, index: int, chunk: bytes, proof: list[bytes]) -> bool:
        """Store a verified chunk; idempotent; True once the blob is complete."""
        ...


def update_bytes(spec: ModelSpec) -> int:
    """The exact size of an update of ``spec``: one int32 quantum per parameter."""
    return spec.num_params * WIRE_DTYPE.itemsize


def check_ref(spec: ModelSpec, ref: BlobRef) -> str | None:
    """Why ``ref`` cannot be an update of ``spec`` (its size); None when it can."""
    want = update_bytes(spec)
    if ref.size != want:
        return (f"delta_blob names {ref.size} bytes; model {spec.id} has {spec.num_params} parameters of "
                f"{WIRE_DTYPE.itemsize} bytes = {want}")
    return None


def need(state: StateView, ref: BlobRef, model_id: str, rnd: int) -> None:
    put_need(state, Need(ref=ref, model_id=model_id, round=rnd))


def drop_need(state: StateView, ref: BlobRef, model_id: str, rnd: int) -> None:
    state.delete(need_key(ref.sha256, model_id, rnd))


def need_version(state: StateView, version_doc: Mapping[str, Any], model_id: str, rnd: int, drop: bool = False
                 ) -> None:
    """Mark (or, at close, unmark) the open round's base version as needed: every validator wrote it itself,
    but one that joined by state sync has to fetch it before the round closes."""
    ref = BlobRef.model_validate(version_doc["weights_blob"])
    (drop_need if drop else need)(state, ref, model_id, rnd)


def pending_ref(doc: Mapping[str, Any]) -> BlobRef | None:
    """The ref of a stored pending update, None for an inline one."""
    raw = doc.get("delta_blob")
    return None if raw is None else BlobRef.model_validate(raw)


def is_available(state: StateView, ref: BlobRef, height: int) -> bool:
    """A quorum of the set deciding ``height`` attested exactly ``ref`` in blocks before ``height``."""
    validators = set_at(schedule(state), height).keys
    return available_ref(state, ref.sha256, validators, height) == ref


def unavailable_reason(ref: BlobRef, height: int) -> str:
    return (f"{UNAVAILABLE}: blob {ref.sha256.hex()[:16]} had no availability quorum (2f+1 validators' "
            f"attestations) before height {height}")


def read_checked(blobs: BlobSource | None, ref: BlobRef) -> bytes:
    """The blob's bytes from this node's store, checked against the ref (whatever the store did)."""
    if blobs is None:
        raise BlobUnknown(f"blob {ref.sha256.hex()[:16]} is needed, and this node passed the contract no blob store")
    data = blobs.read(ref)
    if len(data) != ref.size or sha256(data) != ref.sha256:
        raise BlobMismatch(f"the store's bytes for blob {ref.sha256.hex()[:16]} are not the blob the ref names")
    return data


def read_delta(state: StateView, blobs: BlobSource | None, spec: ModelSpec, ref: BlobRef, height: int
               ) -> npt.NDArray[np.int32] | str:
    """An update's quanta, or why it is excluded: its blob was not available, or breaks the model's bounds."""
    if not is_available(state, ref, height):
        return unavailable_reason(ref, height)
    q = decode_delta(read_checked(blobs, ref), spec.num_params)
    peak = max(-int(q.min()), int(q.max()))
    if peak > spec.max_abs:
        return f"{OUT_OF_BOUNDS}: a coordinate has magnitude {peak} quanta; max_abs is {spec.max_abs}"
    return q


def all_available(state: StateView, docs: list[dict[str, Any]], height: int) -> bool:
    """Every blob update among ``docs`` is available at ``height`` (an inline one always is)."""
    refs = [pending_ref(d) for d in docs]
    return all(ref is None or is_available(state, ref, height) for ref in refs)


def version_hash(model_id: str, version: int, ref: BlobRef) -> bytes:
    """A blob version's hash: it names the weights through their ref, as an inline version's hashes the bytes."""
    return sha256(codec.encode([VERSION_DOMAIN, model_id, version, ref.sha256, ref.size, ref.chunk_root]))


def store_weights(state: StateView, blobs: ModelBlobs | None, model_id: str, version: int,
                  weights: npt.NDArray[np.int64]) -> BlobRef:
    """Write version ``version``'s weights into this node's store and keep them; the ref is computed here."""
    if blobs is None:
        raise BlobUnknown(f"model {model_id} keeps its versions as blobs, and this node passed the contract no "
                          f"blob store to write version {version} into")
    data = encode_weights(weights)
    ref = blob_ref(data)
    if not blobs.has(ref):
        hashes = chunk_hashes(data)
        for index, chunk in enumerate(split(data)):
            blobs.put_chunk(ref, index, chunk, chunk_proof(hashes, index))
    put_keep(state, Keep(ref=ref, model_id=model_id, version=version))
    return ref


def version_weights(doc: Mapping[str, Any], blobs: BlobSource | None) -> npt.NDArray[np.int64]:
    """The int64 weights of a stored version, inline or from its blob."""
    raw = doc.get("weights_blob")
    if raw is None:
        return decode_weights(doc["weights"])
    return decode_weights(read_checked(blobs, BlobRef.model_validate(raw)))


def reject_payload(spec: ModelSpec, has_blob: bool) -> ContractRejected | None:
    """The refusal of an update that takes the other path than its model does; None when it takes the right one."""
    if spec.blobs and not has_blob:
        return ContractRejected(f"model {spec.id} takes its updates as blobs: push the delta (blob_put) and send "
                                "delta_blob, not delta", data={"fl_reason": "invalid_payload"})
    if has_blob and not spec.blobs:
        return ContractRejected(f"model {spec.id} takes its updates inline: send delta, not delta_blob",
                                data={"fl_reason": "invalid_payload"})
    return None


def read_round(state: StateView, spec: ModelSpec, rnd: int, docs: list[dict[str, Any]], height: int,
               blobs: ModelBlobs | None) -> tuple[dict[int, npt.NDArray[np.int32]], dict[int, str]]:
    """The blob updates' quanta by index, and why the others are excluded; the round's need entries go."""
    read: dict[int, npt.NDArray[np.int32]] = {}
    blocked: dict[int, str] = {}
    for i, doc in enumerate(docs):
        ref = pending_ref(doc)
        if ref is None:
            continue
        drop_need(state, ref, spec.id, rnd)
        got = read_delta(state, blobs, spec, ref, height)
        if isinstance(got, str):
            blocked[i] = got
        else:
            read[i] = got
    return read, blocked
