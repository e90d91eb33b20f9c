"""Applying a decided block: the application executes and stores it, then the node's observers hear of it.

Consensus (a block it committed) and block sync (a block a peer proved with
its certificate) both end here, so every committed block reaches the same
observers in the same order: the mempool first (it drops what the block
carried, before anything else may propose again), then the RPC waiters,
metrics and self-defence. As in CometBFT's ``BlockExecutor``, this holds the
application's connection; it does not hold the mempool, which is only an
observer like the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from core.block import Block
from core.tx import Transaction
from node.application import Application, FinalizedBlock, FinalizeRequest

log = logging.getLogger(__name__)

CommitObserver = Callable[[FinalizedBlock], None]


class BlockExecutor:
    def __init__(self, app: Application, decoded: Callable[[bytes], Transaction | None] | None = None) -> None:
        """``decoded``: already decoded transactions by hash (the mempool's), passed to the application."""
        self.app = app
        self.decoded = decoded
        self.observers: list[CommitObserver] = []
        self.prerequisites: list[Callable[[Block], Awaitable[None]]] = []
        """Awaited before a block executes: what its execution will read that is not in state (the blobs an
        open round needs, ``node.blobs``) must be on this validator's disk first."""

    async def ready(self, block: Block) -> None:
        for prerequisite in self.prerequisites:
            await prerequisite(block)

    def commit(self, block: Block, certificate: bytes, raw: bytes | None = None, *,
               durable: bool = True) -> FinalizedBlock:
        finalized = self.finalize(block, certificate, raw, durable=durable)
        self.announce(finalized)
        return finalized

    def finalize(self, block: Block, certificate: bytes, raw: bytes | None = None, *,
                 durable: bool = True) -> FinalizedBlock:
        """Execute and store, telling no observer yet: a caller that syncs the disk off the event loop
        announces the block once it is durable (``node/consensus_driver.py``, ``node/sync.py``)."""
        return self.app.finalize_block(FinalizeRequest(block, certificate, raw, durable, self.decoded))

    def announce(self, finalized: FinalizedBlock) -> None:
        for observer in self.observers:
            try:
                observer(finalized)
            except Exception:  # an observer must never stop the chain
                log.exception("commit observer failed")
