"""Federated learning through the real chain: 4 validators, 4 hospitals over JSON-RPC, 20 rounds.

The hospitals are ``client.fl.train.train_rounds`` clients in threads of the
test process, hospital ``i`` signing with ``node{i}/keys/hospital.json`` and
talking to validator ``i``; ``breast_cancer`` (the catalog's robust rule) and
``breast_cancer_fedavg`` (FedAvg) train at the same time, and each round
closes as soon as all four updates are in (``max_updates`` = 4). What the
chain ends with is compared with the in-process figures of
``client.fl.realdata``: the clean global models within 1 point of a
centralised model trained on the pooled data; with hospital 0 poisoning
(sign flip then noise, claiming the largest weight), the robust rule stays within
2 points of clean while FedAvg visibly degrades. Every validator must hold the
bit-identical model (same version hash). 20 rounds x 2 models take seconds,
so CI runs the full 20; ``FBCI_FL_ROUNDS`` overrides it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from client.fl import realdata
from client.fl.data import Split, breast_cancer_split
from client.fl.model_metrics import accuracy
from client.session import ChainSession, load_client_key
from client.fl.train import TrainResult, train_rounds
from devnet.catalog import default_app_state
from devnet.testnet import Testnet

NO_CONSENT = {**default_app_state(4), "consent": {"required_for": []}}
"""These tests measure aggregation on the whole data set (and a sample-count attack that consent would
neutralise, tests/consent/test_consent.py): the default chain's consent for breast_cancer is off here."""
ROUNDS = int(os.environ.get("FBCI_FL_ROUNDS", realdata.ROUNDS))
MODELS = ("breast_cancer", "breast_cancer_fedavg")
HOSPITALS = 4


@pytest.fixture(scope="module")
def split() -> Split:
    return breast_cancer_split(HOSPITALS, alpha=0.5, seed=0)


def train_all(net: Testnet, split: Split, poisoner: int | None = None) -> dict[str, list[TrainResult]]:
    """Every hospital trains every model for ROUNDS rounds, one thread per (hospital, model)."""
    results: dict[tuple[int, str], TrainResult] = {}
    errors: list[BaseException] = []

    def hospital(i: int, model: str) -> None:
        try:
            x, y = split.hospitals[i]
            key = load_client_key("hospital", net.specs[i].home)
            results[i, model] = train_rounds(
                net.specs[i].rpc_url, key, model, x, y, ROUNDS, epochs=realdata.LOCAL_EPOCHS, lr=realdata.LR,
                seed=i, poison="sign_flip_then_noise" if i == poisoner else None, round_timeout_s=90.0)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=hospital, args=(i, m), daemon=True) for i in range(HOSPITALS) for m in MODELS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a hospital never finished"
    return {m: [results[i, m] for i in range(HOSPITALS)] for m in MODELS}


def chain_models(net: Testnet, split: Split, results: dict[str, list[TrainResult]]) -> dict[str, dict[str, Any]]:
    """Per model: the final version, its hash on every validator and its test accuracy."""
    out = {}
    for model, per_hospital in results.items():
        version = per_hospital[0].records[-1].new_version
        hashes, acc = [], None
        for spec in net.specs:
            with ChainSession(spec.rpc_url, net.client_key()) as session:  # models are private reads
                mv, weights = session.model_weights(model, version)
                hashes.append(mv.hash)
                acc = accuracy(session.spec(model), weights, split.x_test, split.y_test)
        out[model] = {"version": version, "hashes": hashes, "accuracy": acc}
    return out


def check_rounds(results: dict[str, list[TrainResult]]) -> None:
    """All rounds aggregated all four hospitals, and all hospitals saw the same records."""
    for model, per_hospital in results.items():
        records = per_hospital[0].records
        assert len(records) == ROUNDS and [r.new_version for r in records] == list(range(1, ROUNDS + 1))
        assert all(r.status == "aggregated" and r.accepted == HOSPITALS for r in records), model
        assert all(h.records == records for h in per_hospital), f"{model}: hospitals saw different round records"


@contextmanager
def running(testnet: Callable[..., Testnet]) -> Iterator[Testnet]:
    net = testnet(4, app_state=NO_CONSENT)
    net.wait_ready(60, min_height=1)
    yield net


def test_chain_trains_breast_cancer_like_the_pooled_model_and_every_validator_agrees(
        testnet: Callable[..., Testnet], split: Split) -> None:
    with running(testnet) as net:
        results = train_all(net, split)
        check_rounds(results)
        models = chain_models(net, split, results)
    central = realdata.centralised_accuracy(split, seed=0)
    print({m: round(v["accuracy"], 4) for m, v in models.items()}, "centralised", round(central, 4))
    for model, found in models.items():
        assert len(set(found["hashes"])) == 1, f"{model}: validators hold different models"
        assert abs(found["accuracy"] - central) <= 0.01, (model, found["accuracy"], central)
    split_clean.update({m: v["accuracy"] for m, v in models.items()})


split_clean: dict[str, float] = {}


def test_median_resists_a_poisoning_hospital_that_breaks_fedavg(testnet: Callable[..., Testnet], split: Split) -> None:
    if not split_clean:  # run alone: measure the clean chain first
        with running(testnet) as net:
            split_clean.update({m: v["accuracy"] for m, v in chain_models(net, split, train_all(net, split)).items()})
    with running(testnet) as net:
        results = train_all(net, split, poisoner=0)
        check_rounds(results)
        models = chain_models(net, split, results)
    poisoned = {m: v["accuracy"] for m, v in models.items()}
    print("clean", split_clean, "poisoned", poisoned)
    assert all(len(set(v["hashes"])) == 1 for v in models.values())
    assert abs(poisoned["breast_cancer"] - split_clean["breast_cancer"]) <= 0.02
    assert poisoned["breast_cancer_fedavg"] <= split_clean["breast_cancer_fedavg"] - 0.05
    assert poisoned["breast_cancer"] - poisoned["breast_cancer_fedavg"] >= 0.05
