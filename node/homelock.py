"""Whether a validator runs on a home, asked the way the validator itself would find out: its database lock.

A running validator holds LevelDB's lock on ``DATA/db/LOCK`` (an ``fcntl``
record lock, released by the kernel when the process dies, so a stale file
after a crash does not count). Tools that change a home's files under it
(``fbci node reset``, ``fbci testnet --fresh``, ``fbci demo``) take the same
lock first: they refuse while a node runs, and no node starts while they work.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import InvalidInput, NodeRunning
from genesis.home import HomePaths, load_config


def data_dir(home: Path) -> Path:
    """The home's data directory, from its config (``data_dir``, relative to the home)."""
    if not HomePaths(home).config.is_file():
        raise InvalidInput(f"{home} is not a node home: {HomePaths(home).config} does not exist")
    return home / load_config(home).data_dir


@contextmanager
def node_lock(home: Path) -> Iterator[Path]:
    """Hold the lock a validator takes on start, yielding the data directory; :class:`NodeRunning` when a
    validator holds it now."""
    data = data_dir(home)
    lock = data / "db" / "LOCK"
    if not lock.exists():
        yield data
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise NodeRunning(f"a validator is running on {home} (it holds {lock}); stop it first") from None
        yield data
    finally:
        os.close(fd)
