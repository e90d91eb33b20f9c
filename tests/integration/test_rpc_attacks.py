"""Attacks on a real validator's JSON-RPC edge (issue 17), and what an honest client sees meanwhile.

One validator process serves the module, started under the open-file limit
services commonly get (1,024), which is where descriptor exhaustion bites.
Each attack comes from its own loopback address; the honest client calls from
127.0.0.1 and commits a few transactions before and during (or after) the
attack. After each: the honest commits all succeeded, their median latency is
within 2x the unattacked median measured in the same test, the chain still
grows, and the node's log stayed small and free of tracebacks.

1. Slowloris: more sockets than the per-address cap (and than the node has
   descriptors), each with half a request line, then silence.
2. Malformed request heads, each of which used to log a traceback.
3. Forged transactions naming a hospital (bad signatures), flooded from two
   addresses: they used to spend the hospital's own rate limit and put alerts
   naming it on chain.
4. The same transaction sent again, pending or committed: a client retrying,
   which used to be alerted as a replay attack (``replayed_tx``).
"""

from __future__ import annotations

import asyncio
import json
import resource
import selectors
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from core.crypto import PrivateKey
from core.errors import AlreadyKnown, BadNonce
from core.tx import Transaction
from devnet.testnet import NodeSpec, Testnet, node_command
from genesis.home import HomePaths
from genesis.schema import load_genesis
from ids.selfdefence import address_subject
from node.rpc.server import RpcLimits
from tests.integration.load import PROGRESS_S, READY_S, SourcedClient, metric, wait_growing, wait_until
from tests.ports import free_base_port

pytestmark = pytest.mark.timeout(300)

FD_LIMIT = 1024
SAMPLES = 9
HONEST = "127.0.0.1"


def fd_limited(spec: NodeSpec) -> list[str]:
    """The validator under ``ulimit -n 1024``, as a service manager's default would start it."""
    return ["sh", "-c", f'ulimit -n {FD_LIMIT} && exec "$@"', "sh", *node_command(spec)]


@dataclass(frozen=True)
class Node:
    net: Testnet
    host: str
    port: int
    chain_id: str
    hospital: PrivateKey
    gateway: PrivateKey

    @property
    def url(self) -> str:
        return self.net.specs[0].rpc_url

    @property
    def log_size(self) -> int:
        return self.net.specs[0].log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.net.specs[0].log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    net = Testnet.create(1, tmp_path_factory.mktemp("attacks") / "net", free_base_port(4), command=fd_limited)
    net.start()
    try:
        net.wait_ready(READY_S, min_height=1)
        home = HomePaths(net.specs[0].home)
        host, port = net.specs[0].rpc_url.split("//", 1)[1].rsplit(":", 1)
        yield Node(net, host, int(port), load_genesis(home.genesis).chain_id,
                   PrivateKey.load(home.client_key("hospital")), PrivateKey.load(home.client_key("gateway")))
    finally:
        net.stop_all()


# -- the honest client --------------------------------------------------------------------------------------------


async def _commit(client: SourcedClient, key: PrivateKey, chain_id: str, nonce: int, msg: str) -> float:
    tx = Transaction.create(key, chain_id, nonce, "test.echo", {"msg": msg.encode()})
    started = time.perf_counter()
    result = await client.submit_tx_commit(tx, timeout_s=20)
    assert result.receipt.ok, result.receipt
    return time.perf_counter() - started


def honest_commits(node: Node, key: PrivateKey, count: int = SAMPLES) -> list[float]:
    """Seconds each of ``count`` ``tx_submit_commit`` calls took, one after another; any refusal raises."""
    async def run() -> list[float]:
        async with SourcedClient(node.url + "/rpc", HONEST, timeout_s=15) as client:
            nonce = (await client.account_get(key.public_key.raw)).next_nonce
            return [await _commit(client, key, node.chain_id, nonce + i, f"honest {nonce + i}") for i in range(count)]

    return asyncio.run(run())


def assert_still_fine(node: Node, unattacked: list[float], attacked: list[float], log_from: int,
                      log_budget: int) -> None:
    """Honest latency within 2x, the chain growing, the log small and without a traceback."""
    assert statistics.median(attacked) <= 2 * statistics.median(unattacked), (attacked, unattacked)
    assert node.net.alive(0), node.net.exit_description(0)
    wait_growing(node.net, 3, PROGRESS_S)
    written = node.log_since(log_from)
    assert "exc=" not in written and "Traceback" not in written, written[:2000]
    assert len(written.encode()) < log_budget, (len(written.encode()), written[:2000])


def alerts_about(node: Node, subject: bytes) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        async with SourcedClient(node.url + "/rpc", HONEST, reader=node.hospital) as client:  # a private read
            page = await client.call_read("alerts_query", {"subject": subject.hex()})
        return list(page["alerts"])

    return asyncio.run(run())


# -- 1 and 2: sockets and request heads ---------------------------------------------------------------------------


def _open_slow_sockets(node: Node, count: int, source: str) -> list[socket.socket]:
    """``count`` connections from ``source``, each sending half a request line and then nothing."""
    opened = []
    for _ in range(count):
        try:
            sock = socket.create_connection((node.host, node.port), timeout=2, source_address=(source, 0))
            sock.sendall(b"POST /rpc HTT")
        except OSError:
            continue  # a node out of descriptors stops accepting: the backlog fills and connects time out
        opened.append(sock)
    return opened


def _wait_closed_by_node(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Read each socket to its end (a refusal's 503, or nothing) until the node closed it; the still-open ones."""
    selector = selectors.DefaultSelector()  # epoll: more descriptors than select() takes
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_ = set(sockets)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(sock)
                open_.discard(sock)
    selector.close()
    return list(open_)


def test_slowloris_sockets_do_not_make_rpc_unreachable(node: Node) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * FD_LIMIT:  # this process holds the attacker's sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * FD_LIMIT), hard))
    cap = RpcLimits().max_connections_per_address
    unattacked = honest_commits(node, node.hospital)
    log_from = node.log_size
    sockets = _open_slow_sockets(node, FD_LIMIT + 76, source="127.0.0.66")  # 1,100: more than the node's files
    try:
        assert len(sockets) > cap
        attacked = honest_commits(node, node.hospital)
        refused = metric(node.net, 0, "fbci_rpc_connections_refused_total")
        assert refused is not None and refused >= len(sockets) - cap, refused
        header_timeout = RpcLimits().header_timeout_s
        still_open = _wait_closed_by_node(sockets, timeout=3 * header_timeout)
        assert not still_open, f"{len(still_open)} half-sent requests still hold their sockets"
    finally:
        for sock in sockets:
            sock.close()
    assert_still_fine(node, unattacked, attacked, log_from, log_budget=16 * 1024)


def test_malformed_request_heads_neither_crash_nor_flood_the_log(node: Node) -> None:
    unattacked = honest_commits(node, node.hospital)
    log_from = node.log_size
    bad_heads = [b"GET /rpc HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"POST /rpc HTTP/1.1\r\nno colon here\r\n\r\n",
                 b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                 b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]
    statuses = Counter()
    for i in range(300):
        with socket.create_connection((node.host, node.port), timeout=10, source_address=("127.0.0.67", 0)) as sock:
            sock.sendall(bad_heads[i % len(bad_heads)])
            statuses[sock.recv(12)[9:12]] += 1
    assert set(statuses) <= {b"400", b"413", b"414", b"431"}, statuses
    attacked = honest_commits(node, node.hospital)
    assert_still_fine(node, unattacked, attacked, log_from, log_budget=4 * 1024)


# -- 3: forged transactions naming a hospital ---------------------------------------------------------------------


def _forged_batch(node: Node, victim: bytes, size: int = 20) -> bytes:
    """``size`` tx_submit calls of transactions that name ``victim`` as sender and are signed by nobody's key."""
    calls = []
    for i in range(size):
        body = Transaction.create(PrivateKey.generate(), node.chain_id, 1 + i, "test.echo", {"msg": b"forged"})
        forged = Transaction(body.chain_id, victim, body.nonce, body.kind, body.payload, body.signature)
        calls.append({"jsonrpc": "2.0", "method": "tx_submit", "params": {"tx": forged.encode().hex()}, "id": i})
    return json.dumps(calls).encode()


@dataclass
class Flood:
    """Posts ``body`` from each of ``sources`` every ``pace_s`` on a thread of its own, until stopped: from
    each address about five times what its rate limit lets through, in small steady posts, so before the
    fix the key they name was charged twice its refill rate with no gap for its own transactions."""

    url: str
    body: bytes
    sources: tuple[str, ...]
    pace_s: float = 0.02
    posts: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="flood", daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the flood did not stop"

    async def _main(self) -> None:
        await asyncio.gather(*(self._send_from(source) for source in self.sources))

    async def _send_from(self, source: str) -> None:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            while not self._stop.is_set():
                async with session.post(self.url, data=self.body, headers={"Content-Type": "application/json"}) as r:
                    answers = await r.json(content_type=None)
                self.posts += 1
                replies = answers if isinstance(answers, list) else [answers]
                self.reasons.update(f'{a["error"]["data"]["reason"]}/{a["error"]["data"].get("scope", "-")}'
                                    for a in replies if "error" in a)
                await asyncio.sleep(self.pace_s)  # a steady flood, not a benchmark of this process


def test_forged_transactions_naming_a_hospital_neither_throttle_nor_frame_it(node: Node) -> None:
    victim = node.hospital
    attackers = ("127.0.0.77", "127.0.0.78")
    unattacked = honest_commits(node, victim)
    log_from = node.log_size
    with Flood(node.url + "/rpc", _forged_batch(node, victim.public_key.raw), attackers) as flood:
        wait_until(lambda: flood.posts >= 60, PROGRESS_S, "the forgers sent 1,200 transactions")  # 3 bursts of 400
        attacked = honest_commits(node, victim)  # raises RateLimited if the forgers spent the hospital's budget
    assert flood.reasons and set(flood.reasons) <= {"bad_signature/-", "rate_limited/client"}, flood.reasons
    wait_until(lambda: bool(alerts_about(node, address_subject(attackers[0]))), PROGRESS_S,
               "a bad_signature alert naming the forger's address is committed")
    # Alerts go on chain in the order they were raised, and a key alert would have been raised first.
    assert alerts_about(node, victim.public_key.raw) == []
    assert_still_fine(node, unattacked, attacked, log_from, log_budget=16 * 1024)


# -- 4: the same transaction sent again ------------------------------------------------------------------------


async def _resend(node: Node, tx: Transaction, times: int) -> list[Exception]:
    """``tx_submit`` of the very same bytes ``times`` times; the refusals."""
    refusals = []
    async with SourcedClient(node.url + "/rpc", "127.0.0.88") as client:
        for _ in range(times):
            try:
                await client.submit_tx(tx)
            except (AlreadyKnown, BadNonce) as exc:
                refusals.append(exc)
    return refusals


def test_resending_the_same_transaction_is_not_a_replay_attack(node: Node) -> None:
    hospital, gateway = node.hospital, node.gateway
    unattacked = honest_commits(node, hospital)
    log_from = node.log_size

    async def setup() -> tuple[Transaction, int, Transaction, int]:
        async with SourcedClient(node.url + "/rpc", HONEST) as client:
            nonce = (await client.account_get(hospital.public_key.raw)).next_nonce
            committed = Transaction.create(hospital, node.chain_id, nonce, "test.echo", {"msg": b"sent once"})
            height = (await client.submit_tx_commit(committed, timeout_s=20)).height
            pending = Transaction.create(hospital, node.chain_id, nonce + 60, "test.echo", {"msg": b"waits"})
            await client.submit_tx(pending)  # admitted, and pending behind the nonces before it
            used = (await client.account_get(gateway.public_key.raw)).next_nonce
            await client.submit_tx_commit(Transaction.create(gateway, node.chain_id, used, "test.echo",
                                                             {"msg": b"gateway"}), timeout_s=20)
        return committed, height, pending, used

    committed, height, pending, used = asyncio.run(setup())
    refusals = asyncio.run(_resend(node, committed, 10)) + asyncio.run(_resend(node, pending, 10))
    assert [type(r) for r in refusals] == [BadNonce] * 10 + [AlreadyKnown] * 10, refusals
    assert all(r.data.get("committed_height") == height for r in refusals[:10]), refusals[0].data
    reused = asyncio.run(_reuse_nonce(node, gateway, used, 6))
    assert len(reused) == 6 and not any("committed_height" in r.data for r in reused), reused
    wait_until(lambda: any(a["alert_class"] == "replayed_tx" for a in alerts_about(node, gateway.public_key.raw)),
               PROGRESS_S, "the gateway's proven reuse of a nonce is alerted")
    # The hospital's resends were refused before the gateway's reuse, so an alert about them would be on chain first.
    assert alerts_about(node, hospital.public_key.raw) == []
    attacked = honest_commits(node, hospital)
    assert_still_fine(node, unattacked, attacked, log_from, log_budget=16 * 1024)


async def _reuse_nonce(node: Node, key: PrivateKey, nonce: int, times: int) -> list[BadNonce]:
    """Really signed transactions with other bodies and an already used nonce: what ``replayed_tx`` is for."""
    refusals = []
    async with SourcedClient(node.url + "/rpc", HONEST) as client:
        for i in range(times):
            try:
                await client.submit_tx(Transaction.create(key, node.chain_id, nonce, "test.echo",
                                                          {"msg": f"again {i}".encode()}))
            except BadNonce as exc:
                refusals.append(exc)
    return refusals
