"""A small client-load generator and the checks fault tests run after each perturbation.

:class:`ClientLoad` runs, on a background thread with its own event loop, one
worker per client key. Each worker submits signed ``test.echo`` transactions
with ``tx_submit_commit``, one at a time, and records every transaction a
validator *acknowledged as committed* (:attr:`ClientLoad.acked`, hash ->
height). A worker owns its key, so it numbers nonces itself and never signs two
transactions with one nonce: after a failure (node down, paused, cut off, a
commit wait that timed out) it asks whether the transaction committed anyway
and otherwise resubmits the same bytes, possibly to another validator, until
it is settled. Each worker connects from its own loopback address
(127.0.0.10, .11, ...) so the per-address RPC rate limit sees several clients,
and the checks below use 127.0.1.x, a fresh address per batch of reads, so
verifying thousands of transactions is not slowed by the same limit.

The checks (:func:`assert_same_chain`, :func:`assert_acked_everywhere`,
:func:`wait_heights`) read other processes over RPC, so they poll with a
deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from core.api import TX_GET, TxInfo
from core.crypto import PrivateKey
from core.errors import AlreadyKnown, BadNonce, FbciError, LimitExceeded, NotFound, Timeout
from core.tx import Transaction
from genesis.home import HomePaths
from client.rpc import RpcClient
from devnet.testnet import Testnet

log = logging.getLogger(__name__)

_checker_addresses = itertools.cycle(f"127.0.1.{k}" for k in range(1, 255))
WORKER_ADDRESS_BASE = 10  # worker i connects from 127.0.0.(10 + i)
BATCH = 100  # the RPC server's default max_batch
RETRY_S = 0.1  # a worker's pause before retrying a failed submission (client back-off, not synchronisation)
READY_S = 60
PROGRESS_S = 60  # a deadline for progress that takes a few seconds on an idle machine
PACE_S = 0.05  # a worker's pause between transactions: a steady load, not a benchmark


class SourcedClient(RpcClient):
    """An :class:`RpcClient` whose connections leave from ``source`` (a 127.0.0.0/8 address).

    Only towards a loopback URL: a validator on a host of its own (``devnet.netns``) is reached from
    the address the route gives, since a loopback source cannot leave this host."""

    def __init__(self, url: str, source: str, *, timeout_s: float = 30.0, reader: PrivateKey | None = None) -> None:
        super().__init__(url, timeout_s=timeout_s, reader=reader)
        host = urllib.parse.urlsplit(url).hostname or ""
        self.source = source if host == "localhost" or host.startswith("127.") else None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(local_addr=None if self.source is None else (self.source, 0))
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session


# Failures that say "this validator did not answer", as opposed to an answer.
UNREACHABLE = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def client_keys(net: Testnet, stems: Sequence[str] = ("hospital", "gateway")) -> list[PrivateKey]:
    """Every client key the testnet's homes hold under ``keys/{stem}.json``, node by node."""
    keys = []
    for spec in net.specs:
        for stem in stems:
            path = HomePaths(spec.home).client_key(stem)
            if path.exists():
                keys.append(PrivateKey.load(path))
    return keys


def chain_id_of(net: Testnet) -> str:
    from genesis.schema import load_genesis

    return load_genesis(HomePaths(net.specs[0].home).genesis).chain_id


@dataclass
class ClientLoad:
    """``with ClientLoad(urls, keys, chain_id) as load: ...``; ``load.acked`` is what the nodes promised."""

    urls: Sequence[str]
    keys: Sequence[PrivateKey]
    chain_id: str
    commit_timeout_s: float = 4.0
    pace_s: float = PACE_S
    acked: dict[bytes, int] = field(default_factory=dict)
    """Transaction hash -> height, for each ``tx_submit_commit`` that answered "committed"."""
    settled_late: dict[bytes, int] = field(default_factory=dict)
    """Transactions whose commit wait failed but that ``tx_get`` later found committed."""
    failed_receipts: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    """Answers a correct node never gives under these faults (internal errors, nonce confusion)."""

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

    # -- control, from the test's thread -------------------------------------------------------

    def start(self) -> ClientLoad:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="client-load", daemon=True)
        self._thread.start()
        self._started.wait()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "client load did not stop"
        self._thread = None

    def __enter__(self) -> ClientLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> dict[bytes, int]:
        with self._cond:
            return dict(self.acked)

    def wait_for_acks(self, count: int, timeout: float) -> None:
        """Block until at least ``count`` transactions in all have been acknowledged as committed."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.acked) >= count, timeout):
                raise AssertionError(f"only {len(self.acked)} of {count} transactions acknowledged "
                                     f"within {timeout}s; unexpected: {self.unexpected[:5]}")

    def wait_for_more(self, more: int, timeout: float) -> None:
        with self._cond:
            already = len(self.acked)
        self.wait_for_acks(already + more, timeout)

    # -- the load, on its own thread ----------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        workers = [asyncio.create_task(self._worker(i, key)) for i, key in enumerate(self.keys)]
        await self._stop.wait()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def _note(self, what: str) -> None:
        with self._cond:
            self.unexpected.append(what)

    async def _worker(self, index: int, key: PrivateKey) -> None:
        source = f"127.0.0.{WORKER_ADDRESS_BASE + index}"
        clients = [SourcedClient(url, source, timeout_s=self.commit_timeout_s + 3, reader=key) for url in self.urls]
        target = index % len(clients)
        try:
            nonce = 1
            tx = self._echo(key, nonce, index)
            while True:
                client = clients[target]
                try:
                    result = await client.submit_tx_commit(tx, timeout_s=self.commit_timeout_s)
                except (AlreadyKnown, BadNonce):
                    pass  # in a mempool already, or its nonce is used: settled below
                except (Timeout, LimitExceeded, *UNREACHABLE):
                    target = (target + 1) % len(clients)
                except FbciError as exc:  # non-JSON answers, internal errors: a node bug
                    self._note(f"{type(exc).__name__} from {client.rpc_url}: {exc.message}")
                    target = (target + 1) % len(clients)
                else:
                    with self._cond:
                        self.acked[tx.hash] = result.height
                        if not result.receipt.ok:
                            self.failed_receipts.append(f"{tx.hash.hex()}: {result.receipt}")
                        self._cond.notify_all()
                    nonce += 1
                    tx = self._echo(key, nonce, index)
                    await asyncio.sleep(self.pace_s)
                    continue
                height = await self._committed_height(clients[target], tx.hash)
                if height is not None:
                    with self._cond:
                        self.settled_late[tx.hash] = height
                    nonce += 1
                    tx = self._echo(key, nonce, index)
                else:
                    await asyncio.sleep(RETRY_S)
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    def _echo(self, key: PrivateKey, nonce: int, index: int) -> Transaction:
        return Transaction.create(key, self.chain_id, nonce, "test.echo", {"msg": f"w{index} n{nonce}".encode()})

    async def _committed_height(self, client: RpcClient, tx_hash: bytes) -> int | None:
        try:
            answer = await client.get_tx(tx_hash)
        except (NotFound, LimitExceeded, *UNREACHABLE):
            return None
        except FbciError as exc:
            self._note(f"tx_get from {client.rpc_url}: {type(exc).__name__}: {exc.message}")
            return None
        return answer.receipt.height


# -- checks: the same chain everywhere, every acknowledged transaction everywhere ----------------


async def _batched(url: str, calls: list[tuple[str, dict[str, Any]]], reader: PrivateKey | None = None) -> list[Any]:
    """Results in order; rate-limited slots are retried after a pause, other errors come back as values.
    ``reader`` signs each call (whose params must be its model's full dump, as ``tx_get``'s are)."""
    results: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    deadline = time.monotonic() + 60
    while todo:
        chunk, todo = todo[:BATCH], todo[BATCH:]
        async with SourcedClient(url, next(_checker_addresses), reader=reader) as client:
            answers = await client.batch([(calls[i][0], await client.signed_params(*calls[i])) for i in chunk])
        retry = [i for i, a in zip(chunk, answers) if isinstance(a, LimitExceeded)]
        for i, answer in zip(chunk, answers):
            results[i] = answer
        if retry:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} kept rate-limiting the checks")
            todo = retry + todo
            await asyncio.sleep(0.5)  # let the token bucket refill
    return results


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def heights(net: Testnet, nodes: Sequence[int] | None = None) -> dict[int, int]:
    """Each node's committed height, -1 for a node that does not answer."""
    nodes = range(len(net.specs)) if nodes is None else nodes
    return {i: int((net.status(i) or {}).get("height", -1)) for i in nodes}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll other processes' state (nothing in-process to wait on) until ``predicate()``, or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(interval)


def wait_heights(net: Testnet, at_least: int, timeout: float, nodes: Sequence[int] | None = None) -> None:
    nodes = list(range(len(net.specs)) if nodes is None else nodes)
    wait_until(lambda: min(heights(net, nodes).values()) >= at_least, timeout,
               f"height >= {at_least} on nodes {nodes} (now {heights(net, nodes)})")


def wait_growing(net: Testnet, blocks: int, timeout: float, nodes: Sequence[int] | None = None) -> None:
    """Every node in ``nodes`` commits ``blocks`` more blocks than the highest of them has now."""
    nodes = list(range(len(net.specs)) if nodes is None else nodes)
    wait_heights(net, max(heights(net, nodes).values()) + blocks, timeout, nodes)


async def _block_hashes(url: str, upto: int) -> list[str]:
    answers = await _batched(url, [("block_get", {"height": h}) for h in range(1, upto + 1)])
    bad = [(h, a) for h, a in enumerate(answers, start=1) if not isinstance(a, dict)]
    assert not bad, f"{url} failed block_get: {bad[:3]}"
    assert [a["height"] for a in answers] == list(range(1, upto + 1))
    return [a["hash"] for a in answers]


def assert_same_chain(net: Testnet, nodes: Sequence[int] | None = None) -> int:
    """Every node has the same block hash at every height it has; returns the lowest common height."""
    nodes = list(range(len(net.specs)) if nodes is None else nodes)
    tops = heights(net, nodes)
    assert all(h >= 0 for h in tops.values()), f"a node does not answer: {tops}"
    chains = dict(zip(nodes, _run(_gather([_block_hashes(net.specs[i].rpc_url, tops[i]) for i in nodes]))))
    longest = max(chains.values(), key=len)
    for i, chain in chains.items():
        fork = next((h for h, (a, b) in enumerate(zip(chain, longest), start=1) if a != b), None)
        assert fork is None, f"{net.specs[i].name} differs at height {fork}: {chain[fork - 1]} vs {longest[fork - 1]}"
    return min(tops.values())


async def _tx_heights(url: str, hashes: list[bytes], reader: PrivateKey) -> list[Any]:
    """Each hash's committed transaction (or the error the node answered), in one batch per chunk."""
    answers = await _batched(url, [(TX_GET.path, {"hash": h.hex()}) for h in hashes], reader)
    return [TX_GET.parse(a) if isinstance(a, dict) else a for a in answers]


async def _gather(coros: list[Any]) -> list[Any]:
    return list(await asyncio.gather(*coros))


def assert_acked_everywhere(net: Testnet, acked: dict[bytes, int], nodes: Sequence[int] | None = None,
                            timeout: float = 60) -> None:
    """Each acknowledged transaction is on every node in ``nodes``, at the height it was acknowledged at."""
    nodes = list(range(len(net.specs)) if nodes is None else nodes)
    if not acked:
        raise AssertionError("no transaction was acknowledged: the load never ran")
    wait_heights(net, max(acked.values()), timeout, nodes)
    hashes = sorted(acked)
    everywhere = _run(_gather([_tx_heights(net.specs[i].rpc_url, hashes, net.client_key()) for i in nodes]))
    for i, answers in zip(nodes, everywhere):
        missing = [(h.hex()[:16], a) for h, a in zip(hashes, answers) if not isinstance(a, TxInfo)]
        assert not missing, f"{net.specs[i].name} lost {len(missing)} acknowledged transactions: {missing[:3]}"
        moved = [(h.hex()[:16], acked[h], a.receipt.height) for h, a in zip(hashes, answers)
                 if a.receipt.height != acked[h]]
        assert not moved, f"{net.specs[i].name} has acknowledged transactions at other heights: {moved[:3]}"
        assert all(a.receipt.ok for a in answers)


@contextmanager
def under_load(net: Testnet, stems: Sequence[str] = ("hospital", "gateway")) -> Iterator[ClientLoad]:
    """A started testnet that has committed blocks, with every client key submitting transactions."""
    net.wait_ready(READY_S, min_height=1)
    with ClientLoad([s.rpc_url for s in net.specs], client_keys(net, stems), chain_id_of(net)) as load:
        load.wait_for_acks(40, PROGRESS_S)
        yield load
    assert not load.unexpected, load.unexpected[:5]
    assert not load.failed_receipts, load.failed_receipts[:5]


def converged(net: Testnet, load: ClientLoad) -> None:
    """After a fault: one chain, every acknowledged transaction everywhere, and still making progress."""
    acked = load.snapshot()
    assert_acked_everywhere(net, acked)
    assert_same_chain(net)
    load.wait_for_more(30, PROGRESS_S)
    wait_growing(net, 3, PROGRESS_S)



def metric(net: Testnet, i: int, name: str) -> float | None:
    """One sample of validator ``i``'s Prometheus ``name`` (None when the node does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{net.specs[i].rpc_url}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{net.specs[i].name} exports no metric {name}")
