"""The part of a validator that needs no network: the application, its mempool and its block executor.

Wired once, in the one order that keeps them consistent: the mempool asks
the application's ``check_tx``; the block executor finalises blocks through
the application and tells the mempool first. The consensus driver, block
sync, the RPC service, the benchmarks and the tests all use this one
assembly, so none of them can wire it differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.block import Block
from genesis.schema import ChainParams
from node.application import Application, ProposalRequest
from node.blockexec import BlockExecutor
from node.mempool import Mempool

BLOCK_OVERHEAD_BYTES = 1024
"""Room left in a block for its header and LastCommit when reaping transactions."""


@dataclass(frozen=True)
class Ledger:
    app: Application
    mempool: Mempool
    blocks: BlockExecutor
    params: ChainParams

    @classmethod
    def assemble(cls, app: Application, params: ChainParams) -> Ledger:
        """``params``: genesis's, the ceilings of reaping; the mempool's bounds follow the chain's own."""
        mempool = Mempool(app, max_txs=params.mempool_max_txs, max_bytes=params.mempool_max_bytes,
                          max_tx_bytes=params.max_tx_bytes, height=app.info().height)
        _bound(mempool, app.params_at(app.info().height + 1))
        blocks = BlockExecutor(app, decoded=mempool.decoded)
        blocks.observers.append(mempool.update)  # first: nothing may propose a committed transaction again
        blocks.observers.append(lambda finalized: _bound(mempool, app.params_at(finalized.block.height + 1)))
        return cls(app, mempool, blocks, params)

    def propose(self, proposer: bytes, now_ms: int) -> Block:
        """The next block from the mempool, within the genesis size limits (the application keeps it within
        its own height's)."""
        txs = self.mempool.reap(self.params.max_block_txs, self.params.max_block_bytes - BLOCK_OVERHEAD_BYTES)
        return self.app.prepare_proposal(ProposalRequest(txs, proposer, now_ms))


def _bound(mempool: Mempool, params: ChainParams) -> None:
    """The mempool admits what the next height accepts (a governance decision may have changed it)."""
    mempool.max_txs, mempool.max_bytes = params.mempool_max_txs, params.mempool_max_bytes
    mempool.max_tx_bytes = params.max_tx_bytes
