"""State sync in one process: the message codecs, the chunk scheduler's bans, and a join end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import Ed25519Verifier
from core import codec
from core.api import ACCOUNT, AccountGetParams
from core.crypto import KeyType
from core.errors import BadStateSyncMessage, StateSyncFailed
from core.proofs import ProvenAnswer
from core.snapshot import (
    MAX_SETS, ChunkReply, ChunkRequest, ListSnapshots, SnapshotInfo, SnapshotList, decode_message, make_chunk,
)
from core.validators import ScheduledSet, Validator, ValidatorSet
from node.ledger import Ledger
from node.snapshot_trust import ChainTrust
from node.statesync import Bans, ChunkScheduler, StateSyncEndpoint, Timing
from node.stores import Database
from node.state_store import StateStore
from node.sync import BlockSyncer, serve_request
from node.validator_set import bare_set
from tests.node.helpers import CHAIN, HOSPITAL, VKEYS, open_ledger
from tests.node.test_chain import grow

KEYS = st.binary(max_size=12)
SNAPSHOT = st.builds(lambda h, root, keys, cut: SnapshotInfo(h, root, keys, (b"", *sorted(set(cut) - {b""}))),
                     st.integers(1, 2 ** 40), st.binary(min_size=32, max_size=32), st.integers(0, 2 ** 40),
                     st.lists(KEYS, max_size=8))
VALIDATOR = st.builds(Validator, st.binary(min_size=32, max_size=32), st.text(max_size=6), st.text(max_size=6),
                      st.sampled_from([k.value for k in KeyType]), st.binary(max_size=8))
SETS = st.lists(VALIDATOR, min_size=1, max_size=4, unique_by=lambda v: v.public_key).map(
    lambda vs: ValidatorSet(tuple(vs)))
SCHEDULE = st.builds(lambda gaps, sets: tuple(ScheduledSet(1 + sum(gaps[:i]), s) for i, s in enumerate(sets)),
                     st.lists(st.integers(1, 2 ** 20), min_size=8, max_size=8), st.lists(SETS, min_size=1, max_size=4))
MESSAGES = st.one_of(
    st.just(ListSnapshots()),
    st.builds(SnapshotList, st.lists(SNAPSHOT, max_size=4).map(tuple), SCHEDULE),
    st.builds(ChunkRequest, st.integers(0, 2 ** 40), KEYS, st.none() | KEYS),
    st.builds(ChunkReply, st.integers(0, 2 ** 40), KEYS, st.none() | KEYS, st.none() | st.binary(max_size=64)),
)
JUNK = st.recursive(st.none() | st.booleans() | st.integers() | st.binary(max_size=8) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=5), max_leaves=12)


@given(MESSAGES)
@settings(max_examples=200, deadline=None)
def test_every_message_decodes_to_itself(message) -> None:
    assert decode_message(codec.decode(message.encode())) == message


@given(st.sampled_from(["list_snapshots", "snapshots", "get_chunk", "chunk"]), st.lists(JUNK, max_size=5))
@settings(max_examples=300, deadline=None)
def test_a_malformed_message_is_refused_by_name_and_never_crashes(tag, rest) -> None:
    try:
        decoded = decode_message([tag, *rest])
    except BadStateSyncMessage:
        return
    assert decoded is not None and decode_message(codec.decode(decoded.encode())) == decoded


def _wire_schedule(schedule: tuple[ScheduledSet, ...]) -> list[Any]:
    return codec.decode(SnapshotList((), schedule).encode())[2]


def _break(wire: list[Any], how: str, junk: Any) -> list[Any]:
    """A served schedule spoiled one way: what a strict decoder must refuse."""
    if how == "start_not_genesis":
        return [[wire[0][0] + 1, wire[0][1]], *wire[1:]]
    if how == "not_ascending":
        return [*wire, [wire[-1][0], wire[-1][1]]]
    if how == "set_cut":
        return [*wire[:-1], [wire[-1][0], wire[-1][1][:-1]]]
    if how == "key_twice":
        doubled = codec.decode(wire[-1][1])
        return [*wire[:-1], [wire[-1][0], codec.encode([*doubled, doubled[0]])]]
    if how == "entry_junk":
        return [*wire, junk]
    if how == "too_many":
        return [[1 + i, wire[0][1]] for i in range(MAX_SETS + 1)]
    assert how == "empty"
    return []


@given(SCHEDULE, st.sampled_from(["start_not_genesis", "not_ascending", "set_cut", "key_twice", "entry_junk",
                                  "too_many", "empty"]), JUNK)
@settings(max_examples=200, deadline=None)
def test_a_spoiled_schedule_is_refused_by_name(schedule, how, junk) -> None:
    wire = _wire_schedule(schedule)
    assert decode_message(["snapshots", [], wire]) == SnapshotList((), schedule)
    with pytest.raises(BadStateSyncMessage, match="schedule"):
        decode_message(["snapshots", [], _break(wire, how, junk)])


@given(SCHEDULE, JUNK)
@settings(max_examples=200, deadline=None)
def test_junk_for_a_schedule_is_refused_or_round_trips(schedule, junk) -> None:
    try:
        decoded = decode_message(["snapshots", [], junk])
    except BadStateSyncMessage:
        return
    assert isinstance(decoded, SnapshotList) and decode_message(codec.decode(decoded.encode())) == decoded


def test_messages_of_block_sync_are_not_state_syncs_and_boundaries_must_ascend() -> None:
    assert decode_message(["get_blocks", 1, 2]) is None and decode_message("x") is None
    genesis = _wire_schedule((ScheduledSet(1, bare_set(VKEYS)),))
    bad = ["snapshots", [[5, bytes(32), 3, [b"", b"b", b"a"]]], genesis]
    with pytest.raises(BadStateSyncMessage, match="ascend"):
        decode_message(bad)
    with pytest.raises(BadStateSyncMessage, match="empty key"):
        decode_message(["snapshots", [[5, bytes(32), 3, [b"a"]]], genesis])
    with pytest.raises(BadStateSyncMessage, match="wrong shape"):
        decode_message(["snapshots", [[5, bytes(32), 3, [b""]]]])  # a listing without its schedule


# --- the scheduler ---------------------------------------------------------------------------------

def _store(path: Path, n: int, tweak: bool = False) -> tuple[StateStore, bytes]:
    state = StateStore(Database(path))
    pending = state.begin()
    for i in range(n):
        pending.set(b"k/%05d" % i, b"v%d" % i if not (tweak and i == n // 2) else b"forged")
    return state, state.commit(0, pending)


def _fetcher(stores: dict[bytes, StateStore | None], max_keys: int) -> Any:
    asked: list[bytes] = []

    async def fetch(peer: bytes, request: ChunkRequest) -> ChunkReply | None:
        asked.append(peer)
        store = stores[peer]
        if store is None:
            return None  # silent
        chunk = make_chunk(store.node, store.tree_root(0), request.start, max_keys, request.limit)
        return ChunkReply(request.height, request.start, request.limit, chunk.encode())

    fetch.asked = asked  # type: ignore[attr-defined]
    return fetch


def test_a_bad_chunk_bans_its_sender_and_its_range_goes_to_another_peer(tmp_path) -> None:
    good, root = _store(tmp_path / "good", 300)
    forged, _ = _store(tmp_path / "forged", 300, tweak=True)
    fetch = _fetcher({b"good": good, b"liar": forged}, max_keys=40)
    banned: list[tuple[bytes, str]] = []
    bans = Bans(lambda peer, why: banned.append((peer, why)))
    boundaries = (b"", b"k/00100", b"k/00200")
    items = asyncio.run(ChunkScheduler(0, root, boundaries, [b"liar", b"good"], fetch, bans).run())
    assert items == dict(good.scan(b""))
    assert [peer for peer, _ in banned] == [b"liar"] and "does not verify" in banned[0][1]
    assert fetch.asked.count(b"liar") <= Timing().per_peer  # only the requests out when it was caught


def test_all_peers_bad_or_silent_is_a_clear_error_and_restores_nothing(tmp_path) -> None:
    _, root = _store(tmp_path / "good", 100)
    forged, _ = _store(tmp_path / "forged", 100, tweak=True)
    fetch = _fetcher({b"liar": forged, b"mute": None}, max_keys=500)
    bans = Bans(lambda peer, why: None)
    with pytest.raises(StateSyncFailed, match="no peer is left"):
        asyncio.run(ChunkScheduler(0, root, (b"",), [b"liar", b"mute"], fetch, bans, Timing(max_timeouts=2)).run())
    assert bans.banned == {b"liar"}


# --- a join, in one process ------------------------------------------------------------------------

class Net:
    """Endpoints that deliver each other's SYNC frames on the event loop, as the runtime does."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, tuple[Ledger, StateSyncEndpoint]] = {}

    def endpoint(self, name: bytes, ledger: Ledger, corrupt: bool = False, app: Any = None) -> StateSyncEndpoint:
        app = app or (_Corrupting(ledger.app) if corrupt else ledger.app)
        endpoint = StateSyncEndpoint(app, lambda peer, payload: self._send(name, peer, payload),  # type: ignore[arg-type]
                                     Timing(connect_s=0.5, request_s=2.0))
        self.nodes[name] = (ledger, endpoint)
        return endpoint

    def _send(self, sender: bytes, peer: bytes, payload: bytes) -> bool:
        ledger, endpoint = self.nodes[peer]

        def deliver() -> None:
            message = codec.decode(payload)
            if not endpoint.handle(sender, message):
                reply = serve_request(ledger.app, message)
                if reply is not None:
                    self._send(peer, sender, reply)

        asyncio.get_running_loop().call_soon(deliver)
        return True


class _Corrupting:
    """A peer's application whose chunks have one byte flipped in their proof."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def snapshot_chunk(self, request: ChunkRequest) -> ChunkReply:
        reply = self._app.snapshot_chunk(request)
        chunk = bytearray(reply.chunk)
        chunk[-1] ^= 1
        return replace(reply, chunk=bytes(chunk))


class _Forgetful(_Corrupting):
    """A peer's application that says it no longer keeps the snapshot, the first ``times`` it is asked."""

    def __init__(self, app: Any, times: int) -> None:
        super().__init__(app)
        self.times = times

    def snapshot_chunk(self, request: ChunkRequest) -> ChunkReply:
        if self.times > 0:
            self.times -= 1
            return ChunkReply(request.height, request.start, request.limit, None)
        return self._app.snapshot_chunk(request)


def _trust() -> ChainTrust:
    return ChainTrust(CHAIN, bare_set(VKEYS), Ed25519Verifier(CHAIN), 1 << 20)


@contextmanager
def _chains(tmp_path: Path, interval: int, blocks: int) -> Iterator[tuple[Ledger, Ledger, Net]]:
    """A source chain of ``blocks`` blocks and a genesis-only joiner, closed after the test."""
    source = open_ledger(tmp_path / "source", snapshot_interval=interval)
    grow(source, blocks)
    joiner = open_ledger(tmp_path / "joiner", snapshot_interval=interval)
    try:
        yield source, joiner, Net()
    finally:
        for ledger in (source, joiner):
            ledger.app.database.close()  # type: ignore[attr-defined]


def test_a_joiner_restores_a_certified_snapshot_bans_a_liar_and_block_syncs_the_rest(tmp_path) -> None:
    with _chains(tmp_path, 5, 13) as (source, joiner, net):
        net.endpoint(b"honest", source)
        net.endpoint(b"liar", source, corrupt=True)
        endpoint = net.endpoint(b"joiner", joiner)
        banned: list[bytes] = []
        joined = asyncio.run(endpoint.join(_trust(), lambda: [b"liar", b"honest"], 2,
                                           lambda peer, why: banned.append(peer)))
        assert joined.snapshot.height == 10 and joined.target == 11 and banned == [b"liar"]
        app = joiner.app
        assert app.info().height == 10
        assert app.state.state_hash == source.app.state.tree_root(10).hash  # type: ignore[attr-defined]
        syncer = BlockSyncer(joiner, chain_id=CHAIN, verifier=Ed25519Verifier(CHAIN),
                             send=lambda p, d: True, peers=lambda: [], on_synced=lambda h, c: None,
                             on_misbehaviour=lambda p, what: None)
        assert syncer.apply_batch(codec.decode(serve_request(source.app, ["get_blocks", 11, 10]))) == 3
        assert app.info() == source.app.info()
        assert app.query(ACCOUNT.path, AccountGetParams(public_key=HOSPITAL.public_key.raw)).nonce == 13
        proven = app.query(ACCOUNT.path, AccountGetParams(public_key=HOSPITAL.public_key.raw), prove=True)
        assert isinstance(proven, ProvenAnswer) and proven.state_height == 12
        assert codec.decode(serve_request(app, ["get_blocks", 3, 2])) == ["blocks", []]  # below its start: nothing
        grow(joiner, 1, now_ms=50_000)  # and it goes on committing on top of the restored state
        joiner.app.database.close()  # type: ignore[attr-defined]
    reopened = open_ledger(tmp_path / "joiner", snapshot_interval=5)  # the start-up checks accept the store
    reopened.app.check_stored_chain()  # type: ignore[attr-defined]
    assert reopened.app.info().height == 14
    reopened.app.database.close()  # type: ignore[attr-defined]


def test_no_snapshot_offered_leaves_the_store_as_it_was(tmp_path) -> None:
    with _chains(tmp_path, 0, 3) as (source, joiner, net):
        net.endpoint(b"peer", source)
        endpoint = net.endpoint(b"joiner", joiner)
        joined = asyncio.run(endpoint.join(_trust(), lambda: [b"peer"], 1, lambda peer, why: None))
        assert joined is None and joiner.app.info().height == 0


def test_only_liars_is_a_clear_error_and_the_genesis_store_stays(tmp_path) -> None:
    with _chains(tmp_path, 5, 7) as (source, joiner, net):
        before = joiner.app.state.state_hash  # type: ignore[attr-defined]
        net.endpoint(b"liar", source, corrupt=True)
        endpoint = net.endpoint(b"joiner", joiner)
        with pytest.raises(StateSyncFailed, match="nothing was restored"):
            asyncio.run(endpoint.join(_trust(), lambda: [b"liar"], 1, lambda peer, why: None))
        assert joiner.app.info().height == 0 and joiner.app.state.state_hash == before  # type: ignore[attr-defined]


def test_a_snapshot_dropped_while_fetched_is_listed_again_not_a_failure(tmp_path) -> None:
    with _chains(tmp_path, 5, 8) as (source, joiner, net):
        net.endpoint(b"peer", source, app=_Forgetful(source.app, times=2))
        endpoint = net.endpoint(b"joiner", joiner)
        banned: list[bytes] = []
        joined = asyncio.run(endpoint.join(_trust(), lambda: [b"peer"], 1, lambda peer, why: banned.append(peer)))
        assert joined is not None and joined.snapshot.height == 5 and not banned
        assert joiner.app.info().height == 5

