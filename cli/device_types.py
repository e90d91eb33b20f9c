"""``--add-device-type FILE``: a hospital's own IoMT device types added to those genesis declares.

Each file holds one device-type declaration (``ids.devices.DeviceType``'s JSON
form: name, rate_mpps, pkt_bytes, tcp, port, sensor_jitter_pct) or a list of
them. They are appended to the application state's ``device_types`` (the
default six when it lists none), and the default catalog's ``iomt_ids`` model
is then declared for the resulting feature layout. A model the operator
declared himself (``--app-state``, ``--add-model``) is checked against the
layout instead, so genesis never holds an IDS model that reads other columns
than the gateways compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import BadDeviceType
from fl_contracts.spec import ModelSpec
from genesis.validation import read_json_file
from ids.devices import APP_STATE_KEY, IDS_MODEL_ID, DeviceCatalog, devices_of, read_declarations
from ids.features import check_ids_model


def declared_devices(app_state: dict[str, Any], paths: Sequence[str]) -> DeviceCatalog:
    """``app_state``'s catalog (the default when it declares none) plus the declarations in ``paths``."""
    devices = devices_of(app_state)
    for name in paths:
        devices = devices.with_added(read_declarations(read_json_file(Path(name), error=BadDeviceType), name), name)
    return devices


def add_device_types(app_state: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """``app_state`` with ``paths``' declarations appended to its ``device_types``; unchanged without any."""
    if not paths:
        return app_state
    return {**app_state, APP_STATE_KEY: declared_devices(app_state, paths).to_doc()}


def checked(app_state: dict[str, Any]) -> dict[str, Any]:
    """``app_state`` once its IDS model is checked against its declared device types (as a validator will)."""
    models = app_state.get("models", [])
    ids = [ModelSpec.parse(m) for m in (models if isinstance(models, list) else [])
           if isinstance(m, dict) and m.get("id") == IDS_MODEL_ID]
    check_ids_model(app_state, ids)
    return app_state
