"""Errors of consortium governance: proposals, approvals, members, keys and validator-set changes."""

from __future__ import annotations

from core.errors.base import TxRejected, Unauthorized, ContractRejected


class GovernanceRequired(Unauthorized):
    """On a chain whose genesis declares governance, a membership change needs a quorum, not one admin."""

    code = -32180
    reason = "governance_required"


class ProposalClosed(ContractRejected):
    """The governance proposal was executed or expired: it takes no more approvals."""

    code = -32181
    reason = "proposal_closed"


class NotAMember(Unauthorized):
    """The key is not one of the governance members' admin keys."""

    code = -32182
    reason = "not_a_member"


class BadApproval(TxRejected):
    """A co-signed approval does not verify for its member and the proposal, or repeats a member."""

    code = -32183
    reason = "bad_approval"


class KeyRotated(Unauthorized):
    """The sender's key was replaced by ``acl.rotate``: the account now answers only to its new key."""

    code = -32184
    reason = "key_rotated"


class ValidatorChangeRefused(ContractRejected):
    """A ``validator.add`` / ``validator.remove`` decision the chain refuses: the set would fall below four
    validators, lose f + 1 or more at once, list a key twice, or name a key that is not a validator."""

    code = -32185
    reason = "validator_change_refused"


class ValidatorChangeInFlight(ContractRejected):
    """A validator-set change is already decided and not yet in effect (only one may be in flight)."""

    code = -32186
    reason = "validator_change_in_flight"


class ParamNotGovernable(ContractRejected):
    """A ``params.set`` decision names a chain parameter that is unknown or fixed at genesis."""

    code = -32188
    reason = "param_not_governable"


class ParamValueRefused(ContractRejected):
    """A ``params.set`` decision's value breaks the rules genesis is checked by (a field's bounds, a
    cross-field constraint) or raises an edge limit above its genesis ceiling."""

    code = -32189
    reason = "param_value_refused"


class ValidatorKeyRefused(ContractRejected):
    """A validator consensus-key rotation the chain refuses: the old key is not a validator now, or the new
    key is already a validator, a registered account, or a key an account was rotated away from or to."""

    code = -32120
    reason = "validator_key_refused"
