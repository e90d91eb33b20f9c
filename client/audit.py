"""Reading the audit trail across validators, and proving each event against a certified block.

``fbci audit query`` asks every validator given for its events matching the
filters (each serves only the events it recorded) and shows, per validator,
how far its committed anchors reach: a validator whose events wait
unanchored for long stopped anchoring, and shows as a gap.

``fbci audit verify`` checks each event without trusting the validator that
serves it: the event's leaf and Merkle path must rebuild the root of an
``audit.anchor`` transaction signed by that validator, and that transaction
must be in a block whose header hashes to a block hash that a quorum of the
validators of that height signed (its commit certificate). The validators of a
height are followed from genesis's set the light client's way
(:func:`client.light.follow_sets`): each later set only through the certified
header before it, so a validator voted in can anchor, and one voted out cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.api import BlockInfo, TxInfo
from core.audit import (
    ANCHOR_KIND, AUDIT_EVENTS, AUDIT_PROOF, AuditEventsParams, AuditPage, AuditProof, AuditProofParams,
)
from core.errors import FbciError, InvalidInput, ValidatorSetUnknown
from core.hashing import merkle_root
from genesis.schema import GenesisDoc
from client.light import certificate_of, follow_sets, header_of
from client.light_verify import ChainValidators, HeaderVerifier
from client.session import ChainSession


def anchor_trust(doc: GenesisDoc) -> HeaderVerifier:
    """What anchors are checked against: genesis's validator set, followed through the chain's changes."""
    return HeaderVerifier(doc.chain_id, ChainValidators(doc.validator_set()))


@dataclass(frozen=True)
class Verified:
    seq: int
    observer: str
    ok: bool
    detail: str
    """The anchor's block height when ``ok``; what failed otherwise."""


def query_events(session: ChainSession, params: AuditEventsParams) -> AuditPage:
    """Up to ``params.limit`` matching events, following the validator's bounded scans to the end."""
    page = session.run(lambda c: c.query(AUDIT_EVENTS, params))
    events = list(page.events)
    while page.resume_from is not None and len(events) < params.limit:
        nxt = params.model_copy(update={"from_seq": page.resume_from, "limit": params.limit - len(events)})
        page = session.run(lambda c: c.query(AUDIT_EVENTS, nxt))
        events += page.events
    return page.model_copy(update={"events": events})


def fetch_proof(session: ChainSession, seq: int) -> AuditProof:
    return session.run(lambda c: c.query(AUDIT_PROOF, AuditProofParams(seq=seq)))


def _certified(session: ChainSession, headers: HeaderVerifier, height: int, tx: TxInfo) -> None:
    block: BlockInfo = session.run(lambda c: c.get_block(height=height))
    header = block.header()
    if header.hash != block.hash:
        raise InvalidInput(f"block {height}: its header does not hash to its hash")
    if tx.hash not in block.txs:
        raise InvalidInput(f"block {height} does not hold the anchor transaction")
    raws = [session.run(lambda c, h=h: c.get_tx(h)) for h in block.txs]
    if merkle_root([t.tx for t in raws]) != block.txs_root:
        raise InvalidInput(f"block {height}: its transactions do not match its txs_root")
    certificate = certificate_of(block)
    try:
        headers.verify(header_of(block), certificate)
    except ValidatorSetUnknown:  # the chain changed its set since this session last looked: follow, then check
        session.run(lambda c: follow_sets(headers, c))
        headers.verify(header_of(block), certificate)


def proof_problem(proof: AuditProof, seq: int) -> str | None:
    """What is wrong with ``proof`` for event ``seq`` on its own terms (None: its path reaches its anchor)."""
    event, anchor = proof.event, proof.anchor
    if event.seq != seq:
        return f"the event stored as {seq} says it is {event.seq} (reordered)"
    if anchor is None:
        return "not anchored yet: the validator has not committed a root for it"
    if not anchor.from_seq <= seq < anchor.to_seq:
        return f"the anchor covers {anchor.from_seq}..{anchor.to_seq - 1}, not {seq}"
    if proof.rebuilt_root() != anchor.root:
        return ("the stored events no longer rebuild the anchored root (an event in its range was edited, "
                "deleted or reordered)")
    return None


def verify_event(session: ChainSession, proof: AuditProof, seq: int, headers: HeaderVerifier,
                 certified_anchors: dict[bytes, int] | None = None) -> Verified:
    """Whether ``proof`` shows event ``seq`` unchanged under a certified anchor (never raises for a bad proof).

    ``certified_anchors`` (anchor transaction hash -> height) remembers anchors already checked against
    their certified block, so events under one anchor cost one check of it, not one each."""
    who, anchor = proof.event.observer, proof.anchor
    problem = proof_problem(proof, seq)
    if problem is not None or anchor is None:
        return Verified(seq, who, False, problem or "not anchored")
    if certified_anchors is not None and anchor.tx_hash in certified_anchors:
        return Verified(seq, who, True, f"anchored at height {certified_anchors[anchor.tx_hash]}")
    try:
        tx = session.run(lambda c: c.get_tx(anchor.tx_hash))
        signed = tx.transaction()
        if (signed.kind, signed.sender) != (ANCHOR_KIND, anchor.validator) or not tx.receipt.ok:
            raise InvalidInput("the anchor's transaction is not a committed audit.anchor by that validator")
        if (signed.payload.get("root"), signed.payload.get("from_seq"), signed.payload.get("to_seq")) != (
                anchor.root, anchor.from_seq, anchor.to_seq):
            raise InvalidInput("the anchor's transaction commits another root or range")
        _certified(session, headers, tx.receipt.height, tx)
        if anchor.validator not in headers.validators.validators_at(tx.receipt.height):
            raise InvalidInput(f"the anchor was not signed by a validator of height {tx.receipt.height}")
    except FbciError as exc:
        return Verified(seq, who, False, exc.message)
    if certified_anchors is not None:
        certified_anchors[anchor.tx_hash] = tx.receipt.height
    return Verified(seq, who, True, f"anchored at height {tx.receipt.height}")
