"""Validator-to-validator transport: authenticated websockets with prioritised, bounded queues."""

from node.transport.handshake import HANDSHAKE_KIND, HandshakeFailed
from node.transport.metrics import TransportCollector
from node.transport.peer_transport import (
    P2P_PATH, FrameTooLarge, PeerInfo, PeerTransport, TransportTuning, UnknownPeer,
)
from node.transport.queues import Channel, PeerStats

__all__ = [
    "HANDSHAKE_KIND", "P2P_PATH", "Channel", "FrameTooLarge", "HandshakeFailed", "PeerInfo", "PeerStats",
    "PeerTransport", "TransportCollector", "TransportTuning", "UnknownPeer",
]
