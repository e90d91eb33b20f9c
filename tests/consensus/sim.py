"""A deterministic simulated network of replicas, in the style of etcd-io/raft's test ``network``.

Everything is driven by one ``random.Random(seed)`` and a virtual clock, so a
failing schedule replays exactly from its seed. The network delays, drops,
duplicates and reorders messages and can be partitioned (``cut``,
``isolate``, ``heal``); replicas crash and restart from their WAL; some
replicas are Byzantine (see adversary.py). Monitors check, on every commit
and every signed message, the safety properties the tests assert. The
validator set may change (:class:`Membership`): every replica runs, and the
ones outside a height's set follow it without a vote.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus import (
    BlockExecuted, BlockValidated, Broadcast, CancelTimer, CommitBlock, CommitCertificate, MessageReceived, NeedSync,
    Persist, ProposalReady, Replica, ReplicaConfig, ReportEvidence, RequestProposal, Send, SetTimer, Start,
    SyncedTo, TimerFired, ValidateBlock, WalRecord, decode_message, encode_message,
)
from consensus.events import Action, Event
from consensus.messages import CommitProof, SignedMessage
from tests.consensus.fakes import FakeSigner, FakeVerifier, block_is_valid, make_block, validator_keys

CHAIN = "sim-chain"


@dataclass
class Faults:
    """Network misbehaviour until ``heal_at``; after it the network is reliable with bounded delay."""

    drop: float = 0.0
    duplicate: float = 0.0
    max_delay: int = 3
    heal_at: int = 0
    partition_until: int = 0
    crash_rate: float = 0.0


@dataclass
class SimNode:
    index: int
    key: bytes
    replica: Replica
    signer: Any
    wal: list[WalRecord] = field(default_factory=list)
    store: dict[int, tuple[bytes, bytes, CommitCertificate]] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)
    up: bool = True
    epoch: int = 0
    byzantine: str | None = None

    @property
    def tip(self) -> int:
        return max(self.store, default=0)


class Violation(AssertionError):
    pass


@dataclass(frozen=True)
class Membership:
    """Which replicas (by index) decide each height: ``genesis`` from height 1, then each ``(H, members)`` of
    ``changes`` from H + 2, as if block H had carried the decision. A replica is told a set only once it has
    committed block H (by consensus or by sync), as a node learns it from its own state."""

    genesis: tuple[int, ...]
    changes: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def at(self, height: int) -> tuple[int, ...]:
        members = self.genesis
        for decided, later in self.changes:
            if decided + 2 <= height:
                members = later
        return members


class Simulation:
    def __init__(self, n: int, seed: int, faults: Faults | None = None, byzantine: dict[int, str] | None = None,
                 base_timeout: int = 6, real_crypto: tuple[Any, Any] | None = None,
                 membership: Membership | None = None) -> None:
        self.n, self.rng, self.faults = n, random.Random(seed), faults or Faults()
        self.membership = membership or Membership(tuple(range(n)))
        self.keys = validator_keys(n) if real_crypto is None else real_crypto[0]
        self.make_signer: Callable[[int], Any] = (
            (lambda i: FakeSigner(self.keys[i])) if real_crypto is None else real_crypto[1])
        self.verifier = FakeVerifier() if real_crypto is None else real_crypto[2]
        self.base_timeout = base_timeout
        self.now, self._seq = 0, 0
        self._queue: list[tuple[int, int, int, int, Any]] = []
        self.groups: list[set[int]] | None = None
        self.messages_sent = 0
        self.committed: dict[int, bytes] = {}
        self.signed_by_honest: dict[tuple[bytes, int, str, int], bytes] = {}
        self.evidence: list[Any] = []
        self.violations: list[str] = []
        self.nodes = [self._new_node(i, (byzantine or {}).get(i)) for i in range(n)]
        from tests.consensus.adversary import Adversary
        self.adversary = Adversary(self)
        for node in self.nodes:
            self._feed(node, Start(1, None, ()))

    # ---- the raft-test verbs -------------------------------------------------------------------

    def cut(self, groups: list[set[int]]) -> None:
        self.groups = groups

    def isolate(self, i: int) -> None:
        self.groups = [{i}, set(range(self.n)) - {i}]

    def heal(self) -> None:
        self.groups = None

    def validators_at(self, height: int) -> tuple[bytes, ...]:
        return tuple(self.keys[i] for i in self.membership.at(height))

    def _known_set(self, index: int, height: int) -> tuple[bytes, ...] | None:
        """What replica ``index`` may know of ``height``'s set: decided by a block it has committed."""
        return self.validators_at(height) if height <= self.nodes[index].tip + 2 else None

    def honest(self) -> list[SimNode]:
        return [nd for nd in self.nodes if nd.byzantine is None]

    # ---- running -------------------------------------------------------------------------------

    def run_until(self, time: int, stop: Callable[[], bool] | None = None) -> None:
        while self._queue and self._queue[0][0] <= time:
            if stop is not None and stop():
                return
            at, _, idx, epoch, item = heapq.heappop(self._queue)
            self.now = at
            node = self.nodes[idx]
            if item == "restart":
                self._restart(node)
            elif node.up and epoch == node.epoch:
                self._deliver(node, item)
            if self.violations:
                raise Violation(self.violations[0])
        self.now = max(self.now, time)

    def _deliver(self, node: SimNode, item: Any) -> None:
        kind = item[0]
        if kind == "timer":
            if node.timers.get(item[1]) == item[2]:
                del node.timers[item[1]]
                self._feed(node, TimerFired(item[1]))
        elif kind == "msg":
            self.adversary.observe(node, item[2])
            self._feed(node, MessageReceived(item[1], decode_message(item[2])))
        elif kind == "sync":
            self.sync(node)
        else:
            self._feed(node, item[1])

    def _schedule(self, delay: int, node: SimNode, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, node.index, node.epoch, item))

    def _feed(self, node: SimNode, event: Event) -> None:
        pending = [event]
        while pending:
            actions = node.replica.step(pending.pop(0))
            if node.byzantine is not None:
                actions = self.adversary.rewrite(node, actions)
            for action in actions:
                answer = self._perform(node, action)
                if answer is not None:
                    pending.append(answer)

    def _perform(self, node: SimNode, action: Action) -> Event | None:
        if isinstance(action, Persist):
            node.wal.append(action.record)
        elif isinstance(action, (Send, Broadcast)):
            targets = [action.to] if isinstance(action, Send) else [k for k in self.keys if k != node.key]
            for key in targets:
                self.send(node, self.keys.index(key), action.message)
        elif isinstance(action, SetTimer):
            self._seq += 1
            node.timers[action.name] = self._seq
            self._schedule(action.ticks, node, ("timer", action.name, self._seq))
        elif isinstance(action, CancelTimer):
            node.timers.pop(action.name, None)
        elif isinstance(action, RequestProposal):
            # A real node's proposal depends on its mempool and clock; a fresh salt stands for that.
            block, block_hash = make_block(action.height, action.view, node.key, self.rng.getrandbits(32))
            self._schedule(self.rng.randint(0, 2), node,
                           ("event", ProposalReady(action.height, action.view, block, block_hash)))
        elif isinstance(action, ValidateBlock):
            return BlockValidated(action.height, action.block_hash,
                                  block_is_valid(action.height, action.block, action.block_hash))
        elif isinstance(action, CommitBlock):
            self._on_commit(node, action)
            return BlockExecuted(action.height)
        elif isinstance(action, ReportEvidence):
            action.evidence.verify(CHAIN, self.validators_at(action.evidence.height), self.verifier)
            self.evidence.append(action.evidence)
        elif isinstance(action, NeedSync):
            self._schedule(self.rng.randint(1, 4), node, ("sync",))
        return None

    def send(self, node: SimNode, to: int, message: Any) -> None:
        """Network: honest messages are monitored for equivocation, then delayed, dropped or duplicated."""
        data = encode_message(message)
        if node.byzantine is None and not isinstance(message, CommitProof):
            self._monitor_signed(message)
        self.messages_sent += 1
        f = self.faults
        faulty = self.now < f.heal_at
        if self.groups is not None and not any(node.index in g and to in g for g in self.groups):
            return
        if faulty and self.rng.random() < f.drop:
            return
        copies = 2 if faulty and self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            self._schedule(self.rng.randint(1, f.max_delay), self.nodes[to], ("msg", node.key, data))

    def _monitor_signed(self, msg: SignedMessage) -> None:
        slot = (msg.sender, msg.height, msg.kind, msg.view)
        content = encode_message(msg)
        earlier = self.signed_by_honest.setdefault(slot, content)
        if earlier != content:
            self.violations.append(f"honest replica equivocated at {slot[1:]}")

    def _on_commit(self, node: SimNode, action: CommitBlock) -> None:
        action.certificate.verify(CHAIN, self.validators_at(action.height), self.verifier)
        node.store[action.height] = (action.block, action.block_hash, action.certificate)
        node.wal = [r for r in node.wal if r.height > action.height]
        if node.byzantine is None:
            earlier = self.committed.setdefault(action.height, action.block_hash)
            if earlier != action.block_hash:
                self.violations.append(f"two blocks committed at height {action.height}")

    def sync(self, node: SimNode) -> None:
        """Block sync: copy from the most advanced live replica, verifying every certificate on the way.

        With every other replica down there is nobody to sync from, as on a real network; the
        replica asks again on its next NeedSync."""
        source = max((nd for nd in self.nodes if nd.up and nd is not node), key=lambda nd: nd.tip, default=None)
        if source is None or source.tip <= node.tip:
            return
        for h in range(node.tip + 1, source.tip + 1):
            block, block_hash, cert = source.store[h]
            cert.verify(CHAIN, self.validators_at(h), self.verifier)
            self._on_commit(node, CommitBlock(h, block, block_hash, cert))
        self._feed(node, SyncedTo(source.tip, source.store[source.tip][2]))

    # ---- crashes -------------------------------------------------------------------------------

    def crash(self, node: SimNode, down_for: int, forget: bool = False) -> None:
        node.up = False
        node.epoch += 1
        node.timers.clear()
        if forget:
            node.wal = []
        self._seq += 1
        heapq.heappush(self._queue, (self.now + down_for, self._seq, node.index, -1, "restart"))

    def _restart(self, node: SimNode) -> None:
        fresh = self._new_node(node.index, node.byzantine)
        node.replica, node.up = fresh.replica, True
        cert = node.store[node.tip][2] if node.store else None
        self._feed(node, Start(node.tip + 1, cert, tuple(node.wal)))

    def _new_node(self, i: int, byzantine: str | None) -> SimNode:
        cfg = ReplicaConfig(CHAIN, self.validators_at(1), self.keys[i], self.base_timeout,
                            max_timeout_ticks=8 * self.base_timeout)
        signer = self.make_signer(i)
        replica = Replica(cfg, signer, self.verifier, lambda height: self._known_set(i, height))
        return SimNode(i, self.keys[i], replica, signer, byzantine=byzantine)

    # ---- a whole schedule ----------------------------------------------------------------------

    def min_honest_height(self) -> int:
        return min(nd.tip for nd in self.honest())

    def run_schedule(self, extra_heights: int = 2, bound: int = 600) -> int:
        """Faulty phase (drops, duplicates, a partition, honest crashes) until ``heal_at``; then a
        reliable network. Returns the height every honest replica must reach within ``bound`` ticks
        of healing: ``extra_heights`` above the best honest height at healing time."""
        f = self.faults
        if f.partition_until:
            half = set(self.rng.sample(range(self.n), self.n // 2))
            self.cut([half, set(range(self.n)) - half])
        t = 0
        while t < f.heal_at:
            t += 5
            if t >= f.partition_until:
                self.heal()
            self.adversary.tick()
            if f.crash_rate and self.rng.random() < f.crash_rate:
                victim = self.rng.choice(self.honest())
                if victim.up:
                    self.crash(victim, self.rng.randint(1, 20))
            self.run_until(t)
        self.heal()
        target = max(nd.tip for nd in self.honest()) + extra_heights
        while t < f.heal_at + bound and self.min_honest_height() < target:
            t += 5
            self.adversary.tick()
            self.run_until(t, stop=lambda: self.min_honest_height() >= target)
        return target
