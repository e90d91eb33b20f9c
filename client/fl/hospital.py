"""The hospital training client, without I/O: it talks to the chain through a :class:`Transport`.

``node/`` implements :class:`Transport` over JSON-RPC (``fbci fl train``);
the in-process simulation implements it over a :class:`MemoryState`. One
round is: fetch the current global model, train locally, take the delta,
clip (to the DP clip norm, else the model's ``max_norm``), add noise when DP
is on, quantize, submit, wait for the round's record. Flower's client API
(``fit`` returns new parameters and a sample count) is the model for the
feel of :meth:`HospitalClient.make_update`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from fl_contracts.contract import ModelVersion, RoundRecord
from fl_contracts.fixedpoint import dequantize, encode_delta, quantize
from fl_contracts.spec import ModelSpec
from client.fl.consent import ConsentedRows
from client.fl.training import DPConfig, PrivacyAccountant, TrainConfig, clip_l2, privatize, train_local

Array = npt.NDArray[np.float64]
Tamper = Callable[[Array, int], Array]


@dataclass(frozen=True)
class ChainModel:
    spec: ModelSpec
    version: ModelVersion
    open_round: int
    snapshot_height: int = 0
    """The open round's consent snapshot (the height it opened)."""


class Transport(Protocol):
    def get_model(self, model_id: str) -> ChainModel: ...

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]: ...

    def wait_round(self, model_id: str, round: int) -> RoundRecord: ...


@dataclass(frozen=True)
class Progress:
    round: int
    stage: str  # "fetched", "trained", "submitted", "closed"
    detail: dict[str, Any]


@dataclass
class HospitalClient:
    model_id: str
    x: Array
    y: npt.NDArray[np.int64]
    train: TrainConfig = field(default_factory=TrainConfig)
    dp: DPConfig | None = None
    seed: int = 0
    noise_rng: np.random.Generator | None = None
    accountant: PrivacyAccountant | None = None

    def __post_init__(self) -> None:
        if self.dp is not None and self.accountant is None:
            self.accountant = PrivacyAccountant(self.dp)

    def make_update(self, model: ChainModel, tamper: Tamper | None = None,
                    consented: ConsentedRows | None = None) -> dict[str, Any]:
        """Train, clip, noise, quantize; return the ``fl.submit_update`` payload.

        ``consented``: train only on the rows whose patients may train this model, and list them."""
        spec = model.spec
        scale = spec.fixed_point.scale
        base = dequantize(model.version.weights_int(), spec.fixed_point.frac_bits)
        x, y = (self.x, self.y) if consented is None else (self.x[consented.mask], self.y[consented.mask])
        trained = train_local(spec, base, x, y, self.train, self.seed * 100_003 + model.open_round)
        delta = trained - base
        if tamper is not None:
            delta = tamper(delta, model.open_round)
        if self.dp is not None:
            delta = privatize(delta, self.dp, self.noise_rng)
            assert self.accountant is not None
            self.accountant.step()
        delta = clip_l2(delta, spec.max_norm / scale)
        payload: dict[str, Any] = {
            "model_id": spec.id, "round": model.open_round, "base_version": model.version.version,
            "num_samples": int(len(y)), "delta": encode_delta(quantize(delta, spec.fixed_point.frac_bits, spec.max_abs)),
        }
        if consented is not None:
            payload["patients"] = consented.patients
        if self.accountant is not None:
            payload["dp_epsilon_micro"] = round(self.accountant.epsilon() * 1e6)
            payload["dp_delta_nano"] = round(self.accountant.dp.delta * 1e9)
        return payload

    def epsilon(self) -> float | None:
        return None if self.accountant is None else self.accountant.epsilon()

    def run(self, transport: Transport, rounds: int, progress: Callable[[Progress], None] | None = None) -> list[RoundRecord]:
        """Take part in ``rounds`` consecutive rounds; report each stage to ``progress``."""
        report = progress or (lambda p: None)
        records = []
        for _ in range(rounds):
            model = transport.get_model(self.model_id)
            report(Progress(model.open_round, "fetched", {"version": model.version.version}))
            payload = self.make_update(model)
            report(Progress(model.open_round, "trained", {"epsilon": self.epsilon()}))
            receipt = transport.submit(payload)
            report(Progress(model.open_round, "submitted", receipt))
            record = transport.wait_round(self.model_id, model.open_round)
            report(Progress(model.open_round, "closed", {"status": record.status, "new_version": record.new_version}))
            records.append(record)
        return records
