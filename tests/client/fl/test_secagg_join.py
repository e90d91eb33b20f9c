"""A hospital joins a secure round only in a keys stage it can still make: one at its deadline is let go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from client.fl.secagg_driver import SecureRoundDriver
from core.crypto import PrivateKey
from fl_contracts.secagg_msgs import KEYS_KIND, SecureRoundView
from fl_contracts.spec import ModelSpec

SPEC = ModelSpec.for_sequential("secure", [3, 2], rule="fedavg", min_updates=2, max_updates=4, round_length_blocks=20)


def _view(round_: int, stage: str, deadline: int) -> SecureRoundView:
    return SecureRoundView(model_id=SPEC.id, round=round_, base_version=0, stage=stage, deadline_height=deadline,
                           threshold=2, members=[], shared=[], masked=[], revealed=[])


class ScriptedChain:
    """One (height, view) per block; each ``new_block`` moves to the next."""

    def __init__(self, blocks: list[tuple[int, SecureRoundView]]) -> None:
        self.blocks = blocks
        self.at = 0

    async def query(self, query: Any, params: Any) -> SecureRoundView:
        return self.blocks[self.at][1]

    async def status(self) -> SimpleNamespace:
        return SimpleNamespace(height=self.blocks[self.at][0])

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[int]]:
        async def blocks() -> AsyncIterator[int]:
            while self.at + 1 < len(self.blocks):
                self.at += 1
                yield self.blocks[self.at][0]
        yield blocks()


class ScriptedSession:
    def __init__(self, chain: ScriptedChain) -> None:
        self.key = PrivateKey.generate()
        self.chain = chain
        self.submitted: list[tuple[str, dict[str, Any]]] = []

    def spec(self, model_id: str) -> ModelSpec:
        return SPEC

    def run(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        return asyncio.run(fn(self.chain))

    def submit_commit(self, kind: str, payload: dict[str, Any]) -> None:
        self.submitted.append((kind, payload))


def test_a_keys_stage_at_its_deadline_is_let_go_for_the_next_rounds() -> None:
    chain = ScriptedChain([(10, _view(5, "keys", 11)),     # one block left of 20: keys sent now may land late
                           (11, _view(5, "shares", 31)),
                           (12, _view(6, "keys", 32))])    # a fresh stage: every hospital joins this one
    session = ScriptedSession(chain)
    joined = SecureRoundDriver(session, SPEC.id).join()  # type: ignore[arg-type]
    assert joined.round == 6
    assert [(kind, payload["round"]) for kind, payload in session.submitted] == [(KEYS_KIND, 6)]


def test_a_keys_stage_with_half_its_blocks_left_is_joined_at_once() -> None:
    chain = ScriptedChain([(10, _view(5, "keys", 20)), (11, _view(5, "shares", 31))])
    session = ScriptedSession(chain)
    assert SecureRoundDriver(session, SPEC.id).join().round == 5  # type: ignore[arg-type]
    assert [kind for kind, _ in session.submitted] == [KEYS_KIND]
