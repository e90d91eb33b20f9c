"""Errors as classes with stable codes, mapped once to JSON-RPC at the edge.

Every error a user or peer can cause derives from :class:`FbciError`. The
``code`` is the JSON-RPC error code the RPC server answers with (standard
codes where the JSON-RPC 2.0 spec has one, the -32000..-32099 application
range otherwise, following EIP-1474 where it names the case) and ``reason`` is
a short stable slug that clients can switch on. Codes never change once
released; the README lists them.

The classes live in one module per concern; this package re-exports them all,
so callers import from ``core.errors`` alone. A new concern adds a module here
and one import line below: the tables at the end find its classes themselves.
"""

from __future__ import annotations

from core.errors.base import (  # noqa: F401 (re-exported)
    FbciError, InvalidInput, DecodeError, NotFound, TxRejected, BadSignature, BadNonce,
    Unauthorized, TooLarge, WrongChain, UnknownKind, ContractRejected, AlreadyKnown, LimitExceeded,
    MempoolFull, QuotaExceeded, RateLimited, Timeout, PeerMisbehaved, UnsupportedKeyType,
    InvalidGenesis, TaskFailed, NodeRunning, failure_reason,
)
from core.errors.storage import (  # noqa: F401 (re-exported)
    StorageError, AddressInUse, NodeUnreachable, DiskFull, TooManyOpenFiles, StoreCorrupt, WalLost,
    storage_error,
)
from core.errors.learning import (  # noqa: F401 (re-exported)
    BadAggregationRule, InputSchemaMismatch, NotDrawn, ModelCatalogClash, BadModelFile,
)
from core.errors.verified import (  # noqa: F401 (re-exported)
    UnverifiedAnswer, ProofInvalid, ProofIncomplete, AnswerMismatch, HeaderUnverified, StaleAnswer,
    NoVerifiedAnswer, ValidatorSetUnknown,
)
from core.errors.reads import (  # noqa: F401 (re-exported)
    ReadRefused, ReadAuthRequired, BadReadSignature, StaleRead, ReplayedRead, UnknownReader,
    RevokedReader, ReadForbidden,
)
from core.errors.governance import (  # noqa: F401 (re-exported)
    GovernanceRequired, ProposalClosed, NotAMember, BadApproval, KeyRotated, ValidatorChangeRefused,
    ValidatorChangeInFlight, ParamNotGovernable, ParamValueRefused, ValidatorKeyRefused,
)
from core.errors.statesync import (  # noqa: F401 (re-exported)
    StateSyncFailed, BadStateSyncMessage,
)
from core.errors.blobs import (  # noqa: F401 (re-exported)
    BlobUnknown, BadChunk, BlobTooLarge, BlobIncomplete, BlobMismatch, BadBlobMessage,
)
from core.errors.ids import (  # noqa: F401 (re-exported)
    UnknownDeviceType, BadDeviceType, DeviceTypeClash, IdsInputMismatch,
)
from core.errors.jsonrpc import (  # noqa: F401 (re-exported)
    ParseError, InvalidRequest, MethodNotFound, InternalError,
)


def _project_errors(root: type[FbciError]) -> list[type[FbciError]]:
    """``root`` and its subclasses defined in this package, parents before children, in definition
    order: the order :data:`ERRORS_BY_CODE` relies on to let the most general class own a code."""
    found = [root]
    for sub in root.__subclasses__():
        if sub.__module__.startswith(__name__ + "."):
            found.extend(_project_errors(sub))
    return found


RPC_ERRORS: tuple[type[FbciError], ...] = (ParseError, InvalidRequest, MethodNotFound, InternalError)
"""The JSON-RPC envelope errors, which only the RPC edge raises."""

ALL_ERRORS: tuple[type[FbciError], ...] = tuple(
    cls for cls in dict.fromkeys(_project_errors(FbciError)) if cls not in RPC_ERRORS)
"""Every other error class a client can receive."""

ERRORS_BY_REASON: dict[str, type[FbciError]] = {cls.reason: cls for cls in (*ALL_ERRORS, *RPC_ERRORS)}
"""Every error class a client can receive, keyed by its unique ``reason`` slug."""

ERRORS_BY_CODE: dict[int, type[FbciError]] = {}
"""Codes are shared by a class and its refinements (-32602 by ``InvalidInput`` and ``DecodeError``);
for a code alone the most general class, listed first, wins."""
for _cls in (*ALL_ERRORS, *RPC_ERRORS):
    ERRORS_BY_CODE.setdefault(_cls.code, _cls)
