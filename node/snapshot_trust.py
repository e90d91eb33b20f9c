"""What a joining validator trusts a snapshot's header on: genesis's validator set, and each later set
only through the certified header before it.

A snapshot at S is certified by block S + 1, signed by the set deciding
S + 1, which after validator-set changes is not genesis's. The joiner knows
genesis alone, so the serving peer's listing carries its schedule (every
set and the first height it decides, ``core.snapshot.SnapshotList``), and
the joiner follows it the way the light client does (``accept_change``):
the first entry must be genesis's set; each later one, starting at T <= S + 1,
is accepted only when block T - 1 is certified by the set already trusted
for T - 1, names that set as its ``validators_hash`` and the new one as its
``next_validators_hash``. Blocks S and S + 1 are then held to the sets so
followed. Each set's quorum is trusted for the heights before the next set
it certified, as a light client trusts it; a peer whose schedule or blocks
do not check out is to blame (:class:`core.errors.PeerMisbehaved`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus import CommitCertificate, KeyedVerifier, Verifier
from core.block import Block
from core.errors import PeerMisbehaved
from core.validators import ScheduledSet, ValidatorSet, set_at
from node.sync import SyncedItem, decode_batch


@dataclass(frozen=True)
class ChainTrust:
    """What a joiner checks headers against: the genesis chain and validator set."""

    chain_id: str
    genesis: ValidatorSet
    verifier: Verifier
    """Taught the key types of each set once it is followed, when it is a :class:`KeyedVerifier`."""
    max_block_bytes: int

    def learn(self, members: ValidatorSet) -> None:
        if isinstance(self.verifier, KeyedVerifier):
            self.verifier.learn(members.verifying_keys())


def changes_to_follow(trust: ChainTrust, schedule: tuple[ScheduledSet, ...], through: int) -> list[ScheduledSet]:
    """The changes of a served ``schedule`` that decide heights up to ``through`` (the ones whose headers
    must be fetched); raises unless the schedule starts with genesis's set."""
    if not schedule or schedule[0] != ScheduledSet(1, trust.genesis):
        raise PeerMisbehaved("the served validator-set schedule does not start with genesis's set")
    trust.learn(trust.genesis)
    return [item for item in schedule[1:] if item.start <= through]


def _held_to(item: SyncedItem, trusted: list[ScheduledSet], trust: ChainTrust) -> None:
    """``item``'s certificate is a quorum of the set trusted for its height, and its header names that set."""
    header = item.block.header
    members = set_at(trusted, header.height)
    if header.chain_id != trust.chain_id:
        raise PeerMisbehaved(f"block {header.height} is of chain {header.chain_id!r}, not {trust.chain_id!r}")
    if header.validators_hash != members.hash():
        raise PeerMisbehaved(f"block {header.height} names another validator set than the schedule followed so far")
    item.certificate.verify(trust.chain_id, members.keys, trust.verifier)


def follow_change(payload: Any, change: ScheduledSet, trusted: list[ScheduledSet], trust: ChainTrust) -> None:
    """Append ``change`` to ``trusted`` on the word of block ``change.start - 1`` (a ``get_blocks``
    answer), certified by the set ``trusted`` gives that height; raises on anything that does not check."""
    items = decode_batch(payload, trust.max_block_bytes)
    before = change.start - 1
    if not items or items[0].block.height != before:
        raise PeerMisbehaved(f"asked for block {before}, got heights {[item.block.height for item in items]}")
    _held_to(items[0], trusted, trust)
    if items[0].block.header.next_validators_hash != change.validators.hash():
        raise PeerMisbehaved(f"the certified block {before} names another next validator set than the schedule's "
                             f"for height {change.start}")
    trusted.append(change)
    trust.learn(change.validators)


def verify_snapshot_header(payload: Any, height: int, trusted: list[ScheduledSet], trust: ChainTrust
                           ) -> tuple[Block, bytes, bytes, bytes]:
    """Blocks ``height`` and ``height + 1`` of a ``get_blocks`` answer, each held to its height's set in the
    ``trusted`` schedule: block ``height``, its bytes, its certificate (the next block's ``last_commit``) and
    the certified root of the state after it (the next block's ``state_hash``)."""
    items = decode_batch(payload, trust.max_block_bytes)
    if len(items) < 2 or items[0].block.height != height or items[1].block.height != height + 1:
        raise PeerMisbehaved(f"asked for blocks {height} and {height + 1}, got heights "
                             f"{[item.block.height for item in items]}")
    base, following = items
    _held_to(following, trusted, trust)
    header = following.block.header
    if header.prev_block_hash != base.block.hash:
        raise PeerMisbehaved(f"block {height + 1} does not follow the block {height} it came with")
    if base.block.header.validators_hash != set_at(trusted, height).hash():
        raise PeerMisbehaved(f"block {height} names another validator set than the schedule followed")
    last_commit = CommitCertificate.decode(following.block.last_commit)
    if last_commit.height != height or last_commit.block_hash != base.block.hash:
        raise PeerMisbehaved(f"block {height + 1}'s last commit does not certify block {height}")
    last_commit.verify(trust.chain_id, set_at(trusted, height).keys, trust.verifier)
    return base.block, base.raw_block, following.block.last_commit, header.state_hash
