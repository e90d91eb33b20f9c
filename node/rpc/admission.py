"""Who may call right now: per-client and per-signer rate limits and misbehaviour reports.

The limiters are injected (a token bucket keyed by string, clock passed in),
so this module holds no time-dependent state of its own and tests drive it
with a fake. Every refusal is also reported to the node's ``on_misbehaviour``
hook, which decides whether a flood becomes a ban.

A signer is charged only for what it is proven to have sent: the caller
checks the transaction's signature first (``node.rpc.methods``). Anything
that proves no key (bytes that do not decode, another chain's transaction,
a bad signature) is charged to the address it came from instead, so nobody
can spend, or be reported for, a hospital's budget by writing its public key
into a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import RateLimited
from node.rpc.node_api import MISBEHAVIOUR_RPC_FLOOD, MISBEHAVIOUR_TX_FLOOD, OnMisbehaviour, RateLimiter


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True)
class Admission:
    client_limiter: RateLimiter | None = None
    signer_limiter: RateLimiter | None = None
    on_misbehaviour: OnMisbehaviour | None = None
    clock_ms: Callable[[], int] = monotonic_ms

    def report(self, kind: str, offender: str) -> None:
        if self.on_misbehaviour is not None:
            self.on_misbehaviour(kind, offender)

    def check_client(self, client: str) -> None:
        """One token per JSON-RPC call (each batch element) from ``client``; raises ``RateLimited``."""
        if self.client_limiter is not None and not self.client_limiter.allow(f"addr:{client}", self.clock_ms()):
            self.report(MISBEHAVIOUR_RPC_FLOOD, client)
            raise RateLimited(f"too many requests from {client}; slow down", data={"scope": "client"})

    def check_signer(self, public_key_hex: str) -> None:
        """One token per new transaction whose signature proved it was signed by ``public_key_hex``."""
        if self.signer_limiter is not None and not self.signer_limiter.allow(f"signer:{public_key_hex}",
                                                                              self.clock_ms()):
            self.report(MISBEHAVIOUR_TX_FLOOD, public_key_hex)
            raise RateLimited(f"too many transactions from signer {public_key_hex}; slow down",
                              data={"scope": "signer"})

    def check_unproven(self, client: str) -> None:
        """One token of ``client``'s own transaction budget for a transaction that proves no signer."""
        if self.signer_limiter is not None and not self.signer_limiter.allow(f"unproven:{client}",
                                                                              self.clock_ms()):
            self.report(MISBEHAVIOUR_RPC_FLOOD, client)
            raise RateLimited(f"too many unverifiable transactions from {client}; slow down",
                              data={"scope": "client"})
