"""``fbci fl train --secure``: refused before any data or training unless the model aggregates securely."""

from __future__ import annotations

from typing import Any

import pytest

from client.fl import train
from fl_contracts.spec import ModelSpec
from tests.client.fl.test_train_cli import SPECS, FakeSession, chain, fl_train

__all__ = ["chain"]
SECURE = ModelSpec.model_validate({**SPECS["breast_cancer_fedavg"].model_dump(), "id": "breast_cancer_secure",
                                   "secure": True})


@pytest.fixture
def secure_chain(chain: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(train, "ChainSession", lambda url, **options: FakeSession({**SPECS, SECURE.id: SECURE}))
    return chain


def test_secure_refuses_a_model_whose_updates_would_be_in_the_clear(
        secure_chain: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fl_train(secure_chain, capsys, "--model", "breast_cancer_fedavg", "--secure")
    assert code == 1 and err.startswith("error[-32602 invalid_input]: --secure: model breast_cancer_fedavg does "
                                        "not aggregate securely"), err
    assert secure_chain["loaded"] == [] and secure_chain["trained"] == []


def test_secure_trains_a_secure_model(secure_chain: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fl_train(secure_chain, capsys, "--model", SECURE.id, "--secure")
    assert code == 0, err
    assert secure_chain["trained"][0][0] == SECURE.id
