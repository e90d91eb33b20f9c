"""Prometheus metrics for one validator, served by the RPC server at ``/metrics``.

Gauges read their value at scrape time (``set_function``), so the hot paths
never update them; only the commit latency histogram is fed, once per
committed transaction that was submitted through this validator, and the
task-failure counter, by the runtime's supervisor just before it stops the
process. Liveness is visible without a failure too: ``fbci_consensus_running``
and ``fbci_last_commit_timestamp_seconds`` expose what ``status`` says.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from node.application import Application, FinalizedBlock
from node.consensus_driver import ConsensusDriver
from node.mempool import Mempool
from node.service import NodeService
from node.sync import BlockSyncer
from node.transport import PeerTransport
from node.transport.metrics import TransportCollector


class NodeMetrics:
    def __init__(self, name: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"validator": name}
        self._labels = labels
        self.height = Gauge("fbci_height", "Last committed height", list(labels), registry=self.registry)
        self.view = Gauge("fbci_view", "Current consensus view", list(labels), registry=self.registry)
        self.view_changes = Gauge("fbci_view_changes", "View changes seen since start", list(labels),
                                  registry=self.registry)
        self.mempool_txs = Gauge("fbci_mempool_txs", "Pending transactions", list(labels), registry=self.registry)
        self.mempool_bytes = Gauge("fbci_mempool_bytes", "Pending transaction bytes", list(labels),
                                   registry=self.registry)
        self.peers = Gauge("fbci_peers_connected", "Authenticated peer links", list(labels), registry=self.registry)
        self.sync_target = Gauge("fbci_sync_target_height", "Height block sync is catching up to", list(labels),
                                 registry=self.registry)
        self.syncing = Gauge("fbci_syncing", "1 while block sync runs", list(labels), registry=self.registry)
        self.committed_txs = Counter("fbci_committed_txs", "Transactions committed", list(labels),
                                     registry=self.registry)
        self.consensus_running = Gauge("fbci_consensus_running", "1 while the consensus loop runs", list(labels),
                                       registry=self.registry)
        self.last_commit = Gauge("fbci_last_commit_timestamp_seconds",
                                 "When this validator last committed a block (Unix time, its own clock)",
                                 list(labels), registry=self.registry)
        self.task_failures = Counter("fbci_task_failures", "Validator tasks that ended with an unexpected error "
                                     "(each one stops the process)", [*labels, "task"], registry=self.registry)
        self.commit_latency = Histogram(
            "fbci_commit_latency_seconds", "Submit-to-commit latency of transactions submitted here",
            list(labels), registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self._service: NodeService | None = None

    def attach(self, app: Application, mempool: Mempool, driver: ConsensusDriver, transport: PeerTransport,
               syncer: BlockSyncer, service: NodeService) -> None:
        self._service = service
        lab = self._labels
        self.height.labels(**lab).set_function(lambda: app.info().height)
        self.view.labels(**lab).set_function(lambda: driver.view)
        self.view_changes.labels(**lab).set_function(lambda: driver.view_changes)
        self.mempool_txs.labels(**lab).set_function(lambda: len(mempool))
        self.mempool_bytes.labels(**lab).set_function(lambda: mempool.size_bytes)
        self.peers.labels(**lab).set_function(lambda: len(transport.connected_peers()))
        self.sync_target.labels(**lab).set_function(lambda: syncer.target)
        self.registry.register(TransportCollector(transport, lab["validator"]))
        self.syncing.labels(**lab).set_function(lambda: int(syncer.syncing))
        self.consensus_running.labels(**lab).set_function(lambda: int(driver.running))
        self.last_commit.labels(**lab).set_function(lambda: service.last_commit_ms / 1000)

    def on_task_failure(self, task: str) -> None:
        self.task_failures.labels(**self._labels, task=task).inc()

    def on_commit(self, finalized: FinalizedBlock) -> None:
        self.committed_txs.labels(**self._labels).inc(len(finalized.receipts))
        if self._service is None:
            return
        now = time.monotonic()
        submitted = self._service.submitted_at
        for tx_hash in finalized.receipts:
            started = submitted.pop(tx_hash, None)
            if started is not None:
                self.commit_latency.labels(**self._labels).observe(now - started)
