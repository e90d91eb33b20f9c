"""What goes into ``Replica.step`` (events) and what comes out (actions), plus the WAL record.

Rule for the caller, as in etcd-io/raft's ``Ready``: perform the actions of one
step in list order. Every ``Persist`` must be durable (fsync) before any later
``Send``/``Broadcast`` of the same list leaves the process, because the record
is what stops the replica from signing something else for the same slot
after a crash. ``CommitBlock`` comes before anything for the next height.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core import codec
from core.errors import DecodeError, InvalidInput

from consensus.certificates import PUBLIC_KEY_SIZE, CommitCertificate, check_bytes, check_int, check_list
from consensus.evidence import Evidence
from consensus.messages import Message


class Signer(Protocol):
    """Signs for this validator; the node binds the chain id and uses core.crypto's domain separation."""

    def sign(self, kind: str, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class ReplicaConfig:
    """``base_timeout_ticks`` must exceed the node's empty-block interval, or idle chains churn views.

    ``validators`` is the genesis set: the set of every height when the replica is given no
    :data:`ValidatorsAt`. ``me`` need not be in it (a hospital that joined later starts from genesis)."""

    chain_id: str
    validators: tuple[bytes, ...]
    me: bytes
    base_timeout_ticks: int
    max_timeout_ticks: int = 0  # 0 means 64 * base
    max_views_ahead: int = 8

    def __post_init__(self) -> None:
        if not self.validators or len(set(self.validators)) != len(self.validators):
            raise InvalidInput("validators must be a non-empty list of distinct keys")
        if any(not isinstance(v, bytes) or len(v) != PUBLIC_KEY_SIZE for v in self.validators):
            raise InvalidInput("every validator is a 32-byte public key")
        if self.base_timeout_ticks < 1 or self.max_timeout_ticks < 0 or self.max_views_ahead < 1:
            raise InvalidInput("timeouts and view window must be positive")

    def timeout(self, view: int) -> int:
        """Castro & Liskov: "If the timer of replica i expires in view v ... it doubles the timeout"."""
        cap = self.max_timeout_ticks or 64 * self.base_timeout_ticks
        return min(cap, self.base_timeout_ticks << min(view, 32))



ValidatorsAt = Callable[[int], "tuple[bytes, ...] | None"]
"""The validator set deciding a height, in its proposer order, or None while the chain has not yet
decided it. A pure lookup over what the replica was already told: the node answers it from committed
state, where a change decided in block H is written for H + 2, so the set of the height being decided
and of the next one is always known (CometBFT's rule); the simulation answers it from its own chain."""


def primary(validators: tuple[bytes, ...], height: int, view: int) -> bytes:
    return validators[(height + view) % len(validators)]


WAL_SIGNED = "signed"
WAL_PREPARED = "prepared"


@dataclass(frozen=True)
class WalRecord:
    """``signed``: an encoded message this replica signed; ``prepared``: an encoded prepared certificate."""

    kind: str
    height: int
    view: int
    payload: bytes

    def encode(self) -> bytes:
        return codec.encode([self.kind, self.height, self.view, self.payload])

    @classmethod
    def decode(cls, data: bytes) -> WalRecord:
        kind, h, v, payload = check_list(codec.decode(data), "wal record", 4)
        if kind not in (WAL_SIGNED, WAL_PREPARED):
            raise DecodeError(f"unknown wal record kind {kind!r}")
        return cls(kind, check_int(h, "height"), check_int(v, "view"), check_bytes(payload, "payload"))


# ---- events -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Start:
    next_height: int
    last_commit: CommitCertificate | None
    wal: Sequence[WalRecord] = ()


@dataclass(frozen=True)
class MessageReceived:
    """``peer`` is the transport-authenticated validator the bytes came from (a hint; senders are signed)."""

    peer: bytes
    message: Message


@dataclass(frozen=True)
class TimerFired:
    name: str


@dataclass(frozen=True)
class ProposalReady:
    height: int
    view: int
    block: bytes
    block_hash: bytes


@dataclass(frozen=True)
class BlockValidated:
    height: int
    block_hash: bytes
    valid: bool


@dataclass(frozen=True)
class SyncedTo:
    """The node stored and executed every block up to ``height``, each checked against its certificate."""

    height: int
    certificate: CommitCertificate


@dataclass(frozen=True)
class BlockExecuted:
    """The node executed the block a ``CommitBlock`` carried: the set of ``height + 2`` is known now, so
    messages the replica held for it are handled (the node feeds this right after executing)."""

    height: int


Event = Start | MessageReceived | TimerFired | ProposalReady | BlockValidated | SyncedTo | BlockExecuted


# ---- actions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Persist:
    record: WalRecord


@dataclass(frozen=True)
class Send:
    to: bytes
    message: Message


@dataclass(frozen=True)
class Broadcast:
    """To every validator except this one."""

    message: Message


@dataclass(frozen=True)
class SetTimer:
    """Replaces any running timer with the same name."""

    name: str
    ticks: int


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class RequestProposal:
    height: int
    view: int


@dataclass(frozen=True)
class ValidateBlock:
    """The node must check that ``block_hash`` is the hash of ``block`` as well as the chain rules."""

    height: int
    view: int
    block: bytes
    block_hash: bytes


@dataclass(frozen=True)
class CommitBlock:
    height: int
    block: bytes
    block_hash: bytes
    certificate: CommitCertificate


@dataclass(frozen=True)
class ReportEvidence:
    evidence: Evidence


@dataclass(frozen=True)
class NeedSync:
    """Others have finalised at least up to ``height``; fetch blocks from ``peer`` (or anyone) and verify them."""

    height: int
    peer: bytes


Action = (Persist | Send | Broadcast | SetTimer | CancelTimer | RequestProposal | ValidateBlock
          | CommitBlock | ReportEvidence | NeedSync)
