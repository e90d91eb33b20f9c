"""PBFT for a chain as a pure state machine: events in, actions out, no I/O (see replica.py's rules)."""

from consensus.certificates import (
    CommitCertificate, InvalidCertificate, PreparedCertificate, Verifier, max_faulty, quorum_size,
)
from consensus.events import (
    Action, BlockExecuted, BlockValidated, Broadcast, CancelTimer, CommitBlock, Event, MessageReceived, NeedSync, Persist,
    ProposalReady, ReplicaConfig, ReportEvidence, RequestProposal, Send, SetTimer, Signer, Start, SyncedTo,
    TimerFired, ValidateBlock, WalRecord,
)
from consensus.evidence import Evidence, InvalidEvidence
from consensus.messages import (
    Commit, CommitProof, Message, NewView, PrePrepare, Prepare, ViewChange, decode_message, encode_message,
)
from consensus.replica import Replica
from consensus.signing import ChainSigner, Ed25519Signer, Ed25519Verifier, KeyedVerifier

__all__ = [
    "Action", "BlockExecuted", "BlockValidated", "Broadcast", "CancelTimer", "ChainSigner", "KeyedVerifier", "Commit", "CommitBlock", "CommitCertificate",
    "CommitProof", "Ed25519Signer", "Ed25519Verifier", "Event", "Evidence", "InvalidCertificate",
    "InvalidEvidence", "Message", "MessageReceived", "NeedSync", "NewView", "Persist", "PrePrepare", "Prepare",
    "PreparedCertificate", "ProposalReady", "Replica", "ReplicaConfig", "ReportEvidence", "RequestProposal",
    "Send", "SetTimer", "Signer", "Start", "SyncedTo", "TimerFired", "ValidateBlock", "Verifier", "ViewChange",
    "WalRecord", "decode_message", "encode_message", "max_faulty", "quorum_size",
]
