"""Which blobs a validator keeps, and deleting the rest.

The policy (README "Blobs"):

1. A blob an open round needs (``blob/need/…``) or that holds a global model
   version (``blob/keep/…``) is kept, complete or not.
2. A blob a round once needed is kept while that round is among the last
   ``keep_rounds`` rounds of its model this validator saw (so a recent round's
   result can still be re-checked from its inputs); after that it is deleted.
3. Any other blob, complete or partial, is an upload nobody referenced: it is
   deleted ``upload_ttl_s`` after it was last written.

Which rounds referenced a blob is this validator's own memory (the need index
forgets a round when it closes), kept in ``uses.json`` beside the blobs and
learned from the need index at every commit.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from core.blobs import BlobRef, Keep, Need
from node.blobs.store import Held

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrunePolicy:
    keep_rounds: int = 3
    upload_ttl_s: float = 3600.0
    interval_s: float = 60.0
    """How often the pruner runs."""


class Use(BaseModel):
    """A round of a model that needed a blob."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    model_id: str
    round: int


class Uses:
    """The rounds that referenced each blob, persisted as ``{sha hex: [Use, ...]}``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_sha: dict[bytes, set[Use]] = {}
        try:
            raw = json.loads(path.read_text())
            self.by_sha = {bytes.fromhex(sha): {Use.model_validate(u) for u in uses} for sha, uses in raw.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, ValidationError, AttributeError):
            log.warning("blob uses file %s is unreadable; starting from the chain's need index alone", path)

    def learn(self, needs: Iterable[Need]) -> bool:
        """Record the rounds in ``needs``; whether anything was new (then :meth:`save`)."""
        changed = False
        for need in needs:
            use = Use(model_id=need.model_id, round=need.round)
            known = self.by_sha.setdefault(need.ref.sha256, set())
            if use not in known:
                known.add(use)
                changed = True
        return changed

    def forget(self, sha: bytes) -> None:
        self.by_sha.pop(sha, None)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        ordered = {sha.hex(): sorted(uses, key=lambda u: (u.model_id, u.round)) for sha, uses in self.by_sha.items()}
        tmp.write_text(json.dumps({sha: [u.model_dump() for u in uses] for sha, uses in sorted(ordered.items())}))
        os.replace(tmp, self.path)


def to_delete(holdings: Iterable[Held], needed: Iterable[Need], kept: Iterable[Keep], uses: Uses,
              policy: PrunePolicy, now_s: float) -> list[BlobRef]:
    """The blobs the policy deletes now, in the order ``holdings`` lists them."""
    protected = {n.ref.sha256 for n in needed} | {k.ref.sha256 for k in kept}
    latest: dict[str, int] = {}
    for known in uses.by_sha.values():
        for use in known:
            latest[use.model_id] = max(latest.get(use.model_id, use.round), use.round)
    doomed = []
    for held in holdings:
        sha = held.ref.sha256
        if sha in protected:
            continue
        referenced = uses.by_sha.get(sha)
        if referenced:
            recent = any(u.round > latest[u.model_id] - policy.keep_rounds for u in referenced)
            if not recent:
                doomed.append(held.ref)
        elif now_s - held.modified_s > policy.upload_ttl_s:
            doomed.append(held.ref)
    return doomed
