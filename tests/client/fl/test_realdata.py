"""Item 6: federated training through the contract on real clinical data (in-process chain)."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def figs() -> dict[str, Any]:
    from client.fl.realdata import figures

    torch.set_num_threads(1)
    out = figures(seed=0)
    print("\nreal-data figures:", out)
    return out


def test_federated_within_one_point_of_centralised(figs: dict[str, Any]) -> None:
    assert abs(figs["federated_accuracy"]["fedavg"] - figs["centralised_accuracy"]) <= 0.01
    assert figs["centralised_accuracy"] > 0.93


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "multi_krum"])
def test_robust_rules_resist_one_poisoner_of_four(figs: dict[str, Any], rule: str) -> None:
    assert figs["poisoned_accuracy"][rule] >= figs["federated_accuracy"]["fedavg"] - 0.02


def test_fedavg_degrades_under_poisoning(figs: dict[str, Any]) -> None:
    assert figs["poisoned_accuracy"]["fedavg"] <= figs["federated_accuracy"]["fedavg"] - 0.04


def test_dp_reports_epsilon_and_cost(figs: dict[str, Any]) -> None:
    dp = figs["dp"]
    assert 0 < dp["epsilon"] < 100
    assert 0 <= dp["accuracy_cost"] < 0.15
    assert 0 <= dp["mia_advantage_with_dp"] <= 1 and 0 <= dp["mia_advantage_without_dp"] <= 1


def test_training_client_speaks_through_a_transport() -> None:
    """The client's run loop against the in-process chain, with a progress callback."""
    from client.fl.hospital import HospitalClient
    from client.fl.data import breast_cancer_split
    from client.fl.realdata import spec_for
    from client.fl.simulation import InProcessChain
    from fl_contracts.spec import ModelSpec
    from fl_contracts import contract

    split = breast_cancer_split()
    spec = ModelSpec.model_validate({**spec_for("fedavg").to_doc(), "min_updates": 1, "max_updates": 1})
    chain = InProcessChain(spec, None)

    class Transport:
        def get_model(self, model_id: str):  # noqa: ANN202
            return chain.get_model(model_id)

        def submit(self, payload: dict) -> dict:
            return chain.submit(b"\x01" * 32, payload)

        def wait_round(self, model_id: str, round: int):  # noqa: ANN202
            chain.end_block()
            return contract.round_history(chain.state, model_id)[round - 1]

    stages: list[str] = []
    x, y = split.hospitals[2]
    records = HospitalClient(spec.id, x, y).run(Transport(), 2, lambda p: stages.append(p.stage))
    assert [r.status for r in records] == ["aggregated", "aggregated"]
    assert stages == ["fetched", "trained", "submitted", "closed"] * 2
    assert contract.get_model(chain.state, spec.id).version == 2
