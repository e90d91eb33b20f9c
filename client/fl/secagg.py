"""A hospital's side of a secure round: keys, encrypted shares, the masked input, the reveal.

One :class:`SecureHospital` lives for one round and keeps its three secrets
in memory only: the X25519 key it receives shares on, the X25519 key it
agrees pairwise masks with (derived from the seed ``k``), and its self-mask
seed ``b``. Secret sharing of ``b`` and ``k`` is PyCryptodome's Shamir over
GF(2^128) (see :mod:`fl_contracts.secagg`); each share travels to its
holder under ChaCha20-Poly1305 with a key from X25519 + HKDF that is used for
that one message, so the nonce is constant, and the associated data binds
the round, the dealer and the holder.

Norm bounding moves here from the chain: the contract never sees an update,
so the hospital applies the chain's own :func:`fl_contracts.aggregation.norm_bound`
and FedAvg weight before masking, and the aggregate equals the plain round's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from core.errors import InvalidInput
from fl_contracts import secagg
from fl_contracts.aggregation import norm_bound
from fl_contracts.secagg_msgs import Dealt, RevealedShare, SecKeys, SecMasked, SecShares, SecUnmask, SecureRoundView
from fl_contracts.spec import ModelSpec

_NONCE = bytes(12)
"""Every channel key encrypts exactly one message (HKDF binds round, dealer and holder)."""


def split(secret: bytes, t: int, n: int) -> list[bytes]:
    """``n`` shares of a 16-byte secret, any ``t`` of which rebuild it; share ``i`` is for index ``i + 1``."""
    if len(secret) != secagg.SECRET_BYTES or not 2 <= t <= n:
        raise InvalidInput(f"split needs a {secagg.SECRET_BYTES}-byte secret and 2 <= t <= n, got t={t}, n={n}")
    return [share for _, share in Shamir.split(t, n, secret)]


def weighted_update(spec: ModelSpec, q: npt.NDArray[np.int32], num_samples: int) -> npt.NDArray[np.int64]:
    """``w x`` with ``x`` norm-bounded exactly as the chain bounds a plain update."""
    if q.shape != (spec.num_params,):
        raise InvalidInput(f"update has shape {q.shape}; the model has {spec.num_params} parameters")
    if max(-int(q.min()), int(q.max())) > spec.max_abs:
        raise InvalidInput(f"an update coordinate is beyond max_abs={spec.max_abs} quanta")
    rows = np.array(q, dtype=np.int32).reshape(1, -1)
    norm_bound(rows, spec.max_norm)
    return rows[0].astype(np.int64) * min(num_samples, spec.max_samples)


@dataclass
class SecureHospital:
    """``sender``: the hospital's account key, as the chain knows it."""

    sender: bytes
    model_id: str
    round: int
    _enc: bytes = field(default_factory=lambda: os.urandom(secagg.KEY_BYTES), repr=False)
    """Raw X25519 private key the hospital receives shares on."""
    _k: bytes = field(default_factory=lambda: os.urandom(secagg.SECRET_BYTES), repr=False)
    """Seed of the mask-agreement key (:func:`fl_contracts.secagg.mask_key`)."""
    _b: bytes = field(default_factory=lambda: os.urandom(secagg.SECRET_BYTES), repr=False)
    held: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    """Per dealer, the (b, s) shares it sent this hospital, checked against its commitments."""
    refused: list[bytes] = field(default_factory=list)
    """Dealers whose ciphertext did not decrypt or did not match their commitments."""

    @property
    def tag(self) -> secagg.RoundTag:
        return secagg.RoundTag(self.model_id, self.round)

    @property
    def _mask(self) -> bytes:
        return secagg.mask_key(self.tag, self.sender, self._k)

    def _check(self, view: SecureRoundView, stage: str) -> None:
        if (view.model_id, view.round, view.stage) != (self.model_id, self.round, stage):
            raise InvalidInput(f"expected {self.model_id} round {self.round} in the {stage} stage; the chain is at "
                               f"{view.model_id} round {view.round}, stage {view.stage}")

    def keys(self) -> SecKeys:
        return SecKeys(model_id=self.model_id, round=self.round, enc_pk=secagg.x25519_public(self._enc),
                       mask_pk=secagg.x25519_public(self._mask))

    def shares(self, view: SecureRoundView) -> SecShares:
        self._check(view, "shares")
        n, t = len(view.members), view.threshold
        if t != secagg.threshold(n) or self.sender not in [m.sender for m in view.members]:
            raise InvalidInput(f"the round's view is not one the contract makes: threshold {t} for {n} members, "
                               f"or this hospital is not among them")
        b_shares, s_shares = split(self._b, t, n), split(self._k, t, n)
        cts, cb, cs = [], [], []
        for m, bs, ss in zip(view.members, b_shares, s_shares):
            shared = secagg.agree(self._enc, m.enc_pk)
            key = secagg.channel_key(self.tag, shared, self.sender, m.sender)
            cts.append(ChaCha20Poly1305(key).encrypt(_NONCE, bs + ss, secagg.channel_ad(self.tag, self.sender, m.sender)))
            cb.append(secagg.share_commitment(self.tag, self.sender, m.sender, "b", bs))
            cs.append(secagg.share_commitment(self.tag, self.sender, m.sender, "s", ss))
        return SecShares(model_id=self.model_id, round=self.round, ciphertexts=cts, commit_b=cb, commit_s=cs,
                         commit_seed=secagg.seed_commitment(self.tag, self.sender, self._b))

    def _open(self, view: SecureRoundView, dealt: Dealt) -> tuple[bytes, bytes] | None:
        dealer = view.member(dealt.dealer)
        key = secagg.channel_key(self.tag, secagg.agree(self._enc, dealer.enc_pk), dealt.dealer,
                                 self.sender)
        try:
            plain = ChaCha20Poly1305(key).decrypt(_NONCE, dealt.ciphertext,
                                                  secagg.channel_ad(self.tag, dealt.dealer, self.sender))
        except InvalidTag:
            return None
        bs, ss = plain[: secagg.SHARE_BYTES], plain[secagg.SHARE_BYTES :]
        ok = (secagg.share_commitment(self.tag, dealt.dealer, self.sender, "b", bs) == dealt.commit_b
              and secagg.share_commitment(self.tag, dealt.dealer, self.sender, "s", ss) == dealt.commit_s)
        return (bs, ss) if ok else None

    def masked(self, view: SecureRoundView, spec: ModelSpec, q: npt.NDArray[np.int32], num_samples: int) -> SecMasked:
        """Read the shares addressed to us (the view must carry our inbox), then mask ``q``."""
        self._check(view, "masked")
        if self.sender not in view.shared:
            raise InvalidInput("this hospital's shares were not included; it cannot take part in this round")
        for dealt in view.inbox:
            opened = self._open(view, dealt)
            if opened is None:
                self.refused.append(dealt.dealer)
            else:
                self.held[dealt.dealer] = opened
        peers = [(m.sender, m.mask_pk) for m in view.members if m.sender in view.shared and m.sender != self.sender]
        y = secagg.mask_input(self.tag, self.sender, weighted_update(spec, q, num_samples), self._b,
                              self._mask, peers)
        return SecMasked(model_id=self.model_id, round=self.round, num_samples=num_samples,
                         masked=y.astype(secagg.RING_DTYPE).tobytes())

    def unmask(self, view: SecureRoundView) -> SecUnmask:
        """Shares of survivors' self-mask seeds and of dropouts' mask keys: never both for one dealer."""
        self._check(view, "unmask")
        reveal = []
        for dealer in view.shared:
            if dealer not in self.held:
                continue
            bs, ss = self.held[dealer]
            kind = "b" if dealer in view.masked else "s"
            reveal.append(RevealedShare(dealer=dealer, kind=kind, share=bs if kind == "b" else ss))
        return SecUnmask(model_id=self.model_id, round=self.round, shares=reveal, own_seed=self._b)
