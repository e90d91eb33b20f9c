"""One hospital's secure round over JSON-RPC: each stage's transaction as soon as the chain opens the stage.

The chain, not the hospitals, decides when a stage closes (all expected
posts, or its deadline in blocks), so the driver only watches the round's
view after every new block and acts when its stage comes. A round that fails
while the driver waits (too few hospitals left) ends the wait: every step
returns ``False`` and :meth:`SecureRoundDriver.wait_closed` gives the failed
record with its reason. The hospital's secrets live in the driver's
:class:`~client.fl.secagg.SecureHospital` for one round and are never written
anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from client.fl.secagg import SecureHospital
from client.rpc import RpcClient
from client.session import ChainSession, ChainTransport, _wait_until
from core.errors import InvalidInput
from fl_contracts.contract import RoundRecord
from fl_contracts.fixedpoint import decode_delta
from fl_contracts.secagg_msgs import KEYS_KIND, MASKED_KIND, SHARES_KIND, STAGES, UNMASK_KIND, SecureRoundView, Stage
from fl_contracts.secagg_queries import FL_SECURE_ROUND, SecureRoundParams

if TYPE_CHECKING:  # client.fl.hospital imports the torch trainer
    from client.fl.hospital import ChainModel


class SecureRoundDriver:
    def __init__(self, session: ChainSession, model_id: str, *, stage_timeout_s: float = 120.0) -> None:
        if session.key is None:
            raise InvalidInput("a secure round needs the hospital's signing key")
        self.session = session
        self.model_id = model_id
        self.me = session.key.public_key.raw
        self.timeout_s = stage_timeout_s
        self.hospital: SecureHospital | None = None

    async def _view(self, client: RpcClient) -> SecureRoundView:
        return await client.query(FL_SECURE_ROUND, SecureRoundParams(model_id=self.model_id, holder=self.me))

    def view(self) -> SecureRoundView:
        return self.session.run(self._view)

    def _await(self, stage: Stage) -> SecureRoundView | None:
        """The view once our round reaches ``stage``; None if the round closed or left the stage first
        (a hospital too slow for a stage's deadline has dropped out, which a secure round tolerates)."""
        assert self.hospital is not None
        rnd, want = self.hospital.round, STAGES.index(stage)

        def wait(c: RpcClient) -> Awaitable[SecureRoundView]:
            async def probe() -> SecureRoundView | None:
                v = await self._view(c)
                return v if v.round != rnd or STAGES.index(v.stage) >= want else None

            return _wait_until(c, probe, self.timeout_s, f"{self.model_id} round {rnd} did not reach {stage}")

        found = self.session.run(wait)
        return found if found.round == rnd and found.stage == stage else None

    def join(self) -> SecureRoundView:
        """Post keys in the next keys stage with at least half its blocks left (this round's, or the next
        round's); returns that stage's view. A stage about to reach its deadline is let go: keys posted
        there could commit after it, and hospitals that start together would split across two rounds."""
        margin = max(1, self.session.spec(self.model_id).round_length_blocks // 2)

        def wait(c: RpcClient) -> Awaitable[SecureRoundView]:
            async def keys_stage() -> SecureRoundView | None:
                v = await self._view(c)
                if v.stage != "keys":
                    return None
                return v if v.deadline_height - (await c.status()).height >= margin else None

            return _wait_until(c, keys_stage, self.timeout_s, f"no keys stage of {self.model_id}")

        v = self.session.run(wait)
        self.hospital = SecureHospital(self.me, self.model_id, v.round)
        self.session.submit_commit(KEYS_KIND, self.hospital.keys().model_dump())
        return v

    def share(self) -> bool:
        v = self._await("shares")
        if v is None or self.me not in [m.sender for m in v.members]:
            return False
        assert self.hospital is not None
        self.session.submit_commit(SHARES_KIND, self.hospital.shares(v).model_dump())
        return True

    def submit_masked(self, q: npt.NDArray[np.int32], num_samples: int) -> bool:
        v = self._await("masked")
        if v is None or self.me not in v.shared:
            return False
        assert self.hospital is not None
        payload = self.hospital.masked(v, self.session.spec(self.model_id), q, num_samples)
        self.session.submit_commit(MASKED_KIND, payload.model_dump())
        return True

    def reveal(self) -> bool:
        v = self._await("unmask")
        if v is None or self.me not in v.masked:
            return False
        assert self.hospital is not None
        self.session.submit_commit(UNMASK_KIND, self.hospital.unmask(v).model_dump())
        return True

    def wait_closed(self) -> RoundRecord:
        assert self.hospital is not None
        rnd = self.hospital.round

        def wait(c: RpcClient) -> Awaitable[RoundRecord]:
            async def closed() -> RoundRecord | None:
                for record in await c.fl_rounds(self.model_id):
                    if record.round == rnd and record.status != "open":
                        return record
                return None

            return _wait_until(c, closed, 4 * self.timeout_s, f"{self.model_id} round {rnd} did not close")

        return self.session.run(wait)

    def run(self, q: npt.NDArray[np.int32], num_samples: int) -> RoundRecord:
        """The whole round for an update ``q`` computed against the round's base version."""
        self.join()
        _ = self.share() and self.submit_masked(q, num_samples) and self.reveal()
        return self.wait_closed()


class SecureChainTransport(ChainTransport):
    """``client.fl.hospital.Transport`` for a model with ``secure: true``.

    Keys and shares do not depend on the update, so they are posted in
    :meth:`get_model`, before training; :meth:`submit` masks the trained
    update and reveals; a hospital whose training outlasts the masked stage
    has dropped out, and the round goes on without it.
    """

    def __init__(self, session: ChainSession, *, round_timeout_s: float = 120.0) -> None:
        super().__init__(session, round_timeout_s=round_timeout_s)
        self.driver: SecureRoundDriver | None = None

    def get_model(self, model_id: str) -> ChainModel:
        from client.fl.hospital import ChainModel

        self.driver = SecureRoundDriver(self.session, model_id, stage_timeout_s=self.round_timeout_s)
        joined = self.driver.join()
        self.driver.share()
        version = self.session.model_version(model_id, joined.base_version)
        return ChainModel(self.session.spec(model_id), version, joined.round)

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.driver is None:
            raise InvalidInput("get_model joins the round before an update can be submitted")
        q = decode_delta(payload["delta"], self.session.spec(self.driver.model_id).num_params)
        t0 = time.perf_counter()
        masked = self.driver.submit_masked(q, payload["num_samples"]) and self.driver.reveal()
        self.last_submit_s = time.perf_counter() - t0
        return {"secure": True, "masked_input_counted": masked}

    def wait_round(self, model_id: str, round: int) -> RoundRecord:
        if self.driver is None or self.driver.hospital is None or self.driver.hospital.round != round:
            raise InvalidInput(f"this transport did not join {model_id} round {round}")
        return self.driver.wait_closed()
