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

    def _charge(self, limiter: RateLimiter | None, key: str, kind: str, offender: str, message: str,
                scope: str) -> None:
        """One token of ``key``'s bucket; a refusal is reported as ``kind`` against ``offender``."""
        if limiter is not None and not limiter.allow(key, self.clock_ms()):
            self.report(kind, offender)
            raise RateLimited(message, data={"scope": scope})

    def check_client(self, client: str) -> None:
        """One token per JSON-RPC call (each batch element) from ``client``; raises ``RateLimited``."""
        self._charge(self.client_limiter, f"addr:{client}", MISBEHAVIOUR_RPC_FLOOD, client,
                     f"too many requests from {client}; slow down", "client")

    def check_signer(self, public_key_hex: str) -> None:
        """One token per new transaction whose signature proved it was signed by ``public_key_hex``."""
        self._charge(self.signer_limiter, f"signer:{public_key_hex}", MISBEHAVIOUR_TX_FLOOD, public_key_hex,
                     f"too many transactions from signer {public_key_hex}; slow down", "signer")

    def check_unproven(self, client: str) -> None:
        """One token of ``client``'s own transaction budget for a transaction that proves no signer."""
        self._charge(self.signer_limiter, f"unproven:{client}", MISBEHAVIOUR_RPC_FLOOD, client,
                     f"too many unverifiable transactions from {client}; slow down", "client")
