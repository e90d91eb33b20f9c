"""Local testnets: N validator processes on loopback, started, watched, faulted and stopped.

``fbci testnet`` uses :func:`run_testnet`; fault tests use :class:`Testnet` as
a library to kill, pause, restart and cut off real processes (CometBFT's e2e
perturbations). Children run in their own session, so a terminal's Ctrl-C
reaches only this process, which then stops them in order: SIGTERM to all,
a grace period, SIGKILL for any left. Readiness is the node's own answer to
the JSON-RPC ``status`` method, not a guess from elapsed time, and only from
this network's node: its ``chain_id`` and ``validator`` name must be the
home's, and its ``genesis`` hash the home's genesis file's (two testnets made
with the same chain id share names and chain id, so the genesis hash, which
has fresh keys and a fresh time, is what tells them apart). A second
testnet on ports another one holds is therefore never "ready".

A testnet directory can be resumed (:meth:`Testnet.load`: the same homes,
keys and stored chain) or replaced; only a directory this module made
(it holds :data:`MARKER`) is ever deleted, and never while a validator
runs on one of its homes (``node.homelock``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from core.crypto import PrivateKey
from core.errors import FbciError, InvalidInput
from genesis.home import HomePaths, NodeConfig, write_config
from genesis.schema import ChainParams
from client.text import table
from devnet.faultproxy import ProxyMesh

POLL_INTERVAL = 0.1
MARKER = ".fbci-testnet"
"""Written into every directory :meth:`Testnet.create` makes: the mark that it may be deleted and made again."""


class TestnetError(FbciError):
    """A validator process failed to start, died, or never became ready."""

    reason = "testnet_error"
    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class NodeSpec:
    name: str
    home: Path
    rpc_url: str
    p2p_address: str

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"


def network_homes(out_dir: Path) -> list[Path]:
    """The ``node<i>`` homes (with a config) of a network directory, in index order."""
    return sorted((p for p in out_dir.glob("node*") if HomePaths(p).config.is_file()),
                  key=lambda p: (len(p.name), p.name))


def describe_testnet(out_dir: Path) -> str | None:
    """A line about the network in ``out_dir`` (None: it holds none), for the resume question."""
    homes = network_homes(out_dir)
    if not homes or not (out_dir / "genesis.json").is_file():
        return None
    from genesis.schema import load_genesis

    doc = load_genesis(out_dir / "genesis.json")
    return f"{len(homes)} validator(s) of chain {doc.chain_id!r}, genesis {doc.hash().hex()[:12]}"


def _spec(home: Path) -> NodeSpec:
    config = NodeConfig.model_validate_json(HomePaths(home).config.read_text())
    return NodeSpec(config.name, home, config.rpc_url(), config.p2p_listen)


def node_command(spec: NodeSpec) -> list[str]:
    """The validator process: ``fbci node start --home HOME`` with this interpreter."""
    return [sys.executable, "-m", "cli.main", "node", "start", "--home", str(spec.home)]


def rpc_call(url: str, method: str, params: Any = None, *, timeout: float = 1.0,
             reader: PrivateKey | None = None) -> Any:
    """One JSON-RPC call; raises OSError when the node does not answer, TestnetError on an error reply.
    With ``reader`` a private read is signed by that key (``RpcClient.call_read``)."""
    if reader is not None:
        return asyncio.run(_signed_call(url, method, params, timeout, reader))
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    request = urllib.request.Request(f"{url}/rpc", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise TestnetError(f"{url} answered {method} with {reply['error']}")
    return reply["result"]


async def _signed_call(url: str, method: str, params: Any, timeout: float, reader: PrivateKey) -> Any:
    from client.rpc import RpcClient

    async with RpcClient(url, timeout_s=timeout, reader=reader) as client:
        try:
            return await client.call_read(method, params)
        except FbciError as exc:
            raise TestnetError(f"{url} answered {method} with {exc.to_json()}") from None


class Testnet:
    """Validator processes for ``specs``; ``command(spec)`` is how each one is started."""

    __test__ = False

    def __init__(self, specs: Sequence[NodeSpec], *, command: Callable[[NodeSpec], list[str]] = node_command,
                 grace: float = 10.0, proxies: ProxyMesh | None = None) -> None:
        self.specs = list(specs)
        self.command = command
        self.grace = grace
        self.proxies = proxies
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.specs)
        self._homes: dict[int, tuple[str, str] | None] = {}

    @classmethod
    def create(cls, n_validators: int, out_dir: Path, base_port: int, *, proxies: bool | ProxyMesh = False,
               chain_id: str | None = None, params: ChainParams | None = None, hybrid: bool = False,
               app_state: dict[str, Any] | None = None, governance: bool = False,
               hosts: Sequence[str] | None = None, clients: int | None = None, **kwargs: Any) -> Testnet:
        """Write genesis and N homes under ``out_dir``; with ``proxies`` every peer link
        goes through a :class:`FaultProxy` so tests can cut it; ``params`` overrides genesis' chain parameters,
        ``app_state`` the default catalog's application state; ``hybrid`` gives every validator an
        Ed25519 + ML-DSA-65 key; ``governance``: an admin key per hospital, deciding by quorum.
        Separate hosts (``devnet.netns``): ``hosts`` gives validator i its own address, ``proxies`` may be
        the mesh to use (listening where the validators reach it); ``clients``: that many client accounts
        (half hospitals, half gateways) instead of one of each per validator."""
        from genesis.create import init_network
        from devnet.catalog import default_app_state

        extra: dict[str, Any] = {} if chain_id is None else {"chain_id": chain_id}
        if clients is not None:
            extra.update(hospitals=clients - clients // 2, gateways=clients // 2)
        network = init_network(n_validators, out_dir, base_port=base_port, params=params,
                               app_state=default_app_state(n_validators) if app_state is None else app_state,
                               hybrid=hybrid, governance=governance, hosts=hosts, **extra)
        (out_dir / MARKER).write_text("made by fbci testnet; 'fbci testnet --fresh' may delete it\n")
        mesh = proxies if isinstance(proxies, ProxyMesh) else ProxyMesh() if proxies else None
        for home in network.homes:
            paths = HomePaths(home)
            config = NodeConfig.model_validate_json(paths.config.read_text())
            if mesh is not None:
                peers = [p.model_copy(update={"address": mesh.add(config.name, p.name, p.address)})
                         for p in config.peers]
                write_config(config.model_copy(update={"peers": peers}), paths)
        return cls([_spec(home) for home in network.homes], proxies=mesh, **kwargs)

    @classmethod
    def load(cls, out_dir: Path, **kwargs: Any) -> Testnet:
        """The network already in ``out_dir``: its validators start again from their stored chain."""
        homes = network_homes(out_dir)
        if not homes:
            raise InvalidInput(f"{out_dir} holds no testnet (no node<i>/config/config.json)")
        return cls([_spec(home) for home in homes], **kwargs)

    @staticmethod
    def remove(out_dir: Path) -> None:
        """Delete a testnet directory this module made, after checking no validator runs on it."""
        if not (out_dir / MARKER).is_file():
            raise InvalidInput(f"{out_dir} was not made by 'fbci testnet' (no {MARKER}); delete it yourself or "
                               "choose another --out")
        from node.homelock import node_lock

        with contextlib.ExitStack() as locks:
            for home in network_homes(out_dir):
                locks.enter_context(node_lock(home))
            shutil.rmtree(out_dir)

    # ---- processes -------------------------------------------------------

    def client_key(self, stem: str = "hospital", node: int = 0) -> PrivateKey:
        """A client key node ``node``'s home keeps (``keys/<stem>.json``): it signs private reads too."""
        return PrivateKey.load(HomePaths(self.specs[node].home).client_key(stem))

    def start(self) -> None:
        for i in range(len(self.specs)):
            self._spawn(i)

    def _spawn(self, i: int) -> None:
        spec = self.specs[i]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(spec.log_path, "ab") as log:
            self._procs[i] = subprocess.Popen(self.command(spec), stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def pid(self, i: int) -> int | None:
        proc = self._procs[i]
        return None if proc is None else proc.pid

    def alive(self, i: int) -> bool:
        proc = self._procs[i]
        return proc is not None and proc.poll() is None

    def kill(self, i: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to validator ``i`` (SIGKILL, SIGSTOP, SIGCONT, SIGTERM...); reaps it if it dies."""
        proc = self._procs[i]
        if proc is None or proc.poll() is not None:
            raise TestnetError(f"{self.specs[i].name} is not running")
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait()

    def stop(self, i: int) -> int | None:
        """Stop validator ``i`` cleanly (SIGTERM, then SIGKILL after the grace period)."""
        return self._stop([i])[i]

    def restart(self, i: int) -> None:
        self.stop(i)
        self._spawn(i)

    def stop_all(self) -> dict[int, int | None]:
        """Stop every validator and the proxies; returns each exit code (None: never started)."""
        try:
            return self._stop(range(len(self.specs)))
        finally:
            if self.proxies is not None:
                self.proxies.close()
                self.proxies = None

    def _stop(self, indices: Sequence[int] | range) -> dict[int, int | None]:
        running = [i for i in indices if self.alive(i)]
        for i in running:
            proc = self._procs[i]
            assert proc is not None
            proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            proc.terminate()
        deadline = time.monotonic() + self.grace
        for i in running:
            proc = self._procs[i]
            assert proc is not None
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return {i: None if self._procs[i] is None else self._procs[i].returncode for i in indices}

    # ---- readiness -------------------------------------------------------

    def status(self, i: int, *, timeout: float = 1.0) -> dict[str, Any] | None:
        """Validator ``i``'s ``status`` answer, or None when it does not answer in time."""
        try:
            result = rpc_call(self.specs[i].rpc_url, "status", timeout=timeout)
        except (OSError, ValueError, http.client.HTTPException, TestnetError):
            return None
        return result if isinstance(result, dict) else None

    def home_identity(self, i: int) -> tuple[str, str] | None:
        """(chain id, genesis hash hex) of validator ``i``'s home genesis; None for a home without one."""
        if i not in self._homes:
            path = HomePaths(self.specs[i].home).genesis
            if path.exists():
                from genesis.schema import load_genesis

                doc = load_genesis(path)
                self._homes[i] = (doc.chain_id, doc.hash().hex())
            else:
                self._homes[i] = None
        return self._homes[i]

    def foreign(self, i: int, answer: dict[str, Any], *, check_genesis: bool = True,
                timeout: float = 1.0) -> str | None:
        """Why the node that gave ``answer`` (to ``status``) at validator ``i``'s address is not
        validator ``i`` of this network; None when it is. ``check_genesis`` also asks its ``genesis``."""
        spec = self.specs[i]
        home = self.home_identity(i)
        name, chain_id = answer.get("validator"), answer.get("chain_id")
        if name != spec.name or (home is not None and chain_id != home[0]):
            expected = spec.name if home is None else f"{spec.name} of chain {home[0]!r}"
            return f"{spec.rpc_url} answers as {name!r} of chain {chain_id!r}, not {expected}"
        if home is None or not check_genesis:
            return None
        try:
            doc = rpc_call(spec.rpc_url, "genesis", timeout=timeout)
        except (OSError, ValueError, http.client.HTTPException, TestnetError) as exc:
            return f"{spec.rpc_url} did not answer genesis ({exc})"
        got = doc.get("hash") if isinstance(doc, dict) else None
        if got != home[1]:
            return (f"{spec.rpc_url} answers with genesis {str(got)[:16]}..., not this network's "
                    f"{home[1][:16]}... ({HomePaths(spec.home).genesis}): another network holds the port")
        return None

    def wait_ready(self, timeout: float, *, nodes: Sequence[int] | None = None, min_height: int = 0) -> None:
        """Poll each node's ``status`` until all answer with ``height >= min_height``.

        Only an answer from this network's node counts (:meth:`foreign`): a node
        of another network on the same port keeps it waiting, and is named in
        the error. Raises TestnetError at once when a process has exited, with its log's tail."""
        waiting = set(range(len(self.specs)) if nodes is None else nodes)
        verified: set[int] = set()  # answered genesis with the home's hash during this wait
        foreign: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while waiting:
            for i in sorted(waiting):
                if not self.alive(i):
                    why = f"; {foreign[i]}" if i in foreign else ""
                    raise TestnetError(f"{self.specs[i].name} exited ({self.exit_description(i)}){why}; "
                                       f"log tail:\n{self.log_tail(i)}")
                call_timeout = min(1.0, max(0.05, deadline - time.monotonic()))
                answer = self.status(i, timeout=call_timeout)
                if answer is None:
                    continue
                why = self.foreign(i, answer, check_genesis=i not in verified, timeout=call_timeout)
                if why is not None:
                    foreign[i] = why
                    continue
                foreign.pop(i, None)
                verified.add(i)
                if int(answer.get("height", 0)) >= min_height:
                    waiting.discard(i)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(self.specs[i].name + (f" ({foreign[i]})" if i in foreign else "")
                                  for i in sorted(waiting))
                raise TestnetError(f"not ready after {timeout}s (height >= {min_height}): {names}")
            if waiting:
                time.sleep(POLL_INTERVAL)  # polling other processes: nothing to wait on in-process

    def exit_description(self, i: int) -> str:
        proc = self._procs[i]
        return "never started" if proc is None else f"exit code {proc.returncode}"

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            return "\n".join(self.specs[i].log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def table(self) -> str:
        return table(("NAME", "RPC", "P2P", "PID", "LOG"),
                     [(s.name, s.rpc_url, s.p2p_address, self.pid(i), s.log_path) for i, s in enumerate(self.specs)])

    def __enter__(self) -> Testnet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _open(n_validators: int | None, out_dir: Path, base_port: int, resume: bool, proxies: bool,
          command: Callable[[NodeSpec], list[str]], hybrid: bool = False) -> Testnet:
    if resume:
        net = Testnet.load(out_dir, command=command)
        if n_validators is not None and n_validators != len(net.specs):
            raise InvalidInput(f"--validators {n_validators}: the testnet in {out_dir} has {len(net.specs)}; "
                               "resume it as it is, or pass --fresh")
        return net
    if describe_testnet(out_dir) is not None:
        Testnet.remove(out_dir)
    return Testnet.create(n_validators or 4, out_dir, base_port, proxies=proxies, command=command, hybrid=hybrid)


def run_testnet(n_validators: int | None, out_dir: Path, base_port: int, *, resume: bool = False,
                proxies: bool = False, ready_timeout: float = 60.0,
                command: Callable[[NodeSpec], list[str]] = node_command, hybrid: bool = False) -> int:
    """``fbci testnet``: create (or, with ``resume``, reopen; without it, a testnet already in ``out_dir`` is
    replaced), start, print where everything is, run until Ctrl-C or SIGTERM."""
    net = _open(n_validators, out_dir, base_port, resume, proxies, command, hybrid)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        net.start()
        print(f"{'resumed' if resume else 'new'} testnet of {len(net.specs)} validators in {out_dir} "
              f"(genesis: {out_dir / 'genesis.json'})")
        print(net.table(), flush=True)
        try:
            net.wait_ready(ready_timeout)
        except TestnetError as exc:
            print(f"testnet failed to start: {exc.message}", file=sys.stderr, flush=True)
            return 1
        print("all validators answer status; Ctrl-C stops them", flush=True)
        reported: set[int] = set()
        while not stop.wait(1.0):
            for i in range(len(net.specs)):
                if i not in reported and not net.alive(i):
                    reported.add(i)
                    spec = net.specs[i]
                    print(f"{spec.name} exited ({net.exit_description(i)}); see {spec.log_path}", flush=True)
            if len(reported) == len(net.specs):
                print("every validator has exited; the testnet is gone", file=sys.stderr, flush=True)
                return 1
        return 0
    finally:
        codes = net.stop_all()
        print("stopped: " + ", ".join(f"{net.specs[i].name}={code}" for i, code in codes.items()), flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
