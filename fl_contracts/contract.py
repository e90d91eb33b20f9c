"""The federated-learning contract: model registry, round lifecycle, on-chain aggregation.

Rule 1: everything here is a deterministic function of state and the
transaction. No clock, no randomness, no floats in state, and every
collection that affects a result is read in bytewise key order.

Rule 2: a rejected update raises :class:`core.errors.ContractRejected` before
the first write, so it changes nothing. The reason slug is in
``error.data["fl_reason"]``: ``unknown_model``, ``unauthorized``,
``wrong_round`` (late or early), ``round_full``, ``duplicate``,
``stale_version``, ``wrong_shape``, ``out_of_bounds``, ``invalid_payload``,
``no_consent`` (a listed patient lacks a permit, see below), ``not_drawn`` (a sampled round's
draw did not pick the sender; :class:`core.errors.NotDrawn`).

Consent. The node passes a :class:`ConsentCheck` (``consent.contract`` fills
it in; this leaf does not import it). An update may carry ``patients``, the
strictly ascending pseudonyms of the records it trained on; for a model whose
genesis policy requires consent it must. Every listed patient must be in the
sender's custody and hold a permit for ``train:<model>`` at the round's
consent snapshot, the height the round opened (so a revocation takes effect
from the next round). Such an update's FedAvg weight is the number of
patients listed, not the claimed ``num_samples``: a weight can no longer be
invented, only earned by patients who agreed.

Lifecycle. Genesis opens round 1 at height 0 with deadline
``0 + round_length_blocks``. A hospital (role :data:`HOSPITAL_ROLE`) submits
one delta against the current version. After each block the node calls
:func:`end_block`; a round closes when it holds ``max_updates`` updates or
the block height reaches its deadline. Closing with at least ``min_updates``
aggregates (see :mod:`fl_contracts.aggregation`) and stores version ``v + 1``;
with fewer it fails and no version is made. Either way the next round opens
at once against the then-current version.

Sampling. A model that declares ``sample_rate_ppm`` draws each round's
hospitals when the round opens, seeded by the hash of the block at whose end
it opens (:mod:`fl_contracts.sampling`); only drawn hospitals may submit, and
the round also closes as soon as every drawn hospital has submitted.

Blobs. A model that declares ``blobs`` takes each update as a ``delta_blob``
ref and keeps its versions in blobs; the round reads them through the node's
store at close and includes one only once a validator quorum attested it
(:mod:`fl_contracts.blob_updates`).

State layout (all keys under ``fl/``, values canonical msgpack)::

    fl/spec/<id>                      ModelSpec.to_doc()
    fl/head/<id>                      Head: current version and the open round
    fl/ver/<id>/<version:8 bytes BE>  ModelVersion
    fl/round/<id>/<round:8 bytes BE>  RoundRecord of a closed round
    fl/upd/<id>/<round:8 BE>/<sender> pending update (deleted at close)
    fl/draw/<id>/<round:8 BE>         sampling.Draw of a sampled round (kept)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ValidationError

from core import codec
from core.accounts import holders_of
from core.block import ZERO_HASH
from core.errors import InvalidInput, NotDrawn, NotFound, failure_reason
from core.hashing import sha256
from core.state import StateView, TxContext
from fl_contracts.fixedpoint import decode_delta, decode_weights, encode_weights
from fl_contracts.aggregation import Updates, aggregate
from fl_contracts import blob_updates, sampling
from fl_contracts.blob_updates import ModelBlobs
from fl_contracts.records import (  # the records, also read from here by their users
    Head, ModelVersion, Participant, PendingUpdate, RoundRecord, SubmitUpdate,
)
from fl_contracts.consent_check import ConsentCheck, check_patients, reject
from fl_contracts.spec import ModelSpec

HOSPITAL_ROLE = "hospital"
TX_KIND = "fl.submit_update"


def _be(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _key(kind: str, model_id: str, *parts: bytes) -> bytes:
    return b"/".join([b"fl", kind.encode(), model_id.encode(), *parts])


def _put(state: StateView, key: bytes, value: BaseModel | dict[str, Any]) -> None:
    state.set(key, codec.encode(value.model_dump() if isinstance(value, BaseModel) else value))


def _load(state: StateView, key: bytes) -> Any:
    raw = state.get(key)
    return None if raw is None else codec.decode(raw)


def version_hash(model_id: str, version: int, weights: bytes) -> bytes:
    return sha256(codec.encode(["fbci/fl/model/1", model_id, version, weights]))


def _store_version(state: StateView, spec: ModelSpec, version: int, rnd: int, height: int,
                   w: npt.NDArray[np.int64], blobs: ModelBlobs | None) -> ModelVersion:
    """An inline model's weights go in state; a blob model's into this node's store, named in state."""
    if spec.blobs:
        ref = blob_updates.store_weights(state, blobs, spec.id, version, w)
        mv = ModelVersion(model_id=spec.id, version=version, round=rnd, height=height, weights=b"",
                          hash=blob_updates.version_hash(spec.id, version, ref), weights_blob=ref)
    else:
        data = encode_weights(w)
        mv = ModelVersion(model_id=spec.id, version=version, round=rnd, height=height, weights=data,
                          hash=version_hash(spec.id, version, data))
    _put(state, _key("ver", spec.id, _be(version)), mv.state_doc())
    return mv


def _open_round(state: StateView, spec: ModelSpec, version: int, rnd: int, height: int, seed: bytes) -> None:
    """``seed``: the hash of the block at whose end the round opens; a sampled model draws from it."""
    head = Head(version=version, round=rnd, opened_height=height,
                deadline_height=height + spec.round_length_blocks, pending=0)
    _put(state, _key("head", spec.id), head)
    if spec.blobs:  # a validator that joined by state sync fetches the base it will aggregate onto
        blob_updates.need_version(state, _load(state, _key("ver", spec.id, _be(version))), spec.id, rnd)
    if spec.sample_rate_ppm is not None:
        sampling.open_draw(state, spec.id, rnd, seed, spec.sample_rate_ppm, holders_of(state, HOSPITAL_ROLE))


def init_models(
    state: StateView, specs: Sequence[ModelSpec], initial: Mapping[str, npt.NDArray[np.int64] | None], height: int,
    seed: bytes = ZERO_HASH, blobs: ModelBlobs | None = None,
) -> None:
    """Register models at genesis: version 0 (given weights or zeros) and round 1 opens.

    ``seed`` draws a sampled model's first round: at genesis no block hash exists yet, so it is the
    zero hash, and that first draw is as public as the genesis file. ``blobs``: where a blob model's
    version 0 goes (every validator computes it from genesis)."""
    for spec in specs:
        if state.get(_key("spec", spec.id)) is not None:
            raise InvalidInput(f"model {spec.id} is declared twice")
        w0 = initial.get(spec.id)
        w = np.zeros(spec.num_params, dtype=np.int64) if w0 is None else np.asarray(w0, dtype=np.int64)
        if w.shape != (spec.num_params,):
            raise InvalidInput(f"model {spec.id}: initial weights have shape {w.shape}, expected ({spec.num_params},)")
        state.set(_key("spec", spec.id), codec.encode(spec.to_doc()))
        _store_version(state, spec, 0, 0, height, w, blobs)
        _open_round(state, spec, 0, 1, height, seed)


def get_spec(state: StateView, model_id: str) -> ModelSpec:
    doc = _load(state, _key("spec", model_id))
    if doc is None:
        raise NotFound(f"no model {model_id!r}")
    return ModelSpec.model_validate(doc)


def _head(state: StateView, model_id: str) -> Head:
    return Head.model_validate(_load(state, _key("head", model_id)))


def list_models(state: StateView) -> list[ModelSpec]:
    return [ModelSpec.model_validate(codec.decode(v)) for _, v in state.scan(b"fl/spec/")]


def submit_update(state: StateView, ctx: TxContext, payload: dict[str, Any],
                  consent: ConsentCheck | None = None) -> dict[str, Any]:
    """Validate one hospital's delta and hold it for the round; all checks come before any write.

    ``consent`` None (contract tests, the in-process simulation): no consent ledger, so no model
    requires consent and listed patients are checked only for order.
    """
    try:
        upd = SubmitUpdate.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise reject("invalid_payload", f"fl.submit_update: {field}: {first['msg']}") from None
    if state.get(_key("spec", upd.model_id)) is None:
        raise reject("unknown_model", f"no model {upd.model_id!r}")
    if HOSPITAL_ROLE not in ctx.sender_roles:
        raise reject("unauthorized", f"sender lacks the {HOSPITAL_ROLE!r} role")
    spec, head = get_spec(state, upd.model_id), _head(state, upd.model_id)
    if spec.secure:
        raise reject("secure_round", f"model {spec.id} aggregates securely: send fl.secagg_* transactions")
    if upd.round != head.round:
        when = "late: round has closed" if upd.round < head.round else "round has not opened"
        raise reject("wrong_round", f"update for round {upd.round} but round {head.round} is open ({when})")
    drawn = _draw(state, spec, head.round)
    if drawn is not None and not drawn.includes(ctx.sender):
        raise NotDrawn(f"round {head.round} of {spec.id} drew {len(drawn.drawn)} of {drawn.population} hospitals "
                       f"(sample_rate_ppm {drawn.rate_ppm}); this sender is not among them: skip this round",
                       data={"fl_reason": "not_drawn"})
    ukey = _key("upd", spec.id, _be(head.round), ctx.sender)
    if state.get(ukey) is not None:
        raise reject("duplicate", f"sender already submitted to round {head.round}")
    if head.pending >= spec.max_updates:
        raise reject("round_full", f"round {head.round} already holds {spec.max_updates} updates")
    if upd.base_version != head.version:
        raise reject("stale_version", f"delta is against version {upd.base_version}; current is {head.version}")
    _check_delta(spec, upd)
    check_patients(state, ctx, upd, head, consent)
    stored = upd.stored()
    stored["weight"] = upd.num_samples if upd.patients is None else len(upd.patients)
    stored["patients"] = None if upd.patients is None else len(upd.patients)
    if consent is not None and upd.patients is not None:
        consent.record_use(state, ctx.sender, upd.patients, spec.id, head.round, head.version, ctx.height)
    if upd.delta_blob is not None:  # validators fetch and attest what the need index names
        blob_updates.need(state, upd.delta_blob, spec.id, head.round)
    _put(state, ukey, stored)
    _put(state, _key("head", spec.id), head.model_copy(update={"pending": head.pending + 1}))
    return {"model_id": spec.id, "round": head.round, "position": head.pending + 1}


def _check_delta(spec: ModelSpec, upd: SubmitUpdate) -> None:
    """Shape and bounds of an inline delta; a blob's size now, its bounds once its bytes are read at close."""
    wrong_path = blob_updates.reject_payload(spec, upd.delta_blob is not None)
    if wrong_path is not None:
        raise wrong_path
    if upd.delta_blob is not None:
        why = blob_updates.check_ref(spec, upd.delta_blob)
        if why is not None:
            raise reject("wrong_shape", why)
        return
    assert upd.delta is not None  # SubmitUpdate holds exactly one of the two
    try:
        q = decode_delta(upd.delta, spec.num_params)
    except InvalidInput as exc:
        raise reject("wrong_shape", exc.message) from None
    peak = max(-int(q.min()), int(q.max()))
    if peak > spec.max_abs:
        raise reject("out_of_bounds", f"a coordinate has magnitude {peak} quanta; max_abs is {spec.max_abs}")


def _draw(state: StateView, spec: ModelSpec, rnd: int) -> sampling.Draw | None:
    return None if spec.sample_rate_ppm is None else sampling.load_draw(state, spec.id, rnd)


def _close_round(state: StateView, spec: ModelSpec, head: Head, height: int, seed: bytes,
                 blobs: ModelBlobs | None) -> RoundRecord:
    prefix = _key("upd", spec.id, _be(head.round)) + b"/"
    rows = list(state.scan(prefix))  # bytewise order = sender order: arrival order cannot matter
    senders = tuple(k[len(prefix):] for k, _ in rows)
    docs = [codec.decode(v) for _, v in rows]
    for k, _ in rows:
        state.delete(k)
    if spec.blobs:
        blob_updates.need_version(state, _load(state, _key("ver", spec.id, _be(head.version))), spec.id, head.round,
                                  drop=True)
    base = dict(model_id=spec.id, round=head.round, base_version=head.version, opened_height=head.opened_height,
                deadline_height=head.deadline_height, closed_height=height)
    read, blocked = blob_updates.read_round(state, spec, head.round, docs, height, blobs)
    usable = [i for i in range(len(docs)) if i not in blocked]
    if len(usable) < spec.min_updates:
        why = f" ({len(blocked)} more excluded: {sorted(set(blocked.values()))[0]})" if blocked else ""
        record = RoundRecord(**base, status="failed", participants=_participants(spec, senders, docs, blocked),
                             reason=f"{len(usable)} updates; min_updates is {spec.min_updates}{why}")
        _open_round(state, spec, head.version, head.round + 1, height, seed)
        return record
    old = blob_updates.version_weights(_load(state, _key("ver", spec.id, _be(head.version))), blobs)
    try:  # a rule that raises fails its round on every validator alike, rather than halt the chain
        values = np.empty((len(usable), spec.num_params), dtype=np.int32)
        for row, i in enumerate(usable):
            values[row] = read[i] if i in read else decode_delta(docs[i]["delta"], spec.num_params)
        weights = np.array([docs[i]["weight"] for i in usable], dtype=np.int64)
        agg = aggregate(spec.rule, spec.rule_params, Updates(values, weights, tuple(senders[i] for i in usable)),
                        max_abs=spec.max_abs, max_norm=spec.max_norm, max_samples=spec.max_samples)
        new_w = old + agg.delta
    except MemoryError:  # this machine's, not the round's
        raise
    except Exception as exc:  # nothing is written above: the round fails cleanly
        record = RoundRecord(**base, status="failed", reason=f"aggregation failed: {failure_reason(exc)}")
        _open_round(state, spec, head.version, head.round + 1, height, seed)
        return record
    mv = _store_version(state, spec, head.version + 1, head.round, height, new_w, blobs)
    excluded = {**blocked, **{usable[row]: why for row, why in agg.excluded.items()}}
    record = RoundRecord(**base, status="aggregated",
                         participants=_participants(spec, senders, docs, excluded, {usable[r] for r in agg.clipped}),
                         accepted=len(docs) - len(excluded), excluded=len(excluded),
                         new_version=mv.version, new_hash=mv.hash)
    _open_round(state, spec, mv.version, head.round + 1, height, seed)
    return record


def _participants(spec: ModelSpec, senders: Sequence[bytes], docs: list[dict[str, Any]], excluded: dict[int, str],
                  clipped: set[int] | None = None) -> list[Participant]:
    """Every update of the round in sender order; a failed round without exclusions lists none, as before."""
    if clipped is None and not excluded:
        return []
    return [Participant(sender=s, num_samples=d["num_samples"], weight=min(d["weight"], spec.max_samples),
                        norm_clipped=i in (clipped or ()), excluded=excluded.get(i),
                        dp_epsilon_micro=d.get("dp_epsilon_micro"), dp_delta_nano=d.get("dp_delta_nano"),
                        patients=d.get("patients"))
            for i, (s, d) in enumerate(zip(senders, docs))]


def _due(state: StateView, spec: ModelSpec, head: Head, height: int) -> bool:
    """At its deadline, or full, or (sampled) every drawn hospital has submitted; a blob model closes early
    only once all its blobs are available (``fl_contracts.blob_updates`` rule 3)."""
    if height >= head.deadline_height:
        return True
    drawn = _draw(state, spec, head.round)
    early = head.pending >= spec.max_updates or (drawn is not None and 0 < len(drawn.drawn) == head.pending)
    if not early or not spec.blobs:
        return early
    docs = [codec.decode(v) for _, v in state.scan(_key("upd", spec.id, _be(head.round)) + b"/")]
    return blob_updates.all_available(state, docs, height)


def end_block(state: StateView, height: int, block_hash: bytes = ZERO_HASH,
              blobs: ModelBlobs | None = None) -> list[RoundRecord]:
    """Close every round that is due; return the record of each closed round.

    The record names the participants, so the node can see which hospital's
    update a robust rule excluded. ``block_hash``: the hash of the block
    being ended, which seeds the draw of every sampled round it opens. ``blobs``: the node's blob store,
    which a model that declares ``blobs`` reads its updates and versions from and writes its versions to.
    """
    closed = []
    for spec in list_models(state):
        if spec.secure:  # fl_contracts.secure_round runs these rounds
            continue
        head = _head(state, spec.id)
        if _due(state, spec, head, height):
            record = _close_round(state, spec, head, height, block_hash, blobs)
            _put(state, _key("round", spec.id, _be(record.round)), record)
            closed.append(record)
    return closed


def close_round_externally(state: StateView, spec: ModelSpec, height: int, delta: npt.NDArray[np.int64] | None,
                           participants: list[Participant], reason: str | None = None) -> RoundRecord:
    """Hook for a round another contract ran (:mod:`fl_contracts.secure_round`): add ``delta`` to the
    current version (or fail the round with ``reason`` when it is None), record it, open the next."""
    head = _head(state, spec.id)
    base = dict(model_id=spec.id, round=head.round, base_version=head.version, opened_height=head.opened_height,
                deadline_height=head.deadline_height, closed_height=height, participants=participants)
    version = head.version
    if delta is None:
        record = RoundRecord(**base, status="failed", reason=reason)
    else:
        old = _load(state, _key("ver", spec.id, _be(head.version)))
        mv = _store_version(state, spec, head.version + 1, head.round, height, decode_weights(old["weights"]) + delta,
                            None)  # secure models are never blob models (ModelSpec refuses both)
        excluded = sum(p.excluded is not None for p in participants)
        record = RoundRecord(**base, status="aggregated", accepted=len(participants) - excluded, excluded=excluded,
                             new_version=mv.version, new_hash=mv.hash)
        version = mv.version
    _put(state, _key("round", spec.id, _be(record.round)), record)
    _open_round(state, spec, version, head.round + 1, height, ZERO_HASH)  # secure models never sample
    return record


def get_model(state: StateView, model_id: str, version: int | None = None) -> ModelVersion:
    """The current version, or a past one by number."""
    v = _head(state, get_spec(state, model_id).id).version if version is None else version
    doc = _load(state, _key("ver", model_id, _be(v))) if v >= 0 else None
    if doc is None:
        raise NotFound(f"model {model_id!r} has no version {v}")
    return ModelVersion.model_validate(doc)


def current_round(state: StateView, model_id: str) -> RoundRecord:
    """The open round, as a record with no close height yet."""
    head = _head(state, get_spec(state, model_id).id)
    return RoundRecord(model_id=model_id, round=head.round, base_version=head.version,
                       opened_height=head.opened_height, deadline_height=head.deadline_height,
                       closed_height=None, status="open", accepted=head.pending)


def round_page(state: StateView, model_id: str, from_round: int | None, limit: int) -> list[RoundRecord]:
    """Up to ``limit`` entries of the history, oldest first, from round ``from_round`` on (None: the newest
    ``limit``), the open round last when the page reaches it; one seek, so O(limit + log n) whatever the length."""
    head = _head(state, get_spec(state, model_id).id)
    first = max(1, head.round - limit + 1) if from_round is None else from_round
    prefix = _key("round", model_id) + b"/"
    out: list[RoundRecord] = []
    for _, v in state.scan(prefix, prefix + _be(first)):
        out.append(RoundRecord.model_validate(codec.decode(v)))
        if len(out) == limit:
            return out
    return [*out, current_round(state, model_id)] if first <= head.round else out


def round_history(state: StateView, model_id: str) -> list[RoundRecord]:
    """Closed rounds in order, then the open one."""
    get_spec(state, model_id)
    closed = [RoundRecord.model_validate(codec.decode(v)) for _, v in state.scan(_key("round", model_id) + b"/")]
    return [*closed, current_round(state, model_id)]


def pending_update(state: StateView, model_id: str, sender: bytes) -> PendingUpdate:
    head = _head(state, get_spec(state, model_id).id)
    doc = _load(state, _key("upd", model_id, _be(head.round), sender))
    if doc is None:
        raise NotFound(f"no update from {sender.hex()[:16]}… in {model_id} round {head.round}")
    return PendingUpdate(model_id=model_id, round=head.round, sender=sender, num_samples=doc["num_samples"],
                         weight=doc["weight"], patients=doc["patients"], delta=doc.get("delta", b""),
                         delta_blob=doc.get("delta_blob"))

