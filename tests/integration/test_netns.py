"""Four validators on four hosts: network namespaces on a bridge, a fault proxy on every link between them.

The fault tests of ``test_faults`` on loopback, again where the network is
real enough to lie: each validator has its own network stack and address,
clients reach its RPC over the bridge, and every byte between two validators
passes a proxy that adds WAN latency or partitions the link. Needs root (CI
runs as root); elsewhere every test skips with the reason.

A join/leave scenario adds a host with ``hosts.add_host(name)`` and its links
with ``net.proxies.add(...)`` once validator-set changes exist.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis.schema import ChainParams
from genesis.types import split_address
from devnet.netns import HostNetwork, netns_testnet, unavailable
from devnet.testnet import Testnet
from tests.integration.load import (
    PROGRESS_S, READY_S, converged, heights, under_load, wait_growing, wait_until,
)

N = 4
WAN_MS = 20  # one-way latency on every validator link during the partition tests
LOSS = 0.01  # segments lost on the partition test's links (each costs its chunk a retransmit timeout)
pytestmark = [pytest.mark.timeout(300), pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]

PARAMS = ChainParams(rpc_requests_per_second=100_000, rpc_burst=100_000)
"""Every client here connects from the bridge's one address, so the per-address RPC limit must not bind."""

PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(10)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""


@pytest.fixture
def separate(tmp_path: Path) -> Iterator[tuple[Testnet, HostNetwork]]:
    with netns_testnet(N, tmp_path / "net", params=PARAMS) as (net, hosts):
        yield net, hosts


def probe(hosts: HostNetwork, name: str, address: str) -> str:
    host, port = split_address(address)
    done = hosts.run(name, [sys.executable, "-c", PROBE, host, str(port)])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_each_validator_is_a_host_of_its_own_reached_by_peers_only_through_proxies(
        separate: tuple[Testnet, HostNetwork]) -> None:
    net, hosts = separate
    net.wait_ready(READY_S, min_height=3)
    assert net.proxies is not None
    addresses = {h.name: h.address for h in hosts.hosts}
    assert len(set(addresses.values())) == N
    for spec in net.specs:
        assert split_address(spec.p2p_address)[0] == addresses[spec.name]
        assert spec.rpc_url.startswith(f"http://{addresses[spec.name]}:")  # the client reaches it over the bridge
    # Every pair of validators exchanged consensus traffic, and all of it went through their proxies.
    names = [s.name for s in net.specs]
    for a in names:
        for b in names:
            if a < b:
                carried = net.proxies.links[(a, b)].stats.bytes_forwarded + net.proxies.links[(b, a)].stats.bytes_forwarded
                assert carried > 0, f"no bytes between {a} and {b} through their proxies"
    # From node0's host: its proxy answers, node1 itself cannot be reached, nothing outside the subnet either.
    assert probe(hosts, "node0", net.proxies.links[("node0", "node1")].address) == "connected"
    assert probe(hosts, "node0", net.specs[1].p2p_address).split()[0] in {"OSError", "TimeoutError"}
    assert probe(hosts, "node0", "192.0.2.1:80") == "OSError 101"  # ENETUNREACH: no route leaves the subnet


def test_a_partitioned_validator_falls_behind_and_catches_up_after_healing(
        separate: tuple[Testnet, HostNetwork]) -> None:
    """1 | 3 over a lossy WAN: node3's links stay open but carry nothing; the three commit on, node3 then catches up."""
    net, _ = separate
    assert net.proxies is not None
    net.proxies.delay(None, WAN_MS, jitter_ms=5)
    net.proxies.loss(None, LOSS)
    with under_load(net) as load:
        net.proxies.partition("node3")
        cut_at = heights(net, [3])[3]
        wait_growing(net, 5, PROGRESS_S, [0, 1, 2])
        load.wait_for_more(20, PROGRESS_S)
        assert heights(net, [3])[3] <= cut_at + 1  # at most the block in flight when partitioned
        net.proxies.heal("node3")
        converged(net, load)


def test_a_two_two_partition_halts_commits_and_heals(separate: tuple[Testnet, HostNetwork]) -> None:
    """No side holds a quorum (3 of 4): nobody commits while split, both sides resume after healing."""
    net, _ = separate
    assert net.proxies is not None
    net.proxies.delay(None, WAN_MS, jitter_ms=5)
    with under_load(net) as load:
        net.proxies.split({"node0", "node1"}, {"node2", "node3"})
        split_at = heights(net)
        views = {i: int((net.status(i) or {}).get("view", 0)) for i in range(N)}
        # Time passes in consensus' own terms: every validator's view times out. Each then waits in its view
        # change (two of four is no quorum to move on with) and nobody commits.
        wait_until(lambda: all(int((net.status(i) or {}).get("view", -1)) > views[i]
                               or heights(net, [i])[i] > split_at[i] + 1 for i in range(N)),
                   PROGRESS_S, "every validator times out views while split")
        stuck = heights(net)
        assert all(stuck[i] <= split_at[i] + 1 for i in range(N)), f"committed while split: {split_at} -> {stuck}"
        acked = len(load.snapshot())
        net.proxies.heal()
        wait_growing(net, 3, PROGRESS_S)
        assert len(load.snapshot()) > acked
        converged(net, load)
