"""State sync of a chain whose validator set changed before the snapshot: the joiner trusts genesis's set
alone, follows each change on the certified header before it, and bans a peer serving a forged schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core import codec
from core.snapshot import SnapshotList
from core.validators import ScheduledSet, ValidatorSet
from node.ledger import Ledger
from node.membership import PeerSet
from node.snapshot_trust import ChainTrust
from node.sync import BlockSyncer, serve_request
from node.transport import PeerInfo
from tests.governance.test_validator_set import CHAIN, NODES, add_params, commit, decide, entry, genesis_set, open_chain
from tests.node.test_statesync import Net

Forgery = Callable[[tuple[ScheduledSet, ...]], tuple[ScheduledSet, ...]]
FAKE = ValidatorSet(tuple(entry(i) for i in range(4, 8)))


class _Forging:
    """A peer's application that serves its snapshots with a doctored validator-set schedule."""

    def __init__(self, app: Any, forge: Forgery) -> None:
        self._app = app
        self.forge = forge

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def list_snapshots(self) -> SnapshotList:
        listed: SnapshotList = self._app.list_snapshots()
        return replace(listed, schedule=self.forge(listed.schedule))


@contextmanager
def _changed_chain(tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    """Heights 1-3 add node4 (deciding from 5), 4-6 remove node0 (from 8), then empty blocks to 11: the
    snapshot of height 10 is certified by nodes 1-4, none of whom but three are genesis's."""
    source = open_chain(tmp_path / "source", snapshot_interval=5)
    decide(source, "validator.add", add_params(4))
    decide(source, "validator.remove", {"public_keys": [NODES[0].public_key.raw]})
    while source.app.height < 11:
        commit(source)
    joiner = open_chain(tmp_path / "joiner", snapshot_interval=5)
    try:
        yield source, joiner
    finally:
        for ledger in (source, joiner):
            ledger.app.database.close()  # type: ignore[attr-defined]


def _join(joiner: Ledger, net: Net, peers: list[bytes], banned: list[tuple[bytes, str]]) -> Any:
    endpoint = net.endpoint(b"joiner", joiner)
    trust = ChainTrust(CHAIN, genesis_set(), joiner.app.verifier, 1 << 20)  # type: ignore[attr-defined]
    return asyncio.run(endpoint.join(trust, lambda: peers, len(peers), lambda peer, why: banned.append((peer, why))))


def test_the_source_chain_changed_its_set_before_the_snapshot(tmp_path: Path) -> None:
    with _changed_chain(tmp_path) as (source, _):
        starts = [item.start for item in source.app.list_snapshots().schedule]
        assert starts == [1, 5, 8]
        assert source.app.validator_set(11).keys == tuple(NODES[i].public_key.raw for i in range(1, 5))


def test_a_joiner_follows_the_changes_from_genesis_and_block_syncs_on_with_the_new_set(tmp_path: Path) -> None:
    with _changed_chain(tmp_path) as (source, joiner):
        net = Net()
        net.endpoint(b"honest", source)
        peer_set = PeerSet(joiner.app, NODES[1].public_key.raw, [])  # built at start-up, from genesis's state
        told: list[list[PeerInfo]] = []
        peer_set.on_change = told.append
        banned: list[tuple[bytes, str]] = []
        joined = _join(joiner, net, [b"honest"], banned)
        assert joined is not None and joined.snapshot.height == 10 and not banned
        app = joiner.app
        peer_set.follow()
        assert [p.name for p in told[-1]] == ["node2", "node3", "node4"]  # node0 gone, node4 in
        assert peer_set.key(NODES[4].public_key.raw) is not None and peer_set.key(NODES[0].public_key.raw) is None
        assert app.state.state_hash == source.app.state.tree_root(10).hash  # type: ignore[attr-defined]
        assert app.validator_set(11) == source.app.validator_set(11)  # read again from the restored state
        for _ in range(2):
            commit(source)
        syncer = BlockSyncer(joiner, chain_id=CHAIN, verifier=app.verifier, send=lambda p, d: True,
                             peers=lambda: [], on_synced=lambda h, c: None, on_misbehaviour=lambda p, what: None)
        assert syncer.apply_batch(codec.decode(serve_request(source.app, ["get_blocks", 11, 10]))) == 3
        assert app.info() == source.app.info()


FORGERIES: dict[str, tuple[Forgery, str]] = {
    "an extra fake set": (lambda s: (s[0], ScheduledSet(3, FAKE), *s[1:]), "block 2 names another next"),
    "the changes omitted": (lambda s: s[:1], "block 11 names another validator set"),
    "a change one height late": (lambda s: (s[0], replace(s[1], start=6), s[2]), "block 5 names another"),
    "another genesis": (lambda s: (ScheduledSet(1, FAKE), *s[1:]), "does not start with genesis"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_peer_serving_a_forged_schedule_is_banned_and_another_peer_used(tmp_path: Path, forgery: str) -> None:
    forge, why = FORGERIES[forgery]
    with _changed_chain(tmp_path) as (source, joiner):
        net = Net()
        net.endpoint(b"forger", source, app=_Forging(source.app, forge))
        net.endpoint(b"honest", source)
        banned: list[tuple[bytes, str]] = []
        joined = _join(joiner, net, [b"forger", b"honest"], banned)
        assert [peer for peer, _ in banned] == [b"forger"] and why in banned[0][1], banned
        assert joined is not None and joined.snapshot.height == 10 and joined.hint == b"honest"
        assert joiner.app.info().height == 10
