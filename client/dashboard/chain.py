"""The dashboard's index of recent blocks: transactions by actor and kind, acknowledgements, evidence, signers.

The validator serves blocks and transactions one at a time; the Audit and
Network pages need them by actor, kind and certificate. :class:`ChainIndex`
reads the last ``history`` blocks at start, then every new block as its
``new_block`` event arrives (and any it missed, by height), and tells its
listeners. What it shows is bounded by that window, and the pages say so.
Acknowledgements (``ids.ack_alert``) are read from the same blocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from core.api import BlockInfo, TxInfo
from core.errors import FbciError, ReadRefused
from ids.alerts import ACK_TX_KIND
from client.dashboard.source import ChainSource

log = logging.getLogger("fbci.dashboard")
RECONNECT_S = 1.0
PRIVATE_TX = "(private)"
"""The kind shown for a transaction the dashboard's key may not read (``tx_get`` refused it)."""


@dataclass(frozen=True)
class TxRow:
    height: int
    time_ms: int
    index: int
    hash: str
    sender: str
    actor: str
    kind: str
    ok: bool
    outcome: str
    """``ok``, or the receipt's reason and message."""
    detail: str


@dataclass(frozen=True)
class BlockRow:
    height: int
    time_ms: int
    hash: str
    proposer: str
    num_txs: int
    signers: list[str]
    missing: list[str]
    """Validators whose signature this validator's commit certificate for the block lacks."""


@dataclass(frozen=True)
class Ack:
    alert_id: int
    by: str
    height: int
    tx_hash: str


def _detail(kind: str, payload: Any) -> str:
    """One line on what a transaction did, without its bulk (model deltas) and without anything clinical."""
    if not isinstance(payload, dict):
        return ""
    if kind == "fl.submit_update":
        return f"{payload.get('model_id')} round {payload.get('round')}, {payload.get('num_samples')} samples"
    if kind == "ids.alert":
        return f"{payload.get('alert_class')} severity {payload.get('severity')} from {payload.get('hospital')}"
    if kind == ACK_TX_KIND:
        return f"acknowledged alert {payload.get('alert_id')}"
    if kind.startswith("acl."):
        roles = payload.get("roles") or payload.get("role") or ""
        return f"{payload.get('name', '')} {', '.join(roles) if isinstance(roles, list) else roles}".strip()
    return ""


@dataclass
class ChainIndex:
    source: ChainSource
    history: int = 500
    blocks: deque[BlockRow] = field(init=False)
    txs: deque[TxRow] = field(init=False)
    acks: dict[int, Ack] = field(default_factory=dict)
    evidence: list[TxRow] = field(default_factory=list)
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    first_height: int = 0
    tip: int = 0
    _names: dict[bytes, str] = field(default_factory=dict)
    _validators: dict[bytes, str] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.blocks = deque(maxlen=self.history)
        self.txs = deque(maxlen=self.history * 20)

    async def start(self) -> None:
        self._validators = {bytes.fromhex(v.public_key): v.name for v in await self.source.validators()}
        self._names.update(self._validators)
        tip = (await self.source.status()).height
        self.first_height = max(1, tip - self.history + 1)
        await self.catch_up(tip)

    async def name_of(self, key: bytes) -> str:
        if key not in self._names:
            try:
                self._names[key] = (await self.source.account(key)).name or key.hex()[:12]
            except FbciError:
                return key.hex()[:12]
        return self._names[key]

    async def catch_up(self, height: int) -> None:
        """Read every block after the last one read, up to ``height``."""
        async with self._lock:
            for h in range(max(self.tip + 1, self.first_height), height + 1):
                await self._ingest(await self.source.block(h))
                self.tip = h
                self._notify({"type": "block", "height": h})

    async def _ingest(self, block: BlockInfo) -> None:
        cert = block.commit_certificate
        signed = {s.validator for s in cert.signatures} if cert is not None else set()
        self.blocks.append(BlockRow(
            block.height, block.time_ms, block.hash.hex(), self._validators.get(block.proposer, block.proposer.hex()[:12]),
            block.num_txs, sorted(self._validators[k] for k in signed if k in self._validators),
            sorted(n for k, n in self._validators.items() if cert is not None and k not in signed)))
        for index, tx_hash in enumerate(block.txs):
            try:
                info = await self.source.tx(tx_hash)
            except ReadRefused as exc:  # another hospital's update or a patient's consent: only its hash shows
                self.txs.append(TxRow(block.height, block.time_ms, index, tx_hash.hex(), "", "?", PRIVATE_TX, True,
                                      "not readable", f"this dashboard's key may not read it ({exc.reason})"))
                continue
            await self._ingest_tx(block, info)

    async def _ingest_tx(self, block: BlockInfo, info: TxInfo) -> None:
        receipt = info.receipt
        payload = info.transaction().payload
        row = TxRow(block.height, block.time_ms, receipt.index, info.hash.hex(), info.sender.hex(),
                    await self.name_of(info.sender), info.kind, receipt.ok,
                    "ok" if receipt.ok else f"{receipt.reason}: {receipt.message}",
                    _detail(info.kind, payload))
        self.txs.append(row)
        if info.kind == ACK_TX_KIND and receipt.ok:
            alert_id = int(receipt.result["alert_id"])
            self.acks[alert_id] = Ack(alert_id, row.actor, block.height, row.hash)
            self._notify({"type": "ack", "alert_id": alert_id, "by": row.actor, "height": block.height,
                          "tx_hash": row.hash})
        if info.kind == "consensus.evidence" and receipt.ok:
            convicted = receipt.result["validator"]
            row = dataclasses.replace(row, detail=f"convicted {self._validators.get(convicted, convicted.hex()[:12])} "
                                                  f"of equivocating at height {receipt.result['height']}")
            self.txs[-1] = row
            self.evidence.append(row)

    def _notify(self, event: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event)

    def block_interval_s(self) -> float | None:
        """Median seconds between the recent blocks' (proposer-stamped) times."""
        times = [b.time_ms for b in list(self.blocks)[-50:]]
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        return gaps[len(gaps) // 2] / 1000 if gaps else None

    async def follow(self) -> None:
        """Keep up with ``new_block`` events until cancelled; reconnect when the validator goes away."""
        while True:
            try:
                async with self.source.subscribe("new_block") as events:
                    await self.catch_up((await self.source.status()).height)
                    async for event in events:
                        await self.catch_up(int(event["height"]))
            except (ConnectionError, aiohttp.ClientError, FbciError, asyncio.TimeoutError) as exc:
                log.warning("chain follower: %s; retrying in %g s", exc, RECONNECT_S)
                await asyncio.sleep(RECONNECT_S)  # back-off before reconnecting, not synchronisation
