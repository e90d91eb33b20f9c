"""The PBFT wire messages, their sign bytes and their one canonical encoding.

Each signed message signs ``[chain_id, height, view, ...]`` under its own
kind ("pbft.prepare", ...), so a signature made for one phase never counts
for another. ``decode_message`` checks every field's type and size before a
replica looks at it; a peer's malformed bytes raise ``DecodeError`` and
nothing else. Signatures are *not* checked here: that needs the validator set
and a verifier, which the replica has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import codec
from core.errors import DecodeError
from core.hashing import HASH_SIZE, sha256

from consensus.certificates import (
    KIND_COMMIT, KIND_PREPARE, MAX_SIGNATURE_SIZE, PUBLIC_KEY_SIZE, CommitCertificate,
    PreparedCertificate, check_bytes, check_int, check_list, vote_sign_bytes,
)

KIND_PRE_PREPARE = "pbft.pre-prepare"
KIND_VIEW_CHANGE = "pbft.view-change"
KIND_NEW_VIEW = "pbft.new-view"
MAX_MESSAGE_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class PrePrepare:
    """The primary of view 0 proposes ``block`` for ``height``; its signature binds the hash, not the bytes."""

    height: int
    view: int
    block_hash: bytes
    block: bytes
    sender: bytes
    signature: bytes

    kind = KIND_PRE_PREPARE

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(chain_id, self.height, self.view, self.block_hash)


@dataclass(frozen=True)
class Prepare:
    height: int
    view: int
    block_hash: bytes
    sender: bytes
    signature: bytes

    kind = KIND_PREPARE

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(chain_id, self.height, self.view, self.block_hash)


@dataclass(frozen=True)
class Commit:
    height: int
    view: int
    block_hash: bytes
    sender: bytes
    signature: bytes

    kind = KIND_COMMIT

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(chain_id, self.height, self.view, self.block_hash)


@dataclass(frozen=True)
class ViewChange:
    """``sender`` leaves every view below ``view`` and reports the highest-view block it prepared."""

    height: int
    view: int
    prepared: PreparedCertificate | None
    sender: bytes
    signature: bytes

    kind = KIND_VIEW_CHANGE

    def sign_bytes(self, chain_id: str) -> bytes:
        digest = self.prepared.digest() if self.prepared is not None else None
        return codec.encode([chain_id, self.height, self.view, digest])

    def digest(self) -> bytes:
        return sha256(encode_message(self))


@dataclass(frozen=True)
class NewView:
    """The new primary's proof (a quorum of view changes) and its proposal for the view, in one message."""

    height: int
    view: int
    view_changes: tuple[ViewChange, ...]
    block_hash: bytes
    block: bytes
    sender: bytes
    signature: bytes

    kind = KIND_NEW_VIEW

    def sign_bytes(self, chain_id: str) -> bytes:
        proof = [vc.digest() for vc in self.view_changes]
        return codec.encode([chain_id, self.height, self.view, self.block_hash, proof])


@dataclass(frozen=True)
class CommitProof:
    """A commit certificate handed to a lagging peer; unsigned because the certificate proves itself."""

    certificate: CommitCertificate
    sender: bytes


Message = PrePrepare | Prepare | Commit | ViewChange | NewView | CommitProof
SignedMessage = PrePrepare | Prepare | Commit | ViewChange | NewView


def _vote_value(m: Prepare | Commit) -> list[Any]:
    return [m.height, m.view, m.block_hash, m.sender, m.signature]


def _to_value(msg: Message) -> list[Any]:
    if isinstance(msg, PrePrepare):
        return ["pre-prepare", msg.height, msg.view, msg.block_hash, msg.block, msg.sender, msg.signature]
    if isinstance(msg, Prepare):
        return ["prepare", *_vote_value(msg)]
    if isinstance(msg, Commit):
        return ["commit", *_vote_value(msg)]
    if isinstance(msg, ViewChange):
        prepared = msg.prepared.to_value() if msg.prepared is not None else None
        return ["view-change", msg.height, msg.view, prepared, msg.sender, msg.signature]
    if isinstance(msg, NewView):
        vcs = [_to_value(vc) for vc in msg.view_changes]
        return ["new-view", msg.height, msg.view, vcs, msg.block_hash, msg.block, msg.sender, msg.signature]
    if isinstance(msg, CommitProof):
        return ["commit-proof", msg.certificate.to_value(), msg.sender]
    raise TypeError(f"not a consensus message: {type(msg).__name__}")


def encode_message(msg: Message) -> bytes:
    return codec.encode(_to_value(msg))


def _sender_sig(sender: Any, signature: Any) -> tuple[bytes, bytes]:
    return (check_bytes(sender, "sender", PUBLIC_KEY_SIZE),
            check_bytes(signature, "signature", max_size=MAX_SIGNATURE_SIZE))


def _from_value(value: Any) -> Message:
    fields = check_list(value, "message")
    if not fields or not isinstance(fields[0], str):
        raise DecodeError("a message starts with its type name")
    tag, rest = fields[0], fields[1:]
    if tag in ("prepare", "commit"):
        h, v, bh, sender, sig = check_list(rest, tag, 5)
        cls = Prepare if tag == "prepare" else Commit
        return cls(check_int(h, "height"), check_int(v, "view"), check_bytes(bh, "block_hash", HASH_SIZE),
                   *_sender_sig(sender, sig))
    if tag == "pre-prepare":
        h, v, bh, block, sender, sig = check_list(rest, tag, 6)
        return PrePrepare(check_int(h, "height"), check_int(v, "view"), check_bytes(bh, "block_hash", HASH_SIZE),
                          check_bytes(block, "block"), *_sender_sig(sender, sig))
    if tag == "view-change":
        h, v, prepared, sender, sig = check_list(rest, tag, 5)
        cert = PreparedCertificate.from_value(prepared) if prepared is not None else None
        return ViewChange(check_int(h, "height"), check_int(v, "view"), cert, *_sender_sig(sender, sig))
    if tag == "new-view":
        h, v, vcs, bh, block, sender, sig = check_list(rest, tag, 7)
        changes = []
        for item in check_list(vcs, "view_changes"):
            vc = _from_value(item)
            if not isinstance(vc, ViewChange):
                raise DecodeError("new-view proof holds only view-change messages")
            changes.append(vc)
        return NewView(check_int(h, "height"), check_int(v, "view"), tuple(changes),
                       check_bytes(bh, "block_hash", HASH_SIZE), check_bytes(block, "block"),
                       *_sender_sig(sender, sig))
    if tag == "commit-proof":
        cert, sender = check_list(rest, tag, 2)
        return CommitProof(CommitCertificate.from_value(cert), check_bytes(sender, "sender", PUBLIC_KEY_SIZE))
    raise DecodeError(f"unknown message type {tag!r}")


def decode_message(data: bytes) -> Message:
    """Strictly decode a peer's bytes; raises ``DecodeError`` for anything that is not a well-formed message."""
    return _from_value(codec.decode(data, max_size=MAX_MESSAGE_SIZE))


def same_slot(a: SignedMessage, b: SignedMessage) -> bool:
    """Two messages that an honest validator signs at most once: same type, sender, height and view."""
    return type(a) is type(b) and a.sender == b.sender and a.height == b.height and a.view == b.view
