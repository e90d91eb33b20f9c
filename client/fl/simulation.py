"""In-process federated learning through the real contract, for tests, demos and benchmarks.

Each hospital is a :class:`~client.fl.hospital.HospitalClient` with its own
key; the chain is the contract over a :class:`MemoryState`, one block per
round, so every update goes through the same validation, norm bounding and
integer aggregation a validator runs. Poisoning hospitals tamper with their
own delta before clipping and quantization, staying inside the model's
bounds so the attack is not simply rejected. The persistent attacks of
:mod:`client.fl.attacks` craft after the round's honest hospitals have
trained, so the omniscient ones can use the honest updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.accounts import Account, store_account
from core.hashing import sha256
from core.state import TxContext
from fl_contracts import contract
from fl_contracts.sampling import load_draw
from client.fl.attacks import Attack, RoundView
from client.fl.hospital import ChainModel, HospitalClient, Tamper
from fl_contracts.fixedpoint import dequantize, quantize
from core.state import MemoryState
from client.fl.model_metrics import accuracy
from fl_contracts.spec import ModelSpec
from client.fl.training import DPConfig, TrainConfig, initial_weights

Array = npt.NDArray[np.float64]
Poison = Literal["sign_flip", "noise", "sign_flip_then_noise"]


@dataclass
class FederatedResult:
    global_weights: dict[str, Array]
    history: list[dict[str, Any]] = field(default_factory=list)
    epsilon: float | None = None
    state: MemoryState | None = None


def poisoner(kind: Poison, rounds: int, scale: float, seed: int) -> Tamper:
    """Sign-flipped and scaled deltas, Gaussian noise, or the first for half the rounds then the second."""
    rng = np.random.default_rng(seed)

    def tamper(delta: Array, rnd: int) -> Array:
        mode = kind if kind != "sign_flip_then_noise" else ("sign_flip" if rnd <= rounds // 2 else "noise")
        if mode == "sign_flip":
            return -scale * delta
        return rng.normal(0.0, scale * max(float(np.std(delta)), 1e-3), size=delta.shape)

    return tamper


def _recorder(honest: list[Array]) -> Tamper:
    """Leaves an honest delta unchanged and keeps a copy for the round's attackers to see."""
    def record(delta: Array, rnd: int) -> Array:
        honest.append(delta.copy())
        return delta
    return record


def _crafter(attack: Attack, honest: Sequence[Array], n: int, f: int, seed: list[int]) -> Tamper:
    def craft(delta: Array, rnd: int) -> Array:
        return attack.craft(RoundView(delta, list(honest), n, f, np.random.default_rng(seed)))
    return craft


class InProcessChain:
    """The contract over MemoryState with one block per call to :meth:`end_block`.

    ``hospitals`` are registered with the hospital role before the model, so a sampled model draws
    its rounds over them; a simulated block's hash is the hash of its height."""

    def __init__(self, spec: ModelSpec, initial: npt.NDArray[np.int64] | None,
                 hospitals: Sequence[bytes] = ()) -> None:
        self.state = MemoryState()
        self.height = 0
        for i, key in enumerate(hospitals):
            store_account(self.state, key, Account(f"hospital-{i}", frozenset({contract.HOSPITAL_ROLE}), 0))
        contract.init_models(self.state, [spec], {spec.id: initial}, 0)

    def get_model(self, model_id: str) -> ChainModel:
        return ChainModel(contract.get_spec(self.state, model_id), contract.get_model(self.state, model_id),
                          contract.current_round(self.state, model_id).round)

    def submit(self, sender: bytes, payload: dict[str, Any]) -> dict[str, Any]:
        """Execute like the node: a rejected transaction's writes are discarded."""
        ctx = TxContext("sim", self.height + 1, 0, sender, frozenset({contract.HOSPITAL_ROLE}), sha256(sender),
                        sender.hex()[:16])
        snap = self.state.snapshot()
        try:
            return contract.submit_update(self.state, ctx, payload)
        except Exception:
            self.state.restore(snap)
            raise

    def drawn(self, model_id: str, senders: Sequence[bytes]) -> list[int]:
        """Indexes of ``senders`` the open round takes: all of them unless the model samples."""
        draw = load_draw(self.state, model_id, contract.current_round(self.state, model_id).round)
        return [i for i, s in enumerate(senders) if draw is None or draw.includes(s)]

    def end_block(self) -> list[contract.RoundRecord]:
        self.height += 1
        return contract.end_block(self.state, self.height, sha256(b"sim-block/%d" % self.height))


def run_federated(
    spec: ModelSpec, hospitals: Sequence[tuple[Array, npt.NDArray[np.int64]]], rounds: int, *, local_epochs: int,
    lr: float, seed: int, dp: DPConfig | None = None, poison: Mapping[int, Poison] | None = None,
    poison_scale: float = 10.0, batch_size: int = 32, eval_data: tuple[Array, npt.NDArray[np.int64]] | None = None,
    initial: Mapping[str, Array] | None = None, attack: Attack | None = None, attackers: Sequence[int] = (),
) -> FederatedResult:
    """Run ``rounds`` rounds with every hospital (every drawn one, for a sampled model) submitting once
    per round; one block closes each round.

    ``attack`` makes the hospitals ``attackers`` attack every round; they
    submit after the honest ones and see their deltas.
    """
    if poison and attack is not None:
        raise ValueError("give either poison (the legacy switching attack) or attack, not both")
    fb, scale = spec.fixed_point.frac_bits, spec.fixed_point.scale
    init = spec.flatten(initial) if initial is not None else initial_weights(spec, seed)
    senders = [sha256(b"hospital-%d" % i) for i in range(len(hospitals))]
    chain = InProcessChain(spec, quantize(init, fb, 2**62 // scale * scale).astype(np.int64), senders)
    cfg = TrainConfig(local_epochs=local_epochs, lr=lr, batch_size=batch_size)
    n_classes = spec.layout[-1][1][0]
    evil = frozenset(attackers) if attack is not None else frozenset()
    clients = [
        HospitalClient(spec.id, x, attack.labels(y, n_classes) if attack is not None and i in evil else y, cfg, dp,
                       seed=seed * 1000 + i, noise_rng=np.random.default_rng([seed, i]) if dp is not None else None)
        for i, (x, y) in enumerate(hospitals)
    ]
    tampers = {i: poisoner(kind, rounds, poison_scale, seed + i) for i, kind in (poison or {}).items()}
    result = FederatedResult(global_weights={}, state=chain.state)
    for _ in range(rounds):
        model = chain.get_model(spec.id)
        honest: list[Array] = []
        if attack is not None:
            tampers = {i: _crafter(attack, honest, len(clients), len(evil), [seed, model.open_round]) for i in evil}
        for i in sorted(chain.drawn(spec.id, senders), key=lambda i: i in evil):  # honest hospitals first
            payload = clients[i].make_update(model, tampers.get(i, _recorder(honest)))
            if i in tampers:  # an attacker also claims the largest weight the chain allows
                payload["num_samples"] = spec.max_samples
            chain.submit(senders[i], payload)
        events = chain.end_block()
        entry: dict[str, Any] = {"round": model.open_round, "events": events}
        if eval_data is not None:
            weights = spec.unflatten(dequantize(contract.get_model(chain.state, spec.id).weights_int(), fb))
            entry["accuracy"] = accuracy(spec, weights, *eval_data)
        result.history.append(entry)
    result.global_weights = spec.unflatten(dequantize(contract.get_model(chain.state, spec.id).weights_int(), fb))
    eps = [c.epsilon() for c in clients if c.epsilon() is not None]
    result.epsilon = max(eps) if eps else None
    return result
