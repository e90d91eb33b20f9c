"""``fbci node reset``: CometBFT's ``unsafe-reset-all`` for a home, with a confirmation and the node's lock.

It removes everything under the home's data directory (the LevelDB stores
with blocks, state and the signing mark, and the consensus WAL) and keeps
the keys, the config and the genesis, so the next ``fbci node start``
begins at height 0 and block-syncs the chain again. It is unsafe in the
same way as CometBFT's: the WAL and the signing mark are what stop a
validator from signing twice for one slot, so resetting one validator of a
live network can make it equivocate. It is meant for testnets, and for a
consortium that restarts its chain from genesis on every validator.

It holds the validator's own database lock while it works
(``node.homelock``): it refuses while a node runs, and no node can start
while it deletes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from core.errors import InvalidInput
from node.homelock import data_dir, node_lock
from cli.commands import _print


def _contents(data: Path) -> list[Path]:
    return sorted(data.iterdir()) if data.is_dir() else []


def reset(home: Path, *, confirm: Callable[[str], bool]) -> list[Path]:
    """Remove what is under the data directory, after ``confirm(question)``; returns what was removed."""
    with node_lock(home) as data:
        doomed = _contents(data)
        if not doomed:
            return []
        listing = ", ".join(p.name for p in doomed)
        if not confirm(f"remove {listing} from {data} (blocks, state, WAL; keys, config and genesis stay)?"):
            raise InvalidInput("reset not confirmed; nothing was removed")
        for path in doomed:  # the database last: its LOCK is what keeps a node from starting meanwhile
            if path.name == "db":
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if (data / "db").exists():
            shutil.rmtree(data / "db")
    return doomed


def ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to ask for confirmation on; pass --yes to reset without asking")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def node_reset(args: argparse.Namespace) -> int:
    home = Path(args.home)
    removed = reset(home, confirm=(lambda question: True) if args.yes else ask)
    if not removed:
        _print(f"{data_dir(home)} holds no chain data; nothing to reset")
    else:
        _print(f"removed {', '.join(p.name for p in removed)} from {data_dir(home)}; "
               f"'fbci node start --home {home}' begins again at height 0")
    return 0
