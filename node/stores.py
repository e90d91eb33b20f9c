"""The validator's three stores on one LevelDB database, each behind its own class.

Crash-safety rule: after a block commits, the node writes (1) the block and
its commit certificate to :class:`BlockStore`, (2) receipts to
:class:`TxIndex`, (3) the state writes, new height and new state hash to
:class:`node.state_store.StateStore`. :func:`commit_block` puts all three into one fsynced
WriteBatch, so they land together or not at all, with one fsync per block
(fsync blocks the event loop for milliseconds). ``StateStore.height`` is the
"applied" marker: on restart a node whose block store is ahead of its state
store (written by the separate per-store methods, which tests use to cut a
commit short) re-executes the missing blocks (execution is deterministic and
the index writes are idempotent), so a ``kill -9`` anywhere loses nothing and
applies nothing twice.

The state hash is the root of a Merkle crit-bit trie over the whole state
(:mod:`core.smt`), so every header commits to every key and a client can check
one key, an absent key or a complete range against it (:mod:`core.proofs`).
Its nodes live beside the state under ``smt/``, immutable and addressed by
(version = height, hash): a block writes only the nodes on its written keys'
paths, in the same batch as the state, so a crash leaves tree and state at the
same height. The last :data:`KEEP_VERSIONS` versions stay readable, since the
header at height H commits the state after H - 1, so proofs are served from
the version before the newest; each version records the nodes it replaced
(``smt/stale/``) and they are deleted once no kept version reaches them. With
a genesis ``snapshot_interval`` N, the versions at the last two multiples of N
are kept too, for state sync (:mod:`node.statesync`): a node a snapshot still
reaches moves from ``smt/stale/`` to ``smt/held/<snapshot>`` and is deleted
with that snapshot, when the next-but-one is taken.

Integrity: LevelDB opens with paranoid checks (a damaged log is refused, not
skipped), every start scans the blocks and certificates written since the
previous start for gaps (:meth:`BlockStore.gaps`), and every failed write
leaves as a named error (``disk_full``, ``too_many_open_files``,
``store_corrupt``, else ``storage_error``) saying what was being written.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plyvel

from core.api import Receipt
from core.errors import DiskFull, NotFound, StorageError, StoreCorrupt, TooManyOpenFiles, storage_error

if TYPE_CHECKING:
    from node.state_store import PendingState, StateStore


def _prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key that starts with ``prefix`` (None: there is none)."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1]) if trimmed else None


def _height_key(prefix: bytes, height: int) -> bytes:
    return prefix + struct.pack(">Q", height)


RESTORE_HINT = ("Restore data/db from a backup, or move data/db aside (keep data/consensus.wal) and start again: "
                "block sync then fetches the chain from the other validators, verifying every certificate")


def _missing_spans(present: Iterable[int], first: int, last: int) -> list[tuple[int, int]]:
    """The runs of heights in ``first..last`` that the ascending ``present`` lacks."""
    spans: list[tuple[int, int]] = []
    expected = first
    for height in [*present, last + 1]:
        if height > expected:
            spans.append((expected, height - 1))
        expected = max(expected, height + 1)
    return spans


def _missing(noun: str, span: tuple[int, int]) -> str:
    first, last = span
    return f"{noun} {first} is missing" if first == last else f"{noun}s {first}-{last} are missing"


def _leveldb_text(exc: plyvel.Error) -> str:
    raw = exc.args[0] if exc.args else exc
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _leveldb_error(exc: plyvel.Error, doing: str) -> StorageError:
    """LevelDB reports a full disk or a spent descriptor limit only as text (``strerror``); name it."""
    text = _leveldb_text(exc)
    if isinstance(exc, plyvel.CorruptionError):
        return StoreCorrupt(f"{doing}: LevelDB found its files damaged ({text})")
    code = next((c for c in (*DiskFull.errnos, *TooManyOpenFiles.errnos) if os.strerror(c) in text), None)
    return storage_error(code, doing, text)


@contextmanager
def _leveldb(doing: str) -> Iterator[None]:
    """Around every LevelDB write (and the start-up scan): a failure leaves as a named
    :class:`StorageError`, never as a plyvel one."""
    try:
        yield
    except plyvel.Error as exc:
        raise _leveldb_error(exc, doing) from None


class Database:
    """The one LevelDB handle a validator holds; closed exactly once.

    Opened with ``paranoid_checks``: without them LevelDB skips a damaged record of its log on
    recovery and opens anyway, and a validator silently lost committed blocks that way.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        try:
            self.db = plyvel.DB(str(path), create_if_missing=True, paranoid_checks=True)
        except plyvel.Error as exc:
            text = _leveldb_text(exc)
            if isinstance(exc, plyvel.IOError) and "lock " in text and "LOCK" in text:
                raise StorageError(f"another validator process already holds this home's database at {path} "
                                   f"(LevelDB's lock {path / 'LOCK'}); stop it before starting another") from None
            if isinstance(exc, plyvel.CorruptionError):
                raise StoreCorrupt(f"the database at {path} is damaged ({text}); LevelDB refuses to open it rather "
                                   f"than drop what it cannot read. {RESTORE_HINT}") from None
            raise _leveldb_error(exc, f"cannot open the database at {path}") from None

    def sync(self) -> None:
        """Make every write so far durable: one synced write flushes LevelDB's sequential log."""
        with _leveldb("making the stored blocks durable"):
            self.db.put(b"meta/synced", b"", sync=True)

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()


class BlockStore:
    """Committed blocks by height and by hash, each with its commit certificate."""

    def __init__(self, database: Database) -> None:
        self._db = database.db.prefixed_db(self.PREFIX)

    PREFIX = b"blk/"

    def save(self, height: int, block_hash: bytes, block: bytes, certificate: bytes) -> None:
        with _leveldb(f"storing block {height}"), self._db.write_batch(sync=True) as batch:
            self.put(batch, height, block_hash, block, certificate, prefix=b"")

    def put(self, batch: Any, height: int, block_hash: bytes, block: bytes, certificate: bytes, *,
            prefix: bytes = PREFIX) -> None:
        """Add the block's writes to ``batch`` (a root-database batch unless ``prefix`` is empty)."""
        batch.put(prefix + _height_key(b"b", height), block)
        batch.put(prefix + _height_key(b"c", height), certificate)
        batch.put(prefix + b"h" + block_hash, struct.pack(">Q", height))
        batch.put(prefix + b"last", struct.pack(">Q", height))

    @property
    def last_height(self) -> int:
        raw = self._db.get(b"last")
        return 0 if raw is None else struct.unpack(">Q", raw)[0]

    def block(self, height: int) -> bytes:
        raw = self._db.get(_height_key(b"b", height))
        if raw is None:
            raise NotFound(f"no block at height {height}")
        return raw

    def certificate(self, height: int) -> bytes:
        raw = self._db.get(_height_key(b"c", height))
        if raw is None:
            raise NotFound(f"no commit certificate at height {height}")
        return raw

    def height_of(self, block_hash: bytes) -> int:
        raw = self._db.get(b"h" + block_hash)
        if raw is None:
            raise NotFound(f"no block with hash {block_hash.hex()}")
        return struct.unpack(">Q", raw)[0]

    # -- start-up integrity -----------------------------------------------------------------

    @property
    def checked_height(self) -> int:
        """Up to where a previous start found the store contiguous (0: never checked)."""
        raw = self._db.get(b"meta/checked")
        return 0 if raw is None else struct.unpack(">Q", raw)[0]

    def mark_checked(self, height: int) -> None:
        """Written after the start-up check, when LevelDB has already folded its log into checksummed
        tables: below this height a damaged record is a read error, not a silent drop, so the next
        start only scans what was written since. Not synced: a lost mark only means a longer scan."""
        with _leveldb("recording the checked height"):
            self._db.put(b"meta/checked", struct.pack(">Q", height))

    def put_base(self, batch: Any, height: int) -> None:
        """A store restored from a snapshot starts at ``height``: the gap scan begins above it."""
        batch.put(self.PREFIX + b"meta/checked", struct.pack(">Q", height))

    def gaps(self) -> list[str]:
        """What blocks and certificates from the checked height up to ``last_height`` lack, one line each."""
        last, first = self.last_height, self.checked_height + 1
        problems: list[str] = []
        if first - 1 > last:
            problems.append(_missing("block", (last + 1, first - 1)) + " (an earlier start found them stored)")
        for tag, noun in ((b"b", "block"), (b"c", "commit certificate")):
            with _leveldb(f"scanning the stored {noun}s"):
                keys = self._db.iterator(start=_height_key(tag, first), stop=_height_key(tag, last + 1),
                                         include_value=False)
                spans = _missing_spans((struct.unpack(">Q", key[1:])[0] for key in keys), first, last)
            problems += [_missing(noun, span) for span in spans]
        return problems


class TxIndex:
    """Transaction hash → receipt (height, position, outcome)."""

    PREFIX = b"txi/"

    def __init__(self, database: Database) -> None:
        self._db = database.db.prefixed_db(self.PREFIX)

    def save(self, receipts: dict[bytes, Receipt]) -> None:
        with _leveldb("storing receipts"), self._db.write_batch(sync=True) as batch:
            self.put(batch, receipts, prefix=b"")

    def put(self, batch: Any, receipts: dict[bytes, Receipt], *, prefix: bytes = PREFIX) -> None:
        for tx_hash, receipt in receipts.items():
            batch.put(prefix + tx_hash, receipt.encode())

    def get(self, tx_hash: bytes) -> Receipt:
        raw = self._db.get(tx_hash)
        if raw is None:
            raise NotFound(f"no committed transaction with hash {tx_hash.hex()}")
        return Receipt.decode(raw)


def commit_block(database: Database, blocks: BlockStore | None, block: tuple[int, bytes, bytes, bytes] | None,
                 tx_index: TxIndex, receipts: dict[bytes, Receipt], state: StateStore, height: int,
                 pending: PendingState, *, durable: bool = True) -> bytes:
    """Block (when given: height, hash, bytes, certificate), receipts and state in one atomic batch.

    ``durable``: fsync before returning. LevelDB's log is sequential, so one
    synced batch also makes every batch written before it durable; block sync
    uses that to pay one fsync per batch of blocks. A crash can then lose only
    unsynced *synced-from-peers* blocks, which are fetched again on restart.
    """
    with _leveldb(f"committing block {height} to {database.path}"), \
            database.db.write_batch(sync=durable, transaction=True) as batch:
        if blocks is not None and block is not None:
            blocks.put(batch, *block)
        tx_index.put(batch, receipts)
        return state.put(batch, height, pending)


class SigningMark:
    """The highest consensus slot (height, view) this validator has signed at: the WAL's witness.

    Kept in LevelDB beside the chain, not beside the WAL, so that deleting or cutting the WAL file
    cannot also erase the record that it held votes; ``node/wal.py`` compares the two on start.
    """

    _KEY = b"meta/signed_slot"

    def __init__(self, database: Database) -> None:
        self._root = database.db

    def load(self) -> tuple[int, int] | None:
        raw = self._root.get(self._KEY)
        if raw is None:
            return None
        height, view = struct.unpack(">QQ", raw)
        return height, view

    def save(self, slot: tuple[int, int]) -> None:
        """Durable when it returns: the vote it covers may be sent right after."""
        with _leveldb("recording the highest slot this validator signed at"):
            self._root.put(self._KEY, struct.pack(">QQ", *slot), sync=True)
