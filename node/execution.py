"""Deterministic execution of committed blocks.

A :class:`TxKindRegistry` maps each transaction kind to the roles allowed to
send it and a handler ``(state, ctx, payload) -> result``; contracts from
``fl_contracts/`` and ``ids/`` are registered by ``node/kinds.py``, so adding
a kind is one registration. The executor applies a block's transactions in
order, each in its own write buffer: a transaction that fails any check
changes nothing except, once it has passed the stateless and account checks,
its sender's nonce (so it cannot be replayed and the sender's next nonce stays
predictable). End-of-block hooks (closing FL rounds, expiring proposals) run
after the last transaction, each in its own write buffer too: a hook that
raises would otherwise raise on every validator at the same height and halt
the chain, so its writes are dropped, the failure is recorded in state (the
same on every validator: see :func:`core.errors.failure_reason`) and the block
commits. Only ``MemoryError`` escapes, since it is this machine's, not the
block's. Nothing here reads the clock or iterates an unordered container of
untrusted input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core import codec
from core.api import Receipt
from core.block import Block
from core.errors import (
    BadNonce, BadSignature, FbciError, InvalidInput, KeyRotated, TooLarge, TxRejected, Unauthorized, UnknownKind,
    WrongChain, failure_reason,
)
from core.keyhistory import rotated_to
from core.hashing import sha256
from core.state import StateView, TxContext
from core.tx import Transaction
from fl_contracts.contract import RoundRecord
from genesis.schema import ChainParams
from node.accounts import Account, account_key, load_account, store_account
from node.quotas import MemberQuota
from node.state_store import PendingState, StateStore

log = logging.getLogger(__name__)

Handler = Callable[[StateView, TxContext, dict[str, Any]], dict[str, Any]]
EndBlockHook = Callable[[StateView, int, bytes], Sequence[RoundRecord]]
"""After a block's last transaction, with the block's height and hash: closes FL rounds and returns their records."""
HOOK_FAILED_PREFIX = b"sys/hook_failed/"
"""``<hook name>`` -> :class:`HookFailure`, the latest failure of that end-block hook (overwritten, so a hook
failing at every block costs one key, not one per block)."""


@dataclass(frozen=True)
class HookFailure:
    hook: str
    height: int
    """The latest height it failed at; its writes of that block were dropped."""
    reason: str
    failures: int
    """How many blocks it has failed in so far."""


def hook_name(hook: EndBlockHook) -> str:
    """A hook's stable name (module and qualified name), the same on every validator."""
    return f"{getattr(hook, '__module__', '?')}.{getattr(hook, '__qualname__', type(hook).__name__)}"


def hook_failure(state: StateView, name: str) -> HookFailure | None:
    raw = state.get(HOOK_FAILED_PREFIX + name.encode())
    return None if raw is None else HookFailure(**codec.decode(raw))


@dataclass(frozen=True)
class TxKind:
    name: str
    roles: frozenset[str]
    handler: Handler


@dataclass
class TxKindRegistry:
    kinds: dict[str, TxKind] = field(default_factory=dict)
    end_block_hooks: list[EndBlockHook] = field(default_factory=list)

    def register(self, name: str, roles: Iterable[str], handler: Handler) -> None:
        if name in self.kinds:
            raise ValueError(f"transaction kind {name} is registered twice")
        self.kinds[name] = TxKind(name, frozenset(roles), handler)

    def get(self, name: str) -> TxKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise UnknownKind(f"unknown transaction kind {name!r}; known: {sorted(self.kinds)}") from None


SIGNATURE_CACHE_SIZE = 200_000
"""Verified transaction hashes a node remembers; older ones are found in the committed-tx index instead."""


class SignatureCache:
    """Hashes of transactions whose signature this node already verified.

    A signature checked when the transaction entered the mempool is not
    checked again when the same bytes arrive in a block. Bounded: the oldest
    entries are dropped first (dicts keep insertion order).
    """

    def __init__(self, limit: int = SIGNATURE_CACHE_SIZE) -> None:
        self._seen: dict[bytes, None] = {}
        self._limit = limit

    def add(self, tx_hash: bytes) -> None:
        self._seen[tx_hash] = None
        if len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._seen

    def verify(self, tx: Transaction, tx_hash: bytes | None = None, raw: bytes | None = None) -> bool:
        """``tx_hash`` and ``raw``: the bytes ``tx`` was decoded from and their SHA-256, when the
        caller has them (decoding checked they are canonical, so the hash equals ``tx.hash`` and
        the signed body is cut from them without re-encoding)."""
        if tx_hash is None:
            tx_hash = tx.hash
        if tx_hash in self._seen:
            return True
        ok = tx.verify_signature(raw)
        if ok:
            self.add(tx_hash)
        return ok


def check_admission(tx: Transaction, chain_id: str, registry: TxKindRegistry, account: Account | None,
                    signatures: SignatureCache, tx_hash: bytes | None = None, raw: bytes | None = None,
                    state: StateView | None = None) -> TxKind:
    """The checks shared by CheckTx and execution; raises the matching TxRejected. ``state`` lets an
    unknown sender be told that its key was rotated away, and to which key."""
    if tx.chain_id != chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id!r}, this is {chain_id!r}")
    kind = registry.get(tx.kind)
    if not signatures.verify(tx, tx_hash, raw):
        raise BadSignature("the signature does not verify for this sender and body")
    if account is None:
        change = rotated_to(state, tx.sender) if state is not None else None
        if change is not None:
            raise KeyRotated(f"sender {tx.sender.hex()} was rotated to {change.new.hex()} at height "
                             f"{change.height}; it signs nothing new", data={"new_public_key": change.new.hex()})
        raise Unauthorized(f"sender {tx.sender.hex()} is not a registered account")
    if not account.roles & kind.roles:
        raise Unauthorized(
            f"{tx.kind} needs one of the roles {sorted(kind.roles)}; sender holds {sorted(account.roles)}"
        )
    return kind


@dataclass(frozen=True)
class BlockOutcome:
    pending: PendingState
    receipts: dict[bytes, Receipt]
    rounds_closed: list[RoundRecord]
    committed_nonces: dict[bytes, int]
    """Each sender of the block's decodable transactions and its nonce after the block."""


@dataclass
class _Tally:
    """What a block's transactions add up to per sender, kept while they run (no second read of state)."""

    sizes: dict[bytes, int] = field(default_factory=dict)
    """Bytes of each decodable transaction's sender, whatever its outcome: its storage quota is charged them."""
    nonces: dict[bytes, int] = field(default_factory=dict)
    """Each such sender's nonce after its last transaction in the block."""


DecodedLookup = Callable[[bytes], "Transaction | None"]
"""An already decoded transaction for these exact bytes (by hash), if the caller has one."""


class Executor:
    """``quota``: charge each sender's bytes to its storage quota (``node.quotas``) after the block's transactions.
    ``max_tx_bytes`` and ``quota`` hold for every block unless :meth:`execute_block` is given the block's own
    parameters (a chain whose governance changes them: ``node.chain_params``)."""

    def __init__(self, chain_id: str, registry: TxKindRegistry, signatures: SignatureCache,
                 max_tx_bytes: int, quota: MemberQuota | None = None) -> None:
        self.chain_id = chain_id
        self.registry = registry
        self.signatures = signatures
        self.max_tx_bytes = max_tx_bytes
        self.quota = quota

    def execute_block(self, block: Block, state: StateStore, decoded: DecodedLookup | None = None,
                      params: ChainParams | None = None) -> BlockOutcome:
        """``decoded``: the caller's decoded transactions; decoding is a pure function of the bytes,
        so reusing them changes nothing but the time."""
        max_tx_bytes = self.max_tx_bytes if params is None else params.max_tx_bytes
        quota = self.quota if params is None else MemberQuota.from_params(params)
        pending = state.begin()
        receipts: dict[bytes, Receipt] = {}
        tally = _Tally()
        for index, raw in enumerate(block.txs):
            tx_hash, receipt = self._execute_tx(pending, raw, block, index, tally, decoded, max_tx_bytes)
            receipts.setdefault(tx_hash, receipt)
        if quota is not None:
            quota.charge(pending, tally.sizes, block.height)
        rounds_closed: list[RoundRecord] = []
        for hook in self.registry.end_block_hooks:
            rounds_closed.extend(_run_hook(hook, pending, block.height, block.hash))
        return BlockOutcome(pending, receipts, rounds_closed, tally.nonces)

    def _execute_tx(self, pending: PendingState, raw: bytes, block: Block, index: int, tally: _Tally,
                    decoded: DecodedLookup | None, max_tx_bytes: int) -> tuple[bytes, Receipt]:
        tx_hash = sha256(raw)
        height = block.height
        try:
            if len(raw) > max_tx_bytes:  # a decoded one was admitted under the limit of its own height
                raise TooLarge(f"transaction is {len(raw)} bytes; the limit at height {height} is {max_tx_bytes}")
            tx = decoded(tx_hash) if decoded is not None else None
            if tx is None:
                tx = Transaction.decode(raw, max_size=max_tx_bytes)
            tally.sizes[tx.sender] = tally.sizes.get(tx.sender, 0) + len(raw)
            account = load_account(pending, tx.sender)
            tally.nonces[tx.sender] = account.nonce if account else 0
            kind = check_admission(tx, self.chain_id, self.registry, account, self.signatures, tx_hash, raw, pending)
            assert account is not None  # check_admission refused a missing account
            if tx.nonce != account.nonce + 1:
                raise BadNonce(f"nonce {tx.nonce} is not the sender's next nonce {account.nonce + 1}")
        except FbciError as exc:
            return tx_hash, _failed(height, index, exc)
        # From here on the transaction is the sender's, in order: its nonce is spent.
        tally.nonces[tx.sender] = tx.nonce
        bumped = Account(account.name, account.roles, tx.nonce)
        ctx = TxContext(self.chain_id, height, block.header.time_ms, tx.sender, account.roles, tx_hash, account.name)
        scratch = pending.child()
        try:
            result = kind.handler(scratch, ctx, tx.payload)
        except FbciError as exc:
            store_account(pending, tx.sender, bumped)
            return tx_hash, _failed(height, index, exc)
        except Exception as exc:  # a contract bug must not split the chain: fail the tx deterministically
            log.exception("contract %s raised an unexpected error", tx.kind)
            store_account(pending, tx.sender, bumped)
            return tx_hash, _failed(height, index, TxRejected(f"contract error: {type(exc).__name__}"))
        touched_own_account = account_key(tx.sender) in scratch.writes
        scratch.merge_into_parent()
        current = load_account(pending, tx.sender) if touched_own_account else bumped
        if current is not None:  # None: acl.rotate moved the account to its new key, with its nonce
            # an acl kind may have changed the sender's own roles: keep them, with the new nonce
            store_account(pending, tx.sender, Account(current.name, current.roles, tx.nonce))
        return tx_hash, Receipt(height, index, True, 0, "ok", "", result)


def _run_hook(hook: EndBlockHook, pending: PendingState, height: int, block_hash: bytes) -> Sequence[RoundRecord]:
    scratch = pending.child()
    try:
        records = hook(scratch, height, block_hash)
    except MemoryError:
        raise
    except Exception as exc:  # the same on every validator at this height: record it and go on, never halt
        name = hook_name(hook)
        previous = hook_failure(pending, name)
        failure = HookFailure(name, height, failure_reason(exc), 1 + (previous.failures if previous else 0))
        if previous is None:  # the traceback once; a hook failing at every block would fill the log
            log.exception("end-block hook %s failed at height %d; its writes are dropped and the block commits",
                          name, height)
        else:
            log.error("end-block hook %s failed again at height %d (%d blocks so far): %s", name, height,
                      failure.failures, failure.reason)
        pending.set(HOOK_FAILED_PREFIX + name.encode(), codec.encode(asdict(failure)))
        return ()
    scratch.merge_into_parent()
    return records


def _failed(height: int, index: int, exc: FbciError) -> Receipt:
    return Receipt(height, index, False, exc.code, exc.reason, exc.message, dict(exc.data))


def validate_block_txs(block: Block, chain_id: str, max_tx_bytes: int, signatures: SignatureCache) -> None:
    """Stateless checks a proposed block must pass before a validator votes for it.

    A transaction whose hash is in ``signatures`` needs no second look: only bytes that decoded,
    named this chain and carried a valid signature were ever added there, and these checks
    depend on nothing but the bytes.
    """
    for i, raw in enumerate(block.txs):
        if sha256(raw) in signatures:
            continue
        try:
            tx = Transaction.decode(raw, max_size=max_tx_bytes)
        except FbciError as exc:
            raise InvalidInput(f"block tx {i}: {exc.message}") from None
        if tx.chain_id != chain_id:
            raise InvalidInput(f"block tx {i} is for chain {tx.chain_id!r}")
        if not signatures.verify(tx, None, raw):
            raise InvalidInput(f"block tx {i} has a bad signature")
