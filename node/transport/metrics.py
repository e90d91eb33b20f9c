"""Prometheus view of the transport's per-peer counters and its admission of strangers, read at scrape time.

Per peer: frames sent, received, dropped (and the bytes dropped) when a
channel's budget was spent, reconnects, malformed frames; the bytes queued for
it now and whether its link is up. Per node: handshakes in progress, and
handshakes and connections refused by the per-address rationing (and those
cut for sending more than a handshake before authenticating), so an
operator can tell a squatting attack from a peer that is merely down.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.transport.peer_transport import PeerTransport

_PEER_COUNTERS = ("sent", "received", "dropped", "dropped_bytes", "reconnects", "malformed")


class TransportCollector(Collector):
    """Register with ``registry.register(TransportCollector(transport, node_name))``."""

    def __init__(self, transport: PeerTransport, node: str) -> None:
        self._transport = transport
        self._node = node

    def collect(self) -> Iterator[Metric]:
        labels = ["node", "peer"]
        families = {
            field: CounterMetricFamily(f"fbci_p2p_{field}", f"Peer messages/events: {field}", labels=labels)
            for field in _PEER_COUNTERS
        }
        connected = GaugeMetricFamily("fbci_p2p_connected", "1 when the peer link is up", labels=labels)
        queued = GaugeMetricFamily("fbci_p2p_queued_bytes", "Payload bytes queued for the peer", labels=labels)
        names = self._transport.peer_names()
        for key, stats in self._transport.stats().items():
            values = [self._node, names[key]]
            for field, family in families.items():
                family.add_metric(values, getattr(stats, field))
            connected.add_metric(values, int(stats.connected))
            queued.add_metric(values, stats.queued_bytes)
        yield from families.values()
        yield connected
        yield queued
        admission = self._transport.admission()
        pending = GaugeMetricFamily("fbci_p2p_pending_handshakes", "Unauthenticated connections in their handshake",
                                    labels=["node"])
        pending.add_metric([self._node], admission.pending_handshakes)
        refused = CounterMetricFamily("fbci_p2p_refused", "Connections refused by the per-address limits",
                                      labels=["node", "limit"])
        refused.add_metric([self._node, "handshake_slots"], admission.refused_handshakes)
        refused.add_metric([self._node, "connections_per_address"], admission.refused_connections)
        refused.add_metric([self._node, "preauth_frame_size"], admission.refused_preauth)
        yield pending
        yield refused
