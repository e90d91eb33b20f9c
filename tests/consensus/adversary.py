"""Byzantine behaviours for the simulator; each rewrites what a (correct) replica would send.

- ``silent``: sends nothing.
- ``equivocate``: as primary, proposes one block to half the honest replicas
  and another to the rest; always double votes (prepare and commit for every
  proposal it sees, whatever the protocol says). Several of them collude.
- ``random-votes``: adds votes for blocks nobody proposed.
- ``replay``: re-sends old messages it received, to random peers.
- ``bad-sig``: corrupts the signature of everything it sends.
- ``amnesia``: behaves correctly but now and then restarts with its WAL wiped
  (Twins: a validator that forgets what it signed).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from consensus import Broadcast, Commit, NewView, PrePrepare, Prepare, Send, decode_message
from consensus.events import Action
from consensus.messages import SignedMessage
from tests.consensus.fakes import make_block

if TYPE_CHECKING:
    from tests.consensus.sim import SimNode, Simulation

BEHAVIOURS = ("silent", "equivocate", "random-votes", "replay", "bad-sig", "amnesia")


class Adversary:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.heard: list[tuple[bytes, bytes]] = []
        self.audience: dict[bytes, set[int]] = {}

    def observe(self, node: SimNode, data: bytes) -> None:
        if node.byzantine == "replay":
            self.heard = (self.heard + [(node.key, data)])[-64:]
        if node.byzantine == "equivocate":
            msg = decode_message(data)
            if isinstance(msg, (PrePrepare, NewView)):
                self._vote_everywhere(node, msg.height, msg.view, msg.block_hash)

    def tick(self) -> None:
        """Called between scheduler slices: amnesiac replicas forget their log now and then."""
        for node in self.sim.nodes:
            if node.byzantine == "amnesia" and node.up and self.sim.rng.random() < 0.2:
                self.sim.crash(node, self.sim.rng.randint(0, 3), forget=True)

    def rewrite(self, node: SimNode, actions: list[Action]) -> list[Action]:
        kind = node.byzantine
        if kind == "silent":
            return [a for a in actions if not isinstance(a, (Send, Broadcast))]
        if kind == "bad-sig":
            return [self._corrupt(a) for a in actions]
        if kind == "equivocate":  # it casts its own votes, in observe() and _split()
            return [a for a in actions if not self._split(node, a) and not (
                isinstance(a, Broadcast) and isinstance(a.message, (Prepare, Commit)))]
        if kind == "random-votes":
            for a in actions:
                if isinstance(a, Broadcast) and isinstance(a.message, (Prepare, Commit)):
                    bogus = bytes(self.sim.rng.getrandbits(8) for _ in range(32))
                    self._vote_everywhere(node, a.message.height, a.message.view, bogus)
        if kind == "replay" and self.heard and self.sim.rng.random() < 0.5:
            _, data = self.sim.rng.choice(self.heard)
            to = self.sim.rng.randrange(self.sim.n)
            if to != node.index:
                self.sim.send(node, to, decode_message(data))
        return actions

    def _corrupt(self, action: Action) -> Action:
        if isinstance(action, (Send, Broadcast)) and hasattr(action.message, "signature"):
            msg = action.message
            bad = dataclasses.replace(msg, signature=bytes([msg.signature[0] ^ 1]) + msg.signature[1:])
            return dataclasses.replace(action, message=bad)
        return action

    def _split(self, node: SimNode, action: Action) -> bool:
        """Replace a proposal broadcast by two conflicting proposals; True if it did."""
        if not (isinstance(action, Broadcast) and isinstance(action.message, (PrePrepare, NewView))):
            return False
        original = action.message
        block, block_hash = make_block(original.height, original.view, node.key, salt=1)
        other = self._signed(node, dataclasses.replace(original, block=block, block_hash=block_hash))
        honest = [nd.index for nd in self.sim.honest()]
        self.sim.rng.shuffle(honest)
        half = set(honest[: len(honest) // 2])
        self.audience = {original.block_hash: set(honest) - half, other.block_hash: half}
        for nd in self.sim.nodes:
            if nd is node:
                continue
            if nd.byzantine is not None or nd.index not in half:
                self.sim.send(node, nd.index, original)
            if nd.byzantine is not None or nd.index in half:
                self.sim.send(node, nd.index, other)
        for msg in (original, other):
            self._vote_everywhere(node, msg.height, msg.view, msg.block_hash)
        return True

    def _vote_everywhere(self, node: SimNode, height: int, view: int, block_hash: bytes) -> None:
        """Colluders vote for each of a split proposal's blocks only where that block went."""
        audience = self.audience.get(block_hash)
        for cls in (Prepare, Commit):
            vote = self._signed(node, cls(height, view, block_hash, node.key, b""))
            for nd in self.sim.nodes:
                if nd is not node and (audience is None or nd.byzantine is not None or nd.index in audience):
                    self.sim.send(node, nd.index, vote)

    def _signed(self, node: SimNode, msg: SignedMessage) -> SignedMessage:
        sig = node.signer.sign(msg.kind, msg.sign_bytes(self.sim_chain()))
        return dataclasses.replace(msg, signature=sig)

    def sim_chain(self) -> str:
        from tests.consensus.sim import CHAIN
        return CHAIN
