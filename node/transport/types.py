"""The transport's plain types: who the peers are, its knobs, its counters and its errors."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidInput, LimitExceeded, PeerMisbehaved


@dataclass(frozen=True)
class PeerInfo:
    """A validator from genesis: its name, key, and where to dial it (possibly a proxy)."""

    name: str
    public_key: bytes
    address: str


@dataclass(frozen=True)
class TransportTuning:
    """Timing and admission knobs; the defaults suit a LAN, tests shorten them."""

    handshake_timeout: float = 5.0
    heartbeat: float = 10.0
    close_timeout: float = 1.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    malformed_limit: int = 10
    max_pending_handshakes: int = 64
    """Handshakes strangers may have in progress together (validator hosts have slots on top)."""
    max_pending_per_address: int = 4
    """Of those, how many one source address may hold."""
    reserved_handshakes_per_validator: int = 2
    """Slots kept for each validator's host, whatever strangers hold."""
    max_connections_per_address: int = 8
    """Open p2p connections per source address; a validator host gets as many again per validator there."""


@dataclass(frozen=True)
class AdmissionStats:
    """What the rationing of unauthenticated connections is doing, for the metrics."""

    pending_handshakes: int = 0
    refused_handshakes: int = 0
    refused_connections: int = 0
    refused_preauth: int = 0


class UnknownPeer(InvalidInput):
    reason = "unknown_peer"


class FrameTooLarge(LimitExceeded):
    reason = "frame_too_large"


class BadFrame(PeerMisbehaved):
    """A sealed frame that does not open: altered, replayed, reordered, dropped or mis-sized. The link closes."""

    reason = "bad_frame"
