"""Shared fixtures for node tests: a chain with an admin, a hospital and a gateway."""

from __future__ import annotations

from dataclasses import dataclass

from core.block import ZERO_HASH, Block, BlockHeader
from core.crypto import PrivateKey
from core.hashing import merkle_root
from core.tx import Transaction
from node.accounts import Account, echo, grant, register, revoke, store_account
from node.execution import SignatureCache, TxKindRegistry
from node.stores import StateStore

CHAIN = "fbci-test"
ADMIN = PrivateKey(bytes([1]) * 32)
HOSPITAL = PrivateKey(bytes([2]) * 32)
GATEWAY = PrivateKey(bytes([3]) * 32)
STRANGER = PrivateKey(bytes([4]) * 32)


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


@dataclass
class Fixture:
    registry: TxKindRegistry
    signatures: SignatureCache
