from __future__ import annotations

import numpy as np
import pytest

from core.state import TxContext
from fl_contracts import contract
from core.state import MemoryState
from fl_contracts.spec import ModelSpec


def sender(i: int) -> bytes:
    return bytes([i]) * 32


def ctx(i: int, height: int = 1, roles: frozenset[str] = frozenset({contract.HOSPITAL_ROLE})) -> TxContext:
    return TxContext("test", height, 0, sender(i), roles, bytes(32), f"hospital{i}")


@pytest.fixture
def spec() -> ModelSpec:
    return ModelSpec.for_sequential("lr", [3, 2], frac_bits=8, min_updates=2, max_updates=3, round_length_blocks=5,
                                    max_abs=2.0, max_norm=3.0, max_samples=100)


@pytest.fixture
def state(spec: ModelSpec) -> MemoryState:
    s = MemoryState()
    contract.init_models(s, [spec], {spec.id: None}, 0)
    return s


def payload(spec: ModelSpec, values: np.ndarray | list[int], **over: object) -> dict[str, object]:
    base: dict[str, object] = {"model_id": spec.id, "round": 1, "base_version": 0, "num_samples": 10,
                               "delta": np.asarray(values, dtype="<i4").tobytes()}
    return {**base, **over}
