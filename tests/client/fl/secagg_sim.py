"""A secure round driven by direct contract calls over a MemoryState, with the hospital side for real.

Each hospital is a :class:`client.fl.secagg.SecureHospital`; ``post`` runs a
stage's handler the way the executor does (a refused transaction changes
nothing) and ``tick`` is one block's end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from client.fl.secagg import SecureHospital
from core.state import MemoryState, TxContext
from fl_contracts import contract, secagg_queries, secure_round
from fl_contracts.contract import RoundRecord
from fl_contracts.secagg_msgs import SecureRoundView
from fl_contracts.spec import ModelSpec


def secure_spec(n: int, *, min_updates: int = 2, dims: tuple[int, int] = (7, 3), **over: Any) -> ModelSpec:
    """A secure model of ``dims[0] * dims[1] + dims[1]`` parameters for rounds of up to ``n`` hospitals."""
    base = ModelSpec.for_sequential("sec", list(dims), frac_bits=8,
                                    min_updates=min_updates, max_updates=n, round_length_blocks=3,
                                    max_abs=2.0, max_norm=3.0, max_samples=100)
    return ModelSpec.model_validate({**base.model_dump(), "secure": True, **over})


class SecureSim:
    def __init__(self, spec: ModelSpec, n: int) -> None:
        self.spec = spec
        self.state = MemoryState()
        contract.init_models(self.state, [spec], {spec.id: None}, 0)
        self.height = 0
        self.senders = [bytes([i + 1]) * 32 for i in range(n)]
        self.closed: list[RoundRecord] = []
        self.new_round()

    def new_round(self) -> None:
        rnd = contract.current_round(self.state, self.spec.id).round
        self.hospitals = {s: SecureHospital(s, self.spec.id, rnd) for s in self.senders}

    def ctx(self, sender: bytes) -> TxContext:
        return TxContext("test", self.height, 0, sender, frozenset({contract.HOSPITAL_ROLE}), bytes(32), "h")

    def view(self, holder: bytes | None = None) -> SecureRoundView:
        return secagg_queries.view(self.state, self.spec.id, holder)

    def post(self, handler: Callable[..., dict[str, Any]], sender: bytes, payload: dict[str, Any]) -> dict[str, Any]:
        snap = self.state.snapshot()
        try:
            return handler(self.state, self.ctx(sender), payload)
        except Exception:
            self.state.restore(snap)
            raise

    def tick(self) -> None:
        self.height += 1
        self.closed += secure_round.end_block(self.state, self.height)

    def until_stage_leaves(self, stage: str) -> None:
        for _ in range(self.spec.round_length_blocks + 1):
            if self.view().stage != stage or self.closed:
                return
            self.tick()
        raise AssertionError(f"stage {stage} did not close by its deadline")

    def keys(self, who: Sequence[bytes]) -> None:
        for s in who:
            self.post(secure_round.post_keys, s, self.hospitals[s].keys().model_dump())
        self.until_stage_leaves("keys")

    def shares(self, who: Sequence[bytes]) -> None:
        view = self.view()
        for s in who:
            self.post(secure_round.post_shares, s, self.hospitals[s].shares(view).model_dump())
        self.until_stage_leaves("shares")

    def masked(self, who: Sequence[bytes], updates: dict[bytes, npt.NDArray[np.int32]],
               samples: dict[bytes, int]) -> None:
        for s in who:
            payload = self.hospitals[s].masked(self.view(s), self.spec, updates[s], samples[s])
            self.post(secure_round.post_masked, s, payload.model_dump())
        self.until_stage_leaves("masked")

    def unmask(self, who: Sequence[bytes]) -> list[dict[str, Any]]:
        out = [self.post(secure_round.post_unmask, s, self.hospitals[s].unmask(self.view(s)).model_dump())
               for s in who]
        self.until_stage_leaves("unmask")
        return out

    def run(self, updates: dict[bytes, npt.NDArray[np.int32]], samples: dict[bytes, int],
            drop_after_shares: Sequence[bytes] = ()) -> RoundRecord:
        """One whole round in which everyone posts, except that ``drop_after_shares`` go silent."""
        everyone = self.senders
        alive = [s for s in everyone if s not in drop_after_shares]
        self.keys(everyone)
        self.shares(everyone)
        self.masked(alive, updates, samples)
        if not self.closed:
            self.unmask(alive)
        assert len(self.closed) == 1
        return self.closed[-1]
