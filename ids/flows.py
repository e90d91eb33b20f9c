"""Seedable IoMT flow generator in the WUSTL-EHMS-2020 schema, one device mix per hospital.

No IoMT capture can be downloaded at run time, so tests, demos and the
benchmark draw flows from here. Every distribution is written down below so a
reader can judge how hard the task is; nothing is tuned to a target score.

Normal traffic follows the device type's declared vendor profile
(``ids.devices``: the chain's catalog, so a hospital profile may list a
ventilator count once genesis declares ventilators): rate log-normal around the nominal (sigma
0.35), record duration 1-10 s, packet sizes +-15 %, sensor timing jitter plus
the hospital LAN's jitter and loss. 6 % of normal flows are housekeeping
(DNS/NTP, 1-2 packets), which look like probes. Biometrics come from the
patient on the device: stable, unwell (fever with ~10 bpm/degree
tachycardia, hypoxaemia with compensating breathing and heart rate,
hypotension with tachycardia), atrial fibrillation (pulse deficit of
0-25 bpm between ECG heart rate and oximeter pulse), COPD (SpO2 86-92 %
without distress) and beta-blockade (no tachycardia with fever).

Attacks, as in WUSTL-EHMS-2020 (spoofing, data alteration) plus the three
the FBCI-SHS threat model adds:

- spoofing (ARP man-in-the-middle): the device's own traffic relayed through
  the attacker, adding 0.3-1.2 packet intervals of jitter, 1-8 % loss and
  reconnects; 10 % are careful relays adding only 0.05-0.25 interval and
  0-1 % loss, which the LAN's own jitter can hide.
- data alteration: network untouched, vitals rewritten so they no longer fit
  together: heart rate vs pulse off by 15-60 bpm (AF overlaps the low end),
  diastolic at or above systolic, SpO2 75-89 % without compensation (COPD
  overlaps), fever 39-41.5 C without tachycardia (beta-blockade overlaps),
  a value outside physiology, or all vitals scaled by 0.5-0.7 or 1.3-1.6.
- flooding/DoS: SYN or UDP flood at ~1 500 pps (log-normal sigma 0.8),
  5-40 % loss; 10 % are low-rate floods of 60-250 pps and 0.5-5 % loss,
  overlapping an ECG monitor's busiest seconds.
- replay: captured device traffic re-sent by a replay tool, 75 % sped up
  2-10x and 25 % at original timing; tool-paced jitter is 0-8 % of the
  interval (a sensor's is 10-30 %); TCP replays draw RSTs from the server.
- scanning: 1-4 packet probes, 85 % TCP SYN, to random or well-known ports;
  a third hit the device's own service port.

Records are not independent: each attack class runs in episodes against one
device (a new target with probability 1/30 per record), as an attack would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ids.flowio import read_flows_csv, read_flows_jsonl, write_flows_csv, write_flows_jsonl
from ids.devices import DEFAULT_DEVICES, DeviceCatalog
from ids.record import ATTACK_CLASSES, FlowRecord

__all__ = [
    "ATTACK_CLASSES", "FlowRecord", "HospitalProfile", "HOSPITAL_PROFILES", "generate_flows",
    "read_flows_csv", "read_flows_jsonl", "write_flows_csv", "write_flows_jsonl",
]

_WELL_KNOWN_PORTS = np.array([21, 22, 23, 25, 53, 80, 110, 123, 161, 443, 445, 1883, 2575, 3389, 5683, 8080, 8883])
_GATEWAY_MAC = "02:00:00:00:00:01"


@dataclass(frozen=True)
class HospitalProfile:
    """One hospital's device mix, case mix, attack mix and LAN quality: why the data are non-IID."""

    name: str
    subnet: int  # second octet of the hospital's 10.x.0.0/16
    device_mix: Mapping[str, float]
    class_mix: Mapping[str, float]
    n_devices: int = 40
    unwell: float = 0.2
    af: float = 0.05
    copd: float = 0.05
    beta_blocked: float = 0.1
    lan_jitter_ms: float = 1.0
    lan_loss_pct: float = 0.2
    mean_gap_ms: float = 50.0


def _mix(normal: float, *attacks: float) -> dict[str, float]:
    return dict(zip(ATTACK_CLASSES, (normal, *attacks), strict=True))


HOSPITAL_PROFILES: tuple[HospitalProfile, ...] = (
    HospitalProfile("st-mary-icu", 11, {"ecg_monitor": 5, "infusion_pump": 3, "pulse_oximeter": 2, "bp_monitor": 1},
                    _mix(0.6, 0.1, 0.1, 0.08, 0.06, 0.06), unwell=0.5, af=0.1, lan_jitter_ms=0.5),
    HospitalProfile("riverside-general", 12, {t: 1 for t in DEFAULT_DEVICES.names},
                    _mix(0.6, 0.06, 0.08, 0.1, 0.08, 0.08), unwell=0.25, lan_loss_pct=0.4),
    HospitalProfile("northfield-cardio", 13, {"ecg_monitor": 4, "bp_monitor": 3, "wearable": 2, "temp_sensor": 1},
                    _mix(0.6, 0.08, 0.12, 0.06, 0.08, 0.06), unwell=0.3, af=0.25, beta_blocked=0.35),
    HospitalProfile("lakeside-respiratory", 14, {"pulse_oximeter": 5, "temp_sensor": 2, "ecg_monitor": 2, "wearable": 1},
                    _mix(0.6, 0.08, 0.1, 0.08, 0.1, 0.04), unwell=0.35, copd=0.35, lan_jitter_ms=2.0),
    HospitalProfile("hillcrest-outpatient", 15, {"wearable": 5, "temp_sensor": 2, "bp_monitor": 2, "pulse_oximeter": 1},
                    _mix(0.6, 0.06, 0.08, 0.08, 0.08, 0.1), unwell=0.1, lan_jitter_ms=4.0, lan_loss_pct=1.0),
    HospitalProfile("valley-rehab", 16, {"bp_monitor": 3, "wearable": 3, "infusion_pump": 2, "ecg_monitor": 2},
                    _mix(0.6, 0.08, 0.08, 0.08, 0.08, 0.08), unwell=0.2, af=0.1, beta_blocked=0.25),
)


def _choice(rng: np.random.Generator, mix: Mapping[str, float], size: int) -> np.ndarray:
    names = list(mix)
    weights = np.array([mix[n] for n in names], dtype=float)
    return np.array(names, dtype=object)[rng.choice(len(names), size=size, p=weights / weights.sum())]


@dataclass(frozen=True)
class _Device:
    device_id: str
    device_type: str
    ip: str
    mac: str
    vitals: np.ndarray  # patient baseline: temp, spo2, pulse, sys, dia, hr, rr, st
    pulse_deficit: float


_VITAL_NAMES = ("temp", "spo2", "pulse_rate", "sys", "dia", "heart_rate", "resp_rate", "st")
_VITAL_NOISE = np.array([0.1, 1.0, 3.0, 5.0, 4.0, 3.0, 1.5, 0.02])


def _patient(rng: np.random.Generator, h: HospitalProfile) -> tuple[np.ndarray, float]:
    temp, spo2, hr, rr = rng.normal(36.9, 0.3), min(100.0, rng.normal(97.0, 1.2)), rng.normal(78, 10), rng.normal(16, 2)
    sys_bp = rng.normal(122, 14)
    beta = rng.random() < h.beta_blocked
    if rng.random() < h.unwell:
        condition = rng.integers(3)
        if condition == 0:  # fever: ~10 bpm per degree unless beta-blocked
            rise = rng.uniform(1.5, 2.5)
            temp, hr, rr = temp + rise, hr + (0 if beta else 10 * rise), rr + 3
        elif condition == 1:  # hypoxaemia with compensation
            spo2, rr, hr = rng.uniform(86, 92), rng.uniform(22, 28), hr + (0 if beta else 15)
        else:  # hypotension with compensating tachycardia
            sys_bp, hr = rng.uniform(85, 100), (hr if beta else rng.uniform(100, 120))
    if rng.random() < h.copd:
        spo2, rr = rng.uniform(86, 92), rng.uniform(16, 21)
    if beta:
        hr = min(hr, rng.uniform(55, 68))
    deficit = rng.uniform(0, 25) if rng.random() < h.af else 0.0
    dia = sys_bp * 0.62 + rng.normal(0, 5)
    st = rng.normal(0, 0.04)
    return np.array([temp, spo2, hr - deficit, sys_bp, dia, hr, rr, st]), deficit


def _inventory(h: HospitalProfile, rng: np.random.Generator, catalog: DeviceCatalog) -> list[_Device]:
    types = _choice(rng, h.device_mix, h.n_devices)
    devices = []
    for i, device_type in enumerate(types):
        vitals, deficit = _patient(rng, h)
        mac = "02:%02x:%02x:00:%02x:%02x" % (h.subnet, catalog.index(device_type), i // 256, i % 256)
        devices.append(_Device(f"{h.name}/{device_type}-{i:03d}", str(device_type),
                               f"10.{h.subnet}.1.{10 + i}", mac, vitals, deficit))
    return devices


def _alter_vitals(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rewrite vitals in transit so they stop fitting together (see the module docstring)."""
    v = v.copy()
    kind = rng.choice(6, p=[0.3, 0.15, 0.2, 0.15, 0.1, 0.1])
    if kind == 0:
        v[2 if rng.random() < 0.5 else 5] += rng.choice([-1, 1]) * rng.uniform(15, 60)
    elif kind == 1:
        v[4] = v[3] + rng.uniform(-8, 20)
    elif kind == 2:
        v[1] = rng.uniform(75, 89)
    elif kind == 3:
        v[0] = rng.uniform(39.0, 41.5)
    elif kind == 4:
        slot, low, high = [(1, 101, 120), (5, 250, 400), (0, 44, 50), (3, 260, 320)][rng.integers(4)]
        v[slot] = rng.uniform(low, high)
    else:
        v[2:7] *= rng.uniform(1.3, 1.6) if rng.random() < 0.5 else rng.uniform(0.5, 0.7)
    return v


def _network(cls: str, d: _Device, h: HospitalProfile, rng: np.random.Generator,
             devices: DeviceCatalog) -> dict[str, object]:
    """Flow fields for one record of class ``cls`` on device ``d``."""
    t = devices.get(d.device_type)
    tcp, dport, dir_, flgs = t.tcp, t.port, "<->" if t.tcp else "->", "PA" if t.tcp else ""
    rate = t.rate_pps * rng.lognormal(0, 0.35)
    dur = rng.uniform(1, 10)
    size = t.pkt_bytes * rng.lognormal(0, 0.15)
    jitter_frac = t.sensor_jitter * rng.uniform(0.5, 1.5)
    loss_pct = h.lan_loss_pct * rng.lognormal(0, 0.8)
    ack_share, trans = (rng.uniform(0.3, 0.6) if tcp else 0.0), 1 + (rng.poisson(dur * 0.3) if tcp else 0)
    src_addr, src_mac = d.ip, d.mac
    if cls == "normal" and rng.random() < 0.06:  # housekeeping DNS/NTP exchange
        tcp, dport, dir_, flgs = False, int(rng.choice([53, 123])), "<->", ""
        rate, dur, size, ack_share = rng.uniform(20, 200), rng.uniform(0.001, 0.05), rng.uniform(60, 120), 0.5
    elif cls == "spoofing":
        careful = rng.random() < 0.1
        jitter_frac += rng.uniform(0.05, 0.25) if careful else rng.uniform(0.3, 1.2)
        loss_pct += rng.uniform(0, 1) if careful else rng.uniform(1, 8)
        trans += 0 if careful else rng.poisson(2)
    elif cls == "flooding":
        low = rng.random() < 0.1
        rate = rng.uniform(60, 250) if low else 1500 * rng.lognormal(0, 0.8)
        loss_pct = rng.uniform(0.5, 5) if low else rng.uniform(5, 40)
        syn = rng.random() < 0.6
        tcp, flgs, size = syn, "S" if syn else "", 60.0 if syn else rng.uniform(64, 512)
        dport = dport if rng.random() < 0.7 else int(rng.integers(1, 65536))
        jitter_frac, ack_share, trans, dir_ = rng.uniform(0.01, 0.2), rng.uniform(0, 0.3), 1, "<->" if syn else "->"
        src_addr, src_mac = f"10.{h.subnet}.9.{rng.integers(2, 250)}", "02:66:66:%02x:00:01" % rng.integers(256)
    elif cls == "replay":
        rate *= rng.uniform(2, 10) if rng.random() < 0.75 else 1.0
        jitter_frac = rng.uniform(0, 0.08)
        if tcp:
            flgs, ack_share = ("PR" if rng.random() < 0.7 else "R"), rng.uniform(0.02, 0.2)
        src_mac = "02:77:77:%02x:00:01" % rng.integers(256)
    elif cls == "scanning":
        tcp = rng.random() < 0.85
        flgs = ("S" if rng.random() < 0.5 else "SR") if tcp else ""
        r = rng.random()
        dport = dport if r < 1 / 3 else int(rng.choice(_WELL_KNOWN_PORTS)) if r < 0.6 else int(rng.integers(1, 65536))
        rate, dur, size = rng.uniform(10, 500), rng.uniform(0.0005, 0.2), rng.uniform(40, 80)
        ack_share, dir_, jitter_frac = (0.5 if flgs == "SR" else 0.0), "<->" if flgs == "SR" else "->", 0.0
        src_addr, src_mac = f"10.{h.subnet}.9.{rng.integers(2, 250)}", "02:55:55:%02x:00:01" % rng.integers(256)
    tot_pkts = max(1, int(rng.poisson(rate * dur)))
    if cls == "scanning":
        tot_pkts = int(rng.integers(1, 5))
    dst_pkts = int(round(tot_pkts * ack_share))
    src_pkts = max(1, tot_pkts - dst_pkts)
    interval = 1000.0 / rate
    src_jitter = interval * jitter_frac + h.lan_jitter_ms * rng.lognormal(0, 0.5)
    src_bytes, dst_bytes = int(src_pkts * size), int(dst_pkts * (54 if tcp else size))
    loss = int(round(tot_pkts * min(loss_pct, 90.0) / 100))
    return {
        "dir": dir_, "flgs": flgs, "src_addr": src_addr, "dst_addr": f"10.{h.subnet}.0.1",
        "sport": int(rng.integers(49152, 65536)), "dport": int(dport), "src_bytes": src_bytes, "dst_bytes": dst_bytes,
        "src_load": src_bytes * 8 / dur, "dst_load": dst_bytes * 8 / dur,
        "src_gap": int(loss * size), "dst_gap": 0, "s_int_pkt": 1000.0 * dur / src_pkts,
        "d_int_pkt": (1000.0 * dur / dst_pkts) if dst_pkts else 0.0,
        "src_jitter": src_jitter, "dst_jitter": (src_jitter * rng.uniform(0.5, 1.5)) if dst_pkts else 0.0,
        "s_max_pkt_sz": int(size * rng.uniform(1.05, 1.5)), "d_max_pkt_sz": (54 if tcp else int(size)) if dst_pkts else 0,
        "s_min_pkt_sz": int(size * rng.uniform(0.5, 0.95)), "d_min_pkt_sz": (54 if tcp else int(size)) if dst_pkts else 0,
        "dur": dur, "trans": int(trans), "tot_pkts": tot_pkts, "tot_bytes": src_bytes + dst_bytes,
        "load": (src_bytes + dst_bytes) * 8 / dur, "loss": loss, "p_loss": 100.0 * loss / tot_pkts,
        "rate": tot_pkts / dur, "src_mac": src_mac, "dst_mac": _GATEWAY_MAC,
    }


def generate_flows(hospital: HospitalProfile, n: int, rng: np.random.Generator,
                   catalog: DeviceCatalog = DEFAULT_DEVICES) -> list[FlowRecord]:
    """``n`` labelled records in time order from a fresh device inventory drawn with ``rng``.

    ``catalog``: the declared device types (the chain's); a profile whose device mix names one it does
    not declare is refused (:class:`~core.errors.UnknownDeviceType`) before anything is drawn.
    """
    catalog.require(hospital.device_mix, f"hospital profile {hospital.name!r}: device_mix")
    devices = _inventory(hospital, rng, catalog)
    classes = _choice(rng, hospital.class_mix, n)
    target = {cls: int(rng.integers(len(devices))) for cls in ATTACK_CLASSES[1:]}
    last_vitals: dict[int, np.ndarray] = {}
    packets = [0] * len(devices)
    ts = 1_700_000_000_000
    out: list[FlowRecord] = []
    for cls in classes:
        ts += int(rng.exponential(hospital.mean_gap_ms)) + 1
        if cls == "normal":
            index = int(rng.integers(len(devices)))
        else:
            if rng.random() < 1 / 30:
                target[cls] = int(rng.integers(len(devices)))
            index = target[cls]
        d = devices[index]
        if cls == "replay" and index in last_vitals:
            vitals = last_vitals[index]
        else:
            vitals = d.vitals + rng.normal(0, 1, 8) * _VITAL_NOISE
            vitals[1] = min(vitals[1], 100.0)
            vitals[2] = vitals[5] - d.pulse_deficit + rng.normal(0, 2)
            last_vitals[index] = vitals
        if cls == "data_alteration":
            vitals = _alter_vitals(vitals, rng)
        fields = _network(str(cls), d, hospital, rng, catalog)
        packets[index] += int(fields["tot_pkts"])  # type: ignore[call-overload]
        out.append(FlowRecord(
            **fields,  # type: ignore[arg-type]
            packet_num=packets[index], **{k: round(float(x), 2) for k, x in zip(_VITAL_NAMES, vitals, strict=True)},
            ts_ms=ts, device_id=d.device_id, device_type=d.device_type, hospital=hospital.name, label=str(cls),
        ))
    return out
