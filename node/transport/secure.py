"""The encrypted link's pure parts: the hybrid key agreement, the key schedule, and the sealed-frame codec.

After the handshake (:mod:`node.transport.handshake`) every websocket message
between two validators is one sealed frame::

    frame = length (4 bytes, big-endian) || ChaCha20-Poly1305(key, nonce, plaintext, aad=length)

with one key per direction and the nonce a 64-bit counter that both ends step
once per frame (CometBFT's SecretConnection does the same). The counter is
never sent: a frame that is replayed, dropped, reordered or altered fails
authentication at the receiver, which then closes the link. The length
prefix is checked against the frame's actual size and bounded *before* any
decryption, so a peer cannot make us buffer or decrypt more than one message
of the transport's limit.

The keys come from a hybrid key agreement, X25519 plus ML-KEM-768 (FIPS 203),
the combination TLS deployments now use (X25519MLKEM768): HKDF-SHA256 over
both shared secrets, salted with the hash of the handshake transcript, so the
session stays confidential while either the elliptic curve or the lattice
problem holds, and both sides must have seen the same hellos. Both key pairs
are ephemeral, made per connection and dropped after it, which gives forward
secrecy: a validator key stolen later decrypts no recorded session.

Nothing here does I/O, so the rules are tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core import codec
from core.hashing import sha256
from node.transport.types import BadFrame, FrameTooLarge

X25519_SIZE = 32
ML_KEM_ENCAPSULATION_KEY_SIZE = 1184
ML_KEM_CIPHERTEXT_SIZE = 1088
KEY_SIZE = 32
TAG_SIZE = 16
LENGTH_SIZE = 4
FRAME_OVERHEAD = LENGTH_SIZE + TAG_SIZE
MAX_COUNTER = 2**64 - 1
_TRANSCRIPT_DOMAIN = "fbci/p2p/2"
_KEY_INFO = b"fbci/p2p/2 session keys"


@dataclass(frozen=True)
class SessionKeys:
    """What both ends derive: a key per direction, and the challenge each side signs to prove its identity."""

    dialer_to_acceptor: bytes
    acceptor_to_dialer: bytes
    challenge: bytes


def transcript_hash(chain_id: str, acceptor_hello: bytes, dialer_hello: bytes) -> bytes:
    """Binds the keys and the signed challenge to the exact hello bytes both sides sent and received, so a
    man in the middle who swaps an ephemeral key leaves the two ends with different keys."""
    return sha256(codec.encode([_TRANSCRIPT_DOMAIN, chain_id, acceptor_hello, dialer_hello]))


def derive_keys(x25519_secret: bytes, ml_kem_secret: bytes, transcript: bytes) -> SessionKeys:
    """HKDF-SHA256 over both shared secrets (the hybrid combiner), salted with the transcript hash."""
    okm = HKDF(algorithm=hashes.SHA256(), length=3 * KEY_SIZE, salt=transcript, info=_KEY_INFO).derive(
        x25519_secret + ml_kem_secret)
    return SessionKeys(okm[:KEY_SIZE], okm[KEY_SIZE:2 * KEY_SIZE], okm[2 * KEY_SIZE:])


class AcceptorShare:
    """The acceptor's ephemeral key pairs: it publishes an X25519 key and an ML-KEM encapsulation key."""

    def __init__(self) -> None:
        self._x25519 = X25519PrivateKey.generate()
        self._ml_kem = MLKEM768PrivateKey.generate()
        self.x25519 = self._x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.ml_kem = self._ml_kem.public_key().public_bytes_raw()

    def secrets(self, dialer_x25519: bytes, ciphertext: bytes) -> tuple[bytes, bytes]:
        """(X25519 secret, ML-KEM secret); ValueError for a low-order point or a malformed ciphertext."""
        return (self._x25519.exchange(X25519PublicKey.from_public_bytes(dialer_x25519)),
                self._ml_kem.decapsulate(ciphertext))


class DialerShare:
    """The dialer's side: an ephemeral X25519 key, and an ML-KEM encapsulation to the acceptor's key."""

    def __init__(self, acceptor_x25519: bytes, acceptor_ml_kem: bytes) -> None:
        """ValueError when the acceptor's keys are malformed or its X25519 point has low order."""
        ephemeral = X25519PrivateKey.generate()
        self.x25519 = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.x25519_secret = ephemeral.exchange(X25519PublicKey.from_public_bytes(acceptor_x25519))
        self.ml_kem_secret, self.ciphertext = MLKEM768PublicKey.from_public_bytes(acceptor_ml_kem).encapsulate()


def _nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "little")


class FrameSealer:
    """One direction's sending half: seals each plaintext under the next nonce."""

    def __init__(self, key: bytes, max_plaintext: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0
        self._max = max_plaintext

    def seal(self, plaintext: bytes) -> bytes:
        if len(plaintext) > self._max:
            raise FrameTooLarge(f"a frame of {len(plaintext)} bytes exceeds {self._max}")
        if self._counter > MAX_COUNTER:
            raise BadFrame("this link sent 2**64 frames; it must be re-established")
        header = (len(plaintext) + TAG_SIZE).to_bytes(LENGTH_SIZE, "big")
        sealed = self._aead.encrypt(_nonce(self._counter), plaintext, header)
        self._counter += 1
        return header + sealed


class FrameOpener:
    """One direction's receiving half: opens frames in order; after one failure it opens nothing again."""

    def __init__(self, key: bytes, max_plaintext: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0
        self._max = max_plaintext
        self._broken = False

    @property
    def max_frame(self) -> int:
        return self._max + FRAME_OVERHEAD

    def open(self, frame: bytes) -> bytes:
        """The plaintext of the next frame; :class:`FrameTooLarge` or :class:`BadFrame` (then the link is dead)."""
        if self._broken:
            raise BadFrame("an earlier frame on this link failed to open")
        self._broken = True  # until this frame has opened
        if len(frame) > self.max_frame:
            raise FrameTooLarge(f"a sealed frame of {len(frame)} bytes exceeds {self.max_frame}")
        if len(frame) < FRAME_OVERHEAD or int.from_bytes(frame[:LENGTH_SIZE], "big") != len(frame) - LENGTH_SIZE:
            raise BadFrame("the frame's length prefix does not match its size")
        if self._counter > MAX_COUNTER:
            raise BadFrame("this link received 2**64 frames; it must be re-established")
        try:
            plaintext = self._aead.decrypt(_nonce(self._counter), frame[LENGTH_SIZE:], frame[:LENGTH_SIZE])
        except InvalidTag:
            raise BadFrame("the frame does not authenticate (altered, replayed, reordered or dropped)") from None
        self._counter += 1
        self._broken = False
        return plaintext


@dataclass
class SecureSession:
    """The two halves of an established link, and who is at the other end."""

    peer: bytes
    sealer: FrameSealer
    opener: FrameOpener
