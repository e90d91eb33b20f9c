"""The IoMT device types a chain knows: declared in genesis, with the traffic profile each one promises.

A device type is what a gateway's inventory says a device is, and its vendor
sheet says how it talks: packet rate and size, TCP or UDP, service port, its
own timing jitter. The generator (``ids.flows``) draws normal traffic from
it, the rules (``ids.rules``) and the features (``ids.features``,
``ids.context``) compare a flow with it, and the features one-hot the type,
so the IDS model's input width follows from how many types are declared.

The catalog is data, not code: genesis ``app_state.device_types`` lists the
declarations (absent: :data:`DEFAULT_DEVICES`, the six types the project
has always had), and ``fbci genesis init --add-device-type FILE`` appends a
hospital's own, e.g. a ventilator. Genesis JSON holds no floats (its hash
must not depend on float printing), so rates are in packets per 1000 s and
jitter in percent of the packet interval.

A record, or a hospital profile, that names a type the catalog does not
declare is refused (:class:`~core.errors.UnknownDeviceType`), rather than
scored against some other type's profile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from core.errors import BadDeviceType, DeviceTypeClash, UnknownDeviceType

APP_STATE_KEY = "device_types"
IDS_MODEL_ID = "iomt_ids"
"""The model genesis declares for the gateways' flow classifier; its input is :func:`ids.features.feature_names`."""
MAX_DEVICE_TYPES = 64


class DeviceType(BaseModel):
    """One declared device type and its vendor traffic profile (genesis JSON: integers only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    """Lower-case slug; the feature ``device_<name>`` one-hots it."""
    rate_mpps: Annotated[StrictInt, Field(ge=1, le=10_000_000)]
    """Nominal packets per 1000 s while reporting (500 = 0.5 pps; at most 10 000 pps)."""
    pkt_bytes: Annotated[StrictInt, Field(ge=20, le=1500)]
    """Typical payload-carrying packet size, within an Ethernet MTU."""
    tcp: StrictBool
    """TCP session (acks flow back) or UDP telemetry push (one way)."""
    port: Annotated[StrictInt, Field(ge=1, le=65535)]
    """The service port it reports to."""
    sensor_jitter_pct: Annotated[StrictInt, Field(ge=0, le=100)]
    """The device's own timing jitter, in percent of its packet interval."""

    @property
    def rate_pps(self) -> float:
        return self.rate_mpps / 1000.0

    @property
    def sensor_jitter(self) -> float:
        return self.sensor_jitter_pct / 100.0


def _declared(obj: Any, where: str) -> DeviceType:
    if not isinstance(obj, Mapping):
        raise BadDeviceType(f"{where}: a device-type declaration must be a JSON object")
    try:
        return DeviceType.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "declaration"
        raise BadDeviceType(f"{where}: {loc}: {first['msg']}", data={"field": loc}) from None


@dataclass(frozen=True)
class DeviceCatalog:
    """The declared types in declaration order (the order of the one-hot features and of MAC numbering)."""

    types: tuple[DeviceType, ...]
    _by_name: dict[str, DeviceType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.types:
            raise BadDeviceType("at least one device type must be declared")
        if len(self.types) > MAX_DEVICE_TYPES:
            raise BadDeviceType(f"{len(self.types)} device types declared; the limit is {MAX_DEVICE_TYPES}")
        by_name: dict[str, DeviceType] = {}
        for t in self.types:
            if t.name in by_name:
                raise DeviceTypeClash(f"device type {t.name!r} is declared twice", data={"device_type": t.name})
            by_name[t.name] = t
        object.__setattr__(self, "_by_name", by_name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str, where: str = "") -> DeviceType:
        """The declared type ``name``; :class:`~core.errors.UnknownDeviceType` (naming ``where``) otherwise."""
        found = self._by_name.get(name)
        if found is None:
            prefix = f"{where}: " if where else ""
            raise UnknownDeviceType(f"{prefix}device type {name!r} is not declared on this chain; declared: "
                                    f"{', '.join(self.names)}", data={"device_type": name})
        return found

    def index(self, name: str) -> int:
        return self.names.index(self.get(name).name)

    def require(self, names: Iterable[str], where: str) -> None:
        """Refuse any of ``names`` the catalog does not declare (a hospital profile's device mix)."""
        for name in names:
            self.get(name, where)

    def with_added(self, added: Sequence[DeviceType], source: str) -> DeviceCatalog:
        """This catalog plus ``added``; a name already declared is a :class:`~core.errors.DeviceTypeClash`."""
        for t in added:
            if t.name in self._by_name or sum(a.name == t.name for a in added) > 1:
                raise DeviceTypeClash(f"{source}: device type {t.name!r} is already declared; give the new type "
                                      "its own name", data={"device_type": t.name, "file": source})
        return DeviceCatalog((*self.types, *added))

    def to_doc(self) -> list[dict[str, Any]]:
        """The genesis ``app_state.device_types`` form."""
        return [t.model_dump() for t in self.types]

    @classmethod
    def parse(cls, doc: Any, where: str = f"app_state.{APP_STATE_KEY}") -> DeviceCatalog:
        """Declarations as genesis holds them (a JSON list), each validated with its index in the message."""
        if not isinstance(doc, list):
            raise BadDeviceType(f"{where}: must be a list of device-type declarations")
        return cls(tuple(_declared(item, f"{where}[{i}]") for i, item in enumerate(doc)))


def _default(name: str, rate_mpps: int, pkt_bytes: int, tcp: bool, port: int, jitter_pct: int) -> DeviceType:
    return DeviceType(name=name, rate_mpps=rate_mpps, pkt_bytes=pkt_bytes, tcp=tcp, port=port,
                      sensor_jitter_pct=jitter_pct)


# HL7/MLLP (2575), CoAP (5683), HTTPS (443), MQTT over TLS (8883), MQTT (1883).
DEFAULT_DEVICES = DeviceCatalog((
    _default("ecg_monitor", 50_000, 180, True, 2575, 10),
    _default("pulse_oximeter", 4_000, 90, False, 5683, 12),
    _default("bp_monitor", 1_000, 220, True, 443, 15),
    _default("infusion_pump", 2_000, 150, True, 8883, 10),
    _default("temp_sensor", 500, 70, False, 1883, 15),
    _default("wearable", 10_000, 120, True, 443, 30),
))
"""The types a genesis without ``app_state.device_types`` declares."""


def devices_of(app_state: Mapping[str, Any]) -> DeviceCatalog:
    """The catalog genesis ``app_state`` declares: its ``device_types``, or :data:`DEFAULT_DEVICES`."""
    doc = app_state.get(APP_STATE_KEY)
    return DEFAULT_DEVICES if doc is None else DeviceCatalog.parse(doc)


def read_declarations(doc: Any, source: str) -> list[DeviceType]:
    """One declaration (a JSON object) or a non-empty list of them, as an ``--add-device-type`` file holds."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise BadDeviceType(f"{source}: must hold one device-type declaration or a non-empty list of them")
    return [_declared(item, source if len(items) == 1 else f"{source}[{i}]") for i, item in enumerate(items)]

