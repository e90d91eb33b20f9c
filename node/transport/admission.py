"""Who may start a peer handshake, and how many connections one source address may hold.

Anyone on the network can open a TCP connection to a validator's p2p port, so
the resources an unauthenticated connection can hold are rationed by source
address, before any byte of the handshake is read:

- :class:`ConnectionCaps` bounds the open TCP connections per address (the
  listener closes the connection that would exceed it as soon as it is
  accepted);
- :class:`HandshakeSlots` bounds the handshakes in progress: strangers share
  one pool, in which each address may hold only a few, and every host the
  validator set lives at has a pool of its own on top. So sockets that never
  say hello can fill the strangers' pool, but cannot lock the validators out of
  each other (the squatting that once halted a testnet).

An attacker who shares a validator's address can still use that host's
reservation; the handshake timeout bounds how long it holds each slot. This
module does no I/O, so the rules are tested without sockets.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def normalize_host(host: str) -> str:
    """One spelling per address: brackets dropped, IPv4-mapped IPv6 as IPv4, IPv6 compressed, names lower-cased."""
    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return bare.lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def host_weights(hosts: Iterable[str]) -> Counter[str]:
    """How many validators live at each (normalized) host: one entry per validator."""
    return Counter(normalize_host(h) for h in hosts)


@dataclass(frozen=True)
class Slot:
    """One handshake in progress; give it back with :meth:`HandshakeSlots.release`."""

    host: str
    reserved: bool


class HandshakeSlots:
    """Pending-handshake slots: a shared pool with a per-address cap, plus a reserved pool per validator host.

    A connection from a validator host takes a slot from that host's reserved
    pool while it has one, and otherwise competes for the shared pool like any
    stranger. ``reserved`` maps a normalized host to its pool size.
    """

    def __init__(self, *, shared: int, per_address: int, reserved: Mapping[str, int]) -> None:
        if shared < 1 or per_address < 1 or any(n < 0 for n in reserved.values()):
            raise ValueError("handshake slots need shared >= 1, per_address >= 1 and reservations >= 0")
        self._shared_free = shared
        self._per_address = per_address
        self._reserved_free = {normalize_host(h): n for h, n in reserved.items()}
        self._shared_by_host: Counter[str] = Counter()
        self._reserved_used = 0
        self.refused = 0

    def acquire(self, host: str) -> Slot | None:
        """A slot for a handshake from ``host``, or None when its reservation and its shared quota are used up."""
        host = normalize_host(host)
        if self._reserved_free.get(host, 0) > 0:
            self._reserved_free[host] -= 1
            self._reserved_used += 1
            return Slot(host, reserved=True)
        if self._shared_free > 0 and self._shared_by_host[host] < self._per_address:
            self._shared_free -= 1
            self._shared_by_host[host] += 1
            return Slot(host, reserved=False)
        self.refused += 1
        return None

    def release(self, slot: Slot) -> None:
        if slot.reserved:
            self._reserved_free[slot.host] += 1
            self._reserved_used -= 1
            return
        self._shared_free += 1
        self._shared_by_host[slot.host] -= 1
        if not self._shared_by_host[slot.host]:
            del self._shared_by_host[slot.host]

    @property
    def pending(self) -> int:
        """Handshakes in progress, shared and reserved (a gauge for operators watching an attack)."""
        return sum(self._shared_by_host.values()) + self._reserved_used


class ConnectionCaps:
    """Open connections per source address: ``per_address`` each, more for validator hosts (``extra``)."""

    def __init__(self, *, per_address: int, extra: Mapping[str, int]) -> None:
        if per_address < 1:
            raise ValueError("connection caps need per_address >= 1")
        self._per_address = per_address
        self._extra = {normalize_host(h): n for h, n in extra.items()}
        self._open: Counter[str] = Counter()
        self.refused = 0
        self.refused_preauth = 0
        """Connections cut for sending more than a handshake before authenticating (``node.transport.preauth``)."""

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host``; False (not counted) when it would exceed the cap."""
        host = normalize_host(host)
        if self._open[host] >= self._per_address + self._extra.get(host, 0):
            self.refused += 1
            return False
        self._open[host] += 1
        return True

    def release(self, host: str) -> None:
        host = normalize_host(host)
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]
