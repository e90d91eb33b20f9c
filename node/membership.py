"""The peer allow-list follows the chain's validator set, not genesis.

After block H the validators that matter are those of H + 1 (still deciding)
and H + 2 (decided by H or earlier): their links are kept, a validator the
chain admits is dialled and let in as soon as the decision is committed (so
it can sync and is connected when its first height comes), and one it removes
is cut once its last height is decided. Every handshake asks :meth:`PeerSet.key`,
so a key off the chain's set is refused even with a valid handshake.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from core.crypto import VerifyingKey
from core.validators import Validator
from node.application import Application, FinalizedBlock
from node.transport import PeerInfo

log = logging.getLogger(__name__)


class PeerSet:
    def __init__(self, app: Application, me: bytes, configured: Sequence[PeerInfo]) -> None:
        """``configured``: the home's peers, which the transport starts with (a joining validator's config
        lists the validators it syncs from); from the first change on, the chain's set decides."""
        self._app = app
        self._me = me
        self._configured = list(configured)
        self._members: dict[bytes, Validator] = {}
        self._my_names: set[str] = set()
        """The names this key held in a set: a later entry under such a name is this validator's successor
        key, at this validator's own address, so never a peer to dial."""
        self.on_change: Callable[[list[PeerInfo]], None] = lambda peers: None
        """Told the new peer list when it changes (the transport's ``set_peers``)."""
        self._refresh()

    def key(self, public_key: bytes) -> VerifyingKey | None:
        """The handshake's allow-list: a validator of the next two heights, by its registered key type."""
        member = self._members.get(public_key)
        return None if member is None or public_key == self._me else member.verifying_key()

    def peers(self) -> list[PeerInfo]:
        """The chain's validators of the next two heights, each at its configured address if the home
        lists it (a proxy, say), else at the address the decision that added it gave; never this validator's
        own successor key (a rotation keeps the name and address: dialling it would reach itself)."""
        configured = {p.public_key: p for p in self._configured}
        return [configured.get(key) or PeerInfo(v.name, key, v.p2p_address)
                for key, v in self._members.items() if key != self._me and v.name not in self._my_names]

    def on_commit(self, finalized: FinalizedBlock) -> None:
        """A block observer: after each block, the sets of the next two heights."""
        self.follow()

    def follow(self) -> None:
        """Take the sets of the next two heights from the application (after a block, or a restored
        snapshot: its state may hold sets that genesis's does not)."""
        if self._refresh():
            peers = self.peers()
            log.info("validator set changed: peers now %s", ", ".join(sorted(p.name for p in peers)))
            self.on_change(peers)

    def _refresh(self) -> bool:
        height = self._app.info().height
        members: dict[bytes, Validator] = {}
        for h in (height, height + 1, height + 2):
            for v in self._app.validator_set(h).validators:
                if v.public_key == self._me:
                    self._my_names.add(v.name)
                elif h > height:
                    members[v.public_key] = v
        changed = set(members) != set(self._members)
        self._members = members
        return changed
