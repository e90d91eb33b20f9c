"""The Audit page's trail of reads and changes: every validator's ``audit_events``, each event's proof status.

The events and their proofs are read and checked by ``client/audit.py``, the
code behind ``fbci audit query`` and ``fbci audit verify``, so the page and the
CLI cannot disagree. That code is blocking (a :class:`client.session.ChainSession`
owns its own loop), so each validator's trail is read in a worker thread.

An event's proof is ``verified`` (its leaf and path rebuild the root of an
``audit.anchor`` in a block a quorum of that height's validators certified),
``pending`` (the validator has not anchored it yet), ``failed`` (with what
failed), or ``unchecked`` when the dashboard holds no genesis file to trust.
An event proven once is not proven again while the validator serves the same
bytes for it (its leaf); an edited event has another leaf, so it is checked anew
and fails. An anchor's block is checked once; each event under it still has
its own path rebuilt. Events at or past the validator's ``anchored_to`` are
pending without asking for their proof: every proof read is itself audited.

The dashboard's own reads (signed with its key: every page load, every proof
it asks for) are counted but neither shown nor proven: each refresh would
otherwise fill the newest events with them, and proving them would audit yet
more reads, a trail that grows with every refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from core.audit import Anchor, AuditEvent, AuditEventsParams, MAX_PAGE, event_leaf
from core.errors import FbciError, ReadRefused
from client.audit import Verified, fetch_proof, proof_problem, query_events, verify_event
from client.light_verify import HeaderVerifier
from client.session import ChainSession

RECENT_EVENTS = MAX_PAGE
"""Newest events the page reads from each validator."""

SessionFactory = Callable[[], ChainSession]
"""A fresh session on one validator, signing its reads with the dashboard's key (made in the worker thread)."""


@dataclass(frozen=True)
class EventRow:
    observer: str
    seq: int
    recorded_ms: int
    height: int
    action: str
    outcome: str
    outcome_reason: str
    agent: str
    """The agent's account name, else its key's first hex digits, else ``anonymous``."""
    agent_roles: list[str]
    entity_type: str
    entity: str
    purpose: str
    proof: str
    """``verified``, ``pending``, ``failed`` or ``unchecked`` (see the module's docstring)."""
    proof_detail: str


@dataclass(frozen=True)
class ValidatorTrail:
    url: str
    status: str
    """``ok``; ``refused`` (the dashboard's key may not read the trail); ``error`` (unreachable or failing)."""
    message: str
    observer: str | None = None
    recorded: int | None = None
    anchored_to: int | None = None
    last_anchor_height: int | None = None


@dataclass
class TrailReader:
    """Reads the trail of the validators ``sessions`` names (by URL); ``validators`` checks certificates from
    genesis's set on (:func:`client.audit.anchor_trust`), or is None when no genesis file is at hand (then no
    proof is checked, and the page says so)."""

    sessions: dict[str, SessionFactory]
    validators: HeaderVerifier | None
    own: bytes | None = None
    """The dashboard's reader key: its own events are counted, not shown."""
    proven: dict[tuple[str, int, bytes], str] = field(default_factory=dict)
    """``(url, seq, leaf)`` of each event already verified, and its detail."""
    certified: set[Anchor] = field(default_factory=set)
    """Anchors (their ``audit.anchor`` transaction, root and range) already proven to be in a certified block:
    each further event under one needs only its own path checked."""

    async def read(self) -> tuple[list[ValidatorTrail], list[EventRow]]:
        results = await asyncio.gather(*(asyncio.to_thread(self._read_one, url, make)
                                          for url, make in self.sessions.items()))
        trails = [t for t, _ in results]
        events = sorted((e for _, rows in results for e in rows), key=lambda e: (e.recorded_ms, e.observer, e.seq),
                        reverse=True)
        return trails, events

    def _read_one(self, url: str, make: SessionFactory) -> tuple[ValidatorTrail, list[EventRow]]:
        try:
            with make() as session:
                head = query_events(session, AuditEventsParams(limit=1))
                start = max(0, head.next_seq - RECENT_EVENTS)
                page = query_events(session, AuditEventsParams(from_seq=start, limit=min(RECENT_EVENTS, MAX_PAGE)))
                others = [e for e in page.events if self.own is None or e.agent != self.own]
                rows = [self._row(session, e, page.anchored_to) for e in others]
        except ReadRefused as exc:
            return ValidatorTrail(url, "refused", f"this dashboard's key may not read the audit trail here: "
                                                  f"{exc.message}"), []
        except FbciError as exc:  # one validator down must not hide the others' trails
            return ValidatorTrail(url, "error", f"error[{exc.code} {exc.reason}]: {exc.message}"), []
        gap = page.next_seq - page.anchored_to
        message = f"{page.next_seq} event(s) recorded, anchored below {page.anchored_to}" + (
            f"; {gap} not anchored yet" if gap else "") + (
            f"; of the newest {len(page.events)}, {len(page.events) - len(rows)} are this dashboard's own reads "
            "(not shown)" if len(rows) < len(page.events) else "")
        return ValidatorTrail(url, "ok", message, page.observer, page.next_seq, page.anchored_to,
                              page.last_anchor_height), rows

    def _row(self, session: ChainSession, event: AuditEvent, anchored_to: int) -> EventRow:
        proof, detail = self._proof(session, event, anchored_to)
        who = event.agent_name or (event.agent.hex()[:16] + "…" if event.agent else "anonymous")
        what = " ".join(f"{k}={v}" for k, v in sorted(event.entity.items()))
        return EventRow(event.observer, event.seq, event.recorded_ms, event.height, event.action, event.outcome,
                        event.outcome_reason, who, event.agent_roles, event.entity_type, what, event.purpose,
                        proof, detail)

    def _proof(self, session: ChainSession, event: AuditEvent, anchored_to: int) -> tuple[str, str]:
        if self.validators is None:
            return "unchecked", "no genesis file in --home: nothing to check the anchors' certificates against"
        if event.seq >= anchored_to:  # not asked: each proof read is itself an audited event, pending again
            return "pending", "not anchored yet: the validator has not committed a root for it"
        key = (session.rpc_url, event.seq, event_leaf(event))
        if key in self.proven:
            return "verified", self.proven[key]
        proof = fetch_proof(session, event.seq)
        if proof.anchor is None and proof.event.seq == event.seq:
            return "pending", "not anchored yet: the validator has not committed a root for it"
        if proof.event != event:
            return "failed", "the proof is for another version of this event than the trail serves"
        if proof.anchor in self.certified and proof_problem(proof, event.seq) is None:
            result = Verified(event.seq, event.observer, True, f"anchored at height {proof.anchor.height}")
        else:
            result = verify_event(session, proof, event.seq, self.validators)
        if not result.ok:
            return "failed", result.detail
        assert proof.anchor is not None  # verify_event proves anchored events only
        self.certified.add(proof.anchor)
        self.proven[key] = result.detail
        return "verified", result.detail
