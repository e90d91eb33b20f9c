"""Prometheus view of the transport's per-peer counters, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.transport.peer_transport import PeerTransport


class TransportCollector(Collector):
    """Register with ``registry.register(TransportCollector(transport, node_name))``."""

    def __init__(self, transport: PeerTransport, node: str) -> None:
        self._transport = transport
        self._node = node

    def collect(self) -> Iterator[Metric]:
        labels = ["node", "peer"]
        families = {
            field: CounterMetricFamily(f"fbci_p2p_{field}", f"Peer messages/events: {field}", labels=labels)
            for field in ("sent", "received", "dropped", "reconnects", "malformed")
        }
        connected = GaugeMetricFamily("fbci_p2p_connected", "1 when the peer link is up", labels=labels)
        names = self._transport.peer_names()
        for key, stats in self._transport.stats().items():
            values = [self._node, names[key]]
            for field, family in families.items():
                family.add_metric(values, getattr(stats, field))
            connected.add_metric(values, int(stats.connected))
        yield from families.values()
        yield connected
