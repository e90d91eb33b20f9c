"""Accounts as state holds them: the one decoding both the validator and a light client use.

The validator writes them (``node.accounts`` has the ``acl.*`` kinds); a client
reads one back through a proof (``core.proofs``) with :func:`account_state`,
the same function the validator answers the ``account`` query with.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import codec
from core.api import AccountGetParams, AccountState
from core.state import StateView

_PREFIX = b"acct/"


@dataclass(frozen=True)
class Account:
    name: str
    roles: frozenset[str]
    nonce: int

    def encode(self) -> bytes:
        return codec.encode([self.name, sorted(self.roles), self.nonce])

    @classmethod
    def decode(cls, data: bytes) -> Account:
        """From state, which only :meth:`encode` writes (a proven read's bytes are fixed by the root): no
        re-encoding check, which was 40% of a mempool admission's work besides the signature."""
        name, roles, nonce = codec.decode_stored(data)
        return cls(name, frozenset(roles), nonce)


def account_key(public_key: bytes) -> bytes:
    """The state key of an account."""
    return _PREFIX + public_key


def load_account(state: StateView, public_key: bytes) -> Account | None:
    raw = state.get(_PREFIX + public_key)
    return None if raw is None else Account.decode(raw)


def holders_of(state: StateView, role: str) -> list[bytes]:
    """Public keys of the accounts holding ``role``, in key order (a contract's roster, e.g. FL's draw)."""
    return [key[len(_PREFIX):] for key, raw in state.scan(_PREFIX) if role in Account.decode(raw).roles]


def store_account(state: StateView, public_key: bytes, account: Account) -> None:
    state.set(_PREFIX + public_key, account.encode())


def account_state(state: StateView, p: AccountGetParams) -> AccountState | None:
    """The ``account`` query: an account as committed (None: not registered)."""
    account = load_account(state, p.public_key)
    if account is None:
        return None
    return AccountState(public_key=p.public_key, name=account.name, roles=tuple(sorted(account.roles)),
                        nonce=account.nonce)
