"""What the RPC server needs from the node: one Protocol, and the node-level answers it returns.

The server never imports the rest of the node; the node implements
:class:`NodeApi` and passes it to :func:`node.rpc.server.create_app`. Every
answer is typed: the shared ones live in ``core.api`` (and the leaves' query
modules), where ``client/`` reads them back through the same definition.

Errors: every method raises a :mod:`core.errors` class for anything the caller
caused (``NotFound``, ``TxRejected`` and its subclasses, ``MempoolFull``,
``Timeout``...); any other exception is answered as -32603 and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from core.api import AccountInfo, NodeStatus, Params, TxCommitResult
from core.tx import Transaction
from genesis.schema import GenesisWithHash, ValidatorInfo
from node.rpc.subscriptions import EventHub


class RateLimiter(Protocol):
    """A token bucket per key (``ids.selfdefence.TokenBucketLimiter`` fits); pure, clock passed in."""

    def allow(self, key: str, now_ms: int) -> bool: ...


class SignatureCheck(Protocol):
    """The node's cache of verified transaction signatures (``node.execution.SignatureCache`` fits).

    The RPC edge verifies a submitted transaction's signature before it charges anything to the
    key the transaction names, and verifies it through this same cache, so the mempool's check
    that follows finds the hash there instead of verifying the signature a second time.
    """

    def __contains__(self, tx_hash: bytes) -> bool:
        """Whether a transaction with this hash was verified before (a resend of the same bytes)."""
        ...

    def verify(self, tx: Transaction, tx_hash: bytes | None = None, raw: bytes | None = None) -> bool:
        """Check ``tx``'s signature, remembering ``tx_hash`` when it verifies."""
        ...


OnMisbehaviour = Callable[[str, str], None]
"""``on_misbehaviour(kind, offender)``: the node counts, logs or bans. Kinds are the ``MISBEHAVIOUR_*`` names."""

MISBEHAVIOUR_RPC_FLOOD = "rpc_flood"  # offender: client address
MISBEHAVIOUR_TX_FLOOD = "tx_flood"  # offender: signer public key, hex, that the transaction's signature proved
MISBEHAVIOUR_BAD_SIGNATURE = "bad_signature"  # offender: client address (a bad signature proves no key)


class NodeApi(Protocol):
    """Implemented by the node. Every coroutine runs on the server's event loop."""

    events: EventHub
    """The node publishes ``new_block`` (:class:`core.api.NewBlock`) and ``new_alert`` (``ids.alerts.StoredAlert``);
    websocket clients subscribe to it."""

    async def status(self) -> NodeStatus: ...

    def check_room(self, sender: bytes | None, size: int) -> None:
        """Raise ``core.errors.MempoolFull`` if the mempool has no room for ``size`` bytes from ``sender`` (None:
        not read from the bytes): the edge asks before it decodes or verifies, so shedding is nearly free."""
        ...

    async def submit_tx(self, raw: bytes) -> bytes:
        """Admit the encoded transaction to the mempool and return its hash."""
        ...

    async def submit_tx_commit(self, raw: bytes, timeout_s: float) -> TxCommitResult:
        """Admit, then wait until it is committed; raises ``core.errors.Timeout`` after ``timeout_s``."""
        ...

    async def validators(self) -> list[ValidatorInfo]: ...

    async def genesis(self) -> GenesisWithHash: ...

    async def account(self, public_key: bytes) -> AccountInfo:
        """Roles and next nonce of a key; an unregistered key has no roles and next nonce 1."""
        ...

    async def query(self, path: str, params: Params, *, prove: bool = False) -> object:
        """A :class:`core.api.Query` answered by the application over committed state (``prove``: as a
        :class:`core.proofs.ProvenAnswer`)."""
        ...
