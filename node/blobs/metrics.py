"""Prometheus view of the blob store and its traffic, read at scrape time like the transport's.

``fbci_blob_bytes_stored`` (complete blobs plus the chunks of unfinished
uploads on disk), ``fbci_blobs_complete``, and per source (``client`` over
JSON-RPC, ``peer`` from another validator): chunks stored, chunks served, and
chunks refused because they did not verify.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.blobs.replication import BlobCounters
from node.blobs.store import BlobStore


class BlobCollector(Collector):
    """Register with ``registry.register(BlobCollector(store, counters, validator_name))``."""

    def __init__(self, store: BlobStore, counters: BlobCounters, validator: str) -> None:
        self._store = store
        self._counters = counters
        self._validator = validator

    def collect(self) -> Iterator[Metric]:
        holdings = list(self._store.holdings())
        stored = GaugeMetricFamily("fbci_blob_bytes_stored", "Blob bytes on disk, complete and partial",
                                   labels=["validator"])
        stored.add_metric([self._validator], sum(h.size_on_disk for h in holdings))
        complete = GaugeMetricFamily("fbci_blobs_complete", "Complete, verified blobs held", labels=["validator"])
        complete.add_metric([self._validator], sum(h.complete for h in holdings))
        yield from (stored, complete)
        for name, counts, what in (("chunks_in", self._counters.chunks_in, "Blob chunks stored"),
                                   ("chunks_out", self._counters.chunks_out, "Blob chunks served"),
                                   ("bad_chunks", self._counters.bad_chunks, "Blob chunks refused: did not verify")):
            family = CounterMetricFamily(f"fbci_blob_{name}", what, labels=["validator", "source"])
            for source, value in sorted(counts.items()):
                family.add_metric([self._validator, source], value)
            yield family
