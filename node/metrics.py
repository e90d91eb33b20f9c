"""Prometheus metrics for one validator, served by the RPC server at ``/metrics``.

Gauges read their value at scrape time (``set_function``), so the hot paths
never update them; only the commit latency histogram is fed, once per
committed transaction that was submitted through this validator, and the
task-failure counter, by the runtime's supervisor just before it stops the
process. Liveness is visible without a failure too: ``fbci_consensus_running``
and ``fbci_last_commit_timestamp_seconds`` expose what ``status`` says.

What each committed block says about the network is counted once, as it is
committed (``on_commit``): the validators missing from its commit certificate,
the IDS alerts and refused transactions in it, the FL rounds it closed, and
the Byzantine validators convicted (an ``equivocation`` alert is accepted only
with the ``consensus.evidence`` convicting its subject on chain). These feed
``deploy/grafana/fbci.json``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consensus.certificates import CommitCertificate
from node.application import Application, FinalizedBlock
from node.consensus_driver import ConsensusDriver
from node.mempool import Mempool
from node.service import NodeService
from node.sync import BlockSyncer
from node.transport import PeerTransport
from node.transport.metrics import TransportCollector


class NodeMetrics:
    def __init__(self, name: str, validators: Mapping[bytes, str] | None = None) -> None:
        """``validators``: the validator set's keys and names, to name the ones a certificate lacks."""
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
        self.state_sync_bans = Counter("fbci_state_sync_banned_peers", "Peers a state sync stopped asking: they "
                                       "sent a chunk or header that does not verify", list(labels),
                                       registry=self.registry)
        self.state_sync_bans.labels(**labels)  # exported as 0 until a state sync bans a peer
        self.chunk_requests_refused = Counter(
            "fbci_state_sync_refused_chunk_requests", "Snapshot chunk requests of peers refused because that peer "
            "(or all peers together) already had as many being cut as this validator allows", list(labels),
            registry=self.registry)
        self.chunk_requests_refused.labels(**labels)
        self.task_failures = Counter("fbci_task_failures", "Validator tasks that ended with an unexpected error "
                                     "(each one stops the process)", [*labels, "task"], registry=self.registry)
        self.commit_latency = Histogram(
            "fbci_commit_latency_seconds", "Submit-to-commit latency of transactions submitted here",
            list(labels), registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self._service: NodeService | None = None
        self._validators = dict(validators or {})
        self._next_sets: list[tuple[int, dict[bytes, str]]] = []
        """Sets the chain decided, by the height they decide from (a certificate lacks only its own set's)."""
        self._convicted: set[bytes] = set()
        reg, names = self.registry, list(labels)
        self.missing_validators = Gauge("fbci_certificate_missing_validators",
                                        "Validators without a signature in the last committed certificate", names,
                                        registry=reg)
        self.missing_signatures = Counter("fbci_certificate_missing_signatures",
                                          "Committed certificates without this validator's signature",
                                          [*names, "missing"], registry=reg)
        self.evidence = Counter("fbci_evidence", "Equivocation alerts committed, each backed by consensus.evidence "
                                "on chain", names, registry=reg)
        self.byzantine = Gauge("fbci_byzantine_validators", "Distinct validators convicted of equivocation in "
                               "blocks committed since start", names, registry=reg)
        self.ids_alerts = Counter("fbci_ids_alerts", "IDS alerts committed", [*names, "alert_class"], registry=reg)
        self.txs_rejected = Counter("fbci_txs_rejected", "Committed transactions whose execution was refused",
                                    [*names, "reason"], registry=reg)
        self.fl_updates = Counter("fbci_fl_updates", "Model updates in closed FL rounds, by what the rule did",
                                  [*names, "outcome"], registry=reg)
        self.fl_participants = Gauge("fbci_fl_round_participants", "Updates aggregated in the last closed FL round",
                                     names, registry=reg)
        for metric in (self.missing_validators, self.evidence, self.byzantine, self.fl_participants):
            metric.labels(**labels)
        for outcome in ("accepted", "excluded"):
            self.fl_updates.labels(**labels, outcome=outcome)

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

    def on_state_sync_ban(self, peer: bytes, why: str) -> None:
        self.state_sync_bans.labels(**self._labels).inc()

    def on_chunk_request_refused(self, peer: bytes) -> None:
        self.chunk_requests_refused.labels(**self._labels).inc()

    def on_commit(self, finalized: FinalizedBlock) -> None:
        lab = self._labels
        self.committed_txs.labels(**lab).inc(len(finalized.receipts))
        update = finalized.validator_update
        if update is not None:
            self._next_sets.append((update.height, {v.public_key: v.name for v in update.validators.validators}))
        while self._next_sets and self._next_sets[0][0] <= finalized.block.height:
            self._validators = self._next_sets.pop(0)[1]
        signed = {key for key, _ in CommitCertificate.decode(finalized.certificate).signatures}
        missing = [name for key, name in self._validators.items() if key not in signed]
        self.missing_validators.labels(**lab).set(len(missing))
        for name in missing:
            self.missing_signatures.labels(**lab, missing=name).inc()
        for receipt in finalized.receipts.values():
            if not receipt.ok:
                self.txs_rejected.labels(**lab, reason=receipt.reason).inc()
        for alert in finalized.alerts:
            self.ids_alerts.labels(**lab, alert_class=alert.alert_class).inc()
            if alert.alert_class == "equivocation":
                self.evidence.labels(**lab).inc()
                self._convicted.add(alert.subject)
        self.byzantine.labels(**lab).set(len(self._convicted))
        for closed in finalized.rounds_closed:
            accepted = sum(p.excluded is None for p in closed.participants)
            self.fl_updates.labels(**lab, outcome="accepted").inc(accepted)
            self.fl_updates.labels(**lab, outcome="excluded").inc(len(closed.participants) - accepted)
            self.fl_participants.labels(**lab).set(accepted)
        if self._service is None:
            return
        now = time.monotonic()
        submitted = self._service.submitted_at
        for tx_hash in finalized.receipts:
            started = submitted.pop(tx_hash, None)
            if started is not None:
                self.commit_latency.labels(**self._labels).observe(now - started)
