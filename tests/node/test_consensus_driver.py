"""The driver carries out replica actions in order; a vote never leaves before its WAL record is durable."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from consensus import (
    BlockValidated, Broadcast, CommitBlock, CommitCertificate, Persist, Prepare, SetTimer, Start, TimerFired,
    ValidateBlock, WalRecord,
)
from core.block import Block
from node.application import AppInfo
from node.blockexec import BlockExecutor
from node.consensus_driver import ConsensusDriver, ProposalTiming
from node.ledger import Ledger
from node.mempool import Mempool
from node.transport import Channel
from tests.node.helpers import PARAMS, make_block

VOTE = Prepare(1, 0, b"\x07" * 32, b"\x01" * 32, b"\x02" * 64)


class ScriptedReplica:
    """Answers each event type with a fixed list of actions and records what it was fed."""

    def __init__(self, script: dict[type, list[Any]]) -> None:
        self.height, self.view = 1, 0  # the replica's public position, which the driver mirrors
        self.script = script
        self.seen: list[Any] = []
        self.fed = asyncio.Event()

    def step(self, event: Any) -> list[Any]:
        self.seen.append(event)
        self.fed.set()
        return list(self.script.get(type(event), []))


class Recorder:
    """Stands in for the WAL and the transport, logging every call in one sequence."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def append_all(self, records: list[WalRecord]) -> None:
        self.log.append(("wal", list(records)))

    def send(self, peer: bytes, channel: Channel, payload: bytes, *, missing_ok: bool = False) -> bool:
        self.log.append(("send", payload))
        return True

    def broadcast(self, channel: Channel, payload: bytes) -> None:
        self.log.append(("broadcast", channel))


class AcceptingApp:
    """An application that finds every proposed block valid (the driver still checks the hash)."""

    def info(self) -> AppInfo:
        return AppInfo(0, bytes(32), 0, bytes(32), b"")

    def process_proposal(self, block: Block, now_ms: int | None) -> None:
        return None

    def sync(self) -> None:
        return None


def _ledger() -> Ledger:
    app: Any = AcceptingApp()
    return Ledger(app, Mempool(app, max_txs=1, max_bytes=1, max_tx_bytes=1), BlockExecutor(app), PARAMS)


async def _drive(script: dict[type, list[Any]], until: int) -> tuple[ScriptedReplica, Recorder]:
    replica, io = ScriptedReplica(script), Recorder()
    driver = ConsensusDriver(replica, _ledger(), io, io, b"\x01" * 32,  # type: ignore[arg-type]
                             ProposalTiming(batch_ms=5, empty_block_ms=50, tick_ms=1), on_evidence=lambda e: None)
    await driver.start(Start(1, None, ()))
    while len(replica.seen) < until:
        replica.fed.clear()
        await asyncio.wait_for(replica.fed.wait(), 5)
    await asyncio.wait_for(driver.settled(), 5)
    await driver.stop()
    return replica, io


def test_persist_is_written_before_the_broadcast_that_follows_it() -> None:
    record = WalRecord("signed", 1, 0, b"vote")
    _, io = asyncio.run(_drive({Start: [Broadcast(VOTE), Persist(record), Broadcast(VOTE)]}, until=1))
    assert [kind for kind, _ in io.log] == ["broadcast", "wal", "broadcast"]
    assert io.log[1][1] == [record]


def test_consecutive_persists_share_one_durable_write_before_the_send() -> None:
    a, b, c = (WalRecord("signed", 1, 0, x) for x in (b"a", b"b", b"c"))
    script = {Start: [Persist(a), Persist(b), Broadcast(VOTE), Persist(c)]}
    _, io = asyncio.run(_drive(script, until=1))
    assert io.log == [("wal", [a, b]), ("broadcast", Channel.CONSENSUS), ("wal", [c])]


def test_a_block_whose_hash_is_not_the_voted_hash_is_refused() -> None:
    block = make_block(1, [])
    good, forged = block.hash, b"\x08" * 32
    script = {Start: [ValidateBlock(1, 0, block.encode(), good), ValidateBlock(1, 0, block.encode(), forged),
                      ValidateBlock(1, 0, b"not a block", good)]}
    replica, _ = asyncio.run(_drive(script, until=4))
    answers = [e for e in replica.seen if isinstance(e, BlockValidated)]
    assert answers == [BlockValidated(1, good, True), BlockValidated(1, forged, False), BlockValidated(1, good, False)]


def test_a_proposal_for_a_height_block_sync_already_committed_is_refused_quietly(monkeypatch, caplog) -> None:
    """After a restart the replica can still be deciding a height that block sync has applied meanwhile:
    that proposal is late, not suspect, so it is refused without asking the application or warning."""
    asked: list[int] = []
    monkeypatch.setattr(AcceptingApp, "info", lambda self: AppInfo(3, bytes(32), 0, bytes(32), b""))
    monkeypatch.setattr(AcceptingApp, "process_proposal", lambda self, block, now_ms: asked.append(block.height))
    late = make_block(1, [])
    with caplog.at_level(logging.INFO, logger="node.consensus_driver"):
        replica, _ = asyncio.run(_drive({Start: [ValidateBlock(1, 0, late.encode(), late.hash)]}, until=2))
    assert [e for e in replica.seen if isinstance(e, BlockValidated)] == [BlockValidated(1, late.hash, False)]
    assert asked == [] and any("already committed" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_timers_fire_back_into_the_replica_by_name() -> None:
    replica, _ = asyncio.run(_drive({Start: [SetTimer("pbft/1/0", 3)]}, until=2))
    assert replica.seen[1] == TimerFired("pbft/1/0")


class RecordingExecutor:
    def __init__(self) -> None:
        self.committed: list[tuple[Block, bytes | None]] = []

    def finalize(self, block: Block, certificate: bytes, raw: bytes | None = None, *, durable: bool = True) -> Block:
        self.committed.append((block, raw))
        return block

    def announce(self, finalized: Block) -> None:
        return None

    async def ready(self, block: Block) -> None:
        return None


def test_a_validated_block_is_decoded_once_on_its_way_to_commit(monkeypatch) -> None:
    block = make_block(1, [])
    cert = CommitCertificate(1, 0, block.hash, ())
    decodes: list[bytes] = []
    real_decode = Block.decode

    def counting_decode(data: bytes, *, max_size: int) -> Block:
        decodes.append(data)
        return real_decode(data, max_size=max_size)

    monkeypatch.setattr(Block, "decode", staticmethod(counting_decode))
    executor = RecordingExecutor()
    app: Any = AcceptingApp()
    ledger = Ledger(app, Mempool(app, max_txs=1, max_bytes=1, max_tx_bytes=1), executor, PARAMS)  # type: ignore[arg-type]
    replica = ScriptedReplica({Start: [ValidateBlock(1, 0, block.encode(), block.hash),
                                       CommitBlock(1, block.encode(), block.hash, cert)]})

    async def drive() -> None:
        driver = ConsensusDriver(replica, ledger, Recorder(), Recorder(), b"\x01" * 32,  # type: ignore[arg-type]
                                 ProposalTiming(batch_ms=5, empty_block_ms=50, tick_ms=1), on_evidence=lambda e: None)
        await driver.start(Start(1, None, ()))
        while not executor.committed:
            replica.fed.clear()
            await asyncio.wait_for(replica.fed.wait(), 5)
        await driver.stop()

    asyncio.run(drive())
    assert len(decodes) == 1  # at validation; the commit reused the decoded block
    (committed, raw), = executor.committed
    assert committed == block and raw == block.encode()
