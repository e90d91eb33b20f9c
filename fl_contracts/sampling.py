"""Which hospitals take part in a sampled round: a seeded draw anyone can recompute.

A model whose declaration sets ``sample_rate_ppm`` (q, in millionths) does
not ask every hospital every round. When round ``r`` opens at the end of a
block whose hash is ``seed``, each hospital registered at that moment draws a
ticket, the first 8 bytes (big-endian) of
``SHA-256(canonical([DOMAIN, seed, model_id, r, hospital_key]))``, and is in
the round iff its ticket is below ``q * 2**64 // 10**6``.

Why this rule:

- Each hospital is in with probability q independently of the others
  (Poisson sampling). That is the sampling the RDP accountant's amplification
  theorem assumes (Mironov, Talwar and Zhang 2019; Opacus's
  ``RDPAccountant(sample_rate=q)``), so the DP curve in ``bench/bench_dp.py``
  uses the accountant for the draw the chain actually makes, not for a
  fixed-size draw it only resembles.
- A hospital's membership depends only on its own key, so the draw is
  independent of roster order, a hospital can check its own ticket without
  the roster, and raising q only adds hospitals (the set at q is a subset of
  the set at any larger q).
- Integer arithmetic on a hash: every validator and every client gets the
  same set, with no float and no randomness.

The size of the draw is Binomial(N, q) for N registered hospitals; it is
recorded with the draw so the round can close once every drawn hospital has
sent its update.

Privacy caveat (stated again in the README): the seed and the draw are
public on the chain, so amplification by sampling protects a hospital only
against an observer of the released models who does not read the round
records; a consortium member who does knows which rounds a hospital joined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from core import codec
from core.hashing import sha256
from core.state import StateView
from core.wire import WIRE_BYTES

DOMAIN = "fbci/fl/draw/1"
PPM = 1_000_000
TICKET_BITS = 64


def threshold(rate_ppm: int) -> int:
    """Tickets strictly below this are drawn; ``PPM`` (q = 1) gives ``2**64``, above every ticket."""
    return rate_ppm * (1 << TICKET_BITS) // PPM


def ticket(seed: bytes, model_id: str, rnd: int, hospital: bytes) -> int:
    digest = sha256(codec.encode([DOMAIN, seed, model_id, rnd, hospital]))
    return int.from_bytes(digest[: TICKET_BITS // 8], "big")


def is_drawn(seed: bytes, model_id: str, rnd: int, hospital: bytes, rate_ppm: int) -> bool:
    return ticket(seed, model_id, rnd, hospital) < threshold(rate_ppm)


def draw(seed: bytes, model_id: str, rnd: int, hospitals: Iterable[bytes], rate_ppm: int) -> tuple[bytes, ...]:
    """The drawn hospitals in bytewise key order (each once, whatever order or repeats ``hospitals`` has)."""
    return tuple(sorted({h for h in hospitals if is_drawn(seed, model_id, rnd, h, rate_ppm)}))


class Draw(BaseModel):
    """A sampled round's draw as state keeps it: enough to recompute it and to check a sender."""

    model_config = ConfigDict(extra="forbid", frozen=True, **WIRE_BYTES)
    model_id: str
    round: int
    seed: bytes
    """The hash of the block at whose end the round opened (zero bytes for a round opened at genesis)."""
    rate_ppm: int
    population: int
    """Hospitals registered when the round opened: the roster the draw ran over."""
    drawn: list[bytes]
    """The drawn hospitals' public keys, in bytewise order."""

    def includes(self, hospital: bytes) -> bool:
        return hospital in self.drawn


def _draw_key(model_id: str, rnd: int) -> bytes:
    return b"/".join([b"fl", b"draw", model_id.encode(), rnd.to_bytes(8, "big")])


def open_draw(state: StateView, model_id: str, rnd: int, seed: bytes, rate_ppm: int,
              roster: Sequence[bytes]) -> Draw:
    """Draw round ``rnd`` over ``roster`` and keep it under ``fl/draw/<id>/<round:8 BE>`` (kept after the
    round closes, so a past draw can still be checked)."""
    record = Draw(model_id=model_id, round=rnd, seed=seed, rate_ppm=rate_ppm, population=len(set(roster)),
                  drawn=list(draw(seed, model_id, rnd, roster, rate_ppm)))
    state.set(_draw_key(model_id, rnd), codec.encode(record.model_dump()))
    return record


def load_draw(state: StateView, model_id: str, rnd: int) -> Draw | None:
    """The draw of round ``rnd``; None: the model does not sample, or the round has not opened."""
    raw = state.get(_draw_key(model_id, rnd))
    return None if raw is None else Draw.model_validate(codec.decode(raw))
