"""Errors as classes with stable codes, mapped once to JSON-RPC at the edge.

Every error a user or peer can cause derives from :class:`FbciError`. The
``code`` is the JSON-RPC error code the RPC server answers with (standard
codes where the JSON-RPC 2.0 spec has one, the -32000..-32099 application
range otherwise, following EIP-1474 where it names the case) and ``reason`` is
a short stable slug that clients can switch on. Codes never change once
released; the README lists them.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar


class FbciError(Exception):
    """Base class: something went wrong that has a stable code and a plain message."""

    code: ClassVar[int] = -32000
    reason: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "data": {"reason": self.reason, **self.data}}


class InvalidInput(FbciError):
    """The caller sent something malformed: wrong type, missing field, bad encoding."""

    code = -32602
    reason = "invalid_input"


class DecodeError(InvalidInput):
    """Bytes that are not the canonical encoding of a value."""

    reason = "non_canonical_encoding"


class NotFound(FbciError):
    """A block, transaction, model version or alert that does not exist."""

    code = -32001
    reason = "not_found"


class TxRejected(FbciError):
    """A transaction that is well formed but may not be admitted or executed."""

    code = -32003
    reason = "tx_rejected"


class BadSignature(TxRejected):
    code = -32010
    reason = "bad_signature"


class BadNonce(TxRejected):
    code = -32011
    reason = "bad_nonce"


class Unauthorized(TxRejected):
    code = -32012
    reason = "unauthorized"


class TooLarge(TxRejected):
    code = -32013
    reason = "too_large"


class WrongChain(TxRejected):
    code = -32014
    reason = "wrong_chain"


class UnknownKind(TxRejected):
    code = -32015
    reason = "unknown_kind"


class ContractRejected(TxRejected):
    """A contract's own rule refused the transaction (late FL update, duplicate alert...)."""

    code = -32016
    reason = "contract_rejected"


class AlreadyKnown(TxRejected):
    code = -32017
    reason = "already_known"


class LimitExceeded(FbciError):
    """A resource bound was hit: mempool full, batch too long, body too large."""

    code = -32005
    reason = "limit_exceeded"


class MempoolFull(LimitExceeded):
    reason = "mempool_full"


class QuotaExceeded(LimitExceeded):
    """A sender used its share of a block or of a quota window (genesis ``member_*_bytes``)."""

    reason = "quota_exceeded"


class RateLimited(LimitExceeded):
    code = -32029
    reason = "rate_limited"


class Timeout(FbciError):
    code = -32008
    reason = "timeout"


class PeerMisbehaved(FbciError):
    """A peer (another validator) broke the protocol: logged, counted, never a crash."""

    code = -32090
    reason = "peer_misbehaved"


class UnsupportedKeyType(InvalidInput):
    """A key type this node cannot use: unknown, or hybrid on a cryptography build without ML-DSA."""

    code = -32160
    reason = "unsupported_key_type"


class InvalidGenesis(InvalidInput):
    code = -32030
    reason = "invalid_genesis"


class BadAggregationRule(InvalidInput):
    """A model spec names an aggregation rule or rule parameter the chain does not accept."""

    code = -32100
    reason = "bad_aggregation_rule"


class InputSchemaMismatch(InvalidInput):
    """A hospital's table whose columns are not the model's declared input features, in order."""

    code = -32101
    reason = "input_schema_mismatch"


class NotDrawn(ContractRejected):
    """A hospital sent an update to a sampled round whose draw did not pick it (``fl_contracts.sampling``)."""

    code = -32102
    reason = "not_drawn"


class ModelCatalogClash(InvalidInput):
    """``fbci genesis init --add-model`` names a model id the catalog (or an earlier file) already declares."""

    code = -32103
    reason = "model_id_clash"


class BadModelFile(InvalidInput):
    """A model file for ``--add-model`` that cannot be read or is not one valid model declaration."""

    code = -32104
    reason = "bad_model_file"


class StorageError(FbciError):
    code = -32040
    reason = "storage_error"


class AddressInUse(FbciError):
    """A listen address (p2p or JSON-RPC) that another process already holds."""

    code = -32050
    reason = "address_in_use"


class NodeUnreachable(FbciError):
    """(Client side) no validator answers at the URL: nothing listens there, or the connection broke."""

    code = -32060
    reason = "node_unreachable"


class DiskFull(StorageError):
    """The file system holding the node's data is full (ENOSPC, EDQUOT): the write did not happen."""

    code = -32041
    reason = "disk_full"
    errnos: ClassVar[frozenset[int]] = frozenset({errno.ENOSPC, errno.EDQUOT})
    remedy: ClassVar[str] = "free space on that disk, then restart the validator"


class TooManyOpenFiles(StorageError):
    """The process (EMFILE) or the system (ENFILE) ran out of file descriptors while the node wrote."""

    code = -32042
    reason = "too_many_open_files"
    errnos: ClassVar[frozenset[int]] = frozenset({errno.EMFILE, errno.ENFILE})
    remedy: ClassVar[str] = ("raise the open-file limit (LimitNOFILE in deploy/fbci-validator.service, or "
                             "ulimit -n), then restart the validator")


class StoreCorrupt(StorageError):
    """The block store is damaged or has a gap (a missing block, certificate or state height): the node
    refuses to start rather than validate on top of a chain that silently lost committed blocks."""

    code = -32043
    reason = "store_corrupt"


class WalLost(StorageError):
    """The consensus WAL is missing or shorter than what this validator is recorded to have signed:
    starting from it could make the validator sign a vote that conflicts with one it already sent."""

    code = -32044
    reason = "wal_lost"


class TaskFailed(FbciError):
    """(Node) one of the validator's tasks ended with an unexpected error; the process stopped so that
    its supervisor restarts it (the traceback is in the node's log)."""

    code = -32070
    reason = "task_failed"


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


class NodeRunning(FbciError):
    """(Operator tools) a validator process holds this home's database, so its files may not be changed
    under it (``fbci node reset`` refuses until the node is stopped)."""

    code = -32110
    reason = "node_running"


class ReadRefused(FbciError):
    """A private read (genesis ``read_policy``) that the node would not answer: each refusal is audited."""

    code = -32140
    reason = "read_refused"


class ReadAuthRequired(ReadRefused):
    """The method is private and the request carries no ``auth`` (a signed read request)."""

    code = -32141
    reason = "auth_required"


class BadReadSignature(ReadRefused):
    code = -32142
    reason = "bad_read_signature"


class StaleRead(ReadRefused):
    """The request's timestamp is outside the node's window: too old to be told apart from a replay."""

    code = -32143
    reason = "stale_request"


class ReplayedRead(ReadRefused):
    """The key already used this nonce: the same signed request sent again."""

    code = -32144
    reason = "replayed_nonce"


class UnknownReader(ReadRefused):
    code = -32145
    reason = "unknown_key"


class RevokedReader(ReadRefused):
    """The key is registered but holds no role any more (its roles were revoked)."""

    code = -32146
    reason = "revoked_key"


class ReadForbidden(ReadRefused):
    """The key's roles may not read this method, or not this item (another hospital's, another patient's)."""

    code = -32147
    reason = "read_forbidden"


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


class StateSyncFailed(FbciError):
    """State sync found no peer that served a snapshot which verifies: nothing was restored."""

    code = -32190
    reason = "state_sync_failed"


class BadStateSyncMessage(PeerMisbehaved):
    """A state-sync message of the wrong shape: the peer is reported, nothing else happens."""

    code = -32191
    reason = "bad_state_sync_message"


class ValidatorChangeRefused(ContractRejected):
    """A ``validator.add`` / ``validator.remove`` decision the chain refuses: the set would fall below four
    validators, lose f + 1 or more at once, list a key twice, or name a key that is not a validator."""

    code = -32185
    reason = "validator_change_refused"


class ValidatorSetUnknown(HeaderUnverified):
    """A header names a validator set (``validators_hash``) the light client has not yet followed to: it
    fetches the sets the chain decided and accepts each through the header before it, then checks again."""

    code = -32187
    reason = "validator_set_unknown"


class ValidatorChangeInFlight(ContractRejected):
    """A validator-set change is already decided and not yet in effect (only one may be in flight)."""

    code = -32186
    reason = "validator_change_in_flight"


def storage_error(errno_code: int | None, doing: str, detail: str) -> StorageError:
    """The named error for an OS error met while ``doing`` a write, so that a full disk or a spent
    descriptor limit reads as what it is, with what to do about it, rather than as a bug."""
    for cls in (DiskFull, TooManyOpenFiles):
        if errno_code in cls.errnos:
            return cls(f"{doing}: {detail}; {cls.remedy}")
    return StorageError(f"{doing}: {detail}")


def failure_reason(exc: Exception) -> str:
    """What every validator records identically about an exception met while executing a block: a
    project error's slug and message, any other only by its class name (its text may carry an address
    or a library's wording, which must not reach state)."""
    if isinstance(exc, FbciError):
        return f"{exc.reason}: {exc.message}"
    return type(exc).__name__


ALL_ERRORS: tuple[type[FbciError], ...] = (
    FbciError, InvalidInput, DecodeError, NotFound, TxRejected, BadSignature, BadNonce,
    Unauthorized, TooLarge, WrongChain, UnknownKind, ContractRejected, AlreadyKnown,
    LimitExceeded, MempoolFull, QuotaExceeded, RateLimited, Timeout, PeerMisbehaved, UnsupportedKeyType, InvalidGenesis, StorageError, AddressInUse,
    NodeUnreachable, DiskFull, TooManyOpenFiles, StoreCorrupt, WalLost, TaskFailed,
    UnverifiedAnswer, ProofInvalid, ProofIncomplete, AnswerMismatch, HeaderUnverified, StaleAnswer, NoVerifiedAnswer,
    BadAggregationRule, InputSchemaMismatch, NotDrawn, ModelCatalogClash, BadModelFile,
    NodeRunning,
    ReadRefused, ReadAuthRequired, BadReadSignature, StaleRead, ReplayedRead, UnknownReader, RevokedReader,
    ReadForbidden,
    GovernanceRequired, ProposalClosed, NotAMember, BadApproval, KeyRotated,
    StateSyncFailed, BadStateSyncMessage,
)


# --- the JSON-RPC 2.0 envelope errors: only the RPC edge raises them ------------------------------

class ParseError(FbciError):
    """The body is not valid JSON."""

    code = -32700
    reason = "parse_error"


class InvalidRequest(FbciError):
    """Valid JSON that is not a JSON-RPC 2.0 request object."""

    code = -32600
    reason = "invalid_request"


class MethodNotFound(FbciError):
    code = -32601
    reason = "method_not_found"


class InternalError(FbciError):
    """A bug on our side; the message is generic and the traceback stays in the server log."""

    code = -32603
    reason = "internal_error"


RPC_ERRORS: tuple[type[FbciError], ...] = (ParseError, InvalidRequest, MethodNotFound, InternalError)

ERRORS_BY_REASON: dict[str, type[FbciError]] = {cls.reason: cls for cls in (*ALL_ERRORS, *RPC_ERRORS)}
"""Every error class a client can receive, keyed by its unique ``reason`` slug."""

ERRORS_BY_CODE: dict[int, type[FbciError]] = {}
"""Codes are shared by a class and its refinements (-32602 by ``InvalidInput`` and ``DecodeError``);
for a code alone the most general class, listed first, wins."""
for _cls in (*ALL_ERRORS, *RPC_ERRORS):
    ERRORS_BY_CODE.setdefault(_cls.code, _cls)
