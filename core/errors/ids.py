"""Errors of the IoMT device-type catalog that genesis declares (``ids.devices``)."""

from __future__ import annotations

from core.errors.base import InvalidGenesis, InvalidInput


class UnknownDeviceType(InvalidInput):
    """A flow record or hospital profile names a device type the chain's genesis does not declare."""

    code = -32175
    reason = "unknown_device_type"


class BadDeviceType(InvalidGenesis):
    """A device-type declaration that is unreadable, malformed or has an impossible traffic profile."""

    code = -32176
    reason = "bad_device_type"


class DeviceTypeClash(InvalidGenesis):
    """A device-type declaration reuses a name the catalog (or an earlier declaration) already has."""

    code = -32177
    reason = "device_type_clash"


class IdsInputMismatch(InvalidGenesis):
    """The IDS model's declared input (width or feature names) is not the layout the declared device types give."""

    code = -32178
    reason = "ids_input_mismatch"
