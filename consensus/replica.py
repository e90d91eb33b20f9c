"""The PBFT replica for a chain: one block per height, as a pure state machine.

Rule 1: nothing in this file reads a clock, a socket, a disk or randomness;
every input is an event and every effect is an action in the returned list.
Rule 2: nothing is signed except through ``_sign``, which refuses a second,
different message for a (height, phase, view) slot it already signed, also
across restarts (the slots come back from the WAL in ``Start``). That one
guard is what makes the replica unable to equivocate.
Rule 3: all state of a height is dropped when the height is finalised; the
commit certificate is the stable checkpoint (Castro & Liskov 4.3: "the
checkpoint with a proof becomes stable and the replica discards all ...
messages with sequence number less than or equal to n").
Rule 4: every check of a height uses that height's validator set (``ValidatorsAt``):
membership, the proposer, quorum sizes, view changes and certificates. A replica
that is not in the set of the height being decided (a hospital that joins, or
one voted out) signs nothing there; it follows the chain through proposals,
votes and commit certificates, and block sync.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from core import codec
from core.errors import InvalidInput, PeerMisbehaved

from consensus.certificates import (
    CommitCertificate, InvalidCertificate, PreparedCertificate, Verifier, max_faulty, quorum_size,
)
from consensus.events import (
    WAL_PREPARED, WAL_SIGNED, Action, BlockExecuted, BlockValidated, Broadcast, CancelTimer, CommitBlock, Event,
    MessageReceived, NeedSync, Persist, ProposalReady, ReplicaConfig, ReportEvidence, RequestProposal,
    Send, SetTimer, Signer, Start, SyncedTo, TimerFired, ValidateBlock, ValidatorsAt, WalRecord, primary,
)
from consensus.evidence import Evidence
from consensus.messages import (
    Commit, CommitProof, NewView, PrePrepare, Prepare, SignedMessage, ViewChange, encode_message,
)
from consensus.recovery import recover
from consensus.viewchange import check_new_view, check_view_change, highest_prepared, signature_ok

Proposal = PrePrepare | NewView
Vote = Prepare | Commit
MAX_BUFFERED_PER_SENDER = 16


class Replica:
    """Feed it events with ``step``; perform the returned actions in order (see consensus.events)."""

    def __init__(self, config: ReplicaConfig, signer: Signer, verifier: Verifier,
                 validators_at: ValidatorsAt | None = None) -> None:
        """``validators_at``: the set of each height; without it, genesis's set decides every height."""
        self.cfg = config
        self._signer = signer
        self._verifier = verifier
        self._validators_at: ValidatorsAt = validators_at or (lambda height: config.validators)
        self.validators = config.validators
        """The set deciding the current height."""
        self.started = False
        self.height = 0
        self.view = 0
        self.last_commit: CommitCertificate | None = None
        self.rejected: dict[str, int] = {}
        self._out: list[Action] = []
        self._signed: dict[tuple[int, str, int], SignedMessage] = {}
        self._sync_target = -1
        self._sync_peer = config.me
        self._replay: list[MessageReceived] = []
        """Buffered messages of the height just entered, held to the next step: see ``_advance``."""
        self._reset_height()

    def _reset_height(self) -> None:
        if self.height > 0:
            known = self._validators_at(self.height)
            if known is None:
                raise InvalidInput(f"the validator set of height {self.height} is not known; the node must "
                                   f"have executed height {self.height - 2} before deciding it")
            self.validators = known
        self._n = len(self.validators)
        self._quorum = quorum_size(self._n)
        self._weak = max_faulty(self._n) + 1
        self.in_view_change = False
        self.prepared: PreparedCertificate | None = None
        self._proposals: dict[int, Proposal] = {}
        self._blocks: dict[bytes, bytes] = {}
        self._valid: dict[bytes, bool] = {}
        self._votes: dict[tuple[type, int], dict[bytes, Vote]] = {}
        self._view_changes: dict[bytes, ViewChange] = {}
        self._requested_view = -1
        self._evidence_sent: set[tuple[type, bytes, int]] = set()
        self._future: dict[bytes, list[MessageReceived]] = {}
        self._ahead: dict[bytes, int] = {}

    # ---- entry point ---------------------------------------------------------------------------

    def step(self, event: Event) -> list[Action]:
        if not self.started and not isinstance(event, Start):
            raise InvalidInput(f"replica got {type(event).__name__} before Start")
        self._out = []
        replay, self._replay = self._replay, []
        for held in replay:
            self._on_message(held)
        handler: Callable[[Event], None] = self._handlers[type(event)]  # type: ignore[assignment]
        handler(self, event)
        return self._out

    def footprint(self) -> int:
        """How many items the replica holds; tests use it to show memory stays bounded."""
        return (len(self._signed) + len(self._proposals) + len(self._blocks) + len(self._valid)
                + sum(len(v) for v in self._votes.values()) + len(self._votes) + len(self._view_changes)
                + len(self._evidence_sent) + sum(len(v) for v in self._future.values()) + len(self._ahead)
                + len(self.rejected) + len(self._replay))

    # ---- start and recovery --------------------------------------------------------------------

    def _on_start(self, ev: Start) -> None:
        if self.started:
            raise InvalidInput("replica got Start twice")
        self.started = True
        self.height, self.last_commit = ev.next_height, ev.last_commit
        self._reset_height()
        rec = recover(ev.wal, self.height)
        self._signed, self.prepared, self.view, self.in_view_change = (
            dict(rec.signed), rec.prepared, rec.view, rec.in_view_change)
        self._set_timer()
        mine = rec.current(self.height)
        for msg in mine:  # re-send what we last signed; peers may never have seen it
            self._broadcast(msg)
            if isinstance(msg, ViewChange):
                self._view_changes[msg.sender] = msg
            elif isinstance(msg, (Prepare, Commit)):
                self._votes.setdefault((type(msg), msg.view), {})[msg.sender] = msg
            else:
                self._accept_proposal(msg)
        if not mine and self.view == 0 and self._is_primary():
            self._request_proposal()

    # ---- events --------------------------------------------------------------------------------

    def _on_timer(self, ev: TimerFired) -> None:
        if ev.name != self._timer_name():
            return
        if self._sync_target >= self.height:
            self._out.append(NeedSync(self._sync_target, self._sync_peer))
        if not self._member():  # it has no vote to move views with; it waits for the chain to go on
            self._set_timer()
            return
        mine = self._view_changes.get(self.cfg.me)
        at_or_above = sum(1 for vc in self._view_changes.values() if vc.view >= self.view)
        if self.in_view_change and mine is not None and at_or_above < self._quorum:
            # Alone ahead: moving further would leave the others behind for good (equal capped
            # timeouts never close the gap), so retransmit and wait for them to catch up.
            self._broadcast(mine)
            self._set_timer()
            return
        self._start_view_change(self.view + 1)

    def _on_proposal(self, ev: ProposalReady) -> None:
        if ev.height != self.height or ev.view != self.view or not self._is_primary():
            return
        self._valid[ev.block_hash] = True
        if self.view == 0:
            msg = self._sign(PrePrepare(self.height, 0, ev.block_hash, ev.block, self.cfg.me, b""))
            if msg is not None:
                self._broadcast(msg)
                self._accept_proposal(msg)
        else:
            self._send_new_view(ev.block, ev.block_hash)

    def _on_validated(self, ev: BlockValidated) -> None:
        if ev.height != self.height:
            return
        self._valid[ev.block_hash] = ev.valid
        current = self._proposals.get(self.view)
        if current is None or current.block_hash != ev.block_hash or self.in_view_change:
            return
        if ev.valid:
            self._send_vote(Prepare, current.block_hash)
        else:
            self._start_view_change(self.view + 1)

    def _on_executed(self, ev: BlockExecuted) -> None:
        """Nothing more: ``step`` handles the held messages before any event."""

    def _on_synced(self, ev: SyncedTo) -> None:
        if ev.height >= self.height:
            self._advance(ev.height + 1, ev.certificate)

    def _on_message(self, ev: MessageReceived) -> None:
        msg = ev.message
        if isinstance(msg, CommitProof):
            self._on_commit_proof(msg)
            return
        if msg.height < self.height:
            if isinstance(msg, ViewChange) and self.last_commit is not None and msg.sender in (
                    self._validators_at(msg.height) or ()):
                self._out.append(Send(msg.sender, CommitProof(self.last_commit, self.cfg.me)))
            return
        # Beyond the next height the set may not be decided yet: such messages only tell that we lag,
        # so the current set's members are the ones counted (see _on_future).
        members = self.validators if msg.height == self.height else (
            self._validators_at(msg.height) or self.validators)
        if msg.sender not in members or msg.sender == self.cfg.me:
            self._reject("unknown or own sender")
            return
        if self._is_duplicate(msg):
            return
        if not signature_ok(msg, self.cfg.chain_id, self._verifier):
            self._reject("bad signature")
            return
        if msg.height > self.height:
            self._on_future(ev, msg)
            return
        try:
            self._dispatch[type(msg)](self, msg)
        except PeerMisbehaved as exc:
            self._reject(exc.message)

    # ---- messages for the current height -------------------------------------------------------

    def _on_pre_prepare(self, msg: PrePrepare) -> None:
        if msg.view != 0 or msg.sender != primary(self.validators, self.height, 0):
            raise PeerMisbehaved("pre-prepare from a replica that is not the view-0 primary")
        if self._note_proposal(msg) and self.view == 0 and not self.in_view_change:
            self._accept_proposal(msg)

    def _on_new_view(self, msg: NewView) -> None:
        if msg.view == 0 or msg.sender != primary(self.validators, self.height, msg.view):
            raise PeerMisbehaved("new-view from a replica that is not that view's primary")
        if msg.view < self.view or msg.view > self.view + self.cfg.max_views_ahead:
            return
        check_new_view(msg, self.cfg.chain_id, self.validators, self._verifier)
        if not self._note_proposal(msg):
            return
        if msg.view > self.view or self.in_view_change:
            self._enter_view(msg.view)
            self.in_view_change = False
        self._accept_proposal(msg)

    def _on_vote(self, msg: Vote) -> None:
        if not self.view - self.cfg.max_views_ahead <= msg.view <= self.view + self.cfg.max_views_ahead:
            return
        votes = self._votes.setdefault((type(msg), msg.view), {})
        earlier = votes.get(msg.sender)
        if earlier is not None:
            self._maybe_evidence(earlier, msg)
            return
        votes[msg.sender] = msg
        self._check_quorums(msg.view)

    def _on_view_change(self, msg: ViewChange) -> None:
        latest = self._view_changes.get(msg.sender)
        if msg.view <= self.view and not (self.in_view_change and msg.view == self.view):
            return
        if latest is not None and latest.view >= msg.view:
            return
        check_view_change(msg, self.cfg.chain_id, self.validators, self._verifier)
        self._view_changes[msg.sender] = msg
        # Castro & Liskov 4.5.2: "if a replica receives a set of f+1 valid VIEW-CHANGE messages from
        # other replicas for views greater than its current view, it sends a VIEW-CHANGE message".
        higher = sorted((vc.view for s, vc in self._view_changes.items()
                         if s != self.cfg.me and vc.view > self.view), reverse=True)
        if len(higher) >= self._weak:
            self._start_view_change(higher[self._weak - 1])
        self._try_new_view()

    def _on_commit_proof(self, msg: CommitProof) -> None:
        cert = msg.certificate
        if cert.height < self.height or (cert.height != self.height and cert.height <= self._sync_target):
            return
        members = self.validators if cert.height == self.height else self._validators_at(cert.height)
        if members is None:  # a set this replica has not learnt yet: f + 1 of its own set must vouch
            if not cert.vouched_by(self.cfg.chain_id, self.validators, self._verifier):
                self._reject("bad commit certificate")
                return
            self._need_sync(cert.height, msg.sender)
            return
        try:
            cert.verify(self.cfg.chain_id, members, self._verifier)
        except InvalidCertificate:
            self._reject("bad commit certificate")
            return
        block = self._blocks.get(cert.block_hash) if cert.height == self.height else None
        if block is not None:
            self._commit(block, cert)
        else:
            self._need_sync(cert.height, msg.sender)

    def _on_future(self, ev: MessageReceived, msg: SignedMessage) -> None:
        """Buffer the next height's messages; count who is ahead to learn that we lag."""
        if msg.height == self.height + 1:
            buffered = self._future.setdefault(msg.sender, [])
            if len(buffered) < MAX_BUFFERED_PER_SENDER:
                buffered.append(ev)
        self._ahead[msg.sender] = max(msg.height, self._ahead.get(msg.sender, 0))
        heights = sorted((h for s, h in self._ahead.items() if s in self.validators), reverse=True)
        if len(heights) >= self._weak and heights[self._weak - 1] - 1 >= self.height:
            self._need_sync(heights[self._weak - 1] - 1, msg.sender)

    # ---- protocol steps ------------------------------------------------------------------------

    def _accept_proposal(self, msg: Proposal) -> None:
        self._proposals[msg.view] = msg
        self._blocks[msg.block_hash] = msg.block
        valid = self._valid.get(msg.block_hash)
        if valid is None:
            self._out.append(ValidateBlock(self.height, msg.view, msg.block, msg.block_hash))
        elif valid:
            self._send_vote(Prepare, msg.block_hash)
        else:
            self._start_view_change(self.view + 1)

    def _send_vote(self, cls: type[Vote], block_hash: bytes) -> None:
        msg = self._sign(cls(self.height, self.view, block_hash, self.cfg.me, b""))
        if msg is None:
            return
        self._broadcast(msg)
        self._votes.setdefault((cls, self.view), {})[self.cfg.me] = msg
        self._check_quorums(self.view)

    def _check_quorums(self, view: int) -> None:
        proposal = self._proposals.get(view)
        if (proposal is not None and view == self.view and not self.in_view_change
                and (self.prepared is None or self.prepared.view < view)):
            sigs = self._quorum_for(Prepare, view, proposal.block_hash)
            if sigs is not None and (self.height, Prepare.kind, view) in self._signed:
                self.prepared = PreparedCertificate(self.height, view, proposal.block_hash, proposal.block, sigs)
                self._persist(WalRecord(WAL_PREPARED, self.height, view, codec.encode(self.prepared.to_value())))
                self._send_vote(Commit, proposal.block_hash)
                return
        for block_hash in {v.block_hash for v in self._votes.get((Commit, view), {}).values()}:
            sigs = self._quorum_for(Commit, view, block_hash)
            if sigs is None:
                continue
            cert = CommitCertificate(self.height, view, block_hash, sigs)
            block = self._blocks.get(block_hash)
            if block is None:
                self._need_sync(self.height, sigs[0][0])
            else:
                self._commit(block, cert)
            return

    def _quorum_for(self, cls: type[Vote], view: int, block_hash: bytes) -> tuple[tuple[bytes, bytes], ...] | None:
        sigs = tuple((s, m.signature) for s, m in self._votes.get((cls, view), {}).items()
                     if m.block_hash == block_hash)
        return sigs if len(sigs) >= self._quorum else None

    def _commit(self, block: bytes, cert: CommitCertificate) -> None:
        self._out.append(CommitBlock(self.height, block, cert.block_hash, cert))
        self._advance(self.height + 1, cert)

    def _advance(self, height: int, cert: CommitCertificate) -> None:
        self._out.append(CancelTimer(self._timer_name()))
        future = self._future.get
        buffered = [ev for s in sorted(self._future) for ev in (future(s) or [])] if height == self.height + 1 else []
        self.height, self.view, self.last_commit = height, 0, cert
        self._signed = {k: m for k, m in self._signed.items() if k[0] >= height}
        self._reset_height()
        self._set_timer()
        if self._is_primary():
            self._request_proposal()
        if self._validators_at(height + 1) is None:
            # Committing this height from the buffer too would need the set of height + 1, which the block
            # committed a moment ago decides: the node executes it, then says so (BlockExecuted).
            self._replay = buffered
            return
        for ev in buffered:
            self._on_message(ev)

    def _start_view_change(self, view: int) -> None:
        if view < self.view or (view == self.view and self.in_view_change):
            return
        self._enter_view(view)
        self.in_view_change = True
        msg = self._sign(ViewChange(self.height, view, self.prepared, self.cfg.me, b""))
        if msg is None:
            return
        self._broadcast(msg)
        self._view_changes[self.cfg.me] = msg
        self._try_new_view()

    def _enter_view(self, view: int) -> None:
        self._out.append(CancelTimer(self._timer_name()))
        self.view = view
        self._set_timer()
        low = view - self.cfg.max_views_ahead
        self._votes = {k: v for k, v in self._votes.items() if k[1] >= low}
        self._proposals = {v: p for v, p in self._proposals.items() if v >= low}
        keep = {p.block_hash for p in self._proposals.values()}
        self._blocks = {h: b for h, b in self._blocks.items() if h in keep}
        self._valid = {h: ok for h, ok in self._valid.items() if h in keep}

    def _try_new_view(self) -> None:
        if not self.in_view_change or not self._is_primary() or self.view == 0:
            return
        vcs = self._quorum_view_changes()
        if vcs is None:
            return
        chosen = highest_prepared(vcs)
        if chosen is not None:
            self._send_new_view(chosen.block, chosen.block_hash)
        else:
            self._request_proposal()

    def _quorum_view_changes(self) -> tuple[ViewChange, ...] | None:
        vcs = tuple(sorted((vc for vc in self._view_changes.values() if vc.view == self.view),
                           key=lambda vc: vc.sender))
        return vcs if len(vcs) >= self._quorum else None

    def _send_new_view(self, block: bytes, block_hash: bytes) -> None:
        vcs = self._quorum_view_changes()
        if vcs is None or not self.in_view_change:
            return
        chosen = highest_prepared(vcs)
        if chosen is not None and chosen.block_hash != block_hash:
            block, block_hash = chosen.block, chosen.block_hash
        msg = self._sign(NewView(self.height, self.view, vcs, block_hash, block, self.cfg.me, b""))
        if msg is None:
            return
        self._broadcast(msg)
        self.in_view_change = False
        self._accept_proposal(msg)

    # ---- helpers -------------------------------------------------------------------------------

    def _sign(self, unsigned: SignedMessage) -> SignedMessage | None:
        """Sign and persist, or return None if this slot already holds a different message of ours."""
        slot = (unsigned.height, unsigned.kind, unsigned.view)
        if slot in self._signed or not self._member():
            return None
        body = unsigned.sign_bytes(self.cfg.chain_id)
        msg = dataclasses.replace(unsigned, signature=self._signer.sign(unsigned.kind, body))
        self._signed[slot] = msg
        self._persist(WalRecord(WAL_SIGNED, msg.height, msg.view, encode_message(msg)))
        return msg

    def _persist(self, record: WalRecord) -> None:
        self._out.append(Persist(record))

    def _broadcast(self, msg: SignedMessage) -> None:
        if self._n > 1:
            self._out.append(Broadcast(msg))

    def _note_proposal(self, msg: Proposal) -> bool:
        """Keep the first proposal per view; a second, different one is evidence. True if new."""
        earlier = self._proposals.get(msg.view)
        if earlier is None:
            return True
        self._maybe_evidence(earlier, msg)
        return False

    def _maybe_evidence(self, earlier: SignedMessage, msg: SignedMessage) -> None:
        key = (type(msg), msg.sender, msg.view)
        if earlier.block_hash != msg.block_hash and key not in self._evidence_sent:  # type: ignore[union-attr]
            self._evidence_sent.add(key)
            self._out.append(ReportEvidence(Evidence(earlier, msg)))  # type: ignore[arg-type]

    def _is_duplicate(self, msg: SignedMessage) -> bool:
        if isinstance(msg, (Prepare, Commit)):
            return self._votes.get((type(msg), msg.view), {}).get(msg.sender) == msg
        if isinstance(msg, ViewChange):
            return self._view_changes.get(msg.sender) == msg
        return self._proposals.get(msg.view) == msg

    def _need_sync(self, height: int, peer: bytes) -> None:
        if height > self._sync_target:
            self._sync_target, self._sync_peer = height, peer
            self._out.append(NeedSync(height, peer))

    def _request_proposal(self) -> None:
        if self._requested_view != self.view:
            self._requested_view = self.view
            self._out.append(RequestProposal(self.height, self.view))

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _is_primary(self) -> bool:
        return primary(self.validators, self.height, self.view) == self.cfg.me

    def _member(self) -> bool:
        return self.cfg.me in self.validators

    def _timer_name(self) -> str:
        return f"pbft/{self.height}/{self.view}"

    def _set_timer(self) -> None:
        self._out.append(SetTimer(self._timer_name(), self.cfg.timeout(self.view)))

    _handlers: dict[type, Callable[..., None]] = {
        Start: _on_start, MessageReceived: _on_message, TimerFired: _on_timer,
        ProposalReady: _on_proposal, BlockValidated: _on_validated, SyncedTo: _on_synced,
        BlockExecuted: _on_executed,
    }
    _dispatch: dict[type, Callable[..., None]] = {
        PrePrepare: _on_pre_prepare, NewView: _on_new_view, Prepare: _on_vote, Commit: _on_vote,
        ViewChange: _on_view_change,
    }
