"""A hospital's rounds of a model too large for a transaction: updates pushed as blobs, versions pulled as blobs.

:class:`BlobChainTransport` is ``client.fl.hospital.Transport`` for a model
whose spec declares ``blobs`` (``fl_contracts.blob_updates``); the training
loop is the inline one. Per round:

- ``get_model`` reads the committed version (verified by the light client),
  pulls the weights its ``weights_blob`` names from the validator, every
  chunk checked against the ref and the ref against the version's hash, and
  hands the loop a version with its weights filled in;
- ``submit`` pushes the quantized delta (``client.blobs.push_blob``) and
  sends ``fl.submit_update`` with only its ref. A push that loses its
  validator (killed, restarting, unreachable) is retried until
  ``push_timeout_s``: each retry asks ``blob_status`` first, so it resumes
  with the chunks the validator still lacks and ends with the same ref.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from client.blobs import pull_blob, push_blob
from client.session import ChainSession, ChainTransport
from core.blobs import BlobRef
from core.errors import BlobMismatch, NodeUnreachable, Timeout
from fl_contracts.blob_updates import version_hash

if TYPE_CHECKING:  # client.fl.hospital imports the torch trainer
    from client.fl.hospital import ChainModel

RETRY_PAUSE_S = 0.5
"""Between attempts to reach a validator that is down: the client's back-off, not a synchronisation."""


class BlobChainTransport(ChainTransport):
    def __init__(self, session: ChainSession, *, round_timeout_s: float = 120.0, push_timeout_s: float = 180.0
                 ) -> None:
        super().__init__(session, round_timeout_s=round_timeout_s)
        self.push_timeout_s = push_timeout_s
        self.last_push_s = 0.0
        self.last_pull_s = 0.0
        self.push_attempts = 0
        """Attempts the last push took (1 unless its validator went away mid-transfer)."""

    def get_model(self, model_id: str) -> ChainModel:
        model = super().get_model(model_id)
        ref = model.version.weights_blob
        if ref is None:
            return model
        if model.version.hash != version_hash(model_id, model.version.version, ref):
            raise BlobMismatch(f"{model_id} version {model.version.version}: its hash does not commit to its "
                               "weights blob")
        t0 = time.perf_counter()
        weights = self.session.run(lambda c: pull_blob(c, ref))
        self.last_pull_s = time.perf_counter() - t0
        return type(model)(model.spec, model.version.model_copy(update={"weights": weights}), model.open_round,
                           model.snapshot_height)

    def push(self, data: bytes) -> BlobRef:
        """Push ``data`` to this session's validator, resuming after it went away, until ``push_timeout_s``."""
        t0 = time.perf_counter()
        deadline = t0 + self.push_timeout_s
        self.push_attempts = 0
        while True:
            self.push_attempts += 1
            try:
                ref = self.session.run(lambda c: push_blob(c, data))
                break
            except (NodeUnreachable, Timeout):
                if time.perf_counter() > deadline:
                    raise
                time.sleep(RETRY_PAUSE_S)
        self.last_push_s = time.perf_counter() - t0
        return ref

    def submit(self, payload: dict[str, Any]) -> dict[str, Any]:
        delta = payload.get("delta")
        if delta is None:
            return super().submit(payload)
        ref = self.push(delta)
        rest = {k: v for k, v in payload.items() if k != "delta"}
        return super().submit({**rest, "delta_blob": ref.model_dump()})
