"""Under a slow disk nothing that depends on a write leaves the process before that write's fsync returns,
and meanwhile the event loop goes on serving (issue 16, part 2: no blocking disk call on the event loop).

The fake disk's fsync blocks, on the writer thread, until the test hands it a permit: with an fsync on the
event loop the RPC call below could never be answered, and with the ordering broken a send would show up
in the log before the record it carries is durable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from consensus import Broadcast, CommitBlock, CommitCertificate, Persist, Prepare, Send, Start, WalRecord
from core.block import Block
from node.application import AppInfo
from node.consensus_driver import ConsensusDriver, ProposalTiming
from node.diskwriter import DiskWriter
from node.ledger import Ledger
from node.mempool import Mempool
from node.rpc.server import create_app
from node.app_reads import RPC_QUERIES
from node.transport import Channel
from node.wal import WriteAheadLog
from tests.node.helpers import PARAMS, make_block
from tests.node.test_consensus_driver import ScriptedReplica
from tests.node.test_rpc_server import STATUS, post

VOTE = Prepare(1, 0, b"\x07" * 32, b"\x01" * 32, b"\x02" * 64)
PEER = b"\x09" * 32
TIMING = ProposalTiming(batch_ms=5, empty_block_ms=10_000, tick_ms=1)


class SlowDisk:
    """Each fsync (a WAL append or the block store's sync) waits for a permit, then logs that it returned."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log
        self.permits = threading.Semaphore(0)
        self.waiting = 0
        self._lock = threading.Lock()

    def fsync(self, what: str, detail: Any) -> None:
        with self._lock:
            self.waiting += 1
        assert self.permits.acquire(timeout=10), "the test never released this fsync"
        assert threading.current_thread() is not threading.main_thread(), "an fsync ran on the event loop"
        with self._lock:
            self.waiting -= 1
        self.log.append((what, detail))

    # the WAL's interface
    def append_all(self, records: list[WalRecord]) -> None:
        self.fsync("durable", [r.payload for r in records])

    def truncate_before(self, height: int) -> None:
        self.log.append(("compact", height))


class Outbox:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def send(self, peer: bytes, channel: Channel, payload: bytes, *, missing_ok: bool = False) -> bool:
        self.log.append(("send", peer))
        return True

    def broadcast(self, channel: Channel, payload: bytes) -> None:
        self.log.append(("broadcast", channel))


class SlowApp:
    """Accepts every block; executing one is instant, making it durable is the slow disk's fsync."""

    def __init__(self, disk: SlowDisk) -> None:
        self.disk = disk
        self.height = 0

    def info(self) -> AppInfo:
        return AppInfo(self.height, bytes(32), 0, bytes(32), b"")

    def process_proposal(self, block: Block, now_ms: int | None) -> None:
        return None

    def sync(self) -> None:
        self.disk.fsync("block durable", self.height)


class LoggingExecutor:
    def __init__(self, app: SlowApp, log: list[tuple[str, Any]]) -> None:
        self.app, self.log = app, log

    def finalize(self, block: Block, certificate: bytes, raw: bytes | None = None, *, durable: bool = True) -> Block:
        assert not durable, "the driver leaves the sync to the writer thread"
        self.app.height = block.height
        return block

    def announce(self, finalized: Block) -> None:
        self.log.append(("observers told", finalized.height))

    async def ready(self, block: Block) -> None:  # nothing beside state to fetch first (no blobs)
        return None


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def _rpc_answers_while_blocked(serve: Any, fake_node: Any, disk: SlowDisk) -> None:
    async with serve(create_app(fake_node, RPC_QUERIES)) as client:
        status, body = await asyncio.wait_for(post(client, STATUS), 5)
    assert status == 200 and "result" in body and disk.waiting == 1


def _driver(script: dict[type, list[Any]], log: list[tuple[str, Any]], disk: SlowDisk
            ) -> tuple[ConsensusDriver, ScriptedReplica]:
    app: Any = SlowApp(disk)
    ledger = Ledger(app, Mempool(app, max_txs=1, max_bytes=1, max_tx_bytes=1), LoggingExecutor(app, log),  # type: ignore[arg-type]
                    PARAMS)
    replica = ScriptedReplica(script)
    driver = ConsensusDriver(replica, ledger, disk, Outbox(log), b"\x01" * 32, TIMING,  # type: ignore[arg-type]
                             on_evidence=lambda e: None, writer=DiskWriter())
    return driver, replica


async def test_no_vote_leaves_before_its_record_is_durable_and_rpc_answers_meanwhile(serve, fake_node) -> None:
    log: list[tuple[str, Any]] = []
    disk = SlowDisk(log)
    script = {Start: [Persist(WalRecord("signed", 1, 0, b"a")), Broadcast(VOTE),
                      Persist(WalRecord("signed", 1, 0, b"b")), Send(PEER, VOTE)]}
    driver, _ = _driver(script, log, disk)
    await driver.start(Start(1, None, ()))

    await until(lambda: disk.waiting == 1, "the first fsync to start")
    await _rpc_answers_while_blocked(serve, fake_node, disk)
    assert log == []  # the vote that carries record a is held back
    disk.permits.release()
    await until(lambda: ("broadcast", Channel.CONSENSUS) in log, "the broadcast after record a")
    await until(lambda: disk.waiting == 1, "the second fsync to start")
    await _rpc_answers_while_blocked(serve, fake_node, disk)
    assert log == [("durable", [b"a"]), ("broadcast", Channel.CONSENSUS)]  # the send waits for record b
    disk.permits.release()
    await asyncio.wait_for(driver.settled(), 5)
    assert log == [("durable", [b"a"]), ("broadcast", Channel.CONSENSUS), ("durable", [b"b"]), ("send", PEER)]
    await driver.stop()
    driver.writer.close()


async def test_a_block_is_durable_before_anyone_hears_of_it_or_the_next_vote_leaves(serve, fake_node) -> None:
    log: list[tuple[str, Any]] = []
    disk = SlowDisk(log)
    block = make_block(1, [])
    commit = CommitBlock(1, block.encode(), block.hash, CommitCertificate(1, 0, block.hash, ()))
    driver, _ = _driver({Start: [Persist(WalRecord("signed", 1, 0, b"commit vote")), commit, Broadcast(VOTE)]},
                        log, disk)
    await driver.start(Start(1, None, ()))
    await until(lambda: disk.waiting == 1, "the vote's fsync")
    disk.permits.release()
    await until(lambda: disk.waiting == 1, "the block's sync")
    await _rpc_answers_while_blocked(serve, fake_node, disk)
    assert log == [("durable", [b"commit vote"])]  # executed, but no observer told and nothing sent
    disk.permits.release()
    await asyncio.wait_for(driver.settled(), 5)
    await until(lambda: ("compact", 2) in log, "the WAL compaction, once the writer is idle")
    sent = log.index(("broadcast", Channel.CONSENSUS))  # the compaction runs beside it, on the writer
    assert [e for e in log if e[0] != "compact"] == [("durable", [b"commit vote"]), ("block durable", 1),
                                                      ("observers told", 1), ("broadcast", Channel.CONSENSUS)]
    assert log.index(("compact", 2)) > log.index(("block durable", 1)) and sent > 0
    await driver.stop()
    driver.writer.close()


async def test_the_writer_runs_jobs_in_order_and_housekeeping_only_when_idle() -> None:
    writer, order, gate = DiskWriter(), [], threading.Event()
    first = writer.submit(lambda: (gate.wait(5), order.append("first")), then=lambda: order.append("first told"))
    stale = writer.submit_idle(lambda: order.append("stale compaction"))
    compaction = writer.submit_idle(lambda: order.append("compaction"))
    second = writer.submit(lambda: order.append("second"), then=lambda: order.append("second told"))
    assert stale.done()  # superseded before it ran: the newer compaction does its work
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second, compaction), 5)
    assert [x for x in order if not x.endswith("told")] == ["first", "second", "compaction"]  # on the thread
    assert [x for x in order if x.endswith("told")] == ["first told", "second told"]  # on the loop, in order
    assert order.index("first told") > order.index("first") and order.index("second told") > order.index("second")
    writer.close()


async def test_after_a_failed_write_nothing_later_is_written_and_every_waiter_hears_why() -> None:
    writer, written = DiskWriter(), []

    def full() -> None:
        raise OSError(28, "No space left on device")

    failed = writer.submit(full)
    later = writer.submit(lambda: written.append("later"))
    for future in (failed, later):
        try:
            await asyncio.wait_for(future, 5)
        except OSError as exc:
            assert exc.errno == 28
        else:
            raise AssertionError("a write after a failed one succeeded")
    try:
        await writer.drained()
    except OSError:
        pass
    else:
        raise AssertionError("drained() hid the failure")
    assert written == []
    writer.close()


def test_the_wal_holds_one_height_however_long_the_chain(tmp_path) -> None:
    """What the node does at each commit: compaction leaves the height being decided, or one small record."""
    wal = WriteAheadLog(tmp_path / "consensus.wal")
    proposal = b"p" * 100_000  # a proposal's block bytes
    for height in range(1, 41):
        wal.append_all([WalRecord("signed", height, 0, proposal), WalRecord("signed", height, 0, b"vote")])
        wal.truncate_before(height + 1)  # the block is durable in the block store now
        assert [(r.height, r.payload) for r in wal.read_all()] == [(height, b"vote")]
    assert (tmp_path / "consensus.wal").stat().st_size < 100
    wal.close()
    assert [r.payload for r in WriteAheadLog(tmp_path / "consensus.wal").read_all()] == [b"vote"]


def test_compacting_an_empty_wal_changes_nothing(tmp_path) -> None:
    """A fresh validator block-syncs (and compacts after each batch) before it has signed anything."""
    wal = WriteAheadLog(tmp_path / "consensus.wal")
    wal.truncate_before(129)
    wal.append(WalRecord("signed", 130, 0, b"vote"))
    wal.close()
    assert [r.height for r in WriteAheadLog(tmp_path / "consensus.wal").read_all()] == [130]
