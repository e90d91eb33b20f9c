"""The fbci ledger application: what consensus orders, this checks, executes, stores and answers.

:class:`LedgerApplication` implements :class:`node.application.Application`.
It owns the stores (blocks, receipts and state on one LevelDB database), the
executor and its transaction kinds, and the read-only queries. It knows
nothing about peers, timers, sockets or the mempool, so the single-process
path, the consensus driver and block sync drive it the same way. Everything
here is synchronous disk work; the asyncio loop around it lives in
``node/runtime.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from consensus import CommitCertificate, Ed25519Verifier, KeyedVerifier, Verifier
from core.audit import AUDIT_EVENTS, AUDIT_PROOF
from core.block import ZERO_HASH, Block, BlockHeader
from core.errors import (
    BadNonce, ContractRejected, FbciError, InvalidInput, NotFound, StorageError, StoreCorrupt, TxRejected,
)
from core.tx import MAX_NONCE_GAP
from core.snapshot import ChunkReply, ChunkRequest, SnapshotList
from core.hashing import merkle_root, sha256
from core.proofs import StateReceipt, receipt_key
from core.state import StateView, TxContext
from core.validators import ValidatorSet
from genesis.schema import ChainParams, GenesisDoc
from ids import alerts
from ids.alerts import StoredAlert
from node.accounts import Account, load_account, store_account
from node.audit import AuditLog
from node.audit_anchor import covering, last_anchored
from node import validator_set
from node.application import (
    AppInfo, CheckedTx, CheckTxRequest, FinalizedBlock, FinalizeRequest, ProposalRequest, StoredBlock,
)
from node.execution import (
    SIGNATURE_CACHE_SIZE, DecodedLookup, Executor, SignatureCache, TxKindRegistry, check_admission, validate_block_txs,
)
from fl_contracts.blob_updates import ModelBlobs
from node.kinds import build_registry, genesis_hooks
from node.app_reads import QueryRouter
from node.chain_params import ParamsSchedule, check_sizes, init_params, within_limits
from node.quotas import MemberQuota
from node.snapshots import RestoredSnapshot, SnapshotServer, restore
from node.stores import RESTORE_HINT, BlockStore, Database, TxIndex, commit_block
from node.state_store import StateStore

log = logging.getLogger(__name__)


GenesisAccount = tuple[bytes, str, Sequence[str]]
"""``(public key, name, roles)`` of an account genesis registers."""


class LedgerApplication:
    def __init__(self, chain_id: str, validators: tuple[bytes, ...], params: ChainParams, database: Database,
                 registry: TxKindRegistry, genesis_time_ms: int = 0, verifier: Verifier | None = None,
                 signature_cache_size: int = SIGNATURE_CACHE_SIZE) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.params = params
        self.database = database
        self.genesis_time_ms = genesis_time_ms
        self.blocks = BlockStore(database)
        self.state = StateStore(database, params.snapshot_interval)
        self.tx_index = TxIndex(database)
        self.signatures = SignatureCache(signature_cache_size)
        self.verifier = verifier or Ed25519Verifier(chain_id)
        self.schedule = validator_set.ValidatorSchedule(validators, self.verifier)
        self.param_schedule = ParamsSchedule(params)
        self.executor = Executor(chain_id, registry, self.signatures, params.max_tx_bytes,
                                 MemberQuota.from_params(params))
        self.snapshots = SnapshotServer(self.state, self.blocks, params.max_block_bytes)
        self._head: Block | None = None  # the block at self.height, decoded once (see _head_block)
        self._info: AppInfo | None = None
        self.reads = QueryRouter(self)

    @classmethod
    def open(cls, doc: GenesisDoc, database: Database, blobs: ModelBlobs | None = None) -> LedgerApplication:
        """The application of the chain ``doc`` describes, its store checked, genesis state written and
        any block a crash left unapplied re-executed, ready for the next height. ``blobs``: the node's
        blob store, which FL rounds of a blob model read and write (``fl_contracts.blob_updates``)."""
        validators = tuple(bytes.fromhex(v.public_key) for v in doc.validators)
        verifier = KeyedVerifier(doc.chain_id, doc.validator_keys())  # hybrid validators' certificates too
        app = cls(doc.chain_id, validators, doc.params, database,
                  build_registry(doc.chain_id, validators, verifier, blobs), genesis_time_ms=doc.genesis_time_ms,
                  verifier=verifier)
        app.check_stored_chain()
        genesis_set = doc.validator_set()
        app.init_genesis([(bytes.fromhex(a.public_key), a.name, a.roles) for a in doc.accounts],
                         [*genesis_hooks(doc, blobs), lambda state: validator_set.init_validator_set(state, genesis_set)])
        replayed = app.replay_unapplied()
        if replayed:
            log.info("re-executed %d stored blocks whose state a crash cut off", replayed)
        app.state.snapshot_interval = app.params_at(app.height).snapshot_interval
        return app

    # -- start-up ---------------------------------------------------------------------------

    def check_stored_chain(self) -> None:
        """Refuse a store that lost committed data before anything runs on top of it.

        LevelDB's paranoid checks catch a damaged log when the database opens; this catches what
        they cannot see: a gap in the blocks or certificates, a state ahead of its blocks (or one
        that lost its height, which genesis would otherwise overwrite), and a latest certificate
        that no longer verifies against the validator set.
        """
        last, state_height = self.blocks.last_height, self.state.height
        problems = self.blocks.gaps()
        if state_height > last:
            problems.append(f"the state is at height {state_height} but the blocks end at height {last}")
        elif state_height < 0 < last:
            problems.append(f"the state has no height although the blocks reach height {last}")
        if state_height >= 0 and not self.state.has_version(state_height):
            problems.append(f"the state trie has no root for the state's height {state_height}")
        if not problems and last > 0:
            problems += self._latest_certificate_problems(last)
        if problems:
            raise StoreCorrupt(f"the store at {self.database.path} lost committed data: {'; '.join(problems)}. "
                               f"{RESTORE_HINT}")
        self.blocks.mark_checked(last)

    def _latest_certificate_problems(self, last: int) -> list[str]:
        try:
            block = self.block_at(last)
            certificate = CommitCertificate.decode(self.blocks.certificate(last))
            if certificate.height != last or certificate.block_hash != block.hash:
                return [f"the commit certificate stored for height {last} certifies another block"]
            certificate.verify(self.chain_id, self.validator_set(last).keys, self.verifier)
        except FbciError as exc:
            return [f"the block or commit certificate stored for height {last} does not verify against the "
                    f"validators of that height: {exc.message}"]
        return []

    def init_genesis(self, accounts: Sequence[GenesisAccount], hooks: Sequence[Callable[[StateView], None]]) -> None:
        """Write genesis state as height 0, once; a restarted node skips this."""
        if self.state.height >= 0:
            return
        pending = self.state.begin()
        for public_key, name, roles in accounts:
            store_account(pending, public_key, Account(name, frozenset(roles), 0))
        init_params(pending, self.params)
        for hook in hooks:
            hook(pending)
        self.state.commit(0, pending)
        self._info = None
        self.schedule.forget()
        self.param_schedule.forget()
        log.info("genesis state written, state hash %s", self.state.state_hash.hex())

    def replay_unapplied(self) -> int:
        """Re-execute blocks that were stored but whose state commit a crash cut off."""
        replayed = 0
        for height in range(self.state.height + 1, self.blocks.last_height + 1):
            self._apply(self.block_at(height), self.blocks.certificate(height), store=None, durable=True,
                        decoded=None)
            replayed += 1
        return replayed

    # -- Info -------------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.info().height

    def info(self) -> AppInfo:
        """Read from the stores once, then replaced by each commit: the proposer, every vote, block sync
        and ``status`` ask for it at every block, and it changes only when a block is applied."""
        if self._info is None:
            height = self.blocks.last_height
            if height == 0:
                self._info = AppInfo(0, ZERO_HASH, self.genesis_time_ms, self.state.state_hash, b"")
            else:
                head = self.head_block(height)
                self._info = AppInfo(height, head.hash, head.header.time_ms, self.state.state_hash,
                                     self.blocks.certificate(height))
        return self._info

    # -- the chain parameters and the validator set of each height --------------------------

    def params_at(self, height: int) -> ChainParams:
        """The parameters ``height`` runs under (``node.chain_params``); ``self.params``, genesis's, stay the
        ceilings that decoding and the edges are sized by."""
        return self.param_schedule.at(self.state, height)

    @property
    def quota(self) -> MemberQuota:
        """The storage quotas of the next height."""
        return MemberQuota.from_params(self.params_at(self.height + 1))

    def validator_set(self, height: int) -> ValidatorSet:
        """The set deciding ``height`` as far as the chain decided it: a set chosen in block H counts from
        H + 2, so beyond ``self.height + 2`` this is only the latest decided set."""
        return self.schedule.at(self.state, height)

    def validators_at(self, height: int) -> tuple[bytes, ...] | None:
        """The keys deciding ``height``, or None while the chain has not decided that height's set
        (consensus's ``ValidatorsAt``)."""
        if height > self.height + validator_set.EFFECT_DELAY:
            return None
        return self.validator_set(height).keys

    def block_at(self, height: int) -> Block:
        return Block.decode(self.blocks.block(height), max_size=self.params.max_block_bytes)

    def head_block(self, height: int) -> Block:
        """The block at ``height``, the last committed one: decoding a full block (canonical re-encode,
        Merkle root) costs milliseconds, so it is kept for as long as the height stays the same."""
        if self._head is None or self._head.height != height:
            self._head = self.block_at(height)
        return self._head

    def _last_block_hash(self) -> bytes:
        return self.info().last_block_hash

    def _last_block_time(self) -> int:
        return self.info().last_block_time_ms

    # -- CheckTx ----------------------------------------------------------------------------

    def committed_height(self, tx_hash: bytes) -> int | None:
        """The height of the committed block that carries ``tx_hash`` (the ``tx_get`` index), if any."""
        try:
            return self.tx_index.get(tx_hash).height
        except NotFound:
            return None

    def check_tx(self, request: CheckTxRequest) -> CheckedTx:
        """The checks execution will make, against committed state, then the contract on a throwaway
        buffer. A malformed payload is always refused; a contract-rule refusal only when the sender
        has nothing pending (see :class:`CheckTxRequest`)."""
        tx = request.tx
        account = load_account(self.state, tx.sender)
        kind = check_admission(tx, self.chain_id, self.executor.registry, account, self.signatures,
                               request.tx_hash, request.raw, self.state)
        assert account is not None  # check_admission refused a missing account
        if tx.nonce <= account.nonce:
            height = self.committed_height(request.tx_hash)
            if height is None:
                raise BadNonce(f"nonce {tx.nonce} was already used; the sender's next nonce is {account.nonce + 1}")
            raise BadNonce(f"transaction {request.tx_hash.hex()} is already committed, at height {height}",
                           data={"committed_height": height})
        if tx.nonce > account.nonce + MAX_NONCE_GAP:
            raise BadNonce(f"nonce {tx.nonce} is more than {MAX_NONCE_GAP} ahead of the next nonce {account.nonce + 1}")
        self.quota.check_tx(self.state, tx.sender, len(request.raw), self.height + 1)
        ctx = TxContext(self.chain_id, self.height + 1, self._last_block_time(), tx.sender, account.roles,
                        request.tx_hash, account.name)
        try:
            kind.handler(self.state.begin(), ctx, tx.payload)
        except ContractRejected:
            if not request.sender_has_pending:
                raise
        except FbciError:
            raise
        except Exception as exc:  # the same contract bug execution would turn into a failed receipt
            raise TxRejected(f"contract error: {type(exc).__name__}") from None
        return CheckedTx(committed_nonce=account.nonce)

    # -- PrepareProposal / ProcessProposal --------------------------------------------------

    def prepare_proposal(self, request: ProposalRequest) -> Block:
        """The next block from the mempool's transactions (reaped within genesis's size limits), within
        the limits of its own height, less what a sender's storage quota leaves for a later block
        (``node.quotas``)."""
        info = self.info()
        params = self.params_at(info.height + 1)
        txs = tuple(MemberQuota.from_params(params).fit(self.state, within_limits(request.txs, params),
                                                        info.height + 1))
        header = BlockHeader(
            chain_id=self.chain_id, height=info.height + 1, prev_block_hash=info.last_block_hash,
            proposer=request.proposer, time_ms=max(request.now_ms, info.last_block_time_ms + 1),
            txs_root=merkle_root(list(txs)), state_hash=info.state_hash,
            prev_commit_hash=sha256(info.last_certificate) if info.last_certificate else ZERO_HASH, num_txs=len(txs),
            validators_hash=self.validator_set(info.height + 1).hash(),
            next_validators_hash=self.validator_set(info.height + 2).hash(),
        )
        return Block(header, txs, info.last_certificate)

    def process_proposal(self, block: Block, now_ms: int | None) -> None:
        """The rules a block must keep relative to this validator's last committed block.

        The time-drift check reads this validator's clock, so validators may *vote*
        differently on a block stamped far in the future; that only affects
        liveness, never what execution computes.
        """
        h = block.header
        expected = self.height + 1
        if h.chain_id != self.chain_id:
            raise InvalidInput(f"block is for chain {h.chain_id!r}")
        if h.height != expected:
            raise InvalidInput(f"block height {h.height}, expected {expected}")
        if h.prev_block_hash != self._last_block_hash():
            raise InvalidInput("block.prev_block_hash is not the hash of the last committed block")
        self._check_last_commit(block)
        if h.state_hash != self.info().state_hash:
            raise InvalidInput("block.state_hash differs from this validator's state after the last block")
        if h.validators_hash != self.validator_set(expected).hash():
            raise InvalidInput(f"block.validators_hash is not the hash of the validator set of height {expected}")
        if h.next_validators_hash != self.validator_set(expected + 1).hash():
            raise InvalidInput(f"block.next_validators_hash is not the hash of the validator set of height "
                               f"{expected + 1}")
        if h.proposer not in self.validator_set(expected):
            raise InvalidInput(f"block.proposer is not a validator at height {expected}")
        if h.time_ms <= self._last_block_time():
            raise InvalidInput("block.time_ms is not after the previous block's time (or genesis time)")
        params = self.params_at(expected)
        if now_ms is not None and h.time_ms > now_ms + params.max_clock_drift_ms:
            raise InvalidInput("block.time_ms is too far in the future")
        if h.num_txs > params.max_block_txs:
            raise InvalidInput(f"block has {h.num_txs} transactions; the limit is {params.max_block_txs}")
        check_sizes(block.txs, params)
        validate_block_txs(block, self.chain_id, params.max_tx_bytes, self.signatures)
        MemberQuota.from_params(params).check_block(self.state, block.txs, h.height)

    def _check_last_commit(self, block: Block) -> None:
        """The carried certificate must finalise exactly our last block, with a quorum of valid signatures.

        Any valid quorum will do, not only this validator's own subset; the
        header's ``prev_commit_hash`` is already bound to these bytes
        (``Block.validate_shape``). Bytes equal to the certificate this
        validator committed its last block with are not verified again: it
        verified them then (block sync would otherwise check every
        certificate twice, once as the block's own and once as the next
        block's last commit).
        """
        if self.height == 0:
            return  # validate_shape: empty last_commit at height 1
        try:
            cert = CommitCertificate.decode(block.last_commit)
        except FbciError as exc:
            raise InvalidInput(f"block.last_commit (prev_commit_hash) is not a commit certificate: {exc.message}") from None
        if cert.height != self.height or cert.block_hash != self._last_block_hash():
            raise InvalidInput("block.last_commit (prev_commit_hash) does not certify the last committed block")
        if block.last_commit != self.info().last_certificate:  # the same bytes were verified when we committed
            cert.verify(self.chain_id, self.validator_set(self.height).keys, self.verifier)

    # -- FinalizeBlock + Commit -------------------------------------------------------------

    def finalize_block(self, request: FinalizeRequest) -> FinalizedBlock:
        """Execute a decided block and store it, its receipts and the new state in one batch
        (see node/stores.py for the order)."""
        block = request.block
        if block.height != self.height + 1:
            raise InvalidInput(f"cannot commit height {block.height} on top of {self.height}")
        stored = (block.height, block.hash, block.encode() if request.raw is None else request.raw,
                  request.certificate)
        return self._apply(block, request.certificate, store=stored, durable=request.durable, decoded=request.decoded)

    def _apply(self, block: Block, certificate: bytes, *, store: tuple[int, bytes, bytes, bytes] | None,
               durable: bool, decoded: DecodedLookup | None) -> FinalizedBlock:
        params = self.params_at(block.height)
        outcome = self.executor.execute_block(block, self.state, decoded, params)
        self.state.snapshot_interval = params.snapshot_interval
        for tx_hash, receipt in outcome.receipts.items():  # in state too, so a proof can show the outcome
            outcome.pending.set(receipt_key(tx_hash), StateReceipt.of(receipt).encode())
        new_alerts = [a for r in outcome.receipts.values() if r.ok and (a := _alert_of(outcome.pending, r.result))]
        state_hash = commit_block(self.database, self.blocks, store, self.tx_index, outcome.receipts, self.state,
                                  block.height, outcome.pending, durable=durable)
        self._head = block
        self._info = AppInfo(block.height, block.hash, block.header.time_ms, state_hash, certificate)
        self.param_schedule.after_block(self.state, block.height)
        return FinalizedBlock(block, certificate, outcome.receipts, outcome.committed_nonces, new_alerts,
                              outcome.rounds_closed, self.schedule.after_block(self.state, block.height))

    def sync(self) -> None:
        """Make every commit so far durable (after a batch of ``durable=False`` ones)."""
        self.database.sync()

    # -- Query ------------------------------------------------------------------------------

    def query(self, path: str, params: BaseModel, *, prove: bool = False) -> object:
        return self.reads.query(path, params, prove=prove)

    def stored_block(self, height: int) -> StoredBlock:
        return StoredBlock(self.blocks.block(height), self.blocks.certificate(height))

    # -- state sync (node/snapshots.py) -----------------------------------------------------

    def list_snapshots(self) -> SnapshotList:
        return self.snapshots.list(self.schedule.decided(self.state))

    def snapshot_chunk(self, request: ChunkRequest) -> ChunkReply:
        return self.snapshots.chunk(request)

    def restore_snapshot(self, snapshot: RestoredSnapshot) -> None:
        if self.blocks.last_height != 0:
            raise StorageError(f"the store already holds blocks up to {self.blocks.last_height}; a snapshot is "
                               "only restored into a store that holds the genesis state alone")
        restore(self.database, self.state, self.blocks, snapshot)
        self._info, self._head = None, None
        self.schedule.forget()  # the restored state holds the sets decided up to the snapshot
        self.param_schedule.forget()  # and the parameters
        log.info("restored the state of height %d from a snapshot, state hash %s", snapshot.height,
                 snapshot.root.hex())

    def last_anchored(self, validator: bytes) -> tuple[int, int | None]:
        return last_anchored(self.state, validator)

    def serve_audit(self, trail: AuditLog, validator: bytes) -> None:
        """Answer ``audit_events`` and ``audit_proof`` from this validator's own trail (the runtime calls it)."""
        self.reads.add(AUDIT_EVENTS, lambda state, p: trail.page(p, lambda: last_anchored(state, validator)))
        self.reads.add(AUDIT_PROOF, lambda state, p: trail.proof(p.seq, lambda seq: covering(state, validator, seq)))


def _alert_of(state: StateView, result: dict[str, Any]) -> StoredAlert | None:
    """The stored alert an ``ids.alert`` receipt points at (None for any other receipt)."""
    alert_id = result.get("alert_id")
    return alerts.get_alert(state, alert_id) if isinstance(alert_id, int) else None
