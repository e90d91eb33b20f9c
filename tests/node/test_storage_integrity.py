"""Storage that lost data is refused by name, and a failed write is a named error that changes nothing.

Faults are real, and reproducible as root in a container without a tmpfs or a loop device: a
descriptor pointed at ``/dev/full`` (its next write fails with ENOSPC, as on a full disk), a
directory where a file must go, descriptors used up under a lowered RLIMIT_NOFILE, bytes
overwritten in LevelDB's log, keys deleted from the store, a WAL file deleted or cut.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import resource
import struct
from pathlib import Path
from typing import Any

import plyvel
import pytest

from consensus import (
    Broadcast, CommitCertificate, CommitProof, Ed25519Verifier, Persist, Prepare, Send, Start, WalRecord,
    encode_message,
)
from core import codec
from core.block import Block
from core.errors import DiskFull, StorageError, StoreCorrupt, TooManyOpenFiles, WalLost
from node.consensus_driver import ConsensusDriver
from node.ledger import Ledger
from node.runtime import Supervisor
from node.stores import BlockStore, Database, SigningMark
from node.sync import BlockSyncer, serve_request
from node.transport import Channel
from node.wal import WriteAheadLog
from tests.node.helpers import CHAIN, HOSPITAL, VALIDATORS, VKEYS, certify, echo_tx, open_ledger
from tests.node.test_consensus_driver import Recorder, ScriptedReplica
from tests.node.test_supervision import TIMING, _ledger


def fill_disk(target: Path) -> None:
    """Point every descriptor this process holds on ``target`` at /dev/full: the next write fails with ENOSPC."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                held = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if held == str(target.resolve()):
                os.dup2(full, int(fd))
    finally:
        os.close(full)


def leveldb_log(db: Path) -> Path:
    """LevelDB's current write-ahead log (``NNNNNN.log``; ``LOG`` is its text log)."""
    return max((p for p in db.iterdir() if p.suffix == ".log"), key=lambda p: p.stat().st_size)


def grow(ledger: Ledger, blocks: int) -> None:
    for _ in range(blocks):
        height = ledger.app.info().height + 1
        ledger.mempool.add(echo_tx(HOSPITAL, height).encode())
        block = ledger.propose(VKEYS[0], 10_000 + height)
        ledger.blocks.commit(block, certify(block))


def _damage(db: Path, *keys: bytes, put: dict[bytes, bytes] | None = None) -> None:
    raw = plyvel.DB(str(db))
    for key in keys:
        raw.delete(key)
    for key, value in (put or {}).items():
        raw.put(key, value)
    raw.close()


def _height(tag: bytes, height: int) -> bytes:
    return BlockStore.PREFIX + tag + struct.pack(">Q", height)


# -- LevelDB: paranoid checks, contiguity, the latest certificate -----------------------------------

def test_a_damaged_leveldb_log_is_refused_by_name_rather_than_silently_dropped(tmp_path: Path) -> None:
    db = tmp_path / "db"
    ledger = open_ledger(db)
    grow(ledger, 40)
    ledger.app.database.close()  # type: ignore[attr-defined]
    log_file = leveldb_log(db)
    data = bytearray(log_file.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = random.Random(7).randbytes(4096)  # 4 KiB of its log, as in the incident
    log_file.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt, match=f"the database at {db} is damaged") as info:
        Database(db)
    assert "Restore data/db from a backup" in info.value.message


@pytest.mark.parametrize("lose, named", [
    ((_height(b"b", 3),), "block 3 is missing"),
    ((_height(b"c", 4), _height(b"c", 5)), "commit certificates 4-5 are missing"),
])
def test_a_gap_in_the_stored_chain_is_refused_naming_what_is_missing(tmp_path: Path, lose: tuple[bytes, ...],
                                                                   named: str) -> None:
    ledger = open_ledger(tmp_path / "db")
    grow(ledger, 6)
    ledger.app.database.close()  # type: ignore[attr-defined]
    _damage(tmp_path / "db", *lose)
    reopened = open_ledger(tmp_path / "db")
    with pytest.raises(StoreCorrupt, match="lost committed data") as info:
        reopened.app.check_stored_chain()  # type: ignore[attr-defined]
    assert named in info.value.message


def test_a_state_ahead_of_its_blocks_is_refused(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "db")
    grow(ledger, 5)
    ledger.app.database.close()  # type: ignore[attr-defined]
    _damage(tmp_path / "db", _height(b"b", 5), _height(b"c", 5), put={BlockStore.PREFIX + b"last": struct.pack(">Q", 4)})
    with pytest.raises(StoreCorrupt, match="the state is at height 5 but the blocks end at height 4"):
        open_ledger(tmp_path / "db").app.check_stored_chain()  # type: ignore[attr-defined]


def test_a_latest_certificate_that_does_not_verify_is_refused(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "db")
    grow(ledger, 3)
    head = Block.decode(ledger.app.stored_block(3).raw, max_size=1 << 20)
    ledger.app.database.close()  # type: ignore[attr-defined]
    _damage(tmp_path / "db", put={_height(b"c", 3): certify(head, VALIDATORS[:2])})  # one signature short
    with pytest.raises(StoreCorrupt, match="height 3 does not verify against the validators of that height"):
        open_ledger(tmp_path / "db").app.check_stored_chain()  # type: ignore[attr-defined]


def test_each_start_checks_what_was_written_since_the_last(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "db")
    grow(ledger, 4)
    ledger.app.check_stored_chain()  # type: ignore[attr-defined]
    assert ledger.app.blocks.checked_height == 4  # type: ignore[attr-defined]
    grow(ledger, 3)
    ledger.app.database.close()  # type: ignore[attr-defined]
    _damage(tmp_path / "db", _height(b"b", 6))
    with pytest.raises(StoreCorrupt, match="block 6 is missing"):
        open_ledger(tmp_path / "db").app.check_stored_chain()  # type: ignore[attr-defined]


def test_a_block_commit_on_a_full_disk_is_disk_full_and_commits_nothing(tmp_path: Path) -> None:
    db = tmp_path / "db"
    ledger = open_ledger(db)
    fill_disk(leveldb_log(db))
    with pytest.raises(DiskFull, match=f"committing block 1 to {db}: .*No space left on device; free space"):
        grow(ledger, 1)
    ledger.app.database.close()  # type: ignore[attr-defined]
    assert open_ledger(db).app.info().height == 0


# -- the consensus WAL: named write errors ----------------------------------------------------------

def records(heights: list[tuple[int, int]]) -> list[WalRecord]:
    return [WalRecord("signed", h, v, bytes([i]) * 8) for i, (h, v) in enumerate(heights)]


def test_wal_compaction_into_a_full_disk_is_disk_full_and_keeps_the_log(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    wal = WriteAheadLog(path)
    wal.append_all(records([(1, 0), (2, 0), (3, 0)]))
    (tmp_path / "consensus.wal.tmp").symlink_to("/dev/full")
    with pytest.raises(DiskFull, match="compacting the consensus WAL into .*consensus.wal.tmp: No space left"):
        wal.truncate_before(3)
    assert WriteAheadLog(path).read_all() == records([(1, 0), (2, 0), (3, 0)])


def test_a_directory_in_the_way_of_wal_compaction_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "consensus.wal")
    wal.append_all(records([(1, 0), (2, 0)]))
    (tmp_path / "consensus.wal.tmp").mkdir()
    with pytest.raises(StorageError, match="consensus.wal.tmp: Is a directory"):
        wal.truncate_before(2)


def test_running_out_of_descriptors_at_wal_compaction_is_too_many_open_files(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "consensus.wal")
    wal.append_all(records([(1, 0), (2, 0)]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 4, hard))
        with pytest.raises(OSError) as spent:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        assert spent.value.errno == errno.EMFILE
        with pytest.raises(TooManyOpenFiles, match="compacting the consensus WAL.*Too many open files; raise the "
                                                   "open-file limit"):
            wal.truncate_before(2)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert WriteAheadLog(tmp_path / "consensus.wal").read_all() == records([(1, 0), (2, 0)])


async def test_a_vote_whose_wal_append_hits_a_full_disk_is_never_sent(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    wal = WriteAheadLog(path)
    fill_disk(path)
    vote = Prepare(1, 0, b"\x07" * 32, b"\x01" * 32, b"\x02" * 64)
    outbox = Recorder()
    supervisor = Supervisor(asyncio.Event())
    driver = ConsensusDriver(ScriptedReplica({Start: [Persist(WalRecord("signed", 1, 0, b"v")), Broadcast(vote)]}),
                             _ledger(), wal, outbox, b"\x01" * 32, TIMING,  # type: ignore[arg-type]
                             on_evidence=lambda e: None, spawn=supervisor.spawn)
    await driver.start(Start(1, None, ()))
    await asyncio.wait_for(supervisor.stop.wait(), 10)
    assert supervisor.failure is not None and isinstance(supervisor.failure.error, DiskFull)
    assert "appending to the consensus WAL" in supervisor.failure.error.message
    assert outbox.log == []
    await driver.stop()


async def test_a_full_disk_during_block_sync_stops_the_validator_and_blames_no_peer(tmp_path: Path) -> None:
    source, fresh = open_ledger(tmp_path / "src"), open_ledger(tmp_path / "dst")
    grow(source, 3)
    supervisor = Supervisor(asyncio.Event())
    blamed: list[str] = []
    syncer: BlockSyncer

    def send(peer: bytes, request: bytes) -> bool:
        reply = serve_request(source.app, codec.decode(request))
        assert reply is not None
        asyncio.get_running_loop().call_soon(syncer.on_response, peer, codec.decode(reply))
        return True

    syncer = BlockSyncer(fresh, chain_id=CHAIN, verifier=Ed25519Verifier(CHAIN), send=send,
                         peers=lambda: [VKEYS[1]], on_synced=lambda h, c: None,
                         on_misbehaviour=lambda peer, what: blamed.append(what), spawn=supervisor.spawn)
    fill_disk(leveldb_log(tmp_path / "dst"))
    syncer.request_sync(3, VKEYS[1])
    await asyncio.wait_for(supervisor.stop.wait(), 10)
    assert supervisor.failure is not None and supervisor.failure.task == "block-sync"
    assert isinstance(supervisor.failure.error, DiskFull) and blamed == []


# -- the consensus WAL: loss is detected against the signing mark -----------------------------------

class CountingMark(SigningMark):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.saves = 0

    def save(self, slot: tuple[int, int]) -> None:
        self.saves += 1
        super().save(slot)


@pytest.fixture
def mark(tmp_path: Path) -> Any:
    database = Database(tmp_path / "db")
    yield CountingMark(database)
    database.close()


SIGNED = [(1, 0), (1, 0), (2, 0), (2, 0), (2, 1)]


def _signed(path: Path, mark: SigningMark) -> int:
    """Write SIGNED one append at a time; the size of the log before the last slot's record."""
    wal = WriteAheadLog(path, mark)
    for record in records(SIGNED)[:-1]:
        wal.append(record)
    before_last_slot = path.stat().st_size
    wal.append(records(SIGNED)[-1])
    wal.close()
    return before_last_slot


def test_the_mark_moves_once_per_new_slot_not_per_record(tmp_path: Path, mark: CountingMark) -> None:
    _signed(tmp_path / "consensus.wal", mark)
    assert mark.load() == (2, 1) and mark.saves == 3  # (1, 0), (2, 0), (2, 1): one synced write per slot


@pytest.mark.parametrize("loss, held", [("deleted", "is missing"), ("emptied", "is empty"),
                                        ("cut before its last slot", "ends at height 2 view 0")])
def test_a_lost_wal_is_refused_without_the_flag_and_changes_nothing(tmp_path: Path, mark: CountingMark,
                                                                   loss: str, held: str) -> None:
    path = tmp_path / "consensus.wal"
    boundary = _signed(path, mark)
    if loss == "deleted":
        path.unlink()
    else:
        os.truncate(path, 0 if loss == "emptied" else boundary)
    with pytest.raises(WalLost, match=f"{held}, but this validator has signed at height 2 view 1") as info:
        WriteAheadLog(path, mark)
    assert "--accept-wal-loss" in info.value.message
    assert path.exists() == (loss != "deleted") and mark.load() == (2, 1)


def test_an_accepted_loss_opens_once_and_mutes_the_heights_it_covered(tmp_path: Path, mark: CountingMark) -> None:
    path = tmp_path / "consensus.wal"
    _signed(path, mark)
    path.unlink()
    wal = WriteAheadLog(path, mark, accept_loss=True)
    assert wal.lost_through == 2 and wal.read_all() == []
    wal.close()
    assert WriteAheadLog(path, mark).lost_through == 0  # acknowledged: the next start needs no flag


def test_a_failed_append_leaves_a_log_that_reopens(tmp_path: Path, mark: CountingMark) -> None:
    """The mark moves only after the records are durable, so a crash or a full disk mid-append is a torn
    tail at worst, never a "lost" WAL that would keep a crash-only validator from restarting."""
    path = tmp_path / "consensus.wal"
    wal = WriteAheadLog(path, mark)
    wal.append_all(records([(1, 0), (2, 0)]))
    fill_disk(path)
    with pytest.raises(DiskFull):
        wal.append(WalRecord("signed", 3, 0, b"never sent"))
    assert mark.load() == (2, 0)
    assert WriteAheadLog(path, mark).read_all() == records([(1, 0), (2, 0)])


def test_compaction_keeps_the_highest_height_so_the_mark_still_matches(tmp_path: Path, mark: CountingMark) -> None:
    path = tmp_path / "consensus.wal"
    wal = WriteAheadLog(path, mark)
    wal.append_all(records([(1, 0), (2, 0), (3, 0), (3, 1)]))
    wal.truncate_before(64)  # block sync carried the node past every height it had signed at
    assert [(r.height, r.view) for r in wal.read_all()] == [(3, 1)]  # one record of the top slot is enough
    wal.close()
    assert len(WriteAheadLog(path, mark).read_all()) == 1


async def test_after_an_accepted_loss_nothing_signed_up_to_the_lost_height_is_sent() -> None:
    low, high = (Prepare(h, 0, b"\x07" * 32, VKEYS[0], b"\x02" * 64) for h in (2, 3))
    proof = CommitProof(CommitCertificate(2, 0, b"\x07" * 32, ()), VKEYS[0])
    outbox = Recorder()
    replica = ScriptedReplica({Start: [Broadcast(low), Send(VKEYS[1], low), Send(VKEYS[1], proof), Broadcast(high)]})
    driver = ConsensusDriver(replica, _ledger(), Recorder(), outbox, b"\x01" * 32, TIMING,  # type: ignore[arg-type]
                             on_evidence=lambda e: None, mute_through=2)
    await driver.start(Start(3, None, ()))
    await asyncio.wait_for(replica.fed.wait(), 5)
    await asyncio.wait_for(driver.settled(), 5)
    await driver.stop()
    assert outbox.log == [("send", encode_message(proof)), ("broadcast", Channel.CONSENSUS)]  # then height 3
