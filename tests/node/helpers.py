"""Shared fixtures for node tests: a ledger with an admin, a hospital and a gateway."""

from __future__ import annotations


from pathlib import Path
from typing import Any

from consensus import CommitCertificate, Ed25519Signer
from consensus.certificates import KIND_COMMIT, vote_sign_bytes
from core.api import ACCOUNT, AccountGetParams, AccountState
from core.block import ZERO_HASH, Block, BlockHeader
from core.crypto import PrivateKey
from core.hashing import merkle_root
from core.tx import Transaction
from genesis.schema import ChainParams
from node.accounts import Account, echo, grant, register, revoke, store_account
from node.app import LedgerApplication
from node.execution import SIGNATURE_CACHE_SIZE, TxKindRegistry
from node.ledger import Ledger
from node.stores import Database
from node.state_store import StateStore

CHAIN = "fbci-test"
ADMIN = PrivateKey(bytes([1]) * 32)
HOSPITAL = PrivateKey(bytes([2]) * 32)
GATEWAY = PrivateKey(bytes([3]) * 32)
STRANGER = PrivateKey(bytes([4]) * 32)
VALIDATORS = [PrivateKey(bytes([10 + i]) * 32) for i in range(4)]
VKEYS = tuple(v.public_key.raw for v in VALIDATORS)
PARAMS = ChainParams(max_tx_bytes=4096, max_block_bytes=1 << 20, max_block_txs=10, max_clock_drift_ms=5000,
                     mempool_max_txs=100, mempool_max_bytes=1 << 20)
ACCOUNTS = [(ADMIN.public_key.raw, "admin", ["admin"]), (HOSPITAL.public_key.raw, "h", ["hospital"]),
            (GATEWAY.public_key.raw, "g", ["gateway"])]
GENESIS_TIME_MS = 1000


def make_registry() -> TxKindRegistry:
    registry = TxKindRegistry()
    registry.register("acl.register", {"admin"}, register)
    registry.register("acl.grant", {"admin"}, grant)
    registry.register("acl.revoke", {"admin"}, revoke)
    registry.register("test.echo", {"admin", "hospital", "gateway", "validator"}, echo)
    return registry


def seed_accounts(state: StateStore) -> None:
    pending = state.begin()
    store_account(pending, ADMIN.public_key.raw, Account("admin", frozenset({"admin"}), 0))
    store_account(pending, HOSPITAL.public_key.raw, Account("h1", frozenset({"hospital"}), 0))
    store_account(pending, GATEWAY.public_key.raw, Account("gw", frozenset({"gateway"}), 0))
    state.commit(0, pending)


def echo_tx(key: PrivateKey, nonce: int, msg: bytes = b"hi", chain: str = CHAIN) -> Transaction:
    return Transaction.create(key, chain, nonce, "test.echo", {"msg": msg})


def make_block(height: int, txs: list[bytes], proposer: PrivateKey = ADMIN) -> Block:
    header = BlockHeader(CHAIN, height, ZERO_HASH, proposer.public_key.raw, 1000 * height,
                         merkle_root(txs), ZERO_HASH, ZERO_HASH, len(txs))
    return Block(header, tuple(txs))


def open_ledger(path: Path, *, signature_cache_size: int = SIGNATURE_CACHE_SIZE, **params: Any) -> Ledger:
    """A ledger on its own LevelDB at ``path`` (reopened if it exists), genesis accounts written once."""
    chain_params = PARAMS.model_copy(update=params) if params else PARAMS
    app = LedgerApplication(CHAIN, VKEYS, chain_params, Database(path), make_registry(),
                            genesis_time_ms=GENESIS_TIME_MS, signature_cache_size=signature_cache_size)
    app.init_genesis(ACCOUNTS, [])
    return Ledger.assemble(app, chain_params)


def certify(block: Block, signers: list[PrivateKey] = VALIDATORS[:3], view: int = 0) -> bytes:
    body = vote_sign_bytes(CHAIN, block.height, view, block.hash)
    sigs = tuple((k.public_key.raw, Ed25519Signer(k, CHAIN).sign(KIND_COMMIT, body)) for k in signers)
    return CommitCertificate(block.height, view, block.hash, sigs).encode()


def account(ledger: Ledger, key: bytes) -> AccountState | None:
    state = ledger.app.query(ACCOUNT.path, AccountGetParams(public_key=key))
    assert state is None or isinstance(state, AccountState)
    return state


def commit_writes(state: StateStore, blocks: list[dict[bytes, bytes | None]]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Commit each dict of writes (None: delete) as the next height, checking the committed state after each;
    each height's root and whole state."""
    model: dict[bytes, bytes] = {}
    history: list[tuple[bytes, dict[bytes, bytes]]] = []
    for height, writes in enumerate(blocks):
        pending = state.begin()
        for key, value in writes.items():
            pending.delete(key) if value is None else pending.set(key, value)
            model.pop(key, None) if value is None else model.__setitem__(key, value)
        history.append((state.commit(height, pending), dict(model)))
        assert dict(state.scan(b"")) == model
    return history

