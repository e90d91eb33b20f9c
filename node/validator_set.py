"""The validator set as state, and the decisions that change it: add, remove, and rotate one key.

State holds one entry per height from which a set decides
(``core.validators.set_key``; genesis writes height 1). A decision executed in block H writes the new set
at H + 2 (CometBFT's rule), so when block H + 1 is proposed the proposer
already knows the sets of H + 1 and H + 2 and puts their hashes in the header
(``validators_hash``, ``next_validators_hash``), and every validator checks
each height against its own set. Being state, each set is in the trie and
provable like any other read.

A change is refused, with the reason, when it would leave fewer than
:data:`core.validators.MIN_VALIDATORS` validators, remove f + 1 or more of the
current set at once (those could be the honest ones the old and new quorums
must share), add a key already in the set, or while another change is decided
but not yet in effect: each change is judged against the set it replaces.
A key rotation is such a change too, swapping one key in place
(:func:`rotate_own_key`, signed by the old key; :func:`gov_rotate_key` when it is lost).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consensus import KeyedVerifier, Verifier, max_faulty
from core.accounts import Account, load_account, store_account
from core.crypto import KeyType
from core.errors import InvalidInput, ValidatorChangeInFlight, ValidatorChangeRefused, ValidatorKeyRefused
from core.keyhistory import current_key, was_rotated
from core.state import StateView, TxContext
from core.tx import parse_payload
from core.validators import MIN_VALIDATORS, ScheduledSet, Validator, ValidatorSet, schedule, set_at, set_key
from genesis.schema import ValidatorInfo
from node.accounts import move_key
from node.application import ValidatorUpdate

EFFECT_DELAY = 2
"""A set decided in block H decides heights H + 2 onward."""
VALIDATOR_ROLE = "validator"

def bare_set(keys: tuple[bytes, ...]) -> ValidatorSet:
    """Keys alone as a set (no names, Ed25519): the set of a chain whose state holds none."""
    return ValidatorSet(tuple(Validator(k, "", "") for k in keys))


class ValidatorSchedule:
    """The application's copy of the schedule: read from state once, then extended by each block that
    decides a set, and the verifier taught every set's key types. ``fallback``: genesis's keys, for a state
    that holds no sets (tests' bare ledgers, and stores written before sets were state)."""

    def __init__(self, fallback: tuple[bytes, ...], verifier: Verifier) -> None:
        self._fallback = bare_set(fallback)
        self._verifier = verifier
        self._sets: list[ScheduledSet] | None = None

    def forget(self) -> None:
        """State was rewritten (genesis): read it again."""
        self._sets = None

    def at(self, state: StateView, height: int) -> ValidatorSet:
        return set_at(self._load(state), height)

    def decided(self, state: StateView) -> tuple[ScheduledSet, ...]:
        """Every set, genesis's first: what this validator offers a joiner with its snapshots."""
        return tuple(self._load(state))

    def after_block(self, state: StateView, height: int) -> ValidatorUpdate | None:
        """The set the block at ``height`` (just executed into ``state``) decided, if any."""
        decided = decided_at(state, height)
        if decided is None:
            return None
        update = ValidatorUpdate(height + EFFECT_DELAY, decided)
        self._load(state).append(ScheduledSet(update.height, decided))
        self._learn(decided)
        return update

    def _load(self, state: StateView) -> list[ScheduledSet]:
        if self._sets is None:
            self._sets = schedule(state) or [ScheduledSet(1, self._fallback)]
            for item in self._sets:
                self._learn(item.validators)
        return self._sets

    def _learn(self, members: ValidatorSet) -> None:
        if isinstance(self._verifier, KeyedVerifier):
            self._verifier.learn(members.verifying_keys())


def init_validator_set(state: StateView, genesis_set: ValidatorSet) -> None:
    state.set(set_key(1), genesis_set.encode())


def keys_at(state: StateView, height: int, fallback: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The keys deciding ``height``; ``fallback`` (genesis's) on a state written before sets were state."""
    decided = schedule(state)
    return set_at(decided, height).keys if decided else fallback


def decided_at(state: StateView, height: int) -> ValidatorSet | None:
    """The set block ``height`` decided (in effect from ``height + 2``), if it decided one."""
    raw = state.get(set_key(height + EFFECT_DELAY))
    return None if raw is None else ValidatorSet.decode(raw)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AddPayload(_Strict):
    public_key: bytes = Field(min_length=32, max_length=32)
    name: str
    p2p_address: str
    key_type: Literal["ed25519", "ed25519+ml-dsa-65"] = "ed25519"
    ml_dsa_public_key: bytes | None = None

    def validator(self) -> Validator:
        """Checked by genesis's own validator rules (name, dial address, hybrid key halves)."""
        try:
            ValidatorInfo(name=self.name, public_key=self.public_key.hex(), p2p_address=self.p2p_address,
                          key_type=self.key_type,
                          ml_dsa_public_key=None if self.ml_dsa_public_key is None else self.ml_dsa_public_key.hex())
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidInput(f"payload.{'.'.join(str(p) for p in first['loc']) or 'validator'}: "
                               f"{first['msg']}") from None
        return Validator(self.public_key, self.name, self.p2p_address, self.key_type,
                         self.ml_dsa_public_key or b"")


class RemovePayload(_Strict):
    public_keys: list[bytes] = Field(min_length=1, max_length=64)
    """Validators' keys; a key rotated away since names the validator that holds its successor (the key a
    conviction names may be an old one)."""


class NewKeyPayload(_Strict):
    """``validator.rotate_key`` signed by the old key: the key the validator moves to."""

    new_public_key: bytes = Field(min_length=32, max_length=32)
    key_type: Literal["ed25519", "ed25519+ml-dsa-65"] = "ed25519"
    ml_dsa_public_key: bytes | None = None

    def entry(self, old: Validator) -> Validator:
        """``old``'s place in the set under the new key, checked by genesis's validator rules."""
        return AddPayload(public_key=self.new_public_key, name=old.name, p2p_address=old.p2p_address,
                          key_type=self.key_type, ml_dsa_public_key=self.ml_dsa_public_key).validator()


class GovNewKeyPayload(NewKeyPayload):
    """The governance ``validator.rotate_key``, for a validator whose old key is lost: which one, by its key."""

    public_key: bytes = Field(min_length=32, max_length=32)


def check_add(params: dict[str, Any]) -> None:
    parse_payload(AddPayload, params).validator()


def check_rotate_key(params: dict[str, Any]) -> None:
    """The new key's halves (name and address are the set's, checked when it runs)."""
    p = parse_payload(GovNewKeyPayload, params)
    if (p.key_type == KeyType.HYBRID.value) != (p.ml_dsa_public_key is not None):
        raise InvalidInput("payload.ml_dsa_public_key: is required for a hybrid key and absent otherwise")
    Validator(p.new_public_key, "", "", p.key_type, p.ml_dsa_public_key or b"").verifying_key()


def check_remove(params: dict[str, Any]) -> None:
    p = parse_payload(RemovePayload, params)
    if any(len(k) != 32 for k in p.public_keys) or len(set(p.public_keys)) != len(p.public_keys):
        raise InvalidInput("payload.public_keys: distinct 32-byte validator keys")


def _current(state: StateView, height: int) -> ValidatorSet:
    decided = schedule(state)
    if not decided:
        raise ValidatorChangeRefused("this chain's state holds no validator set (its store predates validator-set "
                                     "changes); its set is genesis's for good")
    pending = [item.start for item in decided if item.start > height]
    if pending:
        raise ValidatorChangeInFlight(f"a validator-set change decided earlier takes effect at height {pending[0]}; "
                                      f"only one change may be in flight, propose this one after that height")
    return set_at(decided, height)


def _decide(state: StateView, ctx: TxContext, new: ValidatorSet) -> dict[str, Any]:
    if len(new) < MIN_VALIDATORS:
        raise ValidatorChangeRefused(f"the change would leave {len(new)} validators; a chain needs at least "
                                     f"{MIN_VALIDATORS} (3f + 1 with f >= 1)")
    effective = ctx.height + EFFECT_DELAY
    state.set(set_key(effective), new.encode())
    return {"effective_height": effective, "validators": len(new), "validators_hash": new.hash().hex()}


def add_validator(state: StateView, ctx: TxContext, params: dict[str, Any]) -> dict[str, Any]:
    """``validator.add``: the hospital's validator joins the set at H + 2, last in proposer order, and its
    key becomes an account with role validator (its anchors and evidence are transactions)."""
    joining = parse_payload(AddPayload, params).validator()
    current = _current(state, ctx.height)
    if joining.public_key in current:
        raise ValidatorChangeRefused(f"key {joining.public_key.hex()[:16]}… is already a validator")
    if any(v.name == joining.name or v.p2p_address == joining.p2p_address for v in current.validators):
        raise ValidatorChangeRefused(f"a validator already has the name {joining.name!r} or the address "
                                     f"{joining.p2p_address!r}")
    account = load_account(state, joining.public_key)
    if account is None:
        store_account(state, joining.public_key, Account(joining.name, frozenset({VALIDATOR_ROLE}), 0))
    else:
        store_account(state, joining.public_key, Account(account.name, account.roles | {VALIDATOR_ROLE},
                                                         account.nonce))
    return {"added": joining.name, **_decide(state, ctx, ValidatorSet((*current.validators, joining)))}


def remove_validators(state: StateView, ctx: TxContext, params: dict[str, Any]) -> dict[str, Any]:
    """``validator.remove``: the named validators leave the set at H + 2 and lose role validator."""
    p = parse_payload(RemovePayload, params)
    p = RemovePayload(public_keys=[current_key(state, k) for k in p.public_keys])
    current = _current(state, ctx.height)
    unknown = [k.hex()[:16] for k in p.public_keys if k not in current]
    if unknown:
        raise ValidatorChangeRefused(f"not validators now: {', '.join(unknown)}")
    f = max_faulty(len(current))
    if len(p.public_keys) > f:
        raise ValidatorChangeRefused(f"the change removes {len(p.public_keys)} of {len(current)} validators at once; "
                                     f"at most f = {f} may go in one decision")
    gone = set(p.public_keys)
    for key in p.public_keys:
        account = load_account(state, key)
        if account is not None:
            store_account(state, key, Account(account.name, account.roles - {VALIDATOR_ROLE}, account.nonce))
    kept = ValidatorSet(tuple(v for v in current.validators if v.public_key not in gone))
    return {"removed": [v.name for v in current.validators if v.public_key in gone], **_decide(state, ctx, kept)}


def rotate_own_key(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """``validator.rotate_key``, signed by the validator's old key: its next nonce carries over."""
    p = parse_payload(NewKeyPayload, payload)
    account = load_account(state, ctx.sender)
    assert account is not None  # admission refused an unknown sender
    return _rotate(state, ctx, ctx.sender, p, account.nonce + 1)


def gov_rotate_key(state: StateView, ctx: TxContext, params: dict[str, Any]) -> dict[str, Any]:
    """The governance ``validator.rotate_key``: the members move a validator whose old key is lost."""
    p = parse_payload(GovNewKeyPayload, params)
    account = load_account(state, p.public_key)
    return _rotate(state, ctx, p.public_key, p, account.nonce if account is not None else 0)


def _rotate(state: StateView, ctx: TxContext, old: bytes, p: NewKeyPayload, nonce: int) -> dict[str, Any]:
    """One key swapped in place (same name, address and proposer slot) from H + 2, as any set change: the
    old key's votes count up to H + 1 and never after, what it signed before stays valid (each height is
    checked by its own set), and its account moves to the new key now, with the key history recording it
    (``core.keyhistory``), so evidence naming the old key still resolves to the validator."""
    current = _current(state, ctx.height)
    held = current.get(old)
    if held is None:
        raise ValidatorKeyRefused(f"key {old.hex()[:16]}… is not a validator now")
    new = p.new_public_key
    if new in current:
        raise ValidatorKeyRefused(f"key {new.hex()[:16]}… is already a validator")
    if load_account(state, new) is not None or was_rotated(state, new):
        raise ValidatorKeyRefused(f"key {new.hex()[:16]}… is a registered account or a retired key; a validator "
                                  "moves to a fresh key")
    entry = p.entry(held)
    if load_account(state, old) is None:  # a state whose validator has no account: nothing to move
        store_account(state, old, Account(held.name, frozenset({VALIDATOR_ROLE}), nonce))
    move_key(state, old, new, ctx.height, nonce, validator=True)
    swapped = ValidatorSet(tuple(entry if v.public_key == old else v for v in current.validators))
    return {"rotated": held.name, "new_public_key": new, **_decide(state, ctx, swapped)}
