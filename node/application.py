"""The one door between the validator and its application, modelled on CometBFT's ABCI.

The consensus driver, block sync, the mempool and JSON-RPC hold an
:class:`Application` and call nothing else of it. The node never reaches into
the application's state, stores or contracts; the application knows nothing
of peers, timers, sockets or the mempool. Every call is synchronous and runs
on the node's one event loop, so the application is never entered twice at
once.

=========================  ==================================================
ABCI                       here
=========================  ==================================================
Info                       :meth:`Application.info`
CheckTx                    :meth:`Application.check_tx`
PrepareProposal            :meth:`Application.prepare_proposal`
ProcessProposal            :meth:`Application.process_proposal`
FinalizeBlock + Commit     :meth:`Application.finalize_block` (execute, then
                           store block, receipts and state in one batch);
                           :meth:`Application.sync` after a batch of them
Query                      :meth:`Application.query`
(block store reads)        :meth:`Application.stored_block` for block sync
ListSnapshots              :meth:`Application.list_snapshots` (state sync)
LoadSnapshotChunk          :meth:`Application.snapshot_chunk`
OfferSnapshot + Apply...   :meth:`Application.restore_snapshot`, once every
                           chunk verified against the certified root
=========================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from core.api import Receipt
from core.block import Block
from core.snapshot import ChunkReply, ChunkRequest, RestoredSnapshot, SnapshotList
from core.tx import Transaction
from core.validators import ValidatorSet
from genesis.schema import ChainParams
from fl_contracts.contract import RoundRecord
from ids.alerts import StoredAlert


@dataclass(frozen=True)
class AppInfo:
    """Where the application stands: what the last committed block was, for start-up and proposing."""

    height: int
    last_block_hash: bytes
    last_block_time_ms: int
    state_hash: bytes
    last_certificate: bytes
    """This validator's commit certificate for ``height`` (empty at height 0)."""


@dataclass(frozen=True)
class CheckTxRequest:
    """A transaction the mempool has decoded and has not seen before."""

    tx: Transaction
    raw: bytes
    tx_hash: bytes
    sender_has_pending: bool
    """A pending transaction may be what makes this one valid (register, then grant), so a
    contract-rule refusal is only final when the sender has nothing pending."""


@dataclass(frozen=True)
class CheckedTx:
    """CheckTx's yes: the sender's committed nonce, which the mempool orders by."""

    committed_nonce: int


@dataclass(frozen=True)
class ProposalRequest:
    """The mempool's transactions for the next height, in order, and who proposes when."""

    txs: Sequence[bytes]
    proposer: bytes
    now_ms: int


@dataclass(frozen=True)
class FinalizeRequest:
    block: Block
    certificate: bytes
    raw: bytes | None = None
    """The block's canonical encoding when the caller has it (saves re-encoding)."""
    durable: bool = True
    """False defers the fsync to the next durable commit (block sync, all but a batch's last)."""
    decoded: Callable[[bytes], Transaction | None] | None = None
    """The caller's decoded form of a transaction, by hash (the mempool's), to save decoding it again."""


@dataclass(frozen=True)
class ValidatorUpdate:
    """A block decided a new validator set: ``validators`` decide from ``height`` (the block's + 2) on."""

    height: int
    validators: ValidatorSet


@dataclass(frozen=True)
class FinalizedBlock:
    """What executing a block produced, for the node's observers (waiters, metrics, websocket, defence)."""

    block: Block
    certificate: bytes
    receipts: Mapping[bytes, Receipt]
    committed_nonces: Mapping[bytes, int]
    """Each sender of the block's decodable transactions and its nonce after the block."""
    alerts: Sequence[StoredAlert] = field(default_factory=tuple)
    rounds_closed: Sequence[RoundRecord] = field(default_factory=tuple)
    validator_update: ValidatorUpdate | None = None
    """As CometBFT's ``validator_updates``: the node hands the new set to its peer allow-list; consensus
    reads each height's set through :meth:`Application.validators_at`."""


@dataclass(frozen=True)
class StoredBlock:
    raw: bytes
    certificate: bytes


class Application(Protocol):
    def info(self) -> AppInfo: ...

    def check_tx(self, request: CheckTxRequest) -> CheckedTx:
        """Raise the :class:`core.errors.TxRejected` reason the transaction would fail for, against
        committed state (chain, kind, signature, account and role, nonce, the contract's own rules)."""
        ...

    def prepare_proposal(self, request: ProposalRequest) -> Block: ...

    def process_proposal(self, block: Block, now_ms: int | None) -> None:
        """Raise :class:`core.errors.InvalidInput` naming the rule ``block`` breaks as the next block.

        ``now_ms`` is this validator's clock for the time-drift rule; ``None`` skips that rule for a
        block whose certificate is already verified (block sync), since an old block's time cannot
        be judged against today's clock."""
        ...

    def finalize_block(self, request: FinalizeRequest) -> FinalizedBlock: ...

    def sync(self) -> None:
        """Make every block finalised so far durable (after ``durable=False`` ones)."""
        ...

    def query(self, path: str, params: BaseModel, *, prove: bool = False) -> object:
        """Answer the read ``path`` (a :class:`core.api.Query` path) over committed state with its
        typed result; raises :class:`core.errors.NotFound` for an unknown path or missing item.
        ``prove``: a :class:`core.proofs.ProvenAnswer` instead, against the newest certified header."""
        ...

    def stored_block(self, height: int) -> StoredBlock: ...

    def list_snapshots(self) -> SnapshotList:
        """The state-sync snapshots this validator serves (``node/snapshots.py``)."""
        ...

    def snapshot_chunk(self, request: ChunkRequest) -> ChunkReply: ...

    def restore_snapshot(self, snapshot: RestoredSnapshot) -> None:
        """Replace a genesis-only store with a verified snapshot: its state, its block and certificate."""
        ...

    def params_at(self, height: int) -> ChainParams:
        """The chain parameters ``height`` runs under (governance changes them: ``node.chain_params``)."""
        ...

    def validator_set(self, height: int) -> ValidatorSet:
        """The set deciding ``height`` (for a height beyond the decided ones, the latest decided set)."""
        ...

    def validators_at(self, height: int) -> tuple[bytes, ...] | None:
        """The keys deciding ``height`` in proposer order, None while the chain has not decided it."""
        ...
