"""Models too large for a transaction, trained through blobs on 4 real validators by 4 hospitals over JSON-RPC.

``wide_mlp_10m`` (``devnet.catalog.wide_mlp``) is 40 MB per update, 160 times
what a transaction may carry; ``wide_mlp_1m`` is 3.9 MB, four times. Three
rounds of the 10M model take four minutes of a CI worker when the other worker
runs its own tests, a quarter of the suite's budget, so by default the three
rounds train the 1M model (two chunks each, the same code paths) and
``FBCI_SOAK=1`` trains the 10M one; the kill test always pushes the 10M model,
whose 20 chunks leave the test room to kill mid-push. Each hospital (a thread of this process,
hospital ``i`` on validator ``i``) pulls the global version as a blob, trains a
few torch steps on its synthetic rows, pushes its quantized delta as a blob
and submits only the ref; validators replicate and attest it, and the round
aggregates once a quorum attested all four. The test recomputes each new
version as the plain FedAvg of the deltas the hospitals submitted (equal
weights, the chain's rounding), against the weights hospitals pulled and the
version hash that names them, and checks every validator holds that hash.
Then, in a fourth round, validator 0 is killed with SIGKILL in the middle of
hospital 0's push and restarted: the push resumes from ``blob_status`` and
the round still aggregates hospital 0's update; the other three hospitals
run ``client.fl.train.train_rounds``, the ``fbci fl train`` path, which
picks the blob transport from the model's spec.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.blobs import blob_status
from client.fl.blob_transport import BlobChainTransport
from client.fl.synthetic import synthetic_rows
from client.fl.train import train_rounds
from client.rpc import RpcClient
from client.session import ChainSession, load_client_key
from core.blobs import BlobRef, blob_ref
from core.errors import FbciError
from devnet.catalog import wide_app_state
from devnet.testnet import Testnet
from fl_contracts.contract import RoundRecord
from fl_contracts.blob_updates import version_hash
from fl_contracts.fixedpoint import decode_delta, encode_weights, round_div
from tests.ports import free_base_port
from tests.testnets import run_in_threads, started

SOAK = os.environ.get("FBCI_SOAK") == "1"
ROUNDS_MODEL, ROUNDS_MODEL_PARAMS = ("wide_mlp_10m", 10_000_000) if SOAK else ("wide_mlp_1m", 900_000)
KILL_MODEL = "wide_mlp_10m"
HOSPITALS = 4
ROUNDS = 3
ROWS = 64
"""One local step of batch 64 a round: a step is a 10M-parameter backward pass."""
TIMEOUT_S = 240.0

pytest.importorskip("torch")
pytestmark = pytest.mark.timeout(900)  # the module's own bound; on CI's idle 2 cores it takes far less


class Recording(BlobChainTransport):
    """The hospital's transport, keeping what it fetched and what it submitted."""

    def __init__(self, session: ChainSession, on_payload: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(session, round_timeout_s=TIMEOUT_S, push_timeout_s=TIMEOUT_S)
        self.fetched: list[Any] = []
        self.sent: list[dict[str, Any]] = []
        self.on_payload = on_payload or (lambda payload: None)

    def get_model(self, model_id: str) -> Any:
        model = super().get_model(model_id)
        self.fetched.append(model)
        print(f"{time.strftime('%X')} {self.session.rpc_url} fetched v{model.version.version} "
              f"in {self.last_pull_s:.1f} s", flush=True)
        return model

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(payload)
        self.on_payload(payload)
        receipt = super().submit(payload)
        print(f"{time.strftime('%X')} {self.session.rpc_url} pushed round {payload['round']} in "
              f"{self.last_push_s:.1f} s", flush=True)
        return receipt


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    out: Path = tmp_path_factory.mktemp("blobnet")
    app_state = wide_app_state(HOSPITALS, tuple(dict.fromkeys((ROUNDS_MODEL, KILL_MODEL))), round_length_blocks=400)
    with started(Testnet.create(4, out, free_base_port(8), app_state=app_state), ready_s=120) as testnet:
        yield testnet


def hospital(net: Testnet, i: int, model: str, rounds: int, transports: dict[int, Recording],
             records: dict[int, list[RoundRecord]], on_payload: Callable[[dict[str, Any]], None] | None = None
             ) -> None:
    import torch

    from client.fl.hospital import HospitalClient
    from client.fl.training import TrainConfig

    torch.set_num_threads(1)
    x, y = synthetic_rows(i, ROWS)
    client = HospitalClient(model, x, y, TrainConfig(local_epochs=1, lr=0.05, batch_size=64), seed=i)
    with ChainSession(net.specs[i].rpc_url, load_client_key("hospital", net.specs[i].home)) as session:
        transport = transports[i] = Recording(session, on_payload)
        records[i] = client.run(transport, rounds)


def plain_fedavg(base: np.ndarray, payloads: list[dict[str, Any]], num_params: int) -> np.ndarray:
    """The FedAvg the test expects: base + round(sum(n_i * delta_i) / sum(n_i)), ties up (the chain's rule)."""
    weights = np.array([p["num_samples"] for p in payloads], dtype=np.int64)
    total = sum(w * decode_delta(p["delta"], num_params).astype(np.int64) for w, p in zip(weights, payloads))
    return base + round_div(total, int(weights.sum()))


def test_four_hospitals_train_a_large_model_for_three_rounds_through_blobs(net: Testnet) -> None:
    transports: dict[int, Recording] = {}
    records: dict[int, list[RoundRecord]] = {}
    run_in_threads(lambda i: hospital(net, i, ROUNDS_MODEL, ROUNDS, transports, records), HOSPITALS,
                   TIMEOUT_S * ROUNDS)
    assert all(len(records[i]) == ROUNDS for i in range(HOSPITALS))
    for r in range(ROUNDS):
        record = records[0][r]
        assert record.status == "aggregated" and record.accepted == HOSPITALS and record.new_version == r + 1, record
        assert all(p.excluded is None for p in record.participants)
        assert all(records[i][r] == record for i in range(HOSPITALS))
    spec = transports[0].fetched[0].spec
    assert spec.num_params > ROUNDS_MODEL_PARAMS and spec.blobs
    fetched = {m.version.version: m.version.weights_int() for m in transports[0].fetched}
    expected = fetched[0]
    for r in range(ROUNDS):  # each version is the FedAvg of what was submitted, and its hash names those weights
        sent = [transports[i].sent[r] for i in range(HOSPITALS)]
        previous, expected = expected, plain_fedavg(expected, sent, spec.num_params)
        assert not np.array_equal(expected, previous)
        if r + 1 in fetched:
            assert np.array_equal(fetched[r + 1], expected), f"version {r + 1} is not the FedAvg of the updates"
        ref = blob_ref(encode_weights(expected))
        assert version_hash(ROUNDS_MODEL, r + 1, ref) == records[0][r].new_hash, f"version {r + 1}'s hash"
    for v in range(1, ROUNDS + 1):
        hashes = set()
        for node in net.specs:
            with ChainSession(node.rpc_url, net.client_key()) as reader:
                hashes.add(reader.model_version(ROUNDS_MODEL, v).hash)
        assert hashes == {records[0][v - 1].new_hash}, f"validators disagree on version {v}"


def partial_held(url: str, ref: BlobRef) -> int | None:
    """Chunks of ``ref`` validator ``url`` holds while the upload is unfinished; None once complete."""
    async def probe() -> int | None:
        async with RpcClient(url, timeout_s=5.0) as rpc:
            status = await blob_status(rpc, ref)
        return None if status.complete else len(status.held)

    return asyncio.run(probe())


def test_a_validator_killed_during_a_hospitals_push_restarts_and_the_round_still_aggregates_it(
        net: Testnet) -> None:
    transports: dict[int, Recording] = {}
    records: dict[int, list[RoundRecord]] = {}
    pushing = threading.Event()
    pushed: list[BlobRef] = []

    def watch(payload: dict[str, Any]) -> None:
        pushed.append(blob_ref(payload["delta"]))
        pushing.set()

    def hospitals(i: int) -> None:
        if i == 0:
            hospital(net, i, KILL_MODEL, 1, transports, records, watch)
            return
        x, y = synthetic_rows(i, ROWS)  # the others train as `fbci fl train` does, picking the blob transport itself
        key = load_client_key("hospital", net.specs[i].home)
        records[i] = train_rounds(net.specs[i].rpc_url, key, KILL_MODEL, x, y, 1, epochs=1, lr=0.05, batch_size=64,
                                  seed=i, round_timeout_s=TIMEOUT_S).records

    worker = threading.Thread(target=lambda: run_in_threads(hospitals, HOSPITALS, TIMEOUT_S), daemon=True)
    worker.start()
    assert pushing.wait(TIMEOUT_S), "hospital 0 never came to push"
    ref, seen = pushed[0], None
    while seen is None or seen == 0:  # each probe is a round trip: the pace of the upload, not a sleep
        try:
            seen = partial_held(net.specs[0].rpc_url, ref)
        except FbciError:
            continue
        if seen is None:
            pytest.fail("the push finished before the test could kill its validator")
    net.kill(0)
    net.restart(0)
    worker.join(TIMEOUT_S)
    assert not worker.is_alive(), "a hospital never finished"
    assert 0 < seen < ref.chunks and transports[0].push_attempts > 1, (seen, transports[0].push_attempts)
    (record,) = records[0]
    assert record.status == "aggregated" and record.accepted == HOSPITALS, record
    assert all(p.excluded is None for p in record.participants)
    assert all(records[i] == [record] for i in range(HOSPITALS))
