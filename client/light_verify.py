"""What a light client checks, with no I/O: a header against its commit certificate, an answer
against the header.

- :class:`HeaderVerifier` accepts a header only with a commit certificate that
  verifies (``consensus.certificates``, the code validators run in block sync)
  against the validator set *of that height*, which a
  :class:`ValidatorSetProvider` supplies.
- :func:`verify_answer` then checks a :class:`core.proofs.ProvenAnswer`: the
  proof must hash to the header's ``state_hash`` (the state after the previous
  height, ``core.block``), the query is re-executed over the proven state, and
  its result must be the served one; the re-executed result is what is returned.

Validator-set changes (CometBFT's rule): a :class:`ChainValidators` provider
starts from genesis's set and accepts a later set only through
:func:`accept_change`: the header of the height before it must verify against
the set it knows and name the new one in ``next_validators_hash``. Every header
it verifies must name, in ``validators_hash``, the set it was verified with, so
a quorum of an old set cannot pass a header of a height whose set changed
(:class:`core.errors.ValidatorSetUnknown`: follow the changes, then check again).
:class:`GenesisValidators` (bare keys, no set hash) is the same set at every height.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from consensus import CommitCertificate, KeyedVerifier
from core.api import Params
from core.block import BlockHeader
from core.errors import AnswerMismatch, FbciError, HeaderUnverified, NotFound, StaleAnswer, ValidatorSetUnknown
from core.proofs import ProvenAnswer, ProvenState, StateProof
from core.state import StateView
from core.validators import ScheduledSet, ValidatorSet, set_at
from core.wire import to_wire

Answer = Callable[[StateView, Any], Any]
"""A query's pure answer function (``fl_contracts.queries``, ``ids.queries``, ``core.proofs``)."""


class ValidatorSetProvider(Protocol):
    def validators_at(self, height: int) -> tuple[bytes, ...]:
        """The public keys whose quorum certifies the block at ``height``."""
        ...

    def set_hash_at(self, height: int) -> bytes | None:
        """The hash the header of ``height`` must carry as ``validators_hash`` (None: not checked)."""
        ...


@dataclass(frozen=True)
class GenesisValidators:
    """One fixed set of bare keys at every height, with no set hash to check: for tools and tests that know
    only keys. A client of a real chain uses :class:`ChainValidators`, which follows its changes."""

    validators: tuple[bytes, ...]

    def validators_at(self, height: int) -> tuple[bytes, ...]:
        return self.validators

    def set_hash_at(self, height: int) -> bytes | None:
        return None


class ChainValidators:
    """The sets this client has followed the chain to, from genesis's; see :func:`accept_change`."""

    def __init__(self, genesis: ValidatorSet) -> None:
        self.sets = [ScheduledSet(1, genesis)]

    def validators_at(self, height: int) -> tuple[bytes, ...]:
        return set_at(self.sets, height).keys

    def set_hash_at(self, height: int) -> bytes | None:
        return set_at(self.sets, height).hash()


def accept_change(provider: ChainValidators, headers: HeaderVerifier, change: ScheduledSet, header: BlockHeader,
                  certificate: bytes) -> None:
    """Follow ``change`` (a set the chain decided, deciding from ``change.start``) on the word of the header
    before it, which must verify against the set this client knows and name the new set as the next."""
    if change.start <= provider.sets[-1].start or header.height != change.start - 1:
        raise HeaderUnverified(f"a set change at height {change.start} is accepted only after the last one "
                               f"known ({provider.sets[-1].start}) and on the header of height {change.start - 1}")
    headers.verify(header, certificate)
    if header.next_validators_hash != change.validators.hash():
        raise HeaderUnverified(f"the certified header of height {header.height} names another next validator set "
                               f"than the one served for height {change.start}")
    provider.sets.append(change)
    headers.learn(change.validators)
class HeaderVerifier:
    def __init__(self, chain_id: str, validators: ValidatorSetProvider) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self._verifier = KeyedVerifier(chain_id)  # by each validator's key type, once its set is known
        if isinstance(validators, ChainValidators):
            for item in validators.sets:
                self.learn(item.validators)

    def learn(self, members: ValidatorSet) -> None:
        """Check ``members``' signatures by their registered key types (hybrid ones by both halves)."""
        self._verifier.learn(members.verifying_keys())

    def verify(self, header: BlockHeader, certificate: bytes) -> None:
        if header.chain_id != self.chain_id:
            raise HeaderUnverified(f"the header is of chain {header.chain_id!r}, not {self.chain_id!r}")
        try:
            cert = CommitCertificate.decode(certificate)
            if cert.height != header.height or cert.block_hash != header.hash:
                raise HeaderUnverified(f"the commit certificate certifies block {cert.block_hash.hex()[:16]} at "
                                       f"height {cert.height}, not this header ({header.height})")
            expected = self.validators.set_hash_at(header.height)
            if expected is not None and header.validators_hash != expected:
                raise ValidatorSetUnknown(f"the header of height {header.height} names a validator set this client "
                                          f"has not followed the chain to")
            cert.verify(self.chain_id, self.validators.validators_at(header.height), self._verifier)
        except HeaderUnverified:
            raise
        except FbciError as exc:
            raise HeaderUnverified(f"the header of height {header.height} has no valid commit certificate: "
                                   f"{exc.message}") from None


def verify_answer(answer: ProvenAnswer, path: str, answer_fn: Answer, params: Params, headers: HeaderVerifier,
                  *, min_height: int = 0) -> Any:
    """The checked result of query ``path`` (raises :class:`core.errors.NotFound` for a proven absence).

    ``min_height``: the lowest header height still fresh enough (below it: :class:`StaleAnswer`)."""
    header = answer.block_header()
    headers.verify(header, answer.certificate)
    if header.height < min_height:
        raise StaleAnswer(f"the answer to {path} proves the state of height {answer.state_height}, against the "
                          f"header of height {header.height}; this client already trusts height "
                          f"{min_height} or later")
    state = ProvenState(StateProof.decode(answer.proof), header.state_hash)
    try:
        result = answer_fn(state, params)
    except NotFound as exc:
        if answer.not_found is None:
            raise AnswerMismatch(f"{path}: the validator answered a value where its proof shows none "
                                 f"({exc.message})") from None
        raise NotFound(f"{exc.message} (proven at height {answer.state_height})",
                       data={"proven_height": answer.state_height}) from None
    if answer.not_found is not None:
        raise AnswerMismatch(f"{path}: the validator answered 'not found' where its proof shows a value")
    if to_wire(result) != answer.result:
        raise AnswerMismatch(f"{path}: the served result differs from what the proof of height "
                             f"{answer.state_height} gives")
    return result
