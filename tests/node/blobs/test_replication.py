"""Replication between in-process validators: fetch before execute, and a Byzantine peer's bad chunks."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import blobs, codec
from core.blobs import CHUNK_BYTES, Attestation, BlobRef, blob_ref, chunk_hashes, chunk_proof, split
from core.state import MemoryState
from core.tx import Transaction
from core.validators import Validator, ValidatorSet, set_key
from node.blobs import messages
from node.blobs.messages import Chunk
from node.blobs.replication import ReplicationTuning, Replicator
from node.blobs.store import BlobStore
from tests.node.helpers import ADMIN, make_block

DATA = random.Random(5).randbytes(2 * CHUNK_BYTES + 77)
REF = blob_ref(DATA)
KEYS = [bytes([i + 1]) * 32 for i in range(4)]
TUNING = ReplicationTuning(request_timeout_s=5.0, announce_interval_s=3600)


def _chain(needed: bool = True) -> MemoryState:
    """Validators 0..2 attested REF at height 3 and (``needed``) an open round needs it."""
    state = MemoryState()
    state.set(set_key(1), ValidatorSet(tuple(Validator(k, f"v{k[0]}", "127.0.0.1:1") for k in KEYS)).encode())
    for key in KEYS[:3]:
        state.set(blobs.attest_key(REF.sha256, key), codec.encode(
            Attestation(ref=REF, validator=key, height=3).model_dump()))
    if needed:
        blobs.put_need(state, blobs.Need(ref=REF, model_id="sepsis", round=2))
    return state


class Net:
    """Four replicators whose ``send`` delivers to each other on the loop; ``corrupt``: whose chunks lie."""

    def __init__(self, root: Path, state: MemoryState, corrupt: frozenset[bytes] = frozenset()) -> None:
        self.io = ThreadPoolExecutor(2)
        self.reports: list[tuple[bytes, bytes, str]] = []
        self.attested: list[bytes] = []
        self.corrupt = corrupt
        self.nodes = {key: self._node(root / key.hex()[:4], key, state) for key in KEYS}

    def _node(self, root: Path, me: bytes, state: MemoryState) -> Replicator:
        def send(peer: bytes, payload: bytes) -> bool:
            if me in self.corrupt:
                message = messages.decode(payload)
                if isinstance(message, Chunk):
                    payload = messages.encode(message.model_copy(update={"chunk": bytes(len(message.chunk))}))
            asyncio.get_running_loop().call_soon(self.nodes[peer].on_message, me, payload)
            return True

        def spawn(coro, name):  # type: ignore[no-untyped-def]
            return asyncio.get_running_loop().create_task(coro, name=name)

        return Replicator(BlobStore(root, 1 << 30), me, send=send, peers=lambda: [k for k in KEYS if k != me],
                          attest=lambda ref: self.attested.append(me), state=lambda: state, height=lambda: 9,
                          on_misbehaviour=lambda who, why: self.reports.append((me, who, why)), io=self.io,
                          spawn=spawn, tuning=TUNING)

    def seed(self, key: bytes, ref: BlobRef = REF, data: bytes = DATA) -> None:
        hashes = chunk_hashes(data)
        for i, chunk in enumerate(split(data)):
            self.nodes[key].store.put_chunk(ref, i, chunk, chunk_proof(hashes, i))


async def test_a_validator_fetches_a_needed_available_blob_from_its_attesters_before_executing(tmp_path):
    net = Net(tmp_path, _chain())
    for key in KEYS[:3]:
        net.seed(key)
    lagging = net.nodes[KEYS[3]]
    assert not lagging.store.has(REF)
    await asyncio.wait_for(lagging.ensure_needed(make_block(10, [])), 30)
    assert lagging.store.read(REF) == DATA
    assert net.attested == [KEYS[3]]  # it attests what it now holds
    assert lagging.counters.chunks_in["peer"] == REF.chunks and not net.reports


async def test_a_blob_the_blocks_own_transaction_names_is_fetched_too(tmp_path):
    """An update may arrive and its round close in one block: the need index before it does not list the blob."""
    net = Net(tmp_path, _chain(needed=False))
    net.seed(KEYS[0])
    lagging = net.nodes[KEYS[3]]
    await asyncio.wait_for(lagging.ensure_needed(make_block(10, [])), 5)
    assert not lagging.store.has(REF)  # needed by nothing: not fetched before execution
    update = Transaction.create(ADMIN, "fbci-test", 1, "fl.submit_update",
                                {"model_id": "m", "delta_blob": REF.model_dump()})
    await asyncio.wait_for(lagging.ensure_needed(make_block(10, [update.encode(), b"not a transaction"])), 30)
    assert lagging.store.read(REF) == DATA


async def test_nothing_is_fetched_for_a_blob_not_yet_available_at_that_height(tmp_path):
    net = Net(tmp_path, _chain())
    net.seed(KEYS[0])
    await asyncio.wait_for(net.nodes[KEYS[3]].ensure_needed(make_block(3, [])), 5)  # attested at 3: not before height 3
    assert not net.nodes[KEYS[3]].store.has(REF) and net.nodes[KEYS[3]].counters.chunks_in["peer"] == 0


async def test_a_peers_bad_chunks_are_misbehaviour_and_the_chunks_come_from_another_peer(tmp_path):
    net = Net(tmp_path, _chain(), corrupt=frozenset({KEYS[0], KEYS[1]}))
    for key in KEYS[:3]:
        net.seed(key)
    lagging = net.nodes[KEYS[3]]
    await asyncio.wait_for(lagging.ensure_needed(make_block(10, [])), 30)
    assert lagging.store.read(REF) == DATA
    liars = {who for me, who, why in net.reports if me == KEYS[3] and why == "blob: bad_chunk"}
    assert liars and liars <= {KEYS[0], KEYS[1]}
    assert lagging.counters.bad_chunks["peer"] == len([r for r in net.reports if r[0] == KEYS[3]])


async def test_a_malformed_blob_message_is_reported_and_changes_nothing(tmp_path):
    net = Net(tmp_path, _chain())
    node = net.nodes[KEYS[0]]
    for payload in (b"\xc1", codec.encode({"t": "have"}), codec.encode({"t": "chunk", "x": 1}), codec.encode([1, 2])):
        node.on_message(KEYS[1], payload)
    assert [why for _, _, why in net.reports] == ["blob: bad_blob_message"] * 4
    assert not list((node.store.root / "partial").iterdir())
