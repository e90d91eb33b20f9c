"""The secure round: the contract plays Bonawitz's server, and consensus replaces its consistency round.

Rule 1: deterministic, as in :mod:`fl_contracts.contract`: every set is kept
sorted by account key and every scan is in bytewise key order.

Rule 2: a refused transaction raises :class:`core.errors.ContractRejected`
(slug in ``data["fl_reason"]``) before its first write. One accepted
transaction records misbehaviour instead of refusing it: an unmask whose share
(or own seed) does not match its dealer's commitment marks its sender
``wrong_share`` and none of what it revealed is used (the signed transaction
is the evidence).

Rule 3: no secret of a hospital that posted a masked input is ever rebuilt
but its self-mask seed, and no secret of a hospital that dropped after the
shares stage but its mask key. The sets are fixed by consensus when the masked
stage closes, so every validator refuses the same reveals, and a reveal of
the other secret is refused outright (``would_expose_both``).

A round of a model with ``secure: true`` runs four stages (kinds ``fl.secagg_keys``, ``_shares``,
``_masked``, ``_unmask``; a kind is one ``module.action``), each open for
``round_length_blocks`` blocks and closed early once everyone expected posted:

1. ``keys``: members U1 (up to ``max_updates``) post two X25519 keys; the
   threshold ``t`` is fixed from ``|U1|`` (:func:`fl_contracts.secagg.threshold`).
2. ``shares``: U2 post, for each member, encrypted shares and commitments.
3. ``masked``: U3 (a subset of U2) post masked weighted updates.
4. ``unmask``: survivors reveal their own ``b`` (checked against its commitment),
   ``b`` shares of U3 and ``s`` shares of U2 - U3; the chain interpolates only
   the seeds of survivors that revealed nothing and the dropouts' mask keys.

A stage left with fewer than ``max(t, min_updates)`` hospitals fails the round
with its reason in the round record. On success the sum is unmasked and goes
through FedAvg's rounding rule: ``round_div(sum_i w_i x_i, sum_i w_i)`` with
``w_i = min(num_samples, max_samples)``, the same weights as a plain round, so
the new version equals the plain round's bit for bit. Hospitals bound norms
and weight their updates themselves; the chain checks only that the unmasked
sum is within ``sum_i w_i * max_abs``.

State (under ``fl/sec/``; the four stage prefixes are deleted at close)::

    fl/sec/round/<id>             SecureRound of the open round
    fl/sec/keys/<id>/<sender>     posted keys
    fl/sec/shares/<id>/<dealer>   ciphertexts and commitments
    fl/sec/commit/<id>/<holder>/<dealer>  raw commit_b || commit_s, the unmask check's one read
    fl/sec/seed/<id>/<dealer>     raw commitment to the dealer's own self-mask seed
    fl/sec/masked/<id>/<sender>   masked input and num_samples
    fl/sec/reveal/<id>/<holder>   revealed shares
    fl/sec/outcome/<id>/<round>   SecureOutcome of a closed round (kept)
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from core import codec
from core.errors import ContractRejected, FbciError, InvalidInput, NotFound
from core.state import StateView, TxContext
from core.wire import WIRE_BYTES
from fl_contracts import contract, secagg
from fl_contracts.contract import Participant, RoundRecord
from fl_contracts.fixedpoint import round_div
from fl_contracts.secagg_msgs import (
    KEYS_KIND, MASKED_KIND, SHARES_KIND, UNMASK_KIND, SecKeys, SecMasked, SecShares, SecUnmask, SecureOutcome,
    Stage,
)
from fl_contracts.spec import ModelSpec

_STATE = ConfigDict(extra="forbid", **WIRE_BYTES)
STAGE_PREFIXES = ("keys", "shares", "commit", "seed", "masked", "reveal")
M = TypeVar("M", bound=BaseModel)


class SecureRound(BaseModel):
    model_config = _STATE
    round: int
    base_version: int
    stage: Stage
    deadline_height: int
    keys_posted: int = 0
    threshold: int = 0
    members: list[bytes] = []
    shared: list[bytes] = []
    masked: list[bytes] = []
    revealed: list[bytes] = []
    wrong_share: list[bytes] = []


class RoundFailed(Exception):
    """Raised inside end-of-block processing; the round is recorded as failed with this reason."""


def state_key(kind: str, model_id: str, *parts: bytes) -> bytes:
    return b"/".join([b"fl", b"sec", kind.encode(), model_id.encode(), *parts])


_SPECS: dict[bytes, ModelSpec] = {}
"""Parsed specs by their stored bytes: a pure function of the bytes, so caching it cannot change a result,
and every transaction of a secure round would otherwise re-validate the spec."""


def _spec(state: StateView, model_id: str) -> ModelSpec:
    raw = state.get(b"fl/spec/" + model_id.encode())  # the FL contract's layout (fl_contracts.contract)
    if raw is None:
        raise NotFound(f"no model {model_id!r}")
    if raw not in _SPECS:
        if len(_SPECS) > 64:
            _SPECS.clear()
        _SPECS[raw] = ModelSpec.model_validate(codec.decode(raw))
    return _SPECS[raw]


def _reject(why: str, message: str) -> ContractRejected:
    return ContractRejected(message, data={"fl_reason": why})


def load_round(state: StateView, spec: ModelSpec) -> SecureRound:
    """The stored round, or a fresh keys stage for the round the FL contract has open."""
    raw = state.get(state_key("round", spec.id))
    if raw is not None:
        return SecureRound.model_validate(codec.decode(raw))
    head = contract.current_round(state, spec.id)
    return SecureRound(round=head.round, base_version=head.base_version, stage="keys",
                       deadline_height=head.deadline_height)


def _save(state: StateView, key: bytes, value: BaseModel) -> None:
    state.set(key, codec.encode(value.model_dump()))


def read_doc(state: StateView, key: bytes) -> Any:
    raw = state.get(key)
    if raw is None:
        raise NotFound(f"no secure-round entry {key!r}")
    return codec.decode(raw)


def _admit(state: StateView, ctx: TxContext, payload: dict[str, Any], cls: type[M], kind: str,
           stage: Stage) -> tuple[ModelSpec, SecureRound, M]:
    """The checks every stage shares: payload shape, model, role, round and stage."""
    try:
        msg = cls.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _reject("invalid_payload", f"{kind}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    model_id, rnd_no = getattr(msg, "model_id"), getattr(msg, "round")
    try:
        spec = _spec(state, model_id)
    except NotFound:
        raise _reject("unknown_model", f"no model {model_id!r}") from None
    if not spec.secure:
        raise _reject("not_secure", f"model {spec.id} does not aggregate securely: send fl.submit_update")
    if contract.HOSPITAL_ROLE not in ctx.sender_roles:
        raise _reject("unauthorized", f"sender lacks the {contract.HOSPITAL_ROLE!r} role")
    rnd = load_round(state, spec)
    if rnd_no != rnd.round:
        raise _reject("wrong_round", f"{kind} for round {rnd_no} but round {rnd.round} is open")
    if rnd.stage != stage:
        raise _reject("wrong_stage", f"{kind} belongs to the {stage} stage; round {rnd.round} is in {rnd.stage}")
    return spec, rnd, msg


def _require(member: bool, why: str, message: str) -> None:
    if not member:
        raise _reject(why, message)


def post_keys(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    spec, rnd, msg = _admit(state, ctx, payload, SecKeys, KEYS_KIND, "keys")
    key = state_key("keys", spec.id, ctx.sender)
    _require(state.get(key) is None, "duplicate", "sender already posted keys this round")
    _require(rnd.keys_posted < spec.max_updates, "round_full", f"round already has {spec.max_updates} members")
    for name in ("enc_pk", "mask_pk"):
        try:
            secagg.check_public_key(getattr(msg, name))
        except InvalidInput as exc:
            raise _reject("invalid_payload", f"{name}: {exc.message}") from None
    state.set(key, codec.encode({"enc_pk": msg.enc_pk, "mask_pk": msg.mask_pk}))
    _save(state, state_key("round", spec.id), rnd.model_copy(update={"keys_posted": rnd.keys_posted + 1}))
    return {"model_id": spec.id, "round": rnd.round, "position": rnd.keys_posted + 1}


def post_shares(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    spec, rnd, msg = _admit(state, ctx, payload, SecShares, SHARES_KIND, "shares")
    _require(ctx.sender in rnd.members, "not_member", "sender posted no keys this round")
    _require(ctx.sender not in rnd.shared, "duplicate", "sender already posted shares this round")
    n = len(rnd.members)
    if not len(msg.ciphertexts) == len(msg.commit_b) == len(msg.commit_s) == n:
        raise _reject("wrong_shape", f"shares for {n} members expected: one ciphertext and two commitments each")
    state.set(state_key("shares", spec.id, ctx.sender), codec.encode(msg.model_dump(exclude={"model_id", "round"})))
    for holder, cb, cs in zip(rnd.members, msg.commit_b, msg.commit_s):
        state.set(state_key("commit", spec.id, holder, ctx.sender), cb + cs)
    state.set(state_key("seed", spec.id, ctx.sender), msg.commit_seed)
    insort(rnd.shared, ctx.sender)
    _save(state, state_key("round", spec.id), rnd)
    return {"model_id": spec.id, "round": rnd.round, "position": len(rnd.shared)}


def post_masked(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    spec, rnd, msg = _admit(state, ctx, payload, SecMasked, MASKED_KIND, "masked")
    _require(ctx.sender in rnd.shared, "not_member", "sender posted no shares this round")
    _require(ctx.sender not in rnd.masked, "duplicate", "sender already posted its masked input")
    want = spec.num_params * secagg.RING_DTYPE.itemsize
    _require(len(msg.masked) == want, "wrong_shape", f"masked input is {len(msg.masked)} bytes; expected {want}")
    state.set(state_key("masked", spec.id, ctx.sender), codec.encode({"num_samples": msg.num_samples,
                                                                  "masked": msg.masked}))
    insort(rnd.masked, ctx.sender)
    _save(state, state_key("round", spec.id), rnd)
    return {"model_id": spec.id, "round": rnd.round, "position": len(rnd.masked)}


def post_unmask(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    spec, rnd, msg = _admit(state, ctx, payload, SecUnmask, UNMASK_KIND, "unmask")
    _require(ctx.sender in rnd.masked, "not_survivor", "only a hospital whose masked input counts reveals shares")
    _require(ctx.sender not in rnd.revealed and ctx.sender not in rnd.wrong_share, "duplicate",
             "sender already revealed its shares")
    seen: set[tuple[bytes, str]] = set()
    for s in msg.shares:
        who = s.dealer.hex()[:16]
        _require((s.dealer, s.kind) not in seen, "invalid_payload", f"share of {who} ({s.kind}) given twice")
        seen.add((s.dealer, s.kind))
        _require(s.dealer in rnd.shared, "unknown_dealer", f"{who} dealt no shares this round")
        if s.kind == "s":
            _require(s.dealer not in rnd.masked, "would_expose_both",
                     f"{who} posted a masked input: its mask key is never rebuilt, or its update would be exposed")
        else:
            _require(s.dealer in rnd.masked, "would_expose_both",
                     f"{who} dropped out: its self-mask seed is never rebuilt, or its update would be exposed")
    tag = secagg.RoundTag(spec.id, rnd.round)
    wrong = None
    if msg.own_seed is not None and secagg.seed_commitment(tag, ctx.sender, msg.own_seed) != state.get(
            state_key("seed", spec.id, ctx.sender)):
        wrong = ctx.sender
    for s in msg.shares:
        both = state.get(state_key("commit", spec.id, ctx.sender, s.dealer)) or b""
        committed = both[:32] if s.kind == "b" else both[32:]
        if wrong is None and secagg.share_commitment(tag, s.dealer, ctx.sender, s.kind, s.share) != committed:
            wrong = s.dealer
    if wrong is not None:
        insort(rnd.wrong_share, ctx.sender)
        _save(state, state_key("round", spec.id), rnd)
        return {"model_id": spec.id, "round": rnd.round, "excluded": "wrong_share", "dealer": wrong.hex()}
    state.set(state_key("reveal", spec.id, ctx.sender),
              codec.encode({"seed": msg.own_seed, "shares": [[s.dealer, s.kind, s.share] for s in msg.shares]}))
    insort(rnd.revealed, ctx.sender)
    _save(state, state_key("round", spec.id), rnd)
    return {"model_id": spec.id, "round": rnd.round, "accepted_shares": len(msg.shares)}


def _stage_complete(rnd: SecureRound, spec: ModelSpec) -> bool:
    return {
        "keys": rnd.keys_posted >= spec.max_updates,
        "shares": len(rnd.shared) == len(rnd.members),
        "masked": len(rnd.masked) == len(rnd.shared),
        "unmask": len(rnd.revealed) + len(rnd.wrong_share) == len(rnd.masked),
    }[rnd.stage]


def _quorum(have: int, what: str, rnd: SecureRound, spec: ModelSpec) -> None:
    need = max(rnd.threshold, spec.min_updates)
    if have < need:
        raise RoundFailed(f"secure {rnd.stage} stage: {have} {what}; the round needs {need} "
                          f"(threshold {rnd.threshold}, min_updates {spec.min_updates})")


def _advance(state: StateView, spec: ModelSpec, rnd: SecureRound, height: int) -> SecureRound | RoundRecord:
    """Close the current stage; returns the next stage's round, or the record once the sum is published."""
    if rnd.stage == "keys":
        members = [k[len(state_key("keys", spec.id)) + 1:] for k, _ in state.scan(state_key("keys", spec.id) + b"/")]
        need = max(spec.min_updates, 2)
        if len(members) < need:
            raise RoundFailed(f"secure keys stage: {len(members)} hospitals posted keys; the round needs {need}")
        nxt = rnd.model_copy(update={"members": members, "threshold": secagg.threshold(len(members))})
    elif rnd.stage == "shares":
        _quorum(len(rnd.shared), "hospitals posted shares", rnd, spec)
        nxt = rnd
    elif rnd.stage == "masked":
        _quorum(len(rnd.masked), "masked inputs were included", rnd, spec)
        nxt = rnd
    else:
        return _publish(state, spec, rnd, height)
    stage = ("keys", "shares", "masked", "unmask")[("keys", "shares", "masked").index(rnd.stage) + 1]
    return nxt.model_copy(update={"stage": stage, "deadline_height": height + spec.round_length_blocks})


def _rebuild(state: StateView, spec: ModelSpec, rnd: SecureRound) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """Self-mask seeds of the survivors (as revealed by themselves, else from shares) and mask keys of
    the dropouts, each from the first ``t`` valid shares."""
    got: dict[tuple[bytes, str], list[tuple[int, bytes]]] = {}
    seeds: dict[bytes, bytes] = {}
    keys: dict[bytes, bytes] = {}
    for holder in rnd.revealed:  # sorted, so the first t shares are the same on every validator
        reveal = read_doc(state, state_key("reveal", spec.id, holder))
        if reveal["seed"] is not None:
            seeds[holder] = reveal["seed"]
        for dealer, kind, share in reveal["shares"]:
            got.setdefault((dealer, kind), []).append((rnd.members.index(holder) + 1, share))
    wanted = [(dealer, "b" if dealer in rnd.masked else "s") for dealer in rnd.shared if dealer not in seeds]
    for dealer, kind in wanted:
        have = len(got.get((dealer, kind), []))
        if have < rnd.threshold:
            raise RoundFailed(f"secure unmask stage: {have} valid shares of {kind} of {dealer.hex()[:16]}; "
                              f"threshold is {rnd.threshold}")
    secrets = secagg.combine_all([got[w][: rnd.threshold] for w in wanted])
    for (dealer, kind), secret in zip(wanted, secrets):
        if kind == "b":
            seeds[dealer] = secret
            continue
        private = secagg.mask_key(secagg.RoundTag(spec.id, rnd.round), dealer, secret)
        if secagg.x25519_public(private) != read_doc(state, state_key("keys", spec.id, dealer))["mask_pk"]:
            raise RoundFailed(f"secure unmask stage: shares of {dealer.hex()[:16]}'s mask key are inconsistent")
        keys[dealer] = private
    return seeds, keys


def _publish(state: StateView, spec: ModelSpec, rnd: SecureRound, height: int) -> RoundRecord:
    seeds, keys = _rebuild(state, spec, rnd)
    total = np.zeros(spec.num_params, dtype=np.uint64)
    weight = 0
    for sender in rnd.masked:
        doc = read_doc(state, state_key("masked", spec.id, sender))
        np.add(total, np.frombuffer(doc["masked"], dtype=secagg.RING_DTYPE), out=total)
        weight += min(doc["num_samples"], spec.max_samples)
    survivors = [(u, read_doc(state, state_key("keys", spec.id, u))["mask_pk"]) for u in rnd.masked]
    weighted_sum = secagg.unmask_sum(secagg.RoundTag(spec.id, rnd.round), total, sorted(seeds.items()),
                                     sorted(keys.items()), survivors)
    if int(np.abs(weighted_sum).max()) > weight * spec.max_abs:
        raise RoundFailed("secure unmask stage: the unmasked sum exceeds sum(w) * max_abs: an input was not a "
                          "bounded weighted update, or a dealer's shares were inconsistent")
    delta = round_div(weighted_sum, weight)
    record = contract.close_round_externally(state, spec, height, delta, _participants(state, spec, rnd))
    _finish(state, spec, rnd, "aggregated", None)
    return record


def _participants(state: StateView, spec: ModelSpec, rnd: SecureRound) -> list[Participant]:
    out = []
    for sender in rnd.shared:
        raw = state.get(state_key("masked", spec.id, sender))
        n = codec.decode(raw)["num_samples"] if raw is not None else 0
        out.append(Participant(sender=sender, num_samples=n, weight=min(n, spec.max_samples), norm_clipped=False,
                               excluded=None if raw is not None else "dropped_out"))
    return out


def _finish(state: StateView, spec: ModelSpec, rnd: SecureRound, status: str, reason: str | None) -> None:
    outcome = SecureOutcome(model_id=spec.id, round=rnd.round, stage_reached=rnd.stage, threshold=rnd.threshold,
                            members=rnd.members, shared=rnd.shared, masked=rnd.masked,
                            wrong_share=rnd.wrong_share, status=status, reason=reason)
    _save(state, state_key("outcome", spec.id, rnd.round.to_bytes(8, "big")), outcome)
    for kind in STAGE_PREFIXES:
        for k, _ in list(state.scan(state_key(kind, spec.id) + b"/")):
            state.delete(k)
    state.delete(state_key("round", spec.id))


def end_block(state: StateView, height: int) -> list[RoundRecord]:
    """Close each secure round's stage that is complete or at its deadline; return closed rounds' records."""
    closed: list[RoundRecord] = []
    for spec in contract.list_models(state):
        if not spec.secure:
            continue
        rnd = load_round(state, spec)
        if not (_stage_complete(rnd, spec) or height >= rnd.deadline_height):
            continue
        try:  # every check of a closing stage comes before its first write
            nxt = _advance(state, spec, rnd, height)
        except (RoundFailed, FbciError, ValueError) as exc:  # deterministic on every validator: fail, never halt
            reason = str(exc) if isinstance(exc, RoundFailed) else f"secure {rnd.stage} stage: {exc}"
            closed.append(contract.close_round_externally(state, spec, height, None,
                                                          _participants(state, spec, rnd), reason))
            _finish(state, spec, rnd, "failed", reason)
            continue
        if isinstance(nxt, RoundRecord):
            closed.append(nxt)
        else:
            _save(state, state_key("round", spec.id), nxt)
    return closed


Handler = Callable[[StateView, TxContext, dict[str, Any]], dict[str, Any]]
HANDLERS: tuple[tuple[str, Handler], ...] = (
    (KEYS_KIND, post_keys), (SHARES_KIND, post_shares), (MASKED_KIND, post_masked), (UNMASK_KIND, post_unmask),
)
