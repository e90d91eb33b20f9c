"""What a validator and its clients both read: request and response types, and the query descriptor.

A validator serves these and ``client/`` reads them back, each through the one
definition here (or in the leaf that owns a schema: ``fl_contracts.queries``,
``ids.queries``), so the two sides cannot drift. Binary values travel as hex
(``core.wire``).

A :class:`Query` is a read of committed chain state: a path, a params model
and a result type. The validator's application answers it behind its
``query(path, params)`` boundary; JSON-RPC serves it as the method of the same
name; the client sends the params and reads the result back with
:meth:`Query.parse`. Nothing else is needed to add a read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import codec
from core.block import BlockHeader
from core.errors import InvalidInput
from core.hashing import sha256
from core.tx import Transaction
from core.wire import Hash32, HexBytes, from_wire

P = TypeVar("P", bound="Params")
R = TypeVar("R")


class Params(BaseModel):
    """Base of every request's params: strict types, unknown names refused; field order is positional order."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoParams(Params):
    pass


@dataclass(frozen=True)
class Access:
    """Who may call a read. ``private``: by default only a signed request from a key holding one of
    ``roles`` is answered (genesis ``app_state.read_policy`` may mark a method open or private);
    an open read is answered for anyone."""

    roles: frozenset[str] = frozenset()
    private: bool = False


OPEN = Access()


@dataclass(frozen=True)
class Query(Generic[P, R]):
    path: str
    """Also the JSON-RPC method name."""
    summary: str
    params: type[P]
    result: Any
    """The result's type (``R``, written out for pydantic and the OpenRPC document)."""
    access: Access = OPEN
    provable: bool = True
    """A read of state alone, so a validator can answer it with a proof (``prove: true``, ``core.proofs``)."""

    def parse(self, value: Any) -> R:
        """A JSON-RPC ``result`` back into the typed result, hex back into bytes."""
        parsed: R = from_wire(self.result, value)
        return parsed


# --- node-level answers ---------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeStatus:
    """``last_commit_time_ms`` (Unix ms, the node's clock) and ``consensus_running`` say whether the node
    is live: a validator whose height stands still while peers and syncing look fine is stuck."""

    chain_id: str
    validator: str
    height: int
    latest_block_hash: Hash32
    view: int
    peers: int
    mempool_size: int
    syncing: bool
    last_commit_time_ms: int = 0
    consensus_running: bool = False


@dataclass(frozen=True)
class TxAccepted:
    """``tx_submit``'s answer: the transaction is in the mempool, not yet in a block."""

    hash: Hash32


@dataclass(frozen=True)
class Receipt:
    """What happened to one committed transaction: stored in the tx index, sent as is.

    ``result`` is the contract's answer (a canonical-codec map whose keys each
    transaction kind documents); on failure, the error's data.
    """

    height: int
    index: int
    ok: bool
    code: int
    reason: str
    message: str
    result: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return codec.encode([self.height, self.index, self.ok, self.code, self.reason, self.message, self.result])

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        return cls(*codec.decode(data))


@dataclass(frozen=True)
class TxCommitResult:
    """``tx_submit_commit``'s answer: the block height, the position in it and the execution receipt."""

    hash: Hash32
    height: int
    index: int
    receipt: Receipt


@dataclass(frozen=True)
class AccountInfo:
    """``next_nonce`` is the nonce the node would accept next from this key (pending txs counted);
    ``name`` is the registered account's name (None: not registered)."""

    public_key: Hash32
    roles: tuple[str, ...]
    next_nonce: int
    name: str | None = None


class AccountGetParams(Params):
    public_key: Hash32 = Field(description="Ed25519 public key, hex")


# --- chain queries --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    validator: Hash32
    signature: HexBytes


@dataclass(frozen=True)
class CertificateInfo:
    """A commit certificate: 2f + 1 validators' signatures on (height, view, block hash)."""

    height: int
    view: int
    block_hash: Hash32
    signatures: tuple[Signature, ...]


@dataclass(frozen=True)
class BlockInfo:
    """A header, its transactions' hashes, the LastCommit it carries and this validator's certificate for it."""

    hash: Hash32
    height: int
    chain_id: str
    prev_block_hash: Hash32
    proposer: Hash32
    time_ms: int
    txs_root: Hash32
    state_hash: Hash32
    prev_commit_hash: Hash32
    num_txs: int
    txs: tuple[Hash32, ...]
    last_commit: CertificateInfo | None
    commit_certificate: CertificateInfo | None
    validators_hash: Hash32 = bytes(32)
    next_validators_hash: Hash32 = bytes(32)

    def header(self) -> BlockHeader:
        """The header these fields are, whose hash a reader compares with ``hash``."""
        return BlockHeader(self.chain_id, self.height, self.prev_block_hash, self.proposer, self.time_ms,
                           self.txs_root, self.state_hash, self.prev_commit_hash, self.num_txs,
                           self.validators_hash, self.next_validators_hash)


@dataclass(frozen=True)
class TxInfo:
    """A committed transaction: who sent what kind, its canonical encoding, and its receipt.

    ``tx`` is the exact signed bytes, so a reader can check them against
    ``hash`` and get the payload with its bytes intact (:meth:`transaction`).
    """

    hash: Hash32
    sender: Hash32
    nonce: int
    kind: str
    tx: HexBytes
    receipt: Receipt

    def transaction(self) -> Transaction:
        """The decoded transaction; raises :class:`InvalidInput` when the bytes are not the ones ``hash`` names."""
        if sha256(self.tx) != self.hash:
            raise InvalidInput("tx_get answer: the transaction's bytes do not hash to its hash")
        return Transaction.decode(self.tx, max_size=len(self.tx))


@dataclass(frozen=True)
class AccountState:
    """An account as committed: its roles and the last nonce a block used (0: none yet)."""

    public_key: Hash32
    name: str
    roles: tuple[str, ...]
    nonce: int


class TxGetParams(Params):
    hash: Hash32 = Field(description="transaction hash (SHA-256 of its encoding), hex")


class BlockGetParams(Params):
    height: int | None = Field(None, ge=0, description="block height; omit both fields for the latest block")
    hash: Hash32 | None = Field(None, description="block hash, hex")

    @model_validator(mode="after")
    def _height_or_hash(self) -> BlockGetParams:
        if self.height is not None and self.hash is not None:
            raise ValueError("give 'height' or 'hash', not both")
        return self


TX_GET: Query[TxGetParams, TxInfo] = Query(
    "tx_get", "A committed transaction with its height, index and receipt.", TxGetParams, TxInfo,
    Access(frozenset({"admin", "validator", "hospital", "gateway", "clinician", "auditor", "patient_proxy"}),
           private=True), provable=False)
"""Private by default: a payload may be a hospital's individual update or a patient's consent (the read
guard narrows those kinds to their sender and auditors); ``block_get`` shows only hashes and stays open."""
BLOCK_GET: Query[BlockGetParams, BlockInfo] = Query(
    "block_get", "A block with its commit certificate, by height or hash (default: latest).", BlockGetParams,
    BlockInfo, provable=False)
ACCOUNT: Query[AccountGetParams, AccountState | None] = Query(
    "account", "An account as committed (None: not registered).", AccountGetParams, AccountState | None)
"""``account_get`` adds the mempool's pending nonces to it; as a method of its own it can be proven."""

CHAIN_QUERIES: tuple[Query[Any, Any], ...] = (TX_GET, BLOCK_GET)


@dataclass(frozen=True)
class NewBlock:
    """The ``new_block`` websocket event."""

    height: int
    hash: Hash32
    num_txs: int
    time_ms: int
