"""The secure-aggregation step of ``fbci demo``: one secure round, and what each validator saw of it.

Four hospitals train the breast-cancer model declared ``secure: true``
(``breast_cancer_secure`` in :mod:`devnet.catalog`) for one round through
:class:`client.fl.secagg_driver.SecureRoundDriver`, each against its own
validator. Each hospital's trained, quantized update is kept here only to
look for it afterwards: every validator's store is searched for it, in the
int32 form a plain round would carry and in the weighted int64 form that was
masked, and the demo prints what each validator holds instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from client.fl.data import breast_cancer_split
from client.fl.hospital import ChainModel, HospitalClient
from client.fl.secagg import weighted_update
from client.fl.secagg_driver import SecureRoundDriver
from client.fl.training import TrainConfig
from client.session import ChainSession
from core.crypto import PrivateKey
from fl_contracts.contract import RoundRecord
from fl_contracts.fixedpoint import decode_delta, encode_delta
from fl_contracts.secagg_queries import FL_SECURE_OUTCOME, SecureOutcomeParams

MODEL = "breast_cancer_secure"
Say = Callable[[str], None]


def _hospital(url: str, key: PrivateKey, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64],
              seed: int) -> tuple[RoundRecord, npt.NDArray[np.int32]]:
    """Join, train on the round's base version, mask, reveal; returns the record and the update it hid."""
    with ChainSession(url, key) as session:
        driver = SecureRoundDriver(session, MODEL)
        joined = driver.join()
        driver.share()
        model = ChainModel(session.spec(MODEL), session.model_version(MODEL, joined.base_version), joined.round)
        payload = HospitalClient(MODEL, x, y, TrainConfig(local_epochs=2, lr=0.2, batch_size=32),
                                 seed=seed).make_update(model)
        q = decode_delta(payload["delta"], model.spec.num_params).copy()
        _ = driver.submit_masked(q, payload["num_samples"]) and driver.reveal()
        return driver.wait_closed(), q


def secure_round(urls: Sequence[str], homes: Sequence[Path], keys: Sequence[PrivateKey], say: Say) -> None:
    split = breast_cancer_split(len(keys), alpha=0.5, seed=0)
    say(f"{len(keys)} hospitals train {MODEL} for one round: keys, encrypted shares, masked inputs, unmask")
    with ThreadPoolExecutor(len(keys)) as pool:
        jobs = [pool.submit(_hospital, urls[i], keys[i], x, y, i) for i, (x, y) in enumerate(split.hospitals)]
        results = [job.result() for job in jobs]
    record = results[0][0]
    say(f"  round {record.round} {record.status} at height {record.closed_height}: "
        f"{record.accepted} updates summed, new version v{record.new_version}")
    updates = [q for _, q in results]
    with ChainSession(urls[0], keys[0]) as session:
        spec = session.spec(MODEL)
    needles = [encode_delta(q) for q in updates]
    needles += [weighted_update(spec, q, len(y)).astype("<i8").tobytes() for q, (_, y) in zip(updates, split.hospitals)]
    for url, home in zip(urls, homes):
        with ChainSession(url) as session:
            outcome = session.run(lambda c: c.query(FL_SECURE_OUTCOME, SecureOutcomeParams(model_id=MODEL,
                                                                                            round=record.round)))
        stored = b"".join(f.read_bytes() for f in home.rglob("*") if f.is_file())
        found = sum(n in stored for n in needles)
        say(f"  {home.name}: saw {len(outcome.masked)} masked inputs; its store ({len(stored) >> 10} KiB) holds "
            f"{found} of the {len(updates)} hospitals' updates in the clear")
