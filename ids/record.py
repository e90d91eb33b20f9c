"""The IoMT flow record: one row of the WUSTL-EHMS-2020 schema.

WUSTL-EHMS-2020 (Hady et al., "Intrusion Detection System for Healthcare
Systems Using Medical and Network Data", IEEE Access 8, 2020) joins an Argus
flow record (direction, flags, bytes, loads, gaps, inter-packet times,
jitter, packet sizes, duration, loss, rate) with the patient biometrics the
flow carried (Temp, SpO2, Pulse_Rate, SYS, DIA, Heart_rate, Resp_Rate, ST).
We keep those columns under their WUSTL names (``WUSTL_COLUMNS``) so a row
exported from the real data set reads unchanged, and add four columns a
gateway knows but the data set does not publish: the capture time, the raw
device id and type from the gateway's own device inventory, and the hospital.
The raw device id never leaves the gateway (see ``ids.gateway``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from core.errors import InvalidInput
from ids.devices import DEFAULT_DEVICES, DeviceCatalog

ATTACK_CLASSES: tuple[str, ...] = ("normal", "spoofing", "data_alteration", "flooding", "replay", "scanning")


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One flow as the gateway saw it; units follow Argus (bytes, seconds, ms, bits/s)."""

    dir: str
    flgs: str
    src_addr: str
    dst_addr: str
    sport: int
    dport: int
    src_bytes: int
    dst_bytes: int
    src_load: float
    dst_load: float
    src_gap: int
    dst_gap: int
    s_int_pkt: float
    d_int_pkt: float
    src_jitter: float
    dst_jitter: float
    s_max_pkt_sz: int
    d_max_pkt_sz: int
    s_min_pkt_sz: int
    d_min_pkt_sz: int
    dur: float
    trans: int
    tot_pkts: int
    tot_bytes: int
    load: float
    loss: int
    p_loss: float
    rate: float
    src_mac: str
    dst_mac: str
    packet_num: int
    temp: float
    spo2: float
    pulse_rate: float
    sys: float
    dia: float
    heart_rate: float
    resp_rate: float
    st: float
    ts_ms: int
    device_id: str
    device_type: str
    hospital: str = ""
    label: str = "normal"

    def to_row(self) -> dict[str, Any]:
        """The record under its WUSTL column names (for CSV/JSONL export)."""
        return {WUSTL_COLUMNS[f.name]: getattr(self, f.name) for f in fields(self)}


# Field name -> column name as WUSTL-EHMS-2020 spells it; the last four are ours.
WUSTL_COLUMNS: dict[str, str] = {
    "dir": "Dir", "flgs": "Flgs", "src_addr": "SrcAddr", "dst_addr": "DstAddr", "sport": "Sport",
    "dport": "Dport", "src_bytes": "SrcBytes", "dst_bytes": "DstBytes", "src_load": "SrcLoad",
    "dst_load": "DstLoad", "src_gap": "SrcGap", "dst_gap": "DstGap", "s_int_pkt": "SIntPkt",
    "d_int_pkt": "DIntPkt", "src_jitter": "SrcJitter", "dst_jitter": "DstJitter",
    "s_max_pkt_sz": "sMaxPktSz", "d_max_pkt_sz": "dMaxPktSz", "s_min_pkt_sz": "sMinPktSz",
    "d_min_pkt_sz": "dMinPktSz", "dur": "Dur", "trans": "Trans", "tot_pkts": "TotPkts",
    "tot_bytes": "TotBytes", "load": "Load", "loss": "Loss", "p_loss": "pLoss", "rate": "Rate",
    "src_mac": "SrcMac", "dst_mac": "DstMac", "packet_num": "Packet_num", "temp": "Temp",
    "spo2": "SpO2", "pulse_rate": "Pulse_Rate", "sys": "SYS", "dia": "DIA", "heart_rate": "Heart_rate",
    "resp_rate": "Resp_Rate", "st": "ST", "ts_ms": "TsMs", "device_id": "DeviceId",
    "device_type": "DeviceType", "hospital": "Hospital", "label": "Attack Category",
}
_BY_COLUMN: dict[str, str] = {column.lower(): name for name, column in WUSTL_COLUMNS.items()}
# WUSTL columns we read past: derived duplicates of columns we keep, and the binary label.
IGNORED_COLUMNS: frozenset[str] = frozenset(
    {"sintpktact", "dintpktact", "psrcloss", "pdstloss", "label"}
)
_TYPES: dict[str, type] = {f.name: {"str": str, "int": int, "float": float}[str(f.type)] for f in fields(FlowRecord)}
_DEFAULTS: dict[str, Any] = {"hospital": "", "label": "normal"}
# The real data set labels "Spoofing" and "Data Alteration"; normalise to our slugs.
_LABEL_ALIASES: dict[str, str] = {cls.replace("_", " "): cls for cls in ATTACK_CLASSES}


def _parse_value(name: str, raw: Any, where: str) -> Any:
    kind = _TYPES[name]
    if kind is str:
        if not isinstance(raw, str):
            raise InvalidInput(f"{where}: field {name!r} must be text, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise InvalidInput(f"{where}: field {name!r} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: field {name!r} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{where}: field {name!r} must be finite, got {raw!r}")
    if kind is int:
        if value != int(value):
            raise InvalidInput(f"{where}: field {name!r} must be an integer, got {raw!r}")
        return int(value)
    return value


def record_from_mapping(row: Mapping[str, Any], where: str, devices: DeviceCatalog = DEFAULT_DEVICES) -> FlowRecord:
    """Build a record from WUSTL column names or our field names; errors name ``where`` and the field.

    A ``DeviceType`` that ``devices`` (the chain's declared catalog) does not list is refused
    (:class:`~core.errors.UnknownDeviceType`)."""
    values: dict[str, Any] = dict(_DEFAULTS)
    for column, raw in row.items():
        key = str(column).strip()
        if key in WUSTL_COLUMNS:
            name = key
        elif key.lower() in IGNORED_COLUMNS:
            continue
        elif key.lower() in _BY_COLUMN:
            name = _BY_COLUMN[key.lower()]
        else:
            raise InvalidInput(f"{where}: unknown column {key!r}")
        values[name] = _parse_value(name, raw, where)
    missing = [WUSTL_COLUMNS[f.name] for f in fields(FlowRecord) if f.name not in values]
    if missing:
        raise InvalidInput(f"{where}: missing column(s) {', '.join(missing)}")
    label = values["label"].strip().lower()
    values["label"] = _LABEL_ALIASES.get(label, label)
    if values["label"] not in ATTACK_CLASSES:
        raise InvalidInput(f"{where}: field 'Attack Category' must be one of {ATTACK_CLASSES}, got {label!r}")
    devices.get(values["device_type"], f"{where}: field 'DeviceType'")
    return FlowRecord(**values)
