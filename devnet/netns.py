"""Validators on separate hosts: a Linux network namespace each, a bridge, and a fault proxy on every link.

A testnet on loopback shares one network stack, so latency, loss and
partitions between validators can only be pretended. Here each validator
gets a host of its own (a network namespace with its own address on a veth
link) and the hosts meet on a bridge in the root namespace, which holds the
fault proxies and the clients:

- the bridge's ports are *isolated* (``bridge link set ... isolated on``):
  frames between two validators' veths are never forwarded, so a validator
  can reach only the root side (proxies, nothing else), and every
  inter-validator byte passes a :class:`~devnet.faultproxy.FaultProxy` that
  can delay, cut or blackhole it;
- the namespaces have no default route, so nothing a validator sends can
  leave the subnet (connects elsewhere fail with "network unreachable");
- every name carries a tag unique to the run (``fbci-<tag>-node0``,
  ``fb<tag>br``, ``fb<tag>v0``) and the /24 is chosen under a lock among
  those no interface or route of this machine uses, so parallel runs do
  not collide;
- :meth:`HostNetwork.close` removes what was made, in reverse, even after
  a failure half-way: leftover processes in a namespace (by pid), the
  veths, the namespaces, the bridge. A run killed before it could close
  leaves an owner file whose pid is dead; the next run sweeps its leftovers.

Validators are started as ``ip netns exec NS <node command>``: the ``ip``
process execs the validator, so the pid :class:`~devnet.testnet.Testnet`
holds and signals is the validator's own. Hosts can be added after the
start (:meth:`HostNetwork.add_host`, then :meth:`ProxyMesh.add` for its
links), which is what a join scenario needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devnet.faultproxy import ProxyMesh
from devnet.testnet import NodeSpec, Testnet, TestnetError, node_command

PREFIX = "fbci"
POOL = ipaddress.ip_network("10.128.0.0/9")
"""Where each run's /24 is drawn from."""
FIRST_HOST = 10
"""Host i gets the subnet's address FIRST_HOST + i; .1 is the bridge (proxies and clients)."""
RUN_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
LOCK_PATH = RUN_DIR / "fbci-netns.lock"
OWNERS = RUN_DIR / "fbci-netns"
"""One file per open network, named by its tag, holding its owner's pid: what a later run sweeps if the
owner died without closing it (SIGKILL, a crash of the machine's test runner)."""
IP_TIMEOUT_S = 30.0
DEFAULT_PORT = 26600
"""Validator i listens on DEFAULT_PORT + 2i (p2p) and + 1 (RPC) at its own address."""


class HostNetworkError(TestnetError):
    """An ``ip`` command that sets up or tears down the namespace network failed."""

    reason = "host_network_error"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if check and done.returncode != 0:
        raise HostNetworkError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


@functools.cache
def unavailable() -> str | None:
    """Why this process cannot build a namespace network (None: it can); tests skip with this reason."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs the suite as root)"
    for tool in ("ip", "bridge"):
        if shutil.which(tool) is None:
            return f"no '{tool}' command (iproute2) to create namespaces with"
    probe = f"{PREFIX}-probe-{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    veth: str
    """The root-namespace end of its link, a port of the bridge."""


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network an address or route of the root namespace covers."""
    nets = []
    for line in (_ip("-4", "-o", "addr", "show").stdout.splitlines()
                 + _ip("-4", "route", "show", "table", "all").stdout.splitlines()):
        for word in line.split():
            with contextlib.suppress(ValueError):
                if "/" in word or word.count(".") == 3:
                    nets.append(ipaddress.ip_network(word, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


class HostNetwork:
    """A bridge in the root namespace and one namespace per host on it; :meth:`close` removes all of it."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.bridge = f"fb{self.tag}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self.hosts: list[Host] = []
        self._undo: list[Callable[[], object]] = []

    @property
    def gateway(self) -> str:
        """The bridge's address: where proxies listen and clients connect from."""
        if self.subnet is None:
            raise HostNetworkError("the host network is not open")
        return str(self.subnet[1])

    def open(self) -> HostNetwork:
        reason = unavailable()
        if reason is not None:
            raise HostNetworkError(reason)
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not pick the same /24 before either adds it
            sweep_stale()
            OWNERS.mkdir(exist_ok=True)
            (OWNERS / self.tag).write_text(str(os.getpid()))
            self._undo.append(functools.partial((OWNERS / self.tag).unlink, missing_ok=True))
            subnet = self._free_subnet()
            _ip("link", "add", self.bridge, "type", "bridge")
            self._undo.append(functools.partial(_ip, "link", "del", self.bridge, check=False))
            _ip("addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", self.bridge)
            self.subnet = subnet
        _ip("link", "set", self.bridge, "up")
        return self

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = _used_networks()
        candidates = list(POOL.subnets(new_prefix=24))
        for subnet in random.sample(candidates, 200):
            if not any(subnet.overlaps(n) for n in used):
                return subnet
        raise HostNetworkError(f"no free /24 in {POOL} for a host network")

    def add_host(self, name: str) -> Host:
        """A new namespace ``name`` with its own address, linked to the bridge through an isolated port."""
        if self.subnet is None:
            raise HostNetworkError("open the host network before adding hosts")
        if any(h.name == name for h in self.hosts):
            raise HostNetworkError(f"host {name!r} already exists")
        index = len(self.hosts)
        namespace, veth, inner = f"{PREFIX}-{self.tag}-{name}", f"fb{self.tag}v{index}", f"fb{self.tag}p{index}"
        address = str(self.subnet[FIRST_HOST + index])
        _ip("netns", "add", namespace)
        self._undo.append(functools.partial(self._remove_namespace, namespace))
        _ip("link", "add", veth, "type", "veth", "peer", "name", inner, "netns", namespace)
        # Deleting one end deletes the pair at once; a namespace's own removal is asynchronous.
        self._undo.append(functools.partial(_ip, "link", "del", veth, check=False))
        _ip("-n", namespace, "link", "set", inner, "name", "eth0")
        _ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "type", "bridge_slave", "isolated", "on")
        _ip("link", "set", veth, "up")
        host = Host(name, namespace, address, veth)
        self.hosts.append(host)
        return host

    def host(self, name: str) -> Host:
        found = next((h for h in self.hosts if h.name == name), None)
        if found is None:
            raise HostNetworkError(f"no host {name!r} in this network")
        return found

    def command(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run on host ``name``."""
        return ["ip", "netns", "exec", self.host(name).namespace, *argv]

    def run(self, name: str, argv: Sequence[str], *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on host ``name`` to completion (probes from a validator's point of view)."""
        return subprocess.run(self.command(name, argv), capture_output=True, text=True, timeout=timeout)

    @staticmethod
    def _remove_namespace(namespace: str) -> None:
        for pid in _ip("netns", "pids", namespace, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)  # only ours: the namespace was made by this run
        _ip("netns", "del", namespace, check=False)

    def close(self) -> None:
        """Undo everything, last first; safe to call twice and after a failed :meth:`open` or :meth:`add_host`."""
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                step()
        self.hosts = []
        self.subnet = None

    def __enter__(self) -> HostNetwork:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove the namespaces and links of networks whose owner process is gone; the tags swept."""
    swept = []
    for owner in sorted(OWNERS.glob("*")) if OWNERS.is_dir() else []:
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            continue
        tag = owner.name
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            if line.split() and line.split()[0].startswith(f"{PREFIX}-{tag}-"):
                HostNetwork._remove_namespace(line.split()[0])
        for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
            if name.startswith(f"fb{tag}"):
                _ip("link", "del", name, check=False)
        owner.unlink(missing_ok=True)
        swept.append(tag)
    return swept


def create_testnet(hosts: HostNetwork, n_validators: int, out_dir: Path, *,
                   command: Callable[[NodeSpec], list[str]] = node_command, **kwargs: Any) -> Testnet:
    """A :class:`Testnet` (not started) of validators ``node0..`` on hosts of their own, every link proxied.

    ``kwargs`` go to :meth:`Testnet.create` (params, clients, governance...). The proxies listen on the
    bridge; the testnet's ``stop_all`` closes them, and ``hosts.close()`` removes the hosts afterwards."""
    placed = [hosts.add_host(f"node{i}") for i in range(n_validators)]
    mesh = ProxyMesh(hosts.gateway)
    try:
        return Testnet.create(n_validators, out_dir, DEFAULT_PORT, hosts=[h.address for h in placed],
                              proxies=mesh, command=lambda spec: hosts.command(spec.name, command(spec)), **kwargs)
    except BaseException:
        mesh.close()
        raise


@contextlib.contextmanager
def netns_testnet(n_validators: int, out_dir: Path, **kwargs: Any) -> Iterator[tuple[Testnet, HostNetwork]]:
    """A started testnet on separate hosts; every process, proxy, namespace and link is gone afterwards."""
    with HostNetwork() as hosts:
        net = create_testnet(hosts, n_validators, out_dir, **kwargs)
        try:
            net.start()
            yield net, hosts
        finally:
            net.stop_all()
