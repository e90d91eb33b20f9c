"""What the RPC server needs from the node: one Protocol and the typed values it returns.

The server never imports the node; the node implements :class:`NodeApi` and
passes itself to :func:`node.rpc.server.create_app`. Results whose schema is
owned by another package (blocks, alerts, FL models, genesis) stay dicts; the
ones the RPC layer defines are frozen dataclasses whose ``bytes`` fields are
annotated :data:`~node.rpc.encoding.Hash32`/``HexBytes`` so they travel as hex
and appear in the OpenRPC document. Any bytes inside the dicts are sent as hex
too.

Errors: every method raises a :mod:`core.errors` class for anything the caller
caused (``NotFound``, ``TxRejected`` and its subclasses, ``MempoolFull``,
``Timeout``...); any other exception is answered as -32603 and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.rpc.encoding import Hash32
from node.rpc.subscriptions import EventHub


class RateLimiter(Protocol):
    """A token bucket per key (``ids.selfdefence.TokenBucketLimiter`` fits); pure, clock passed in."""

    def allow(self, key: str, now_ms: int) -> bool: ...


OnMisbehaviour = Callable[[str, str], None]
"""``on_misbehaviour(kind, offender)``: the node counts, logs or bans. Kinds are the ``MISBEHAVIOUR_*`` names."""

MISBEHAVIOUR_RPC_FLOOD = "rpc_flood"  # offender: client address
MISBEHAVIOUR_TX_FLOOD = "tx_flood"  # offender: signer public key, hex
MISBEHAVIOUR_BAD_SIGNATURE = "bad_signature"  # offender: client address


@dataclass(frozen=True)
class NodeStatus:
    chain_id: str
    validator: str
    height: int
    latest_block_hash: Hash32
    view: int
    peers: int
    mempool_size: int
    syncing: bool


@dataclass(frozen=True)
class TxAccepted:
    """``tx_submit``'s answer: the transaction is in the mempool, not yet in a block."""

    hash: Hash32


@dataclass(frozen=True)
class TxCommitResult:
    """``tx_submit_commit``'s answer: the block height, the position in it and the execution receipt."""

    hash: Hash32
    height: int
    index: int
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountInfo:
    """``next_nonce`` is the nonce the node would accept next from this key (pending txs counted)."""

    public_key: Hash32
    roles: tuple[str, ...]
    next_nonce: int


@dataclass(frozen=True)
class AlertQuery:
    """Filters for ``alerts_query``; ``None`` means "any". Heights are inclusive."""

    hospital: str | None = None
    subject: bytes | None = None
    alert_class: str | None = None
    min_severity: int | None = None
    from_height: int | None = None
    to_height: int | None = None
    cursor: str | None = None
    limit: int = 100


@dataclass(frozen=True)
class AlertPage:
    """One page of alerts, oldest first; pass ``next_cursor`` back to get the next (``None``: no more)."""

    alerts: list[dict[str, Any]]
    next_cursor: str | None = None


class NodeApi(Protocol):
    """Implemented by the node. Every coroutine runs on the server's event loop."""

    events: EventHub
    """The node calls ``events.publish("new_block" | "new_alert", payload)``; websocket clients subscribe to it."""

    async def status(self) -> NodeStatus: ...

    async def submit_tx(self, raw: bytes) -> bytes:
        """Admit the encoded transaction to the mempool and return its hash."""
        ...

    async def submit_tx_commit(self, raw: bytes, timeout_s: float) -> TxCommitResult:
        """Admit, then wait until it is committed; raises ``core.errors.Timeout`` after ``timeout_s``."""
        ...

    async def get_tx(self, tx_hash: bytes) -> dict[str, Any]:
        """The committed tx (decoded fields, height, index, receipt); raises ``NotFound``."""
        ...

    async def get_block(self, height: int | None, block_hash: bytes | None) -> dict[str, Any]:
        """By height or by hash (never both); neither means the latest. Header, txs and commit certificate."""
        ...

    async def validators(self) -> list[dict[str, Any]]: ...

    async def genesis(self) -> dict[str, Any]: ...

    async def account(self, public_key: bytes) -> AccountInfo:
        """Roles and next nonce of a key; an unregistered key has no roles and next nonce 1."""
        ...

    async def query_alerts(self, query: AlertQuery) -> AlertPage: ...

    async def fl_models(self) -> list[dict[str, Any]]: ...

    async def fl_model_get(self, model_id: str, version: int | None) -> dict[str, Any]:
        """A model version (``None``: the latest); raises ``NotFound``."""
        ...

    async def fl_rounds(self, model_id: str) -> list[dict[str, Any]]:
        """The round history of one model, oldest first; raises ``NotFound`` for an unknown model."""
        ...
