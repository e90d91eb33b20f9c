"""The base error and the transaction, limit and peer errors every layer raises."""

from __future__ import annotations

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


class TaskFailed(FbciError):
    """(Node) one of the validator's tasks ended with an unexpected error; the process stopped so that
    its supervisor restarts it (the traceback is in the node's log)."""

    code = -32070
    reason = "task_failed"


class NodeRunning(FbciError):
    """(Operator tools) a validator process holds this home's database, so its files may not be changed
    under it (``fbci node reset`` refuses until the node is stopped)."""

    code = -32110
    reason = "node_running"


def failure_reason(exc: Exception) -> str:
    """What every validator records identically about an exception met while executing a block: a
    project error's slug and message, any other only by its class name (its text may carry an address
    or a library's wording, which must not reach state)."""
    if isinstance(exc, FbciError):
        return f"{exc.reason}: {exc.message}"
    return type(exc).__name__
