"""Validator-to-validator transport: authenticated websockets with prioritised, byte-bounded queues,
and rationed admission of connections that have not authenticated yet."""

from node.transport.handshake import HANDSHAKE_KIND, HandshakeFailed
from node.transport.metrics import TransportCollector
from node.transport.peer_transport import P2P_PATH, PeerTransport
from node.transport.queues import Channel, PeerStats, QueueLimit
from node.transport.types import AdmissionStats, FrameTooLarge, PeerInfo, TransportTuning, UnknownPeer

__all__ = [
    "HANDSHAKE_KIND", "P2P_PATH", "AdmissionStats", "Channel", "FrameTooLarge", "HandshakeFailed", "PeerInfo",
    "PeerStats", "PeerTransport", "QueueLimit", "TransportCollector", "TransportTuning", "UnknownPeer",
]
