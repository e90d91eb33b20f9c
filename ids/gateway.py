"""The gateway's streaming scorer: flow record in, at most one alert per device, class and window out.

Pure: the caller (``fbci ids watch``) reads records, signs and submits the
payloads. Three choices a reviewer should know:

- Raw device ids never go on chain. The subject is HMAC-SHA256 of the device
  id under the hospital's secret: stable, so one device's alerts link up,
  but nobody without the secret can tell which device (or ward) it is.
- An attack episode is thousands of flows. ``AlertDeduplicator`` lets one
  alert through per (device, class, window) and counts the rest, so a flood
  costs at most one transaction per class per window per device, not a storm.
- Before the first federated round there is no model: the training-free rules
  decide. With a model, its most likely class decides, except that vitals no
  living adult has (``rules.PLAUSIBLE``) are always data alteration.
- Each record is scored against its device's recent history
  (``ids.context.DeviceContext``, bounded per device and per LAN), fed in
  arrival order, the same computation training used. Every record updates
  the context, whatever its verdict; a restarted gateway starts with an empty
  one and its first records per device are scored without history. A model
  over the pre-context features (the per-record block) is also accepted
  and sees only that block.
- The context carries the chain's declared device types (``ids.devices``):
  the feature layout, the rules' vendor profiles and the types a record may
  name all come from it, and a record of an undeclared type is refused
  (:class:`~core.errors.UnknownDeviceType`), not scored as some other type.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import numpy as np

from core import codec
from core.hashing import sha256
from ids.alerts import SCORE_ONE, SEVERITY_CRITICAL, SEVERITY_HIGH, SEVERITY_MEDIUM, AlertPayload
from ids.classifier import FlowClassifier
from ids.context import DeviceContext
from ids.features import base_feature_names, feature_names, flow_features
from ids.record import FlowRecord
from ids.rules import PLAUSIBLE, evaluate_rules

FEATURE_DIGEST_VERSION = 1
# Altered vitals can drive treatment, so they rank above network attacks; a probe is reconnaissance.
BASE_SEVERITY: dict[str, int] = {
    "data_alteration": SEVERITY_CRITICAL, "spoofing": SEVERITY_HIGH, "replay": SEVERITY_HIGH,
    "flooding": SEVERITY_HIGH, "scanning": SEVERITY_MEDIUM,
}
CONFIDENT = 0.9


def device_pseudonym(secret: bytes, device_id: str) -> bytes:
    return hmac.new(secret, device_id.encode("utf-8"), hashlib.sha256).digest()


def feature_digest(x: np.ndarray) -> bytes:
    """SHA-256 over the features in parts per million: the hospital can later prove which record it scored."""
    return sha256(codec.encode([FEATURE_DIGEST_VERSION, [int(round(v * SCORE_ONE)) for v in x.tolist()]]))


class AlertDeduplicator:
    """One alert per (subject, class, window); later hits in the window are only counted.

    Only the current and previous windows are remembered, so memory is bounded
    by the devices active in two windows, whatever the stream's length.
    """

    def __init__(self, window_ms: int) -> None:
        if window_ms < 1:
            raise ValueError("window_ms must be positive")
        self.window_ms = window_ms
        self._seen: dict[tuple[bytes, str, int], int] = {}
        self._latest = 0

    def hit(self, subject: bytes, alert_class: str, ts_ms: int) -> tuple[int, int]:
        """Count one hit; returns (window start, hits so far in that window)."""
        start = ts_ms - ts_ms % self.window_ms
        if start > self._latest:
            self._latest = start
            self._seen = {k: v for k, v in self._seen.items() if k[2] >= start - self.window_ms}
        key = (subject, alert_class, start)
        self._seen[key] = self._seen.get(key, 0) + 1
        return start, self._seen[key]

    def admit(self, subject: bytes, alert_class: str, ts_ms: int) -> int | None:
        """The window start if this is the first hit of its window, else None."""
        start, hits = self.hit(subject, alert_class, ts_ms)
        return start if hits == 1 else None


@dataclass
class GatewayStats:
    scored: int = 0
    flagged: int = 0
    emitted: int = 0


@dataclass
class Gateway:
    hospital: str
    secret: bytes
    classifier: FlowClassifier | None = None
    model_version: int = 0
    window_ms: int = 60_000
    stats: GatewayStats = field(default_factory=GatewayStats)
    context: DeviceContext = field(default_factory=DeviceContext)

    def __post_init__(self) -> None:
        self.dedup = AlertDeduplicator(self.window_ms)
        widths = (len(feature_names(self.context.devices)), len(base_feature_names(self.context.devices)))
        if self.classifier is not None and self.classifier.n_features not in widths:
            raise ValueError(f"classifier takes {self.classifier.n_features} features; expected {widths[0]} "
                             f"(with context) or {widths[1]}, as the declared device types give")

    def classify(self, record: FlowRecord, x: np.ndarray) -> tuple[str, float]:
        """(class, confidence in [0, 1]) by the policy in the module docstring."""
        if any(not low <= getattr(record, name) <= high for name, (low, high) in PLAUSIBLE.items()):
            return "data_alteration", 1.0
        if self.classifier is None:
            return evaluate_rules(record, devices=self.context.devices).label, 1.0
        proba = self.classifier.predict_proba(x[: self.classifier.n_features])[0]
        best = int(np.argmax(proba))
        return self.classifier.classes[best], float(proba[best])

    def process(self, record: FlowRecord) -> list[AlertPayload]:
        """Score one record (records in arrival order); at most one alert, already deduplicated."""
        x = flow_features(record, self.context)
        label, score = self.classify(record, x)
        self.stats.scored += 1
        if label == "normal":
            return []
        self.stats.flagged += 1
        subject = device_pseudonym(self.secret, record.device_id)
        start = self.dedup.admit(subject, label, record.ts_ms)
        if start is None:
            return []
        self.stats.emitted += 1
        severity = BASE_SEVERITY[label] - (0 if score >= CONFIDENT else 1)
        return [AlertPayload(
            hospital=self.hospital, subject_kind="device", subject=subject, alert_class=label, severity=severity,
            window_start_ms=start, window_ms=self.window_ms, count=1, score_ppm=int(round(score * SCORE_ONE)),
            feature_digest=feature_digest(x), model_version=self.model_version,
        )]
