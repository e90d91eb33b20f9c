"""The ``ids.alert`` contract: validate, store and index alerts on chain.

Rules it keeps (execution must be deterministic and all-or-nothing):

1. A payload is ints, str and bytes only: severity is a level, the score a
   fixed-point integer in parts per million, so no float ever reaches state.
2. Device alerts need the gateway role; alerts about a client key, an
   address or a validator need the validator role (self-defence, ``ids.selfdefence``).
3. One alert per (hospital, subject, class, window): a second is rejected with
   ``ContractRejected`` and nothing is written; checks all run before the first write.
4. A window may not start after the block's time plus ``MAX_FUTURE_MS``.

State layout, all under ``b"ids/"``: ``seq`` (next alert id, 8-byte big
endian), ``a/<seq>`` (the stored alert), ``k/<dedupe hash>`` (seen windows) and
index keys ``i/h/<hospital>\\0<seq>``, ``i/s/<subject><seq>``, ``i/c/<class>\\0<seq>``.
Alert ids grow with height, so id order is height order.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictInt, StrictStr, ValidationError

from core import codec
from core.errors import ContractRejected, InvalidInput
from core.hashing import HASH_SIZE, sha256
from core.state import StateView, TxContext
from core.wire import WIRE_BYTES
from ids.record import ATTACK_CLASSES

TX_KIND = "ids.alert"
GATEWAY_ROLE = "gateway"
VALIDATOR_ROLE = "validator"
NODE_CLASSES: tuple[str, ...] = (
    "request_flood", "bad_signature", "replayed_tx", "malformed_peer_message", "equivocation", "rejected_fl_update",
)
ALERT_CLASSES: tuple[str, ...] = ATTACK_CLASSES[1:] + NODE_CLASSES
SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH, SEVERITY_CRITICAL = 1, 2, 3, 4
SCORE_ONE = 1_000_000
MAX_FUTURE_MS = 5 * 60_000
MAX_QUERY_LIMIT = 500
PREFIX = b"ids/"
_SEQ_KEY = PREFIX + b"seq"


class AlertPayload(BaseModel):
    """What a gateway or validator signs into an ``ids.alert`` transaction."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, **WIRE_BYTES)
    hospital: StrictStr = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    subject_kind: Literal["device", "client_key", "address", "validator"]
    subject: StrictBytes = Field(min_length=HASH_SIZE, max_length=HASH_SIZE)
    alert_class: StrictStr
    severity: StrictInt = Field(ge=SEVERITY_LOW, le=SEVERITY_CRITICAL)
    window_start_ms: StrictInt = Field(ge=0, le=2**62)
    window_ms: StrictInt = Field(ge=1, le=86_400_000)
    count: StrictInt = Field(ge=1, le=2**32)
    score_ppm: StrictInt = Field(ge=0, le=SCORE_ONE)
    feature_digest: StrictBytes = Field(min_length=HASH_SIZE, max_length=HASH_SIZE)
    model_version: StrictInt = Field(ge=0, le=2**62)

    def to_payload(self) -> dict[str, Any]:
        return self.model_dump()

    def dedupe_key(self) -> bytes:
        return sha256(codec.encode([self.hospital, self.subject_kind, self.subject, self.alert_class,
                                    self.window_start_ms]))


class StoredAlert(AlertPayload):
    """An alert as committed, with where and by whom."""

    alert_id: StrictInt
    height: StrictInt
    block_time_ms: StrictInt
    sender: StrictBytes
    tx_hash: StrictBytes


def parse_payload(payload: Any) -> AlertPayload:
    """Validate a payload map; the error names the first field that is wrong."""
    try:
        alert = AlertPayload.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise ContractRejected(f"ids.alert: {where}: {first['msg']}", data={"field": where}) from None
    if alert.alert_class not in ALERT_CLASSES:
        raise ContractRejected(f"ids.alert: alert_class must be one of {ALERT_CLASSES}", data={"field": "alert_class"})
    device_class = alert.alert_class in ATTACK_CLASSES
    if device_class != (alert.subject_kind == "device"):
        raise ContractRejected("ids.alert: attack classes are about devices, node classes about clients, "
                               "addresses or validators", data={"field": "subject_kind"})
    return alert


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _index_keys(alert: AlertPayload, seq: int) -> list[bytes]:
    s = _u64(seq)
    return [PREFIX + b"i/h/" + alert.hospital.encode() + b"\0" + s, PREFIX + b"i/s/" + alert.subject + s,
            PREFIX + b"i/c/" + alert.alert_class.encode() + b"\0" + s]


def submit_alert(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Execute one ``ids.alert`` transaction; raises ``ContractRejected`` before any write."""
    alert = parse_payload(payload)
    role = GATEWAY_ROLE if alert.subject_kind == "device" else VALIDATOR_ROLE
    if role not in ctx.sender_roles:
        raise ContractRejected(f"ids.alert: a {alert.subject_kind} alert needs the {role} role")
    if alert.window_start_ms > ctx.block_time_ms + MAX_FUTURE_MS:
        raise ContractRejected("ids.alert: window starts in the future", data={"field": "window_start_ms"})
    dedupe = PREFIX + b"k/" + alert.dedupe_key()
    if state.get(dedupe) is not None:
        raise ContractRejected("ids.alert: an alert for this subject, class and window is already on chain")
    raw_seq = state.get(_SEQ_KEY)
    seq = int.from_bytes(raw_seq, "big") if raw_seq else 1
    stored = StoredAlert(**alert.model_dump(), alert_id=seq, height=ctx.height, block_time_ms=ctx.block_time_ms,
                         sender=ctx.sender, tx_hash=ctx.tx_hash)
    state.set(_SEQ_KEY, _u64(seq + 1))
    state.set(dedupe, _u64(seq))
    state.set(PREFIX + b"a/" + _u64(seq), codec.encode(stored.model_dump()))
    for key in _index_keys(alert, seq):
        state.set(key, b"")
    return {"alert_id": seq, "height": ctx.height, "dedupe_key": alert.dedupe_key()}


def get_alert(state: StateView, alert_id: int) -> StoredAlert | None:
    raw = state.get(PREFIX + b"a/" + _u64(alert_id))
    return None if raw is None else StoredAlert.model_validate(codec.decode(raw))


def query_alerts(
    state: StateView, *, hospital: str | None = None, device: bytes | None = None, alert_class: str | None = None,
    min_severity: int | None = None, from_height: int | None = None, to_height: int | None = None,
    cursor: int | None = None, limit: int = 50,
) -> tuple[list[StoredAlert], int | None]:
    """Alerts matching every given filter, oldest first; ``next_cursor`` is None on the last page.

    Walks the most selective index given (subject, then hospital, then class) and
    stops at ``to_height`` because ids grow with height. ``StateView`` has no
    seek, so a page costs a scan of that index up to the page's end.
    """
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise InvalidInput(f"limit must be 1..{MAX_QUERY_LIMIT}")
    if device is not None:
        prefix = PREFIX + b"i/s/" + device
    elif hospital is not None:
        prefix = PREFIX + b"i/h/" + hospital.encode() + b"\0"
    elif alert_class is not None:
        prefix = PREFIX + b"i/c/" + alert_class.encode() + b"\0"
    else:
        prefix = PREFIX + b"a/"
    out: list[StoredAlert] = []
    for key, _ in state.scan(prefix):
        seq = int.from_bytes(key[len(prefix):], "big")
        if cursor is not None and seq <= cursor:
            continue
        alert = get_alert(state, seq)
        if alert is None:
            continue
        if to_height is not None and alert.height > to_height:
            break
        if ((hospital is None or alert.hospital == hospital) and (device is None or alert.subject == device)
                and (alert_class is None or alert.alert_class == alert_class)
                and (min_severity is None or alert.severity >= min_severity)
                and (from_height is None or alert.height >= from_height)):
            if len(out) == limit:
                return out, out[-1].alert_id
            out.append(alert)
    return out, None
