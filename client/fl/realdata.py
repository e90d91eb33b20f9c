"""The proof on real data: breast cancer across 4 label-skewed hospitals, 20 rounds.

Figures for the README come from :func:`figures` (``bench/bench_fl_realdata.py``
writes them to JSON); the tests in ``tests/fl_contracts/test_realdata.py``
assert the claims on the same runs. Hyperparameters live here, once.
Poisoning follows the model-poisoning attacks Multi-Krum was designed
against (Blanchard et al. 2017): a sign-flipped, scaled delta for the first
half of the rounds, then Gaussian noise.
"""

from __future__ import annotations

from typing import Any

from client.fl.data import Split, breast_cancer_split
from client.fl.model_metrics import accuracy, losses, mia_advantage
from client.fl.simulation import FederatedResult, run_federated
from fl_contracts.spec import ModelSpec, Rule
from client.fl.training import DPConfig, TrainConfig, centralised_weights

ROUNDS = 20
LOCAL_EPOCHS = 2
LR = 0.2
HOSPITALS = 4
RULE_PARAMS: dict[str, dict[str, int]] = {"fedavg": {}, "median": {}, "trimmed_mean": {"trim": 1},
                                          "multi_krum": {"f": 1, "m": 2}}
DP = DPConfig(clip_norm=1.0, noise_multiplier=2.0, delta=1e-5)


def spec_for(rule: Rule, dims: tuple[int, ...] = (30, 2)) -> ModelSpec:
    return ModelSpec.for_sequential("breast_cancer", list(dims), rule=rule, rule_params=RULE_PARAMS[rule],
                                    min_updates=HOSPITALS, max_updates=HOSPITALS, round_length_blocks=1,
                                    max_samples=256)


def federated(split: Split, rule: Rule, seed: int, *, poison: bool = False, dp: DPConfig | None = None) -> FederatedResult:
    return run_federated(spec_for(rule), split.hospitals, ROUNDS, local_epochs=LOCAL_EPOCHS, lr=LR, seed=seed, dp=dp,
                         poison={0: "sign_flip_then_noise"} if poison else None,
                         eval_data=(split.x_test, split.y_test))


def test_accuracy(split: Split, result: FederatedResult) -> float:
    return accuracy(spec_for("fedavg"), result.global_weights, split.x_test, split.y_test)


def centralised_accuracy(split: Split, seed: int) -> float:
    spec = spec_for("fedavg")
    w = centralised_weights(spec, split.x_train, split.y_train, TrainConfig(ROUNDS * LOCAL_EPOCHS, LR), seed)
    return accuracy(spec, spec.unflatten(w), split.x_test, split.y_test)


def membership_advantage(split: Split, result: FederatedResult) -> float:
    spec = spec_for("fedavg")
    return mia_advantage(losses(spec, result.global_weights, split.x_train, split.y_train),
                         losses(spec, result.global_weights, split.x_test, split.y_test))


def figures(seed: int = 0) -> dict[str, Any]:
    split = breast_cancer_split(HOSPITALS, alpha=0.5, seed=seed)
    clean = federated(split, "fedavg", seed)
    out: dict[str, Any] = {
        "seed": seed, "rounds": ROUNDS, "local_epochs": LOCAL_EPOCHS, "lr": LR,
        "hospital_sizes": [len(y) for _, y in split.hospitals],
        "hospital_positives": [int(y.sum()) for _, y in split.hospitals],
        "centralised_accuracy": centralised_accuracy(split, seed),
        "federated_accuracy": {rule: test_accuracy(split, federated(split, rule, seed)) for rule in RULE_PARAMS},
        "poisoned_accuracy": {rule: test_accuracy(split, federated(split, rule, seed, poison=True)) for rule in RULE_PARAMS},
    }
    private = federated(split, "fedavg", seed, dp=DP)
    out["dp"] = {
        "clip_norm": DP.clip_norm, "noise_multiplier": DP.noise_multiplier, "delta": DP.delta,
        "epsilon": private.epsilon, "accuracy": test_accuracy(split, private),
        "accuracy_cost": test_accuracy(split, clean) - test_accuracy(split, private),
        "mia_advantage_without_dp": membership_advantage(split, clean),
        "mia_advantage_with_dp": membership_advantage(split, private),
    }
    return out
