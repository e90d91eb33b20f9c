"""The hospital's side of consent: pseudonyms for its records, and the check before training.

The pseudonym secret never leaves the hospital's home (``keys/pseudonym_secret.json``,
mode 0600); only the HMAC of each record number under it goes on chain
(:func:`consent.record.pseudonym`). Before each round the client asks the
chain which of its patients may train the model at the round's consent
snapshot (``consent_check``) and trains only on their records, so an update
the contract would refuse is never built; :class:`ConsentedRows` says how
many records it left out.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from consent.queries import MAX_CHECK
from consent.record import Verdict, pseudonym
from core.errors import InvalidInput

SECRET_FILE = "pseudonym_secret.json"
CheckConsent = Callable[[str, int, list[bytes]], list[Verdict]]
"""``(model_id, snapshot height, pseudonyms) -> verdicts``, one per pseudonym, in order."""


def load_or_create_secret(keys_dir: Path) -> bytes:
    """The hospital's pseudonym secret, created (32 random bytes, mode 0600) on first use."""
    path = keys_dir / SECRET_FILE
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"type": "hmac-sha256", "secret": secrets.token_hex(32)}, f)
    if path.stat().st_mode & 0o077:
        raise InvalidInput(f"{path} has mode {oct(path.stat().st_mode & 0o777)}; it must be 0600")
    try:
        return bytes.fromhex(json.loads(path.read_text())["secret"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path} is not an fbci pseudonym secret") from None


def record_numbers(dataset: str, hospital_index: int, rows: int) -> list[str]:
    """The local record number of each training row (the shipped data sets have none, so the
    hospital numbers its share: ``<dataset>/h<index>/<row>``)."""
    return [f"{dataset}/h{hospital_index}/{row}" for row in range(rows)]


def pseudonyms(mrns: Sequence[str], secret: bytes) -> list[bytes]:
    return [pseudonym(mrn, secret) for mrn in mrns]


@dataclass(frozen=True)
class ConsentedRows:
    mask: npt.NDArray[np.bool_]
    """Rows whose patient may train the model at the snapshot."""
    patients: list[bytes]
    """Their distinct pseudonyms, ascending: the update's ``patients``."""
    left_out: int
    """Records skipped because their patient had no permit."""
    reasons: dict[str, int]
    """Why, and for how many records."""


def consented_rows(row_patients: Sequence[bytes], model_id: str, snapshot_height: int,
                   check: CheckConsent) -> ConsentedRows:
    distinct = sorted(set(row_patients))
    verdicts: dict[bytes, Verdict] = {}
    for start in range(0, len(distinct), MAX_CHECK):
        page = distinct[start:start + MAX_CHECK]
        for asked, verdict in zip(page, check(model_id, snapshot_height, page), strict=True):
            verdicts[asked] = verdict
    mask = np.array([verdicts[p].permitted for p in row_patients], dtype=bool)
    reasons: dict[str, int] = {}
    for p, ok in zip(row_patients, mask):
        if not ok:
            why = verdicts[p].reason.split(" for ")[0]
            reasons[why] = reasons.get(why, 0) + 1
    return ConsentedRows(mask, [p for p in distinct if verdicts[p].permitted], int((~mask).sum()), reasons)
