"""This validator's audit trail: events for every private read and refusal, kept in its own
LevelDB (not in chain state), and the anchors that commit them on chain.

Events are numbered ``0, 1, 2...`` under ``audit/e/<seq:8 BE>`` in the
node's database (``audit/next`` holds the next number), written as the read
is answered. Every ``anchor_every`` blocks, :meth:`AuditLog.due_anchor`
gives the ``audit.anchor`` payload for the events since the last committed
anchor (``node.audit_anchor``), which the validator signs and submits like
its other own transactions. The events themselves never go on chain: only
their root does, so a record of who read what stays with the validator that
served it while anyone can check it was not changed later.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any

from core import codec
from core.audit import (
    MAX_ANCHOR_EVENTS, MAX_SCAN, AuditEvent, AuditEventsParams, AuditPage, AuditProof, PathStep, event_leaf,
    merkle_path,
)
from core.errors import FbciError, InvalidGenesis, NotFound, Unauthorized
from core.hashing import merkle_root
from node.application import FinalizedBlock
from node.read_auth import ReadOutcome
from node.stores import Database, _leveldb

_EVENT = b"audit/e/"
_NEXT = b"audit/next"
DEFAULT_ANCHOR_EVERY = 10

LastAnchored = Callable[[], tuple[int, int | None]]
"""``(to_seq, height)`` of this validator's latest committed anchor."""
Covering = Callable[[int], "Anchor | None"]


_PURPOSES = (("fl_", "TRAIN"), ("alerts", "HSYSADMIN"), ("consent", "PATADMIN"))


def _purpose(method: str, entity: dict[str, object]) -> str:
    """FHIR purposeOfUse, coarsely, from what the method reads (HOPERAT: healthcare operations); a model
    read that names a patient is that patient's prediction (TREAT)."""
    if method == "fl_model_get" and "patient" in entity:
        return "TREAT"
    return next((purpose for prefix, purpose in _PURPOSES if method.startswith(prefix)), "HOPERAT")


class AuditLog:
    def __init__(self, database: Database, observer: str) -> None:
        self._db = database.db
        self.observer = observer

    @property
    def next_seq(self) -> int:
        raw = self._db.get(_NEXT)
        return 0 if raw is None else struct.unpack(">Q", raw)[0]

    def record_read(self, outcome: ReadOutcome, height: int) -> AuditEvent:
        seq = self.next_seq
        event = AuditEvent(
            seq=seq, recorded_ms=outcome.time_ms, height=height, observer=self.observer, action="R",
            outcome="0" if outcome.code == 0 else "4", outcome_reason=outcome.reason, agent=outcome.reader,
            agent_name=outcome.reader_name, agent_roles=list(outcome.roles), agent_address=outcome.client,
            entity_type=outcome.method, entity={k: v for k, v in outcome.entity.items() if isinstance(v, (str, int))},
            purpose=_purpose(outcome.method, outcome.entity))
        return self._append(event)

    def record_tx_refusal(self, sender: bytes | None, exc: FbciError, height: int, now_ms: int) -> AuditEvent | None:
        """A submitted transaction refused because its signer's roles may not send its kind (committed
        transactions are their own record; other refusals are protocol noise, not access decisions)."""
        if sender is None or not isinstance(exc, Unauthorized):
            return None
        return self._append(AuditEvent(
            seq=self.next_seq, recorded_ms=now_ms, height=height, observer=self.observer, action="C", outcome="4",
            outcome_reason=exc.reason, agent=sender, agent_name=None, agent_roles=[], agent_address="",
            entity_type="tx_submit", entity={"detail": exc.message[:160]}, purpose="HOPERAT"))

    def _append(self, event: AuditEvent) -> AuditEvent:
        with _leveldb("recording an audit event"):
            with self._db.write_batch() as batch:
                batch.put(_EVENT + event.seq.to_bytes(8, "big"), codec.encode(event.model_dump()))
                batch.put(_NEXT, struct.pack(">Q", event.seq + 1))
        return event

    def event(self, seq: int) -> AuditEvent | None:
        raw = self._db.get(_EVENT + seq.to_bytes(8, "big"))
        return None if raw is None else AuditEvent.model_validate(codec.decode(raw))

    def _stored(self, start: int, stop: int) -> Iterator[tuple[int, AuditEvent]]:
        """``(position, event)`` for the keys in ``[start, stop)`` as stored now (a deleted one is absent)."""
        for key, raw in self._db.iterator(start=_EVENT + start.to_bytes(8, "big"),
                                          stop=_EVENT + stop.to_bytes(8, "big")):
            yield int.from_bytes(key[len(_EVENT):], "big"), AuditEvent.model_validate(codec.decode(raw))

    def _range(self, start: int, stop: int) -> Iterator[AuditEvent]:
        return (event for _, event in self._stored(start, stop))

    def leaves(self, start: int, stop: int) -> list[bytes]:
        return [event_leaf(e) for e in self._range(start, stop)]

    def due_anchor(self, last: LastAnchored) -> dict[str, Any] | None:
        """The ``audit.anchor`` payload for events since the last committed anchor (None: nothing new)."""
        start, _ = last()
        stop = min(self.next_seq, start + MAX_ANCHOR_EVENTS)
        if stop <= start:
            return None
        return {"from_seq": start, "to_seq": stop, "root": merkle_root(self.leaves(start, stop))}

    def page(self, q: AuditEventsParams, last: LastAnchored) -> AuditPage:
        found: list[AuditEvent] = []
        stop = self.next_seq
        scan_to = min(stop, q.from_seq + MAX_SCAN)
        resume: int | None = scan_to if scan_to < stop else None
        for event in self._range(q.from_seq, scan_to):
            if _matches(event, q):
                found.append(event)
                if len(found) == q.limit:
                    resume = event.seq + 1 if event.seq + 1 < stop else None
                    break
        anchored_to, height = last()
        return AuditPage(observer=self.observer, events=found, next_seq=stop, anchored_to=anchored_to,
                         last_anchor_height=height, resume_from=resume)

    def proof(self, seq: int, covering: Covering) -> AuditProof:
        """The event as stored now and its path in the anchored range, rebuilt from the stored events:
        if any of them was edited, dropped or moved, the path no longer leads to the anchored root."""
        event = self.event(seq)
        if event is None:
            raise NotFound(f"{self.observer} holds no audit event {seq} (it has {self.next_seq})")
        anchor = covering(seq)
        if anchor is None:
            return AuditProof(event=event, anchor=None)
        stored = list(self._stored(anchor.from_seq, anchor.to_seq))
        index = next(i for i, (position, _) in enumerate(stored) if position == seq)
        steps = merkle_path([event_leaf(e) for _, e in stored], index)
        return AuditProof(event=event, anchor=anchor, path=[PathStep(left=left, hash=h) for left, h in steps])


def _matches(event: AuditEvent, q: AuditEventsParams) -> bool:
    e = event.entity
    return ((q.model_id is None or e.get("model_id") == q.model_id)
            and (q.patient is None or e.get("patient") == q.patient.hex())
            and (q.hospital is None or e.get("hospital") == q.hospital or event.agent_name == q.hospital)
            and (q.actor is None or event.agent == q.actor)
            and (q.since_height is None or event.height >= q.since_height))


def anchor_every(app_state: dict[str, Any]) -> int:
    """Genesis ``app_state.audit.anchor_every_blocks`` (default :data:`DEFAULT_ANCHOR_EVERY`)."""
    value = app_state.get("audit", {}).get("anchor_every_blocks", DEFAULT_ANCHOR_EVERY)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1_000_000:
        raise InvalidGenesis(f"app_state.audit.anchor_every_blocks: must be an integer 1..1000000, got {value!r}")
    return value


class Anchorer:
    """Offers an ``audit.anchor`` every ``every`` blocks when events are waiting, once per range:
    the same range is offered again only if it is still not committed ``3 * every`` blocks later."""

    def __init__(self, log: AuditLog, last: LastAnchored, offer: Callable[[dict[str, Any]], None], every: int) -> None:
        self.log = log
        self.last = last
        self.offer = offer
        self.every = every
        self._offered: tuple[int, int] | None = None  # (from_seq, height offered)

    def on_commit(self, finalized: FinalizedBlock) -> None:
        height = finalized.block.height
        if height % self.every:
            return
        payload = self.log.due_anchor(self.last)
        if payload is None:
            return
        if self._offered is not None and self._offered[0] == payload["from_seq"] \
                and height - self._offered[1] < 3 * self.every:
            return
        self._offered = (payload["from_seq"], height)
        self.offer(payload)
