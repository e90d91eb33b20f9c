"""Shared pieces of the benchmarks: result files, tables, the Ed25519 bound, local testnets, load.

Every bench prints a plain table and writes ``bench/results/<name>.json``.
The Ed25519 verify rate is measured in the same process and the same run as
the figure it bounds, because the two cores of a shared machine drift by tens
of percent between runs. Testnets here are the real validator processes of
:mod:`devnet.testnet`, built with genesis parameters a bench needs (the
per-client RPC rate limit raised, since every load client shares 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.crypto import PrivateKey, sign_bytes, verify
from core.tx import SIGN_KIND, Transaction

RESULTS_DIR = Path(__file__).parent / "results"
BENCH_RPC_RATE = 1_000_000
"""Requests per second per client address in bench genesis: the load generator is one address."""


# -- results -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where a result came from, with the load average: on a shared machine it says how far to trust the times."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_1m": os.getloadavg()[0]}


@dataclass(frozen=True)
class Headline:
    """One figure a bench stands by, with the bound it measured in the same run; ``bench.report`` tabulates these.

    ``bound`` is in the figure's ``unit``; ``ratio`` is the figure against
    it (a share of it, or an ``x`` speed-up over a peer), higher is better;
    ``target`` is the ratio the issue asks for, if any.
    """

    what: str
    value: float
    unit: str
    bound: float
    bound_what: str
    ratio: float
    target: float | None = None
    ratio_unit: str = "share"

    def doc(self) -> dict[str, Any]:
        met = None if self.target is None else self.ratio >= self.target
        return {"what": self.what, "value": self.value, "unit": self.unit, "bound": self.bound,
                "bound_what": self.bound_what, "ratio": self.ratio, "ratio_unit": self.ratio_unit,
                "target": self.target, "met": met}


def write_result(name: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    """``bench/results/<name>.json`` with the machine description added."""
    out = (results_dir or RESULTS_DIR) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=str))
    return out


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """Text table; ``columns`` are (key, header, format spec such as ``'.1f'``)."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        line = []
        for key, _, spec in columns:
            value = row.get(key)
            line.append("-" if value is None else format(value, spec) if spec else str(value))
        cells.append(line)
    widths = [max(len(r[c]) for r in cells) for c in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in cells)


# -- the Ed25519 bound ------------------------------------------------------------------------


def ed25519_verify_rate(seconds: float = 1.0) -> float:
    """Verifications per second on one core, through ``core.crypto.verify`` (the node's own call)."""
    key = PrivateKey(bytes(range(32)))
    message = sign_bytes("bench", SIGN_KIND, b"x" * 160)
    signature = key._key.sign(message)
    public = key.public_key.raw
    done, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(200):
            verify(public, message, signature)
        done += 200
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - started)


# -- transactions -----------------------------------------------------------------------------


def echo_msg_bytes(key: PrivateKey, chain_id: str, tx_bytes: int) -> int:
    """Length of the ``msg`` that makes a ``test.echo`` transaction ``tx_bytes`` long when encoded."""
    base = len(Transaction.create(key, chain_id, 1, "test.echo", {"msg": b""}).encode())
    size = max(0, tx_bytes - base)
    while size and len(Transaction.create(key, chain_id, 1, "test.echo", {"msg": b"m" * size}).encode()) > tx_bytes:
        size -= 1
    return size


def signed_echo_txs(keys: Sequence[PrivateKey], chain_id: str, count: int, tx_bytes: int = 200,
                    first_nonce: dict[bytes, int] | None = None) -> list[Transaction]:
    """``count`` signed ``test.echo`` transactions, round-robin over ``keys`` with consecutive nonces.

    Round-robin keeps each sender's run of pending nonces short (the mempool
    admits at most 64 beyond the committed one).
    """
    size = echo_msg_bytes(keys[0], chain_id, tx_bytes)
    nonces = {k.public_key.raw: (first_nonce or {}).get(k.public_key.raw, 1) for k in keys}
    txs = []
    for i in range(count):
        key = keys[i % len(keys)]
        pub = key.public_key.raw
        txs.append(Transaction.create(key, chain_id, nonces[pub], "test.echo", {"msg": b"m" * size}))
        nonces[pub] += 1
    return txs


# -- local testnets ---------------------------------------------------------------------------


@dataclass
class LocalNet:
    """A started :class:`devnet.testnet.Testnet` plus what a load client needs."""

    net: Any
    chain_id: str
    client_keys: list[PrivateKey]
    rpc_urls: list[str]
    out_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.net.stop_all()


def create_localnet(n: int, out_dir: Path, *, clients: int = 32, params: dict[str, Any] | None = None,
                    command: Callable[[Any], list[str]] | None = None, start: bool = True,
                    ready_timeout: float = 60.0, genesis_time_ms: int | None = None) -> LocalNet:
    """``n`` validators with ``clients`` client accounts (half hospitals, half gateways) under ``out_dir``."""
    from genesis.create import init_network
    from genesis.home import HomePaths, NodeConfig
    from genesis.schema import ChainParams
    from devnet.catalog import default_app_state
    from devnet.testnet import NodeSpec, Testnet, node_command
    from tests.integration.conftest import free_base_port

    merged = {"rpc_requests_per_second": BENCH_RPC_RATE, "rpc_burst": BENCH_RPC_RATE, **(params or {})}
    network = init_network(n, out_dir, base_port=free_base_port(2 * n + 2), hospitals=clients - clients // 2,
                           gateways=clients // 2, params=ChainParams(**merged), app_state=default_app_state(n),
                           genesis_time_ms=genesis_time_ms)
    specs = []
    keys: list[PrivateKey] = []
    for home in network.homes:
        paths = HomePaths(home)
        config = NodeConfig.model_validate_json(paths.config.read_text())
        specs.append(NodeSpec(config.name, home, config.rpc_url(), config.p2p_listen))
        keys += [PrivateKey.load(p) for p in sorted(paths.keys_dir.glob("*.json"))
                 if p.stem.startswith(("hospital", "gateway"))]
    net = Testnet(specs, command=command or node_command)
    local = LocalNet(net, network.genesis.chain_id, keys, [s.rpc_url for s in specs], out_dir,
                     {"genesis": network.genesis, "specs": specs})
    if start:
        net.start()
        try:
            net.wait_ready(ready_timeout)
        except BaseException:
            net.stop_all()
            raise
    return local


def profiled_command(profile_dir: Path) -> Callable[[Any], list[str]]:
    """Start each validator under cProfile; the stats file is written when it stops cleanly (SIGTERM)."""
    def command(spec: Any) -> list[str]:
        profile_dir.mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-m", "cProfile", "-o", str(profile_dir / f"{spec.name}.prof"),
                "-m", "cli.main", "node", "start", "--home", str(spec.home)]
    return command


def profile_summary(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    """Top functions by own time (tottime) from a cProfile stats file."""
    import pstats

    stats = pstats.Stats(str(path))
    total = sum(v[2] for v in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(filename).name}:{line}({func})", "calls": nc, "tottime_s": tt,
                     "cumtime_s": ct, "share": tt / total})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:limit]


# -- commit tracking --------------------------------------------------------------------------


class CommitWatcher:
    """Follows ``new_block`` on one validator and records when each transaction hash committed.

    Commit time is when this client learns of the block (the websocket push
    plus a ``block_get`` for its transaction hashes), so latencies include that
    notification path, as a real client's would.
    """

    def __init__(self, rpc_url: str) -> None:
        self.rpc_url = rpc_url
        self.committed: dict[bytes, float] = {}
        self.blocks: list[tuple[int, int, float]] = []  # (height, num_txs, seen at)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        from client.rpc import RpcClient

        async with RpcClient(self.rpc_url) as client, RpcClient(self.rpc_url) as reader:
            async with client.subscribe("new_block") as events:
                self._ready.set()
                async for event in events:
                    seen = time.perf_counter()
                    if event["num_txs"]:
                        block = await reader.get_block(event["height"])
                        for h in block.txs:
                            self.committed.setdefault(h, seen)
                    self.blocks.append((event["height"], event["num_txs"], seen))
                    self._changed.set()

    async def wait_for(self, hashes: Sequence[bytes], timeout: float) -> bool:
        """True once every hash committed; False after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        missing = [h for h in hashes if h not in self.committed]
        while missing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
            missing = [h for h in missing if h not in self.committed]
        return True


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
