"""The namespace network itself: what it makes, that parallel ones do not collide, that nothing outlives it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import devnet.netns as netns
from core.errors import InvalidInput
from devnet.netns import HostNetwork, HostNetworkError, unavailable
from genesis.create import init_network

needs_netns = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def leftovers(tag: str) -> list[str]:
    """Interfaces and namespaces of this machine that carry ``tag``."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[1] for line in links.splitlines() if f"fb{tag}" in line] + \
        [line.split()[0] for line in spaces.splitlines() if tag in line]


@needs_netns
def test_two_networks_at_once_get_their_own_names_and_subnets_and_leave_nothing() -> None:
    with HostNetwork() as one, HostNetwork() as two:
        a, b = one.add_host("node0"), two.add_host("node0")
        assert one.tag != two.tag and a.namespace != b.namespace
        assert one.subnet is not None and two.subnet is not None and not one.subnet.overlaps(two.subnet)
        assert a.address != one.gateway and a.address in {str(x) for x in one.subnet}
        assert leftovers(one.tag) and leftovers(two.tag)
        with pytest.raises(HostNetworkError, match="already exists"):
            one.add_host("node0")
    assert leftovers(one.tag) == [] and leftovers(two.tag) == []


@needs_netns
def test_a_failure_half_way_through_adding_a_host_still_removes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    real = netns._ip

    def failing(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if "isolated" in args:
            raise HostNetworkError("injected failure")
        return real(*args, check=check)

    hosts = HostNetwork()
    with pytest.raises(HostNetworkError, match="injected"):
        with hosts:
            hosts.add_host("node0")
            monkeypatch.setattr(netns, "_ip", failing)
            hosts.add_host("node1")  # namespace and veth made, then the bridge port setting fails
    monkeypatch.setattr(netns, "_ip", real)
    assert leftovers(hosts.tag) == []
    hosts.close()  # twice is harmless


def test_without_root_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "root" in str(unavailable.__wrapped__())


def test_hosts_must_match_the_validators(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="hosts: 1 given for 2 validators"):
        init_network(2, tmp_path, hosts=["10.0.0.1"])
    network = init_network(2, tmp_path, hosts=["10.0.0.1", "10.0.0.2"])
    assert [v.p2p_address.split(":")[0] for v in network.genesis.validators] == ["10.0.0.1", "10.0.0.2"]


@needs_netns
def test_a_network_whose_owner_died_is_swept_by_the_next_one() -> None:
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    orphan = HostNetwork().open()
    orphan.add_host("node0")
    (netns.OWNERS / orphan.tag).write_text(dead)  # as if its process had been killed with everything still up
    assert leftovers(orphan.tag)
    with HostNetwork() as later:
        assert leftovers(orphan.tag) == []
        assert leftovers(later.tag)
        assert not (netns.OWNERS / orphan.tag).exists()
    orphan.close()  # finds nothing left to remove
    assert leftovers(later.tag) == []
