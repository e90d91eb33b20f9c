"""A hospital's side of a secure round: keys, encrypted shares, the masked input, the reveal.

One :class:`SecureHospital` lives for one round and keeps its three secrets
in memory only: the X25519 key it receives shares on, the X25519 key it
agrees pairwise masks with (``s``), and its self-mask seed ``b``. Secret
sharing is PyCryptodome's Shamir over GF(2^128) (two 16-byte halves per
32-byte secret, see :mod:`fl_contracts.secagg`); each share travels to its
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
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from core.errors import InvalidInput
from fl_contracts import secagg
from fl_contracts.aggregation import norm_bound
from fl_contracts.secagg_msgs import Dealt, RevealedShare, SecKeys, SecMasked, SecShares, SecUnmask, SecureRoundView
from fl_contracts.spec import ModelSpec

_NONCE = bytes(12)
"""Every channel key encrypts exactly one message (HKDF binds round, dealer and holder)."""


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def split(secret: bytes, t: int, n: int) -> list[bytes]:
    """``n`` 32-byte shares of a 32-byte secret, any ``t`` of which rebuild it; share ``i`` is for index ``i + 1``."""
    if len(secret) != 32 or not 2 <= t <= n:
        raise InvalidInput(f"split needs a 32-byte secret and 2 <= t <= n, got t={t}, n={n}")
    lo, hi = Shamir.split(t, n, secret[:16]), Shamir.split(t, n, secret[16:])
    return [a + b for (_, a), (_, b) in zip(lo, hi)]


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
    _enc: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate, repr=False)
    _mask: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate, repr=False)
    _b: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    held: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    """Per dealer, the (b, s) shares it sent this hospital, checked against its commitments."""
    refused: list[bytes] = field(default_factory=list)
    """Dealers whose ciphertext did not decrypt or did not match their commitments."""

    @property
    def tag(self) -> secagg.RoundTag:
        return secagg.RoundTag(self.model_id, self.round)

    def _check(self, view: SecureRoundView, stage: str) -> None:
        if (view.model_id, view.round, view.stage) != (self.model_id, self.round, stage):
            raise InvalidInput(f"expected {self.model_id} round {self.round} in the {stage} stage; the chain is at "
                               f"{view.model_id} round {view.round}, stage {view.stage}")

    def keys(self) -> SecKeys:
        return SecKeys(model_id=self.model_id, round=self.round, enc_pk=_raw_public(self._enc),
                       mask_pk=_raw_public(self._mask))

    def shares(self, view: SecureRoundView) -> SecShares:
        self._check(view, "shares")
        n, t = len(view.members), view.threshold
        b_shares, s_shares = split(self._b, t, n), split(_raw_private(self._mask), t, n)
        cts, cb, cs = [], [], []
        for m, bs, ss in zip(view.members, b_shares, s_shares):
            shared = secagg.agree(_raw_private(self._enc), m.enc_pk)
            key = secagg.channel_key(self.tag, shared, self.sender, m.sender)
            cts.append(ChaCha20Poly1305(key).encrypt(_NONCE, bs + ss, secagg.channel_ad(self.tag, self.sender, m.sender)))
            cb.append(secagg.share_commitment(self.tag, self.sender, m.sender, "b", bs))
            cs.append(secagg.share_commitment(self.tag, self.sender, m.sender, "s", ss))
        return SecShares(model_id=self.model_id, round=self.round, ciphertexts=cts, commit_b=cb, commit_s=cs)

    def _open(self, view: SecureRoundView, dealt: Dealt) -> tuple[bytes, bytes] | None:
        dealer = view.member(dealt.dealer)
        key = secagg.channel_key(self.tag, secagg.agree(_raw_private(self._enc), dealer.enc_pk), dealt.dealer,
                                 self.sender)
        try:
            plain = ChaCha20Poly1305(key).decrypt(_NONCE, dealt.ciphertext,
                                                  secagg.channel_ad(self.tag, dealt.dealer, self.sender))
        except InvalidTag:
            return None
        bs, ss = plain[:32], plain[32:]
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
                              _raw_private(self._mask), peers)
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
        return SecUnmask(model_id=self.model_id, round=self.round, shares=reveal)
