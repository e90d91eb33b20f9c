"""The ``ids.alert`` contract: validate, store and index alerts on chain.

Rules it keeps (execution must be deterministic and all-or-nothing):

1. A payload is ints, str and bytes only: severity is a level, the score a
   fixed-point integer in parts per million, so no float ever reaches state.
2. Device alerts need the gateway role; alerts about a client key, an
   address or a validator need the validator role (self-defence, ``ids.selfdefence``).
3. One alert per (hospital, subject, class, window): a second is rejected with
   ``ContractRejected`` and nothing is written; checks all run before the first write.
4. A window may not start after the block's time plus ``MAX_FUTURE_MS``.
5. The reporter is the signer: ``hospital`` must be the sending account's
   registered name, so no gateway or validator can report as another.
6. An ``equivocation`` alert names a validator only with proof: its
   ``feature_digest`` must be the hash of ``consensus.evidence`` already on
   chain that convicts exactly that validator (``EvidenceLookup``, which the
   node supplies, since the evidence's format is the consensus package's).
7. A ``validator_task_failed`` alert (``node.crashreport``: a validator that
   crashed says so once it is back) is about its own signer only.

State layout, all under ``b"ids/"``: ``seq`` (next alert id, 8-byte big
endian), ``a/<seq>`` (the stored alert), ``k/<dedupe hash>`` (seen windows) and
index keys ``i/t/<at>``, ``i/h/<hospital>\\0<at>``, ``i/s/<subject><at>``,
``i/c/<class>\\0<at>`` and ``i/v/<level><at>`` for each level from 1 to the
alert's severity (one byte; so a ``min_severity`` filter reads its own matches
only), where ``<at>`` is the alert's height and id, 8 bytes big endian each, so
every index is in (height, id) order and a query seeks.
``ack/<id>`` holds an alert's acknowledgement (``ids.ack_alert``, at the end of this file).
"""

from __future__ import annotations

from collections.abc import Callable
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
SELF_CLASSES: tuple[str, ...] = ("validator_task_failed",)
"""What a validator reports about itself (rule 7), not counted by ``ids.selfdefence``."""
ALERT_CLASSES: tuple[str, ...] = ATTACK_CLASSES[1:] + NODE_CLASSES + SELF_CLASSES
SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH, SEVERITY_CRITICAL = 1, 2, 3, 4
SCORE_ONE = 1_000_000
MAX_FUTURE_MS = 5 * 60_000
MAX_QUERY_LIMIT = 500
MAX_SCAN = 4 * MAX_QUERY_LIMIT
"""Index entries one page may read: filters its index does not cover can skip this many, then the page ends
early with a cursor, so no query costs more than this whatever the filters."""
PREFIX = b"ids/"
_SEQ_KEY = PREFIX + b"seq"

EvidenceLookup = Callable[[StateView, bytes], "bytes | None"]
"""The validator that the equivocation evidence on chain with this hash convicts (None: no such evidence)."""


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


def _index_keys(alert: AlertPayload, height: int, seq: int) -> list[bytes]:
    """Each index orders by (height, alert id), so a query seeks to its first height or its cursor."""
    at = _u64(height) + _u64(seq)
    return [PREFIX + b"i/t/" + at, PREFIX + b"i/h/" + alert.hospital.encode() + b"\0" + at,
            PREFIX + b"i/s/" + alert.subject + at, PREFIX + b"i/c/" + alert.alert_class.encode() + b"\0" + at,
            *(PREFIX + b"i/v/" + bytes([level]) + at for level in range(SEVERITY_LOW, alert.severity + 1))]


def submit_alert(state: StateView, ctx: TxContext, payload: dict[str, Any], *,
                 convicted_by: EvidenceLookup | None = None) -> dict[str, Any]:
    """Execute one ``ids.alert`` transaction; raises ``ContractRejected`` before any write.

    ``convicted_by``: how to read equivocation evidence on chain; without it no equivocation alert is accepted.
    """
    alert = parse_payload(payload)
    role = GATEWAY_ROLE if alert.subject_kind == "device" else VALIDATOR_ROLE
    if role not in ctx.sender_roles:
        raise ContractRejected(f"ids.alert: a {alert.subject_kind} alert needs the {role} role")
    if alert.hospital != ctx.sender_name:
        raise ContractRejected(f"ids.alert: hospital is the reporter, the signing account {ctx.sender_name!r}, "
                               f"not {alert.hospital!r}", data={"field": "hospital"})
    if alert.alert_class == "equivocation" and (
            convicted_by is None or convicted_by(state, alert.feature_digest) != alert.subject):
        raise ContractRejected("ids.alert: an equivocation alert needs the consensus.evidence convicting its "
                               "subject on chain, with feature_digest its hash", data={"field": "feature_digest"})
    if alert.alert_class in SELF_CLASSES and (alert.subject_kind != "validator" or alert.subject != ctx.sender):
        raise ContractRejected(f"ids.alert: a {alert.alert_class} alert is about the signing validator's own key",
                               data={"field": "subject"})
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
    for key in _index_keys(alert, ctx.height, seq):
        state.set(key, b"")
    return {"alert_id": seq, "height": ctx.height, "dedupe_key": alert.dedupe_key()}


def is_recorded(state: StateView, alert: AlertPayload) -> bool:
    """Whether this alert (its subject, class and window) is on chain."""
    return state.get(PREFIX + b"k/" + alert.dedupe_key()) is not None


def get_alert(state: StateView, alert_id: int) -> StoredAlert | None:
    raw = state.get(PREFIX + b"a/" + _u64(alert_id))
    return None if raw is None else StoredAlert.model_validate(codec.decode_stored(raw))


def parse_cursor(text: str) -> bytes:
    """A ``next_cursor`` back into the index position it names: 16 bytes, (height, alert id)."""
    if len(text) != 32 or not all(c in "0123456789abcdef" for c in text):
        raise InvalidInput("cursor must be the next_cursor string a previous page returned", data={"param": "cursor"})
    return bytes.fromhex(text)


def query_alerts(
    state: StateView, *, hospital: str | None = None, device: bytes | None = None, alert_class: str | None = None,
    min_severity: int | None = None, from_height: int | None = None, to_height: int | None = None,
    cursor: str | None = None, limit: int = 50, max_scan: int = MAX_SCAN,
) -> tuple[list[StoredAlert], str | None]:
    """Alerts matching every given filter, oldest first; ``next_cursor`` is None on the last page.

    Walks the most selective index given (subject, then hospital, then class,
    then severity, else all alerts), each ordered by (height, alert id), from a
    seek to the later of ``from_height`` and the cursor, and stops at
    ``to_height``: a page costs the index entries it reads (its own matches,
    plus the ones the filters not covered by that index skip), never the alerts
    before it, and at most ``max_scan`` of them: a page that reaches that bound
    ends there, possibly short or empty, with a cursor to go on from.
    """
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise InvalidInput(f"limit must be 1..{MAX_QUERY_LIMIT}")
    if device is not None:
        prefix = PREFIX + b"i/s/" + device
    elif hospital is not None:
        prefix = PREFIX + b"i/h/" + hospital.encode() + b"\0"
    elif alert_class is not None:
        prefix = PREFIX + b"i/c/" + alert_class.encode() + b"\0"
    elif min_severity is not None and min_severity > SEVERITY_LOW:  # at or below the lowest level: every alert
        prefix = PREFIX + b"i/v/" + bytes([min(min_severity, SEVERITY_CRITICAL + 1)])
    else:
        prefix = PREFIX + b"i/t/"
    start = prefix + _u64(from_height or 0)
    if cursor is not None:
        start = max(start, prefix + parse_cursor(cursor) + b"\0")  # strictly after the last one returned
    out: list[StoredAlert] = []
    read, examined = 0, b""
    for key, _ in state.scan(prefix, start):
        position = key[len(prefix):]  # (height, id): a name's \0 ends it, so no longer name shares the prefix
        height, seq = int.from_bytes(position[:8], "big"), int.from_bytes(position[8:], "big")
        if to_height is not None and height > to_height:
            break
        if read == max_scan:  # everything up to ``examined`` is returned or does not match
            return out, examined.hex()
        read, examined = read + 1, position
        alert = get_alert(state, seq)
        if alert is None:
            continue
        if ((hospital is None or alert.hospital == hospital) and (device is None or alert.subject == device)
                and (alert_class is None or alert.alert_class == alert_class)
                and (min_severity is None or alert.severity >= min_severity)):
            if len(out) == limit:
                last = out[-1]
                return out, (_u64(last.height) + _u64(last.alert_id)).hex()
            out.append(alert)
    return out, None


# --- acknowledgements ------------------------------------------------------------------------------
# ``ids.ack_alert``: a clinician or operator says "seen, handling it", signed, so everyone sees who took
# an alert and when. One acknowledgement per alert (the first is the one that counts); it names the alert
# by its id and carries no free text, so nothing about a patient can reach the chain through it.

ACK_TX_KIND = "ids.ack_alert"
ACK_ROLES: tuple[str, ...] = ("hospital", "gateway", "clinician")
"""Who may acknowledge: the clinician on the ward, or the hospital's and gateway's operators."""


class AckPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    alert_id: StrictInt = Field(ge=1, le=2**63 - 1)


def _ack_key(alert_id: int) -> bytes:
    return PREFIX + b"ack/" + _u64(alert_id)


def ack_alert(state: StateView, ctx: TxContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Execute one ``ids.ack_alert``: the alert must exist and be unacknowledged; one write."""
    try:
        ack = AckPayload.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise ContractRejected(f"{ACK_TX_KIND}: {where}: {first['msg']}", data={"field": where}) from None
    if get_alert(state, ack.alert_id) is None:
        raise ContractRejected(f"{ACK_TX_KIND}: no alert {ack.alert_id} on chain", data={"field": "alert_id"})
    if state.get(_ack_key(ack.alert_id)) is not None:
        raise ContractRejected(f"{ACK_TX_KIND}: alert {ack.alert_id} is already acknowledged",
                               data={"field": "alert_id"})
    state.set(_ack_key(ack.alert_id), codec.encode([ctx.sender, ctx.height]))
    return {"alert_id": ack.alert_id, "acknowledged_by": ctx.sender_name, "height": ctx.height}
