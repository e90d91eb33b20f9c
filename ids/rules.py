"""Training-free detectors: physiological plausibility and traffic-rate rules.

They need no data and no federated round, so a gateway has them from its
first second, and they are the baseline the learned classifier must beat.
Plausibility follows physiology: a pulse that disagrees with the ECG heart
rate by more than any pulse deficit, a diastolic pressure at or above the
systolic, hypoxaemia without compensating breathing, fever without
tachycardia, values no living adult has. Rate rules compare a flow with its
device type's declared vendor profile (``ids.devices``). The first rule that fires names the class.
"""

from __future__ import annotations

from dataclasses import dataclass

from ids.devices import DEFAULT_DEVICES, DeviceCatalog
from ids.record import FlowRecord

# Hard physiological limits (adult); outside them a reading is not a patient.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "temp": (30.0, 43.0), "spo2": (50.0, 100.0), "pulse_rate": (20.0, 250.0), "sys": (50.0, 260.0),
    "dia": (20.0, 160.0), "heart_rate": (20.0, 250.0), "resp_rate": (4.0, 60.0),
}


@dataclass(frozen=True)
class RuleThresholds:
    """Cut-offs from physiology and the device profiles, not fitted to any data."""

    max_hr_pulse_gap: float = 30.0  # bpm; AF pulse deficits rarely exceed ~25
    min_pulse_pressure: float = 10.0  # mmHg
    hypoxaemia_spo2: float = 88.0  # %; below it breathing or heart rate should rise
    compensating_rr: float = 20.0
    compensating_hr: float = 100.0
    fever_temp: float = 39.5  # C; expect >= 90 bpm unless rate-controlled
    fever_hr: float = 90.0
    flood_rate_factor: float = 10.0  # x the device's nominal packet rate
    flood_rate_pps: float = 500.0
    flood_loss_pct: float = 5.0
    probe_max_pkts: int = 4
    probe_max_dur_s: float = 0.25
    replay_rate_factor: float = 2.0
    replay_max_jitter_ratio: float = 0.05
    spoof_jitter_ratio: float = 0.6
    spoof_loss_pct: float = 3.0


@dataclass(frozen=True)
class RuleVerdict:
    label: str
    reasons: tuple[str, ...]

    @property
    def anomalous(self) -> bool:
        return self.label != "normal"


def _implausible(r: FlowRecord, t: RuleThresholds) -> list[str]:
    reasons = [f"{name} outside {low}-{high}" for name, (low, high) in PLAUSIBLE.items()
               if not low <= getattr(r, name) <= high]
    if abs(r.heart_rate - r.pulse_rate) > t.max_hr_pulse_gap:
        reasons.append("heart rate and pulse disagree")
    if r.sys - r.dia < t.min_pulse_pressure:
        reasons.append("diastolic at or above systolic")
    if r.spo2 < t.hypoxaemia_spo2 and r.resp_rate <= t.compensating_rr and r.heart_rate <= t.compensating_hr:
        reasons.append("hypoxaemia without compensation")
    if r.temp >= t.fever_temp and r.heart_rate < t.fever_hr:
        reasons.append("fever without tachycardia")
    return reasons


def evaluate_rules(r: FlowRecord, t: RuleThresholds = RuleThresholds(),
                   devices: DeviceCatalog = DEFAULT_DEVICES) -> RuleVerdict:
    """The class the first firing rule names, with every reason that fired for it; rate rules read the
    record's type's profile in ``devices`` (the chain's declared catalog)."""
    traffic = devices.get(r.device_type)
    jitter_ratio = r.src_jitter / max(r.s_int_pkt, 1e-3)
    syn_only = "S" in r.flgs and "A" not in r.flgs
    if r.tot_pkts <= t.probe_max_pkts and r.dur <= t.probe_max_dur_s and (syn_only or r.dport != traffic.port) \
            and r.dport not in (53, 123):
        return RuleVerdict("scanning", ("short probe to an unexpected port or with a bare SYN",))
    if (r.rate > t.flood_rate_factor * traffic.rate_pps and r.p_loss >= t.flood_loss_pct) or r.rate > t.flood_rate_pps:
        return RuleVerdict("flooding", (f"rate {r.rate:.0f} pps far above the device's {traffic.rate_pps:g}",))
    reasons = _implausible(r, t)
    if reasons:
        return RuleVerdict("data_alteration", tuple(reasons))
    if (traffic.tcp and "R" in r.flgs) or (
            r.rate > t.replay_rate_factor * traffic.rate_pps and jitter_ratio < t.replay_max_jitter_ratio):
        return RuleVerdict("replay", ("server resets or machine-paced resend",))
    if jitter_ratio > t.spoof_jitter_ratio or r.p_loss > t.spoof_loss_pct:
        return RuleVerdict("spoofing", ("relay-like jitter or loss",))
    return RuleVerdict("normal", ())
