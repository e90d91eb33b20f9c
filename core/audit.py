"""The audit trail's shared shapes: the event, its Merkle anchoring, and the proof a client checks.

An :class:`AuditEvent` follows HL7 FHIR R5 ``AuditEvent``: ``action`` is its
C/R/U/D/E code, ``outcome`` its code (0 success, 4 minor failure: the request
was refused, 8 serious failure), ``agent`` who (key, account name, roles,
network address), ``entity`` what (the method and the params that name the
item), ``purpose`` why, ``recorded_ms`` when, and ``observer`` the validator
that served the request and recorded it. Events live in that validator's own
store, numbered without gaps; every few blocks it puts the Merkle root
(:func:`core.hashing.merkle_root` over :func:`event_leaf`) of its events
since the last anchor on chain in an ``audit.anchor`` transaction it signs.

A reader then proves an event was recorded and not changed since: the
event's leaf and its :class:`AuditProof` path must rebuild the root of an
anchor committed in a certified block (``client/audit.py`` checks the block).
Editing, deleting or reordering a stored event changes the rebuilt root.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core import codec
from core.api import Access, Params, Query
from core.hashing import sha256
from core.wire import WIRE_BYTES, Hash32

AUDIT_READERS = Access(frozenset({"auditor"}), private=True)
ANCHOR_KIND = "audit.anchor"
MAX_ANCHOR_EVENTS = 4096
"""Most events one anchor covers (a longer backlog takes several anchors)."""
MAX_PAGE = 500
MAX_SCAN = 20_000
"""Most stored events one ``audit_events`` call looks at, whatever its filters match."""

_STORED = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)


class AuditEvent(BaseModel):
    model_config = _STORED
    seq: int
    recorded_ms: int
    height: int
    """The observer's committed height when it recorded the event."""
    observer: str
    action: Literal["C", "R", "U", "D", "E"]
    outcome: Literal["0", "4", "8"]
    outcome_reason: str
    agent: bytes | None
    agent_name: str | None
    agent_roles: list[str]
    agent_address: str
    entity_type: str
    entity: dict[str, str | int]
    purpose: str


def event_leaf(event: AuditEvent) -> bytes:
    """The bytes the Merkle tree commits to for one event (canonical, domain-tagged)."""
    return codec.encode(["fbci/audit-event/1", event.model_dump()])


def merkle_path(leaves: list[bytes], index: int) -> list[tuple[bool, bytes]]:
    """Siblings from the leaf up, each ``(sibling_is_left, hash)``, for :func:`core.hashing.merkle_root`'s
    tree (a level's odd last node moves up unpaired, so it has no sibling at that level)."""
    level = [sha256(b"\x00" + leaf) for leaf in leaves]
    path: list[tuple[bool, bytes]] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append((sibling < index, level[sibling]))
        level = [sha256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)] + \
            ([level[-1]] if len(level) % 2 else [])
        index //= 2
    return path


def root_from_path(leaf: bytes, path: list[tuple[bool, bytes]]) -> bytes:
    node = sha256(b"\x00" + leaf)
    for sibling_is_left, sibling in path:
        node = sha256(b"\x01" + sibling + node) if sibling_is_left else sha256(b"\x01" + node + sibling)
    return node


class Anchor(BaseModel):
    """One committed ``audit.anchor``: the root of a validator's events ``[from_seq, to_seq)``."""

    model_config = _STORED
    validator: bytes
    from_seq: int
    to_seq: int
    root: bytes
    height: int
    tx_hash: bytes


class PathStep(BaseModel):
    model_config = _STORED
    left: bool
    hash: bytes


class AuditProof(BaseModel):
    """An event, the anchor whose range holds it, and the path from its leaf to that anchor's root."""

    model_config = _STORED
    event: AuditEvent
    anchor: Anchor | None
    """None: the event is not anchored yet (the observer is behind or stopped anchoring)."""
    path: list[PathStep] = []

    def rebuilt_root(self) -> bytes:
        return root_from_path(event_leaf(self.event), [(s.left, s.hash) for s in self.path])


class AuditEventsParams(Params):
    """Filters of ``fbci audit query``; an omitted one means any."""

    model_id: str | None = Field(None, max_length=128)
    patient: Hash32 | None = None
    hospital: str | None = Field(None, max_length=64)
    actor: Hash32 | None = Field(None, description="the agent's public key")
    since_height: int | None = Field(None, ge=0, le=2**63 - 1)
    from_seq: int = Field(0, ge=0, le=2**63 - 1)
    limit: int = Field(100, ge=1, le=MAX_PAGE)


class AuditPage(BaseModel):
    model_config = _STORED
    observer: str
    events: list[AuditEvent]
    next_seq: int
    """The observer's next sequence number: how many events it holds."""
    anchored_to: int
    """Events below this are covered by a committed anchor."""
    last_anchor_height: int | None
    resume_from: int | None = None
    """Not None: the scan stopped at this sequence number (:data:`MAX_SCAN`); ask again from it."""


class AuditProofParams(Params):
    seq: int = Field(ge=0, le=2**63 - 1)


class AnchorsParams(Params):
    validator: Hash32


AUDIT_EVENTS: Query[AuditEventsParams, AuditPage] = Query(
    "audit_events", "This validator's audit events matching the filters, oldest first.", AuditEventsParams,
    AuditPage, AUDIT_READERS, provable=False)
AUDIT_PROOF: Query[AuditProofParams, AuditProof] = Query(
    "audit_proof", "One audit event with its Merkle path to the anchor that covers it.", AuditProofParams,
    AuditProof, AUDIT_READERS, provable=False)
AUDIT_ANCHORS: Query[AnchorsParams, list[Anchor]] = Query(
    "audit_anchors", "A validator's committed audit anchors, oldest first.", AnchorsParams, list[Anchor],
    AUDIT_READERS)
AUDIT_QUERIES = (AUDIT_EVENTS, AUDIT_PROOF, AUDIT_ANCHORS)
