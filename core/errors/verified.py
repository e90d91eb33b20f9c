"""Errors of answers that do not check out against a commit certificate (light client side)."""

from __future__ import annotations

from core.errors.base import FbciError


class UnverifiedAnswer(FbciError):
    """A validator's answer that does not check out against a commit certificate (a proof that does
    not reach the certified root, a header the validator set did not sign, a value the proof
    contradicts): the light client refuses it and may ask another validator."""

    code = -32130
    reason = "unverified_answer"


class ProofInvalid(UnverifiedAnswer):
    """A state proof that is malformed or does not hash to the header's state root."""

    code = -32131
    reason = "proof_invalid"


class ProofIncomplete(UnverifiedAnswer):
    """A proof without a node the read needs (a validator hiding part of a range answers this way)."""

    code = -32132
    reason = "proof_incomplete"


class AnswerMismatch(UnverifiedAnswer):
    """The served value differs from the value the verified proof gives."""

    code = -32133
    reason = "answer_mismatch"


class HeaderUnverified(UnverifiedAnswer):
    """A header whose commit certificate does not verify against the validator set of its height."""

    code = -32134
    reason = "header_unverified"


class StaleAnswer(UnverifiedAnswer):
    """A proof against a certified header older than one this client already trusts."""

    code = -32135
    reason = "stale_answer"


class NoVerifiedAnswer(FbciError):
    """Every configured validator failed or answered something that did not verify."""

    code = -32136
    reason = "no_verified_answer"


class ValidatorSetUnknown(HeaderUnverified):
    """A header names a validator set (``validators_hash``) the light client has not yet followed to: it
    fetches the sets the chain decided and accepts each through the header before it, then checks again."""

    code = -32187
    reason = "validator_set_unknown"
