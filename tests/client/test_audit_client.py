"""client.audit.query_events follows a validator's bounded scans until it has the events asked for."""

from __future__ import annotations

import asyncio
from typing import Any

from client.audit import query_events
from core.audit import AuditEvent, AuditEventsParams, AuditPage


def _event(seq: int) -> AuditEvent:
    return AuditEvent(seq=seq, recorded_ms=0, height=seq, observer="node0", action="R", outcome="0",
                      outcome_reason="ok", agent=None, agent_name=None, agent_roles=[], agent_address="",
                      entity_type="fl_model_get", entity={}, purpose="TRAIN")


class FakeSession:
    """Serves events 0..29 matching every third, at most 10 looked at per call."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    async def query(self, query: Any, params: AuditEventsParams) -> AuditPage:
        self.asked.append((params.from_seq, params.limit))
        stop = min(30, params.from_seq + 10)
        found = [_event(s) for s in range(params.from_seq, stop) if s % 3 == 0][:params.limit]
        resume = stop if stop < 30 else None
        if len(found) == params.limit and found[-1].seq + 1 < 30:
            resume = found[-1].seq + 1
        return AuditPage(observer="node0", events=found, next_seq=30, anchored_to=30, last_anchor_height=9,
                         resume_from=resume)

    def run(self, fn: Any) -> Any:
        return asyncio.run(fn(self))


def test_query_events_follows_resume_points_up_to_the_limit() -> None:
    session = FakeSession()
    page = query_events(session, AuditEventsParams(limit=100))  # type: ignore[arg-type]
    assert [e.seq for e in page.events] == list(range(0, 30, 3))
    assert session.asked == [(0, 100), (10, 96), (20, 93)]
    session = FakeSession()
    assert [e.seq for e in query_events(session, AuditEventsParams(limit=5)).events] == [0, 3, 6, 9, 12]  # type: ignore[arg-type]
