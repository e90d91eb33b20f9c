"""The pruning policy: open rounds' and global versions' blobs stay, the last K rounds' stay, the rest goes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from core import blobs
from core.blobs import BlobRef, blob_ref, chunk_hashes, chunk_proof
from core.state import MemoryState
from node.blobs.pruning import PrunePolicy
from node.blobs.service import BlobService


def _service(root: Path, state: MemoryState, policy: PrunePolicy) -> BlobService:
    def unused(*_: object) -> None:
        raise AssertionError("pruning sends nothing")

    return BlobService(root, b"\x01" * 32, send=lambda peer, payload: False, peers=list, attest=unused,
                       state=lambda: state, height=lambda: 1, on_misbehaviour=unused,
                       spawn=unused,  # type: ignore[arg-type]
                       policy=policy)


def _store(service: BlobService, data: bytes) -> BlobRef:
    ref = blob_ref(data)
    assert service.store.put_chunk(ref, 0, data, chunk_proof(chunk_hashes(data), 0))
    return ref


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


async def test_each_rule_of_the_pruning_policy(tmp_path: Path) -> None:
    state = MemoryState()
    service = _service(tmp_path, state, PrunePolicy(keep_rounds=3, upload_ttl_s=100))
    open_round, version, old_round, recent_round, stray, fresh = (
        _store(service, bytes([i]) * 1000) for i in range(6))
    partial = blob_ref(b"p" * (blobs.CHUNK_BYTES + 10))  # an upload that stopped after its first chunk
    service.store.put_chunk(partial, 0, b"p" * blobs.CHUNK_BYTES, chunk_proof(
        chunk_hashes(b"p" * (blobs.CHUNK_BYTES + 10)), 0))
    for ref, rnd in ((open_round, 5), (old_round, 1), (recent_round, 3)):
        blobs.put_need(state, blobs.Need(ref=ref, model_id="sepsis", round=rnd))
    service.learn_uses()  # what a commit observer does
    for ref, rnd in ((old_round, 1), (recent_round, 3)):  # those rounds closed
        state.delete(blobs.need_key(ref.sha256, "sepsis", rnd))
    blobs.put_keep(state, blobs.Keep(ref=version, model_id="sepsis", version=2))
    _age(service.store.complete_dir / stray.sha256.hex(), 1000)
    _age(service.store.partial_dir / f"{partial.sha256.hex()}.log", 1000)
    for ref in (open_round, version, old_round, recent_round):
        _age(service.store.complete_dir / ref.sha256.hex(), 1000)  # age alone never deletes a referenced blob

    doomed = await service.prune()

    assert {r.sha256 for r in doomed} == {old_round.sha256, stray.sha256, partial.sha256}
    assert all(service.store.has(r) for r in (open_round, version, recent_round, fresh))
    assert not any(service.store.has(r) for r in (old_round, stray)) and service.store.held_chunks(partial) == []
    assert old_round.sha256 not in _service(tmp_path, state, PrunePolicy()).uses.by_sha  # forgotten on disk too
    assert await service.prune() == []
    service.close()
