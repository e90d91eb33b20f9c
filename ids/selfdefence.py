"""Validator self-defence: rate limits and misbehaviour counters with injected time.

A validator is itself a target: request floods, forged signatures, replayed
transactions, garbage from peers, equivocating validators and poisoned FL
updates. These detectors are pure (the caller passes ``now_ms``; nothing
reads a clock), and what crosses a threshold becomes an ``ids.alert``
payload the validator submits, so the whole consortium sees who misbehaved,
not only the victim. Each offender gets at most one alert per misbehaviour
class per window (six classes, so at most six per window), which keeps a
hostile client from turning our own alerts into a flood.

Raw IP addresses do not go on chain: an address subject is SHA-256 under a
fixed domain tag, so a consortium member who already knows an address can
confirm it, and nobody can read addresses off the ledger.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from core.errors import RateLimited
from core.hashing import sha256
from ids.alerts import (
    NODE_CLASSES, SCORE_ONE, SEVERITY_CRITICAL, SEVERITY_HIGH, SEVERITY_MEDIUM, AlertPayload,
)
from ids.gateway import AlertDeduplicator


class TokenBucketLimiter:
    """``rate`` tokens per second up to ``burst``; one request costs one token.

    At most ``max_keys`` buckets are kept: when full, the least recently used
    is forgotten, which can only favour that key (it restarts with a full bucket).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: dict[Hashable, tuple[float, int]] = {}

    def _tokens(self, key: Hashable, now_ms: int) -> float:
        tokens, last = self._buckets.pop(key, (float(self.burst), now_ms))
        return min(float(self.burst), tokens + max(0, now_ms - last) * self.rate / 1000.0)

    def allow(self, key: Hashable, now_ms: int) -> bool:
        tokens = self._tokens(key, now_ms)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now_ms)
        if len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]
        return allowed

    def retry_after_ms(self, key: Hashable, now_ms: int) -> int:
        tokens, last = self._buckets.get(key, (float(self.burst), now_ms))
        tokens = min(float(self.burst), tokens + max(0, now_ms - last) * self.rate / 1000.0)
        return 0 if tokens >= 1.0 else int((1.0 - tokens) * 1000.0 / self.rate) + 1


OffenderKind = Literal["client_key", "address", "validator"]


@dataclass(frozen=True)
class Offender:
    kind: OffenderKind
    subject: bytes  # a 32-byte public key, or ``address_subject(addr)``


def address_subject(address: str) -> bytes:
    return sha256(b"fbci/ids/address/" + address.encode("utf-8"))


# How many events in one window make an alert. One equivocation is proof; the
# others allow for honest mistakes (a client with a stale nonce, a lossy link).
DEFAULT_THRESHOLDS: dict[str, int] = {
    "request_flood": 50, "bad_signature": 5, "replayed_tx": 5, "malformed_peer_message": 3,
    "equivocation": 1, "rejected_fl_update": 2,
}
SEVERITY: dict[str, int] = {
    "request_flood": SEVERITY_MEDIUM, "bad_signature": SEVERITY_MEDIUM, "replayed_tx": SEVERITY_MEDIUM,
    "malformed_peer_message": SEVERITY_MEDIUM, "equivocation": SEVERITY_CRITICAL, "rejected_fl_update": SEVERITY_HIGH,
}


class MisbehaviourMonitor:
    """Counts misbehaviour per offender and window; returns an alert when a threshold is reached."""

    def __init__(self, hospital: str, window_ms: int = 60_000,
                 thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS) -> None:
        if set(thresholds) != set(NODE_CLASSES) or min(thresholds.values()) < 1:
            raise ValueError(f"thresholds must give each of {NODE_CLASSES} a count of at least 1")
        self.hospital, self.window_ms, self.thresholds = hospital, window_ms, dict(thresholds)
        self._counter = AlertDeduplicator(window_ms)

    def record(self, kind: str, offender: Offender, now_ms: int, evidence: bytes = b"") -> AlertPayload | None:
        """Count one event; ``evidence`` (e.g. the offending message) is hashed into the alert's digest."""
        if kind not in self.thresholds:
            raise ValueError(f"unknown misbehaviour {kind!r}; expected one of {NODE_CLASSES}")
        start, hits = self._counter.hit(offender.kind.encode() + offender.subject, kind, now_ms)
        if hits != self.thresholds[kind]:
            return None
        return AlertPayload(
            hospital=self.hospital, subject_kind=offender.kind, subject=offender.subject, alert_class=kind,
            severity=SEVERITY[kind], window_start_ms=start, window_ms=self.window_ms, count=hits,
            score_ppm=SCORE_ONE, feature_digest=sha256(evidence), model_version=0,
        )


@dataclass(frozen=True)
class Admission:
    allowed: bool
    alert: AlertPayload | None = None
    error: RateLimited | None = None


@dataclass
class RequestGuard:
    """Per client key and per address token buckets in front of the RPC server.

    An honest client behind the same address as a flooder is still limited by
    the address bucket, so the address bucket is the larger of the two.
    """

    monitor: MisbehaviourMonitor
    per_key: TokenBucketLimiter = field(default_factory=lambda: TokenBucketLimiter(rate=20.0, burst=40))
    per_address: TokenBucketLimiter = field(default_factory=lambda: TokenBucketLimiter(rate=100.0, burst=200))

    def admit(self, address: str, client_key: bytes | None, now_ms: int) -> Admission:
        checks: list[tuple[TokenBucketLimiter, Hashable, Offender, str]] = [
            (self.per_address, address, Offender("address", address_subject(address)), f"address {address}")]
        if client_key is not None:
            checks.append((self.per_key, client_key, Offender("client_key", client_key),
                           f"client key {client_key.hex()[:16]}"))
        for limiter, key, offender, who in checks:
            if not limiter.allow(key, now_ms):
                retry = limiter.retry_after_ms(key, now_ms)
                error = RateLimited(f"too many requests from {who}: limit {limiter.rate:g}/s with bursts of "
                                    f"{limiter.burst}; retry in {retry} ms", data={"retry_after_ms": retry})
                return Admission(False, self.monitor.record("request_flood", offender, now_ms), error)
        return Admission(True)
