"""Checking view changes and new views: the part of PBFT that carries a possibly committed block across views.

Castro & Liskov, section 4.4: the new primary multicasts "a NEW-VIEW message
... where V is a set containing the valid VIEW-CHANGE messages received by the
primary plus the view-change message for v + 1 the primary sent", and for the
sequence number it picks "the pre-prepare ... with the highest view number"
among the prepared certificates in V. Replicas redo that choice themselves, so
a faulty primary cannot drop a block that a quorum may have committed.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import PeerMisbehaved

from consensus.certificates import InvalidCertificate, PreparedCertificate, Verifier, quorum_size
from consensus.messages import NewView, SignedMessage, ViewChange


def signature_ok(msg: SignedMessage, chain_id: str, verifier: Verifier) -> bool:
    return verifier.verify(msg.sender, msg.kind, msg.sign_bytes(chain_id), msg.signature)


def check_view_change(vc: ViewChange, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier) -> None:
    """Raise ``PeerMisbehaved`` unless the prepared certificate it carries is real and from an earlier view."""
    if vc.view < 1:
        raise PeerMisbehaved("a view change moves to view 1 or later")
    cert = vc.prepared
    if cert is None:
        return
    if cert.height != vc.height or cert.view >= vc.view:
        raise PeerMisbehaved("view change carries a certificate for another height or a later view")
    try:
        cert.verify(chain_id, validators, verifier)
    except InvalidCertificate as exc:
        raise PeerMisbehaved(f"view change carries a bad prepared certificate: {exc.message}") from None


def highest_prepared(view_changes: Iterable[ViewChange]) -> PreparedCertificate | None:
    """The certificate with the highest view; ties broken by hash so every replica picks the same one."""
    certs = [vc.prepared for vc in view_changes if vc.prepared is not None]
    if not certs:
        return None
    return max(certs, key=lambda c: (c.view, c.block_hash))


def check_new_view(nv: NewView, chain_id: str, validators: tuple[bytes, ...], verifier: Verifier) -> None:
    """Raise ``PeerMisbehaved`` unless ``nv`` proves a quorum left the old views and proposes what it must."""
    senders = {vc.sender for vc in nv.view_changes}
    if len(senders) != len(nv.view_changes) or not senders <= set(validators):
        raise PeerMisbehaved("new-view proof has duplicate or unknown senders")
    if len(senders) < quorum_size(len(validators)):
        raise PeerMisbehaved("new-view proof has fewer view changes than a quorum")
    for vc in nv.view_changes:
        if vc.height != nv.height or vc.view != nv.view:
            raise PeerMisbehaved("new-view proof holds a view change for another height or view")
        if not signature_ok(vc, chain_id, verifier):
            raise PeerMisbehaved("new-view proof holds a badly signed view change")
        check_view_change(vc, chain_id, validators, verifier)
    chosen = highest_prepared(nv.view_changes)
    if chosen is not None and chosen.block_hash != nv.block_hash:
        raise PeerMisbehaved("new view must re-propose the highest prepared block")
