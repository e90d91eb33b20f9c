"""Flow record -> fixed-length float vector with written-down scaling, no fitted statistics.

Every hospital must turn a record into the same numbers, or one federated
model means different things at different sites; fitted scalers (means and
deviations of one site's data) would differ per site and leak its
statistics. So each feature is a fixed transform with constants chosen from
units and physiology: log1p for heavy-tailed counts and rates, divided by a
round constant so typical values land in about [0, 2]; vitals centred on an
adult reference value (NEWS2 "score 0" band, Royal College of Physicians
2017) and divided by a clinically meaningful step. Relative features compare
a flow with its device type's declared vendor profile (``ids.devices``) and the
vitals with each other, because attacks show up as mismatches (a rate far
above what the device ever sends, a pulse that disagrees with the ECG) more
than as extreme values.

The layout follows from the chain's declared device types: the per-record
block ends with a one-hot ``device_<type>`` per declared type, so
:func:`feature_names` of a catalog with a ventilator is one wider than the
default's. ``FEATURE_NAMES`` (and ``N_FEATURES`` ...) are the layout of
:data:`~ids.devices.DEFAULT_DEVICES`, the six types a genesis without
``app_state.device_types`` declares.

``FEATURE_NAMES`` is two blocks: ``BASE_FEATURE_NAMES``, the record on its
own (35 features plus the one-hot type: 41 by default), then ``ids.context.CONTEXT_FEATURE_NAMES``, the
record against its own device's and LAN's recent history (rolling vital
baselines, jitter and loss against the device and the LAN, address
consistency, repeated readings). The context block depends on the records
before it, so ``feature_matrix`` and the gateway both take records in
arrival order through a :class:`~ids.context.DeviceContext`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from core.errors import IdsInputMismatch
from core.layers import AnyLayer, check_chain
from ids.context import CONTEXT_FEATURE_NAMES, DeviceContext
from ids.devices import DEFAULT_DEVICES, IDS_MODEL_ID, DeviceCatalog, devices_of
from ids.record import FlowRecord

_NETWORK = (
    "log_rate", "log_rate_vs_device", "log_tot_pkts", "log_src_bytes", "log_dst_bytes", "dst_byte_share",
    "mean_pkt_size", "max_pkt_size", "min_pkt_size", "log_dur", "jitter_ratio", "log_src_jitter",
    "log_dst_jitter", "p_loss", "log_src_gap", "log_trans", "flag_syn", "flag_rst", "flag_push", "flag_ack",
    "dir_both", "dir_out", "port_is_service", "port_well_known",
)
_VITALS = (
    "temp", "spo2", "pulse_rate", "sys", "dia", "heart_rate", "resp_rate", "st",
    "hr_pulse_gap", "pulse_pressure", "shock_index",
)


def base_feature_names(devices: DeviceCatalog = DEFAULT_DEVICES) -> tuple[str, ...]:
    """The per-record block for ``devices``' declared types: network, vitals, one-hot type."""
    return _NETWORK + _VITALS + tuple(f"device_{t}" for t in devices.names)


def feature_names(devices: DeviceCatalog = DEFAULT_DEVICES) -> tuple[str, ...]:
    """The IDS model's input schema for ``devices``: what genesis checks ``iomt_ids``'s declaration against."""
    return base_feature_names(devices) + CONTEXT_FEATURE_NAMES


BASE_FEATURE_NAMES: tuple[str, ...] = base_feature_names()
N_BASE_FEATURES = len(BASE_FEATURE_NAMES)
FEATURE_NAMES: tuple[str, ...] = feature_names()
N_FEATURES = len(FEATURE_NAMES)
_WELL_KNOWN = frozenset({21, 22, 23, 25, 53, 80, 110, 123, 161, 443, 445, 1883, 2575, 3389, 5683, 8080, 8883})
# Adult reference values (centre) and steps (scale); centres sit in the NEWS2 zero-score bands.
_VITAL_CENTRE = np.array([37.0, 96.0, 80.0, 120.0, 75.0, 80.0, 16.0, 0.0])
_VITAL_STEP = np.array([1.0, 4.0, 20.0, 20.0, 15.0, 20.0, 6.0, 0.1])


def _log(x: float, scale: float) -> float:
    return float(np.log1p(max(x, 0.0))) / scale


def base_features(r: FlowRecord, devices: DeviceCatalog = DEFAULT_DEVICES) -> np.ndarray:
    """The record on its own, in ``base_feature_names(devices)`` order (the first block of the layout)."""
    traffic = devices.get(r.device_type)
    tot = max(r.tot_pkts, 1)
    interval = max(r.s_int_pkt, 1e-3)
    network = [
        _log(r.rate, 8.0),
        float(np.clip(np.log(max(r.rate, 1e-3) / traffic.rate_pps), -5, 8)) / 3.0,
        _log(r.tot_pkts, 10.0),
        _log(r.src_bytes, 14.0),
        _log(r.dst_bytes, 14.0),
        r.dst_bytes / max(r.tot_bytes, 1),
        r.tot_bytes / tot / 1500.0,
        r.s_max_pkt_sz / 1500.0,
        r.s_min_pkt_sz / 1500.0,
        _log(r.dur, 3.0),
        min(r.src_jitter / interval, 5.0),
        _log(r.src_jitter, 6.0),
        _log(r.dst_jitter, 6.0),
        min(r.p_loss, 100.0) / 20.0,
        _log(r.src_gap, 12.0),
        _log(r.trans, 3.0),
        float("S" in r.flgs and "A" not in r.flgs),
        float("R" in r.flgs),
        float("P" in r.flgs),
        float("A" in r.flgs),
        float(r.dir == "<->"),
        float(r.dir == "->"),
        float(r.dport == traffic.port),
        float(r.dport in _WELL_KNOWN),
    ]
    raw = np.array([r.temp, r.spo2, r.pulse_rate, r.sys, r.dia, r.heart_rate, r.resp_rate, r.st])
    vitals = np.clip((raw - _VITAL_CENTRE) / _VITAL_STEP, -10, 10)
    derived = [
        min(abs(r.heart_rate - r.pulse_rate) / 20.0, 5.0),
        float(np.clip((r.sys - r.dia - 45.0) / 20.0, -5, 5)),
        float(np.clip(r.heart_rate / max(r.sys, 1.0), 0, 5)),
    ]
    device = [float(r.device_type == t) for t in devices.names]
    return np.concatenate([network, vitals, derived, device])


def flow_features(r: FlowRecord, ctx: DeviceContext | None = None) -> np.ndarray:
    """The float64 vector for one record, in ``feature_names(ctx.devices)`` order; folds ``r`` into ``ctx``.

    Without ``ctx`` the record is scored as a device's first (no history) of the
    default catalog, which is what a gateway sees at start-up; a streaming caller
    passes its own :class:`~ids.context.DeviceContext` (which holds the chain's
    declared device types) and feeds records in arrival order.
    """
    ctx = ctx if ctx is not None else DeviceContext()
    return np.concatenate([base_features(r, ctx.devices), ctx.observe(r)])


def feature_matrix(records: Sequence[FlowRecord], ctx: DeviceContext | None = None,
                   devices: DeviceCatalog = DEFAULT_DEVICES) -> np.ndarray:
    """Stacked vectors, shape (len(records), len(feature_names(devices))), computed in the given (arrival) order.

    The context block of each row depends on the records before it, exactly as
    a gateway streaming the same records would compute it; a fresh context over
    ``devices`` is used unless ``ctx`` is given (which is then updated, and whose catalog counts).
    """
    ctx = ctx if ctx is not None else DeviceContext(devices=devices)
    if not records:
        return np.zeros((0, len(feature_names(ctx.devices))))
    return np.stack([flow_features(r, ctx) for r in records])


def base_feature_matrix(records: Sequence[FlowRecord], devices: DeviceCatalog = DEFAULT_DEVICES) -> np.ndarray:
    """The records without context, shape (len(records), len(base_feature_names(devices))): the pre-context set."""
    if not records:
        return np.zeros((0, len(base_feature_names(devices))))
    return np.stack([base_features(r, devices) for r in records])


def labels(records: Sequence[FlowRecord], classes: Sequence[str]) -> np.ndarray:
    """Class indices of the records' ground-truth labels."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[r.label] for r in records], dtype=np.int64)


class DeclaredModel(Protocol):
    """What :func:`check_ids_model` reads of a genesis model declaration (``fl_contracts.spec.ModelSpec``)."""

    @property
    def id(self) -> str: ...

    @property
    def input_features(self) -> tuple[str, ...]: ...

    @property
    def network_layers(self) -> tuple[AnyLayer, ...]: ...


def check_ids_model(app_state: Mapping[str, Any], models: Sequence[DeclaredModel]) -> DeviceCatalog:
    """Genesis's device catalog, once its IDS model (``iomt_ids``, if declared) is checked to read the layout
    the declared types give: its first layer's width and, if it declares them, its input feature names.

    A gateway one-hots every declared type, so a model declared for another catalog would read the wrong
    columns; refusing it at genesis (:class:`~core.errors.IdsInputMismatch`) beats mis-scoring every flow.
    """
    devices = devices_of(app_state)
    expected = feature_names(devices)
    for model in models:
        if model.id != IDS_MODEL_ID:
            continue
        width = check_chain(model.network_layers)[0]
        if width != len(expected):
            raise IdsInputMismatch(
                f"model {IDS_MODEL_ID!r} reads {width} inputs, but the {len(devices.types)} declared device types "
                f"({', '.join(devices.names)}) give {len(expected)} features; declare its first layer with "
                f"{len(expected)} inputs", data={"model": IDS_MODEL_ID})
        declared = tuple(model.input_features)
        if declared and declared != expected:
            at = next((i for i, (a, b) in enumerate(zip(declared, expected)) if a != b), len(expected))
            raise IdsInputMismatch(
                f"model {IDS_MODEL_ID!r}'s input_features differ from the declared device types' feature layout "
                f"at feature {at + 1}: the layout has {expected[at] if at < len(expected) else 'no more'!r} there",
                data={"model": IDS_MODEL_ID})
    return devices
