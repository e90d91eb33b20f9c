"""``fbci status``: one screen on a running network, and the check that its validators agree.

Every node is asked ``status`` at once. Divergence is checked, not guessed
from the latest hashes (which differ whenever heights differ): each node is
asked for its block at the lowest height all reachable nodes have, and any
two different hashes there are a fork, which is the one thing a BFT chain
must never show. Exit status: 0 when every node answered and they agree; 1
when a node is unreachable, says its consensus loop is not running (a
crashed validator stops, but a stuck one must not look healthy either), or
the chain has diverged, so scripts and monitors can use it as a health
check. No torch, no numpy.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from core.errors import FbciError
from client.rpc import RpcClient
from client.text import table

TIMEOUT_S = 5.0


@dataclass
class NodeRow:
    url: str
    name: str | None = None
    chain_id: str | None = None
    height: int | None = None
    latest_hash: str | None = None
    view: int | None = None
    peers: int | None = None
    mempool: int | None = None
    syncing: bool | None = None
    consensus_running: bool | None = None
    last_commit_time_ms: int | None = None
    common_hash: str | None = None
    error: str | None = None


async def _probe(url: str) -> tuple[NodeRow, RpcClient]:
    client = RpcClient(url, timeout_s=TIMEOUT_S)
    row = NodeRow(url)
    try:
        s = await client.status()
        row.name, row.chain_id, row.height, row.latest_hash = s.validator, s.chain_id, s.height, s.latest_block_hash.hex()
        row.view, row.peers, row.mempool, row.syncing = s.view, s.peers, s.mempool_size, s.syncing
        row.consensus_running, row.last_commit_time_ms = s.consensus_running, s.last_commit_time_ms
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        row.error = f"unreachable ({type(exc).__name__}: {exc})" if str(exc) else f"unreachable ({type(exc).__name__})"
    except FbciError as exc:
        row.error = f"error[{exc.code} {exc.reason}]: {exc.message}"
    return row, client


async def _block_hash(client: RpcClient, height: int) -> str | None:
    try:
        block = await client.get_block(height)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, FbciError):
        return None
    return block.hash.hex()


async def collect(urls: list[str]) -> dict[str, Any]:
    """Rows per node plus the agreement verdict (see the module docstring)."""
    probed = await asyncio.gather(*(_probe(u) for u in urls))
    try:
        rows = [row for row, _ in probed]
        live = [(row, client) for row, client in probed if row.error is None]
        common = min((row.height or 0 for row, _ in live), default=None)
        if common is not None and common > 0:
            hashes = await asyncio.gather(*(_block_hash(client, common) for _, client in live))
            for (row, _), h in zip(live, hashes):
                row.common_hash = h
    finally:
        await asyncio.gather(*(client.close() for _, client in probed))
    chains = {row.chain_id for row in rows if row.chain_id is not None}
    at_common = {row.common_hash for row in rows if row.common_hash is not None}
    same_height = {}
    for row in rows:
        if row.height is not None:
            same_height.setdefault(row.height, set()).add(row.latest_hash)
    diverged = len(at_common) > 1 or any(len(h) > 1 for h in same_height.values())
    return {
        "nodes": [asdict(r) for r in rows], "common_height": common, "diverged": diverged,
        "chain_ids": sorted(chains), "unreachable": sum(r.error is not None for r in rows),
        "stopped": sum(r.consensus_running is False for r in rows),
    }


def _since(ms: int | None, now_ms: int) -> str:
    return "-" if not ms else f"{max(0, now_ms - ms) / 1000:.1f}s ago"


def _table(report: dict[str, Any], now_ms: int) -> str:
    header = ("NAME", "HEIGHT", "HASH", "VIEW", "PEERS", "MEMPOOL", "SYNCING", "CONSENSUS", "LAST COMMIT", "RPC")
    rows: list[tuple[str, ...]] = []
    errors = []
    for n in report["nodes"]:
        if n["error"] is not None:
            rows.append(("?", "-", "-", "-", "-", "-", "-", "-", "-", n["url"]))
            errors.append(f"  {n['url']}: {n['error']}")
            continue
        rows.append((n["name"], str(n["height"]), n["latest_hash"][:12], str(n["view"]), str(n["peers"]),
                     str(n["mempool"]), "yes" if n["syncing"] else "no",
                     "STOPPED" if n["consensus_running"] is False else "running",
                     _since(n["last_commit_time_ms"], now_ms), n["url"]))
    lines = [table(header, rows), *errors]
    chains = report["chain_ids"]
    if len(chains) > 1:
        lines.append(f"WARNING: nodes report different chain ids: {', '.join(chains)}")
    if report["diverged"]:
        by_hash: dict[str, list[str]] = {}
        for n in report["nodes"]:
            if n["common_hash"] is not None:
                by_hash.setdefault(n["common_hash"][:12], []).append(n["name"])
        detail = "; ".join(f"{h}: {', '.join(names)}" for h, names in by_hash.items())
        lines.append(f"DIVERGED: different block hashes at the same height {report['common_height']} ({detail})")
    elif report["common_height"]:
        heights = [n["height"] for n in report["nodes"] if n["height"] is not None]
        lines.append(f"agree: {len(heights)} node(s) have the same block at height {report['common_height']}"
                     f" (heights {min(heights)}..{max(heights)})")
    if report["unreachable"]:
        lines.append(f"{report['unreachable']} node(s) unreachable")
    if report["stopped"]:
        lines.append(f"{report['stopped']} node(s) answer but their consensus is not running")
    return "\n".join(lines)


def show_status(rpc_urls: list[str], as_json: bool) -> int:
    report = asyncio.run(collect(list(dict.fromkeys(rpc_urls))))
    sys.stdout.write((json.dumps(report, indent=2) if as_json else _table(report, time.time_ns() // 1_000_000)) + "\n")
    return 1 if report["diverged"] or report["unreachable"] or report["stopped"] else 0
