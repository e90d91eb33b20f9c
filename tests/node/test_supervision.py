"""Crash-only supervision: a validator task that fails stops the process, once and loudly, and ``status``
says whether consensus runs and when the last block was committed, so a stuck node never looks healthy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from consensus import Ed25519Verifier, RequestProposal, Start
from core.block import Block
from core.crypto import PrivateKey
from core.errors import DiskFull, InvalidInput, TaskFailed
from genesis.create import assemble
from node.application import ProposalRequest
from node.blockexec import BlockExecutor
from node.consensus_driver import ConsensusDriver, ProposalTiming
from node.ledger import Ledger
from node.mempool import Mempool
from node.metrics import NodeMetrics
from node.misbehaviour import OwnTxSubmitter
from node.runtime import Supervisor
from node.service import NodeService
from node.sync import BlockSyncer
from node.transport import Channel
from tests.genesis.samples import sample_parts
from tests.node.helpers import CHAIN, PARAMS, VKEYS, certify, echo_tx, HOSPITAL, open_ledger
from tests.node.test_consensus_driver import AcceptingApp, Recorder

TIMING = ProposalTiming(batch_ms=1, empty_block_ms=5, tick_ms=1)


async def _stopped(supervisor: Supervisor) -> None:
    await asyncio.wait_for(supervisor.stop.wait(), 10)


async def test_a_failed_task_is_logged_once_with_its_traceback_counted_and_stops_the_validator(
        caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(asyncio.Event())
    metrics = NodeMetrics("node0")
    supervisor.on_failure.append(metrics.on_task_failure)

    async def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger="node.runtime"):
        supervisor.spawn(broken(), "consensus")
        await _stopped(supervisor)
    critical = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(critical) == 1 and critical[0].levelno == logging.CRITICAL
    assert "validator task consensus failed" in critical[0].getMessage()
    assert critical[0].exc_info is not None and critical[0].exc_info[0] is RuntimeError  # the traceback, once
    assert supervisor.failure is not None and supervisor.failure.task == "consensus"
    exit_error = supervisor.failure.as_error()
    assert isinstance(exit_error, TaskFailed) and "RuntimeError: boom" in exit_error.message
    assert metrics.registry.get_sample_value("fbci_task_failures_total",
                                             {"validator": "node0", "task": "consensus"}) == 1.0


async def test_a_named_error_stops_the_validator_as_itself_without_a_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(asyncio.Event())
    full = DiskFull("appending to the consensus WAL data/consensus.wal: No space left on device")

    async def writer() -> None:
        raise full

    with caplog.at_level(logging.INFO, logger="node.runtime"):
        supervisor.spawn(writer(), "consensus")
        await _stopped(supervisor)
    (line,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "error[-32041 disk_full]: appending to the consensus WAL" in line.getMessage() and line.exc_info is None
    assert supervisor.failure is not None and supervisor.failure.as_error() is full


async def test_tasks_that_return_or_are_cancelled_are_not_failures() -> None:
    supervisor = Supervisor(asyncio.Event())

    async def done() -> None:
        return None

    finished = supervisor.spawn(done(), "block-sync")  # sync reached its target
    waiting = supervisor.spawn(asyncio.Event().wait(), "proposer")  # type: ignore[arg-type]
    await finished
    waiting.cancel()  # the validator stopping
    await asyncio.gather(waiting, return_exceptions=True)
    assert supervisor.failure is None and not supervisor.stop.is_set()


class FailingReplica:
    """A replica with a bug: the first event it is given raises."""

    height, view = 1, 0

    def step(self, event: Any) -> list[Any]:
        if isinstance(event, Start) and self.script:
            return self.script
        raise RuntimeError("replica bug")

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script = script or []


class BrokenProposals(AcceptingApp):
    def prepare_proposal(self, request: ProposalRequest) -> Block:
        raise RuntimeError("proposal bug")


def _ledger(app: Any = None) -> Ledger:
    app = app or AcceptingApp()
    return Ledger(app, Mempool(app, max_txs=1, max_bytes=1, max_tx_bytes=1), BlockExecutor(app), PARAMS)


def _driver(replica: Any, ledger: Ledger, supervisor: Supervisor) -> ConsensusDriver:
    io = Recorder()
    return ConsensusDriver(replica, ledger, io, io, b"\x01" * 32, TIMING,  # type: ignore[arg-type]
                           on_evidence=lambda e: None, spawn=supervisor.spawn)


async def test_an_exception_in_the_consensus_loop_stops_the_validator_and_status_says_so() -> None:
    supervisor = Supervisor(asyncio.Event())
    driver = _driver(FailingReplica(), _ledger(), supervisor)
    await driver.start(Start(1, None, ()))
    await _stopped(supervisor)
    assert supervisor.failure is not None and supervisor.failure.task == "consensus"
    assert not driver.running
    await driver.stop()


async def test_an_exception_in_the_proposer_stops_the_validator() -> None:
    supervisor = Supervisor(asyncio.Event())
    driver = _driver(FailingReplica([RequestProposal(1, 0)]), _ledger(BrokenProposals()), supervisor)
    await driver.start(Start(1, None, ()))
    await _stopped(supervisor)
    assert supervisor.failure is not None and supervisor.failure.task == "proposer"
    assert "proposal bug" in supervisor.failure.as_error().message
    await driver.stop()


async def test_an_exception_in_block_sync_stops_the_validator(tmp_path) -> None:
    supervisor = Supervisor(asyncio.Event())

    def peers() -> list[bytes]:
        raise RuntimeError("transport bug")

    syncer = BlockSyncer(open_ledger(tmp_path / "db"), chain_id=CHAIN,
                         verifier=Ed25519Verifier(CHAIN), send=lambda peer, data: True, peers=peers,
                         on_synced=lambda h, c: None, on_misbehaviour=lambda p, w: None, spawn=supervisor.spawn)
    syncer.request_sync(5, None)
    await _stopped(supervisor)
    assert supervisor.failure is not None and supervisor.failure.task == "block-sync"


class BrokenService:
    async def account(self, public_key: bytes) -> Any:
        raise RuntimeError("service bug")


async def test_an_exception_in_the_own_transaction_submitter_stops_the_validator() -> None:
    supervisor = Supervisor(asyncio.Event())
    own = OwnTxSubmitter(PrivateKey(bytes([9]) * 32), CHAIN)
    own.start(BrokenService(), supervisor.spawn)  # type: ignore[arg-type]
    own.offer("ids.alert", {})
    await _stopped(supervisor)
    assert supervisor.failure is not None and supervisor.failure.task == "own-transactions"
    await own.stop()


async def test_status_says_whether_consensus_runs_and_when_this_validator_last_committed(tmp_path) -> None:
    ledger = open_ledger(tmp_path / "db")
    running = [True]
    service = NodeService(name="node0", genesis=assemble(CHAIN, sample_parts(2), genesis_time_ms=1000),
                          app=ledger.app, mempool=ledger.mempool, gossip=lambda raw: None, notify_work=lambda: None,
                          view=lambda: 0, peers=lambda: 3, syncing=lambda: False,
                          on_rejected=lambda sender, exc: None, consensus_running=lambda: running[0],
                          clock_ms=lambda: 1_234_567)
    ledger.blocks.observers.append(service.on_commit)
    before = await service.status()
    assert before.last_commit_time_ms == 1000 and before.consensus_running  # nothing committed yet: genesis time
    ledger.mempool.add(echo_tx(HOSPITAL, 1).encode())
    block = ledger.propose(VKEYS[0], 5000)
    ledger.blocks.commit(block, certify(block))
    running[0] = False
    after = await service.status()
    assert after.height == 1 and after.last_commit_time_ms == 1_234_567 and not after.consensus_running


async def test_a_failed_peer_writer_stops_the_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    from node.transport.queues import PeerQueues
    from tests.node.test_transport import cluster

    supervisor = Supervisor(asyncio.Event())
    spawned: list[str] = []

    def spawn(coro: Any, name: str) -> asyncio.Task[None]:
        spawned.append(name)
        return supervisor.spawn(coro, name)

    async with cluster(2, spawn=spawn) as (dialer, acceptor):
        await dialer.transport.wait_connected(timeout=10)
        assert f"p2p-dial-{acceptor.name}" in spawned and f"p2p-write-{acceptor.name}" in spawned

        def broken_pop(self: PeerQueues) -> None:
            raise RuntimeError("queue bug")

        monkeypatch.setattr(PeerQueues, "pop", broken_pop)
        dialer.transport.send(acceptor.pub, Channel.GOSSIP, b"tx")
        await _stopped(supervisor)
    assert supervisor.failure is not None and supervisor.failure.task == f"p2p-write-{acceptor.name}"


async def test_any_other_error_escaping_a_task_is_a_bug_reported_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(asyncio.Event())

    async def committer() -> None:
        raise InvalidInput("cannot commit height 5 on top of 3")  # tasks catch the peer's errors they expect

    with caplog.at_level(logging.INFO, logger="node.runtime"):
        supervisor.spawn(committer(), "consensus")
        await _stopped(supervisor)
    (line,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert line.exc_info is not None and line.exc_info[0] is InvalidInput
    assert supervisor.failure is not None and isinstance(supervisor.failure.as_error(), TaskFailed)
