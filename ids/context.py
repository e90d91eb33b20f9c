"""Per-device streaming context: how a record compares with its own device's recent history.

Spoofing and data alteration are inconsistencies, and many are only
inconsistent *for this device*: a 20 bpm gap between ECG heart rate and
oximeter pulse is normal for a patient in atrial fibrillation and altered
data for anyone else; SpO2 of 88 % is this COPD patient's usual and a
rewritten reading for the patient next door; a relay's extra jitter hides
under a noisy LAN unless the gateway knows what that LAN and that device
usually look like. So, like stateful network IDSs (Kitsune's damped
per-host statistics, Zeek's per-connection state), the gateway keeps a
small, bounded summary per device and per LAN, and each record is scored
against the summary of what came *before* it.

:class:`DeviceContext` holds that state. :meth:`DeviceContext.observe` returns a
record's context vector (``CONTEXT_FEATURE_NAMES``) and then folds the record
into the state, so training (``ids.features.feature_matrix`` over each
hospital's records in arrival order) and the gateway (``ids.gateway.Gateway``,
one record at a time) compute exactly the same numbers. The state never sees
labels or verdicts, so nothing at training time is unavailable to a gateway.

Design choices a reviewer should know:

- Baselines are **rolling medians** over the device's last ``history``
  records (9 by default), not means: during an attack episode a share of the
  device's recent records are themselves attacks, and altered records rewrite
  only some vitals each, so a per-vital median stays on the patient.
- Network baselines (jitter, loss) are kept per device from the records that
  come from the device's usual MAC address, and per LAN (hospital and device
  type, last ``lan_history`` records), so a hospital whose LAN is noisy is
  compared with itself, not with the training hospitals.
- Address consistency: the device's usual MAC and IP are the ones seen most
  often (a bounded counter per device); a record from another one is flagged.
- Replay: a record whose eight vitals equal, to the reported precision, a
  reading the device already sent is a resend; a live sensor's noise makes
  exact repeats vanishingly rare.
- No feature uses how often records arrive for a device, which in a capture
  reflects the collection method as much as the device.
- Every difference is divided by a fixed, clinically or physically round step
  and clipped, like ``ids.features``: no fitted statistics, so every hospital
  turns a record into the same numbers.
- Memory is bounded: at most ``max_devices`` devices are tracked (least
  recently seen evicted first), each with ``history`` readings and at most
  ``max_addresses`` addresses; LAN state is bounded by hospitals times declared
  device types times ``lan_history``.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from ids.devices import DEFAULT_DEVICES, DeviceCatalog
from ids.record import FlowRecord

_VITAL_FIELDS = ("temp", "spo2", "pulse_rate", "sys", "dia", "heart_rate", "resp_rate")
# Steps: a few times a stable patient's reading-to-reading noise, in clinical units.
_JUMP_STEP = np.array([0.5, 2.0, 10.0, 10.0, 10.0, 10.0, 4.0])
_CLIP = 10.0

CONTEXT_FEATURE_NAMES: tuple[str, ...] = (
    *(f"jump_{name}" for name in _VITAL_FIELDS),  # signed: reading minus the device's rolling median
    "jump_hr_pulse_gap",  # (heart rate - pulse) minus the device's usual gap (an AF patient's deficit is stable)
    "jump_pulse_pressure",  # (SYS - DIA) minus the device's usual pulse pressure
    "jump_max",  # the largest |jump| of the above, in steps
    "jumps_over_2",  # how many of them exceed 2 steps
    "vitals_repeat",  # all vitals equal a reading this device already sent
    "history_fill",  # how much history the baselines rest on, 0 (none) to 1 (full)
    "jitter_vs_profile",  # log of jitter over the vendor's nominal packet interval (relay delay shows at any rate)
    "jitter_vs_device",  # log jitter ratio minus the device's rolling median
    "jitter_vs_lan",  # log jitter ratio minus the LAN's median for this device type
    "device_jitter_vs_lan",  # the device's rolling median minus the LAN's: a relay that persists
    "recent_jitter_vs_lan",  # the same over the device's last 3 records: a relay that just started
    "loss_vs_device",  # packet loss % minus the device's rolling median (per 5 %)
    "loss_vs_lan",  # packet loss % minus the LAN's median
    "device_loss_vs_lan",  # the device's rolling median loss minus the LAN's
    "mac_mismatch",  # source MAC is not the device's usual one
    "ip_mismatch",  # source IP is not the device's usual one
)
N_CONTEXT_FEATURES = len(CONTEXT_FEATURE_NAMES)


class RollingMedian:
    """Median of the last ``size`` values, O(size) per update with no numpy call."""

    __slots__ = ("_order", "_sorted", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def push(self, value: float) -> None:
        if len(self._order) == self.size:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._order.append(value)
        bisect.insort(self._sorted, value)

    def median(self, default: float = 0.0) -> float:
        n = len(self._sorted)
        if not n:
            return default
        return self._sorted[n // 2] if n % 2 else 0.5 * (self._sorted[n // 2 - 1] + self._sorted[n // 2])


class _Counter:
    """At most ``size`` keys with counts; a new key evicts the least counted (oldest on ties)."""

    __slots__ = ("_counts", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        if key not in self._counts and len(self._counts) >= self.size:
            del self._counts[min(self._counts, key=self._counts.__getitem__)]
        self._counts[key] = self._counts.get(key, 0) + 1

    def usual(self) -> str | None:
        """The most counted key once it has been seen at least twice; None before."""
        if not self._counts:
            return None
        key = max(self._counts, key=self._counts.__getitem__)  # first inserted wins ties
        return key if self._counts[key] >= 2 else None


@dataclass
class _DeviceState:
    history: int
    max_addresses: int
    seen: int = 0
    vitals: list[RollingMedian] = field(default_factory=list)
    gap: RollingMedian | None = None
    pulse_pressure: RollingMedian | None = None
    readings: deque[tuple[float, ...]] = field(default_factory=deque)
    jitter: RollingMedian | None = None
    recent_jitter: RollingMedian | None = None
    loss: RollingMedian | None = None
    macs: _Counter | None = None
    ips: _Counter | None = None

    def __post_init__(self) -> None:
        self.vitals = [RollingMedian(self.history) for _ in _VITAL_FIELDS]
        self.gap, self.pulse_pressure = RollingMedian(self.history), RollingMedian(self.history)
        self.readings = deque(maxlen=self.history)
        self.jitter, self.loss = RollingMedian(self.history), RollingMedian(self.history)
        self.recent_jitter = RollingMedian(min(3, self.history))
        self.macs, self.ips = _Counter(self.max_addresses), _Counter(self.max_addresses)


@dataclass
class _LanState:
    jitter: dict[str, RollingMedian]
    loss: RollingMedian


def _log_jitter_ratio(r: FlowRecord) -> float:
    return float(np.log(max(r.src_jitter, 1e-3) / max(r.s_int_pkt, 1e-3)))


def _reading(r: FlowRecord) -> tuple[float, ...]:
    return (r.temp, r.spo2, r.pulse_rate, r.sys, r.dia, r.heart_rate, r.resp_rate, r.st)


def _clip(x: float) -> float:
    return float(min(max(x, -_CLIP), _CLIP))


class DeviceContext:
    """Bounded per-device and per-LAN history for one gateway (or one hospital's training data).

    Keys are ``(hospital, device_id)`` and ``hospital``, so one context may
    also serve records of several hospitals without mixing their state.
    ``devices`` is the chain's declared catalog (``ids.devices``): the vendor
    profiles the jitter is compared with, and the types a record may have.
    """

    def __init__(self, history: int = 9, lan_history: int = 255, max_devices: int = 65_536,
                 max_addresses: int = 4, devices: DeviceCatalog = DEFAULT_DEVICES) -> None:
        if history < 1 or lan_history < 1 or max_devices < 1 or max_addresses < 1:
            raise ValueError("history, lan_history, max_devices and max_addresses must be positive")
        self.history, self.lan_history = history, lan_history
        self.max_devices, self.max_addresses = max_devices, max_addresses
        self.devices = devices
        self._devices: OrderedDict[tuple[str, str], _DeviceState] = OrderedDict()
        self._lans: dict[str, _LanState] = {}

    def __len__(self) -> int:
        """Devices currently tracked."""
        return len(self._devices)

    def _device(self, r: FlowRecord) -> _DeviceState:
        key = (r.hospital, r.device_id)
        state = self._devices.get(key)
        if state is None:
            state = _DeviceState(self.history, self.max_addresses)
            self._devices[key] = state
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
        else:
            self._devices.move_to_end(key)
        return state

    def _lan(self, hospital: str) -> _LanState:
        lan = self._lans.get(hospital)
        if lan is None:
            lan = _LanState({t: RollingMedian(self.lan_history) for t in self.devices.names},
                            RollingMedian(self.lan_history))
            self._lans[hospital] = lan
        return lan

    def observe(self, r: FlowRecord) -> np.ndarray:
        """The record's context vector (against the state before it), then the record folded in."""
        traffic = self.devices.get(r.device_type)  # before any state changes: an undeclared type is refused
        d, lan = self._device(r), self._lan(r.hospital)
        assert d.gap is not None and d.pulse_pressure is not None and d.jitter is not None and d.loss is not None
        assert d.macs is not None and d.ips is not None and d.recent_jitter is not None
        has_history = d.seen > 0
        values = [getattr(r, name) for name in _VITAL_FIELDS]
        gap, pulse_pressure = r.heart_rate - r.pulse_rate, r.sys - r.dia
        if has_history:
            jumps = [_clip((v - m.median()) / step) for v, m, step in zip(values, d.vitals, _JUMP_STEP, strict=True)]
            jumps.append(_clip((gap - d.gap.median()) / 10.0))
            jumps.append(_clip((pulse_pressure - d.pulse_pressure.median()) / 10.0))
        else:
            jumps = [0.0] * (len(_VITAL_FIELDS) + 2)
        reading = _reading(r)
        repeat = float(reading in d.readings)

        log_jitter = _log_jitter_ratio(r)
        lan_jitter = lan.jitter[r.device_type]
        lan_jitter_median = lan_jitter.median(default=log_jitter)
        device_jitter = d.jitter.median(default=log_jitter)
        recent_jitter = d.recent_jitter.median(default=log_jitter)
        nominal_interval = 1000.0 / traffic.rate_pps
        lan_loss = lan.loss.median(default=r.p_loss)
        device_loss = d.loss.median(default=r.p_loss)
        usual_mac, usual_ip = d.macs.usual(), d.ips.usual()
        mac_mismatch = float(usual_mac is not None and r.src_mac != usual_mac)
        out = np.array([
            *jumps,
            min(max(abs(j) for j in jumps), _CLIP),
            float(sum(abs(j) > 2.0 for j in jumps)) / 3.0,
            repeat,
            min(d.seen, self.history) / self.history,
            _clip(float(np.log(max(r.src_jitter, 1e-3) / nominal_interval)) / 2.0),
            _clip((log_jitter - device_jitter) / 2.0),
            _clip((log_jitter - lan_jitter_median) / 2.0),
            _clip((device_jitter - lan_jitter_median) / 2.0),
            _clip((recent_jitter - lan_jitter_median) / 2.0),
            _clip((min(r.p_loss, 100.0) - device_loss) / 5.0),
            _clip((min(r.p_loss, 100.0) - lan_loss) / 5.0),
            _clip((device_loss - lan_loss) / 5.0),
            mac_mismatch,
            float(usual_ip is not None and r.src_addr != usual_ip),
        ])

        # Fold the record in. Vitals always (they are the patient's, whoever carried them);
        # network baselines only from traffic that comes from the device's usual MAC.
        d.seen += 1
        for v, m in zip(values, d.vitals, strict=True):
            m.push(v)
        d.gap.push(gap)
        d.pulse_pressure.push(pulse_pressure)
        d.readings.append(reading)
        d.macs.add(r.src_mac)
        d.ips.add(r.src_addr)
        if not mac_mismatch:
            d.jitter.push(log_jitter)
            d.recent_jitter.push(log_jitter)
            d.loss.push(min(r.p_loss, 100.0))
            lan_jitter.push(log_jitter)
            lan.loss.push(min(r.p_loss, 100.0))
        return out

