"""A custodian with more patients than a validator's nonce window grants them without running ahead of it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from client.consent import grant_many
from core.tx import MAX_NONCE_GAP


class WindowedSession:
    """Commits a submitted transaction only when it is waited for, and refuses one that would be more than
    ``MAX_NONCE_GAP`` ahead of what has committed, as a validator's admission does."""

    def __init__(self) -> None:
        self.committed = 0
        self.submitted = 0
        self.heights: dict[bytes, int] = {}

    def submit(self, kind: str, payload: dict[str, Any]) -> bytes:
        if self.submitted + 1 > self.committed + MAX_NONCE_GAP:
            raise AssertionError(f"nonce {self.submitted + 1} is more than {MAX_NONCE_GAP} ahead of {self.committed}")
        self.submitted += 1
        return self.submitted.to_bytes(32, "big")

    def wait_committed(self, tx_hash: bytes) -> SimpleNamespace:
        nonce = int.from_bytes(tx_hash, "big")
        self.committed = max(self.committed, nonce)
        return SimpleNamespace(receipt=SimpleNamespace(height=10 + nonce // 7))


def test_more_patients_than_the_nonce_window_are_granted_in_windows() -> None:
    session = WindowedSession()
    patients = [bytes([i % 256]) * 32 for i in range(3 * MAX_NONCE_GAP + 5)]
    height = grant_many(session, patients, "train:m")  # type: ignore[arg-type]
    assert session.committed == session.submitted == len(patients)
    assert height == 10 + len(patients) // 7


def test_no_patients_is_no_transaction() -> None:
    session = WindowedSession()
    assert grant_many(session, [], "train:m") == 0 and session.submitted == 0  # type: ignore[arg-type]
