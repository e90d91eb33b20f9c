"""The application's reads: which queries it answers, how each is routed, and how an answer is proven.

Every read is a :class:`core.api.Query` answered by a function over a
``StateView``: the committed state, or the trie version the newest certified
header commits to when the caller asks for a proof (a light client runs the
same functions over the proof, ``client/light_verify.py``). The few reads of
the block store (``tx_get``, ``block_get``) cannot be proven against state and
say so. The routes are built once; the runtime adds the audit trail's own
reads when it has opened the trail (:meth:`QueryRouter.add`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from consensus import CommitCertificate
from consent import contract as consent_contract
from consent import queries as consent_queries
from core import blob_api, keyhistory
from core import validators as validator_queries
from core.api import (
    BLOCK_GET, CHAIN_QUERIES, TX_GET, BlockGetParams, BlockInfo, CertificateInfo, Query, Signature, TxGetParams,
    TxInfo,
)
from core.audit import AUDIT_ANCHORS, AUDIT_QUERIES
from core.block import Block
from core.errors import InvalidInput, NotFound
from core.hashing import sha256
from core.proofs import CORE_STATE_QUERIES, ProvenAnswer, TreeState
from core.readauth import CUSTODIAN_PATH, READER_PATH, CustodianParams, ReaderInfo, ReaderParams
from core.state import StateView
from core.tx import Transaction
from fl_contracts import queries as fl_queries
from genesis.schema import ChainParams
from governance import queries as gov_queries
from ids import queries as alert_queries
from node.accounts import reader_info
from node.audit_anchor import anchors
from node.evidence_tx import convictions
from node.stores import BlockStore, StateStore, TxIndex

STATE_QUERIES = (*CORE_STATE_QUERIES, *fl_queries.STATE_QUERIES, *alert_queries.STATE_QUERIES,
                 *consent_queries.STATE_QUERIES, *gov_queries.STATE_QUERIES, *keyhistory.STATE_QUERIES,
                 *validator_queries.STATE_QUERIES, *blob_api.STATE_QUERIES,
                 (gov_queries.GOV_CONVICTIONS, convictions))
"""Every read of state, with the function that answers it over a ``StateView``: the committed state,
or a stored trie version when the answer carries a proof (a light client runs the same functions)."""

RPC_QUERIES: tuple[Query[Any, Any], ...] = (*CHAIN_QUERIES, *(q for q, _ in STATE_QUERIES), *AUDIT_QUERIES)
"""The reads this application answers that JSON-RPC serves, each under its path."""

READER: Query[ReaderParams, ReaderInfo | None] = Query(
    READER_PATH, "Who a key is, for the read guard (node-internal, not a JSON-RPC method).", ReaderParams,
    ReaderInfo | None, provable=False)

CUSTODIAN: Query[CustodianParams, bytes | None] = Query(
    CUSTODIAN_PATH, "The hospital holding a patient pseudonym, for the read guard (node-internal).", CustodianParams,
    bytes | None, provable=False)

Answer = Callable[[StateView, Any], object]


class StoredChain(Protocol):
    """What the reads need of the application: its stores, and its committed blocks decoded."""

    state: StateStore
    blocks: BlockStore
    tx_index: TxIndex
    params: ChainParams

    @property
    def height(self) -> int: ...

    def block_at(self, height: int) -> Block: ...

    def head_block(self, height: int) -> Block: ...


@dataclass(frozen=True)
class _Route:
    query: Query[Any, Any]
    answer: Answer


class QueryRouter:
    def __init__(self, chain: StoredChain) -> None:
        self.chain = chain
        self._routes: dict[str, _Route] = {
            TX_GET.path: _Route(TX_GET, lambda _, p: self._tx(p)),
            BLOCK_GET.path: _Route(BLOCK_GET, lambda _, p: self._block(p)),
            READER_PATH: _Route(READER, lambda state, p: reader_info(state, p.public_key)),
            CUSTODIAN_PATH: _Route(CUSTODIAN, lambda state, p: consent_contract.custodian(state, p.patient)),
            AUDIT_ANCHORS.path: _Route(AUDIT_ANCHORS, lambda state, p: anchors(state, p.validator)),
        }
        for query, answer in STATE_QUERIES:
            self.add(query, answer)

    def add(self, query: Query[Any, Any], answer: Answer) -> None:
        self._routes[query.path] = _Route(query, answer)

    def query(self, path: str, params: BaseModel, *, prove: bool = False) -> object:
        route = self._routes.get(path)
        if route is None:
            raise NotFound(f"no query {path!r}; known: {sorted(self._routes)}")
        if type(params) is not route.query.params:
            raise InvalidInput(f"query {path} takes {route.query.params.__name__}, not {type(params).__name__}")
        if not prove:
            return route.answer(self.chain.state, params)
        if not route.query.provable:
            raise InvalidInput(f"query {path} cannot be proven (it reads the block store, not state)")
        return self._proven(route, params)

    def _proven(self, route: _Route, params: BaseModel) -> ProvenAnswer:
        """The answer over the state the newest certified header commits to: the header at height H holds
        the root after H - 1 (``core.block``), so the read runs on the trie version before the newest."""
        chain = self.chain
        height = chain.height
        if height < 1:
            raise NotFound("no block is committed yet, so no certified header commits to any state")
        view = TreeState(chain.state.node, chain.state.tree_root(height - 1))
        result, not_found = None, None
        try:
            result = route.answer(view, params)
        except NotFound as exc:
            not_found = exc.message
        return ProvenAnswer(result=result, state_height=height - 1, header=chain.head_block(height).header.encode(),
                            certificate=chain.blocks.certificate(height), proof=view.proof().encode(),
                            not_found=not_found)

    def _tx(self, p: TxGetParams) -> TxInfo:
        receipt = self.chain.tx_index.get(p.hash)
        raw = self.chain.block_at(receipt.height).txs[receipt.index]
        tx = Transaction.decode(raw, max_size=self.chain.params.max_tx_bytes)
        return TxInfo(hash=p.hash, sender=tx.sender, nonce=tx.nonce, kind=tx.kind, tx=raw, receipt=receipt)

    def _block(self, p: BlockGetParams) -> BlockInfo:
        chain = self.chain
        height = chain.blocks.height_of(p.hash) if p.hash is not None else p.height
        if height is None:
            height = chain.height
        if height < 1 or height > chain.height:
            raise NotFound(f"no block at height {height}; the chain is at {chain.height}")
        block, certificate = chain.block_at(height), chain.blocks.certificate(height)
        h = block.header
        return BlockInfo(
            hash=block.hash, height=h.height, chain_id=h.chain_id, prev_block_hash=h.prev_block_hash,
            proposer=h.proposer, time_ms=h.time_ms, txs_root=h.txs_root, state_hash=h.state_hash,
            prev_commit_hash=h.prev_commit_hash, num_txs=h.num_txs, txs=tuple(sha256(t) for t in block.txs),
            last_commit=_certificate_info(block.last_commit), commit_certificate=_certificate_info(certificate),
            validators_hash=h.validators_hash, next_validators_hash=h.next_validators_hash,
        )


def _certificate_info(encoded: bytes) -> CertificateInfo | None:
    if not encoded:
        return None
    cert = CommitCertificate.decode(encoded)
    return CertificateInfo(height=cert.height, view=cert.view, block_hash=cert.block_hash,
                           signatures=tuple(Signature(validator=v, signature=s) for v, s in cert.signatures))
