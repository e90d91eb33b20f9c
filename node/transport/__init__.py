"""Validator-to-validator transport: encrypted, mutually authenticated websockets (hybrid X25519 + ML-KEM-768
key agreement, ChaCha20-Poly1305 frames) with prioritised, byte-bounded queues, and rationed admission of
connections that have not authenticated yet."""

from node.transport.handshake import HANDSHAKE_KIND, HandshakeFailed
from node.transport.metrics import TransportCollector
from node.transport.peer_transport import P2P_PATH, PeerTransport
from node.transport.queues import Channel, PeerStats, QueueLimit
from node.transport.types import AdmissionStats, BadFrame, FrameTooLarge, PeerInfo, TransportTuning, UnknownPeer

__all__ = [
    "HANDSHAKE_KIND", "P2P_PATH", "AdmissionStats", "BadFrame", "Channel", "FrameTooLarge", "HandshakeFailed", "PeerInfo",
    "PeerStats", "PeerTransport", "QueueLimit", "TransportCollector", "TransportTuning", "UnknownPeer",
]
