"""Secure-aggregation algebra shared by the hospital and the contract (Bonawitz et al., CCS 2017).

Ring. Masked inputs live in Z_(2^64): numpy ``uint64`` arithmetic wraps, so
a sum of masked vectors is exact whatever the order. A hospital's input is
its FedAvg-weighted update ``w * x`` (``x`` already norm-bounded at the
hospital); ``|sum_i w_i x_i| <= N * W * A <= 2**53`` (bound (2) of
:mod:`fl_contracts.fixedpoint`), so reading the unmasked sum as int64 is exact.

Masks. A 32-byte seed keys a ChaCha20 stream (RFC 7539 block function,
counter and nonce zero): its bytes, read as little-endian uint64, are the
mask. Every seed is used for one stream only, because each is derived with
HKDF-SHA256 bound to the round (:class:`RoundTag`) and to what it masks:

- self mask of hospital ``u``: ``HKDF(b_u, info=[tag, "self", u])``;
- pairwise mask of ``u`` and ``v``: ``HKDF(X25519(s_u, S_v), info=[tag, "pair", min, max])``;
  the lower key adds it and the higher subtracts it, so it cancels in the sum.

Shares. The two secrets a hospital shares are 16-byte seeds, one element of
GF(2^128), the field of PyCryptodome's Shamir scheme: ``b_u`` (expanded by
HKDF into the self-mask's 32-byte seed) and ``k_u``, from which HKDF derives
the X25519 private key ``s_u`` (:func:`mask_key`; any 32 bytes are an X25519
key). Sharing 16-byte seeds rather than 32-byte secrets as two halves halves
the chain's interpolation work, which dominates its cost of a round, for 128
bits of security, as much as X25519 gives. Each share is committed by its dealer
(:func:`share_commitment`), so a holder that reveals anything else is caught
by one hash. Splitting needs randomness and happens at the hospital
(``client/fl/secagg.py``, ``Shamir.split``); combining is deterministic and
happens on chain (:func:`combine_all`, equal to ``Shamir.combine``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from Crypto.Protocol.SecretSharing import _Element  # PyCryptodome's GF(2^128), the field of its Shamir scheme
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core import codec
from core.errors import InvalidInput
from core.hashing import sha256

DOMAIN = "fbci/secagg/1"
SEED_BYTES = 32
KEY_BYTES = 32
SECRET_BYTES = SHARE_BYTES = 16
RING_DTYPE = np.dtype("<u8")
SecretKind = Literal["b", "s"]
"""``b``: the self-mask seed; ``s``: the seed of the pairwise (mask-agreement) private key."""

Ring = npt.NDArray[np.uint64]
_PROBE = X25519PrivateKey.from_private_bytes(bytes([9]) * 32)


@dataclass(frozen=True)
class RoundTag:
    """What every derived key, seed and commitment of one secure round is bound to."""

    model_id: str
    round: int

    def info(self, *parts: str | bytes | int) -> bytes:
        return codec.encode([DOMAIN, self.model_id, self.round, *parts])


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def mask_stream(seed: bytes, n: int) -> Ring:
    """``n`` uniform elements of Z_(2^64) from the ChaCha20 stream keyed by ``seed``."""
    if len(seed) != SEED_BYTES:
        raise InvalidInput(f"a mask seed is {SEED_BYTES} bytes, got {len(seed)}")
    stream = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(8 * n)), dtype=RING_DTYPE).copy()


def check_public_key(raw: bytes) -> None:
    """Refuse a key that is not 32 bytes or is of small order (its shared secrets would be all zero)."""
    if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
        raise InvalidInput(f"an X25519 public key is {KEY_BYTES} bytes")
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise InvalidInput("X25519 public key is of small order") from None


def agree(private_raw: bytes, public_raw: bytes) -> bytes:
    """X25519 shared secret; both keys were checked when posted."""
    return X25519PrivateKey.from_private_bytes(private_raw).exchange(X25519PublicKey.from_public_bytes(public_raw))


def self_seed(tag: RoundTag, owner: bytes, b: bytes) -> bytes:
    return _hkdf(b, tag.info("self", owner))


def mask_key(tag: RoundTag, owner: bytes, k: bytes) -> bytes:
    """The raw X25519 private key a hospital agrees pairwise masks with, from its shared seed ``k``."""
    return _hkdf(k, tag.info("mask-key", owner))


def x25519_public(private_raw: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_raw).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pair_seed(tag: RoundTag, shared: bytes, u: bytes, v: bytes) -> bytes:
    lo, hi = sorted((u, v))
    return _hkdf(shared, tag.info("pair", lo, hi))


def channel_key(tag: RoundTag, shared: bytes, dealer: bytes, holder: bytes) -> bytes:
    """Key of the one message ``dealer`` sends ``holder`` (directional, so each key encrypts once)."""
    return _hkdf(shared, tag.info("enc", dealer, holder))


def channel_ad(tag: RoundTag, dealer: bytes, holder: bytes) -> bytes:
    """Associated data of that message: round, sender and receiver."""
    return tag.info("enc-ad", dealer, holder)


def share_commitment(tag: RoundTag, dealer: bytes, holder: bytes, kind: SecretKind, share: bytes) -> bytes:
    """To anyone holding fewer than ``t`` shares a share is uniform in GF(2^128): a plain hash hides it."""
    return sha256(tag.info("share", kind, dealer, holder, share))


def seed_commitment(tag: RoundTag, owner: bytes, b: bytes) -> bytes:
    """Binds a hospital to its self-mask seed, so it can reveal the seed itself instead of the chain
    rebuilding it from ``t`` shares (a 128-bit random seed: the hash hides it)."""
    return sha256(tag.info("seed", owner, b))


def to_ring(values: npt.NDArray[np.integer]) -> Ring:
    """Signed integers as ring elements (two's complement)."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def from_ring(values: Ring) -> npt.NDArray[np.int64]:
    """Ring elements back to signed integers; exact when the true value fits in int64."""
    return np.asarray(values, dtype=np.uint64).view(np.int64)


def pair_sign(me: bytes, other: bytes) -> int:
    return 1 if me < other else -1


def add_signed(acc: Ring, mask: Ring, sign: int) -> None:
    """``acc += sign * mask`` in the ring, in place (uint64 wraps)."""
    if sign > 0:
        np.add(acc, mask, out=acc)
    else:
        np.subtract(acc, mask, out=acc)


def mask_input(tag: RoundTag, me: bytes, weighted: npt.NDArray[np.int64], b: bytes, s_private: bytes,
               peers: Sequence[tuple[bytes, bytes]]) -> Ring:
    """``w x + PRG(b) + sum_v +-PRG(s_uv)`` over ``peers`` = (account key, mask public key), all but ``me``."""
    n = weighted.shape[0]
    out = to_ring(weighted).copy()
    add_signed(out, mask_stream(self_seed(tag, me, b), n), 1)
    for other, public in peers:
        if other == me:
            raise InvalidInput("a hospital does not mask against itself")
        add_signed(out, mask_stream(pair_seed(tag, agree(s_private, public), me, other), n), pair_sign(me, other))
    return out


def unmask_sum(tag: RoundTag, masked_sum: Ring, self_seeds: Sequence[tuple[bytes, bytes]],
               dropouts: Sequence[tuple[bytes, bytes]], survivors: Sequence[tuple[bytes, bytes]]) -> npt.NDArray[np.int64]:
    """Remove the masks from the sum of the survivors' masked inputs.

    ``self_seeds``: (survivor, reconstructed ``b``); ``dropouts``: (dropout,
    reconstructed mask private key); ``survivors``: (survivor, mask public key).
    A survivor ``u`` added ``sign(u, d) * PRG(s_ud)`` for each dropout ``d``
    that no input of ``d`` cancels, so it is subtracted here.
    """
    n = masked_sum.shape[0]
    acc = np.array(masked_sum, dtype=np.uint64)
    for owner, b in self_seeds:
        add_signed(acc, mask_stream(self_seed(tag, owner, b), n), -1)
    for dropout, s_private in dropouts:
        for survivor, public in survivors:
            seed = pair_seed(tag, agree(s_private, public), survivor, dropout)
            add_signed(acc, mask_stream(seed, n), -pair_sign(survivor, dropout))
    return from_ring(acc)


def _lagrange_at_zero(indexes: tuple[int, ...]) -> list[_Element]:
    """The factor of each share's value in the secret, exactly as ``Shamir.combine`` forms it
    (in GF(2^128) subtraction is addition): ``prod_m x_m / prod_m (x_j + x_m)`` over ``m != j``."""
    xs = [_Element(i) for i in indexes]
    out = []
    for j, x_j in enumerate(xs):
        num, den = _Element(1), _Element(1)
        for m, x_m in enumerate(xs):
            if m != j:
                num *= x_m
                den *= x_j + x_m
        out.append(num * den.inverse())
    return out


def combine_all(groups: Sequence[Sequence[tuple[int, bytes]]]) -> list[bytes]:
    """Each group's 16-byte secret from its shares (1-based holder index, 16-byte share); deterministic.

    The result is ``Shamir.combine`` of each group (a test holds them equal), computed in
    PyCryptodome's own field elements, but with the interpolation factors computed once per set
    of holder indexes rather than once per secret. Every dealer's secret is normally rebuilt from
    the same first ``t`` holders, so this turns ``t**2`` field products and ``t`` inversions per
    secret into ``t`` products, the difference between the chain's unmasking dominating a round
    and not (pure-Python GF(2^128) products cost about 0.1 ms each).
    """
    factors: dict[tuple[int, ...], list[_Element]] = {}
    out = []
    for shares in groups:
        if any(len(share) != SHARE_BYTES for _, share in shares):
            raise InvalidInput(f"a share is {SHARE_BYTES} bytes")
        indexes = tuple(i for i, _ in shares)
        if len(set(indexes)) != len(indexes) or min(indexes, default=0) < 1:
            raise InvalidInput("share indexes must be distinct and positive")
        if indexes not in factors:
            factors[indexes] = _lagrange_at_zero(indexes)
        acc = _Element(0)
        for f, (_, share) in zip(factors[indexes], shares):
            acc += f * _Element(share)
        out.append(acc.encode())
    return out


def threshold(n: int) -> int:
    """Shares needed to rebuild a secret among ``n`` holders: a strict majority, so no minority
    coalition of hospitals can rebuild anything, and a round survives up to ``n - t`` dropouts."""
    return n // 2 + 1
