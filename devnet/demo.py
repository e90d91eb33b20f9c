"""``fbci demo`` (and ``make demo``): the whole story on one machine, on real processes.

1. A 4-validator testnet on 127.0.0.1, each validator its own process and LevelDB.
2. Hospitals submit signed transactions; each is shown committed, in the same
   block, on every validator.
3. Four hospitals train the breast-cancer model through on-chain FL rounds;
   the global model's test accuracy rises round by round.
   Then one secure-aggregation round: each validator is shown to hold only
   masked inputs, none of the hospitals' updates.
4. The hospitals train the IoMT intrusion classifier; a gateway watches a
   simulated attack and its alerts are committed on every validator.
5. The hospitals train the deterioration model; one patient is scored and
   the score explained.
6. One validator is killed with SIGKILL; the others keep committing; it
   restarts, catches up by block sync, and every validator holds the same chain.

Every figure printed is read back from the validators over JSON-RPC.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from core.crypto import PrivateKey
from core.errors import InvalidInput
from core.tx import Transaction
from genesis.home import HomePaths
from genesis.schema import load_genesis
from devnet import demo_learning as learning
from devnet import demo_secagg
from client.rpc import RpcClient
from devnet.testnet import Testnet

MARKER = ".fbci-demo"
READY_TIMEOUT_S = 90.0


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(step: int, title: str) -> None:
    say()
    say(f"== {step}. {title} " + "=" * max(0, 66 - len(title)))


def prepare_dir(out: Path) -> None:
    """Start from an empty demo directory; refuse to delete anything the demo did not make."""
    if out.exists():
        if not (out / MARKER).exists():
            raise InvalidInput(f"{out} exists and was not made by 'fbci demo'; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by fbci demo; deleted by the next run\n")


async def transactions_everywhere(net: Testnet, urls: Sequence[str]) -> None:
    """Each hospital submits signed test.echo transactions to its own validator."""
    chain_id = load_genesis(HomePaths(net.specs[0].home).genesis).chain_id

    async def hospital(i: int) -> list[tuple[bytes, int]]:
        key = PrivateKey.load(HomePaths(net.specs[i].home).client_key("hospital"))
        async with RpcClient(urls[i]) as node:
            account = await node.account_get(key.public_key.raw)
            txs = [Transaction.create(key, chain_id, account.next_nonce + k, "test.echo",
                                      {"msg": f"vitals batch {k} from hospital {i}".encode()})
                   for k in range(5)]
            results = await asyncio.gather(*(node.submit_tx_commit(tx, 30.0) for tx in txs))
            return [(r.hash, r.height) for r in results]

    committed = [c for per in await asyncio.gather(*(hospital(i) for i in range(len(urls)))) for c in per]
    say(f"{len(committed)} transactions answered as committed; checking each on every validator:")
    for url in urls:
        async with RpcClient(url) as node:
            found = [await node.get_tx(h) for h, _ in committed]
            heights = sorted({f.receipt.height for f in found})
            blocks = {h: (await node.get_block(h)).hash.hex() for h in heights}
        same = all(f.receipt.height == height for f, (_, height) in zip(found, committed))
        say(f"  {url}: {len(found)}/{len(committed)} found, same heights: {same}, "
            f"blocks {heights[0]}..{heights[-1]} ({', '.join(v[:8] for v in list(blocks.values())[:3])}...)")


async def heights(urls: Sequence[str]) -> list[int]:
    out = []
    for url in urls:
        try:
            async with RpcClient(url, timeout_s=2.0) as node:
                out.append((await node.status()).height)
        except Exception:
            out.append(-1)
    return out


async def wait_height(urls: Sequence[str], target: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        now = await heights(urls)
        if min(now) >= target or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)  # polling other processes' state, not synchronising this one


async def crash_and_catch_up(net: Testnet, urls: Sequence[str]) -> None:
    victim = len(urls) - 1
    before = await heights(urls)
    net.kill(victim, signal.SIGKILL)
    say(f"SIGKILL to {net.specs[victim].name} at height {before[victim]}")
    alive = [u for i, u in enumerate(urls) if i != victim]
    now = await wait_height(alive, max(before) + 3, 30)
    say(f"the other {len(alive)} keep committing: heights {now}")
    net.restart(victim)
    net.wait_ready(READY_TIMEOUT_S, nodes=[victim])
    caught = await wait_height(urls, min(now), 60)
    say(f"{net.specs[victim].name} restarted and caught up by block sync: heights {caught}")


async def audit(urls: Sequence[str]) -> None:
    common = min(await heights(urls))
    hashes = []
    for url in urls:
        async with RpcClient(url) as node:
            hashes.append([(await node.get_block(h)).hash.hex() for h in range(max(1, common - 4), common + 1)])
    identical = all(h == hashes[0] for h in hashes)
    say(f"last 5 blocks up to height {common} identical on all {len(urls)} validators: {identical}")
    for h in hashes[0][-3:]:
        say(f"  {h}")
    if not identical:
        raise InvalidInput("validators disagree: see the node logs")


def story(net: Testnet, fl_rounds: int) -> None:
    urls = [spec.rpc_url for spec in net.specs]
    homes = [HomePaths(spec.home) for spec in net.specs]
    hospitals = [PrivateKey.load(home.client_key("hospital")) for home in homes]
    heading(2, "signed transactions, committed on every validator")
    asyncio.run(transactions_everywhere(net, urls))
    heading(3, "federated learning on chain: breast cancer diagnosis")
    learning.breast_cancer_rounds(urls, hospitals, fl_rounds, say)
    say("\nsecure aggregation: the same model family, and validators see only masked updates")
    demo_secagg.secure_round(urls, [Path(spec.home) for spec in net.specs], hospitals, say)
    heading(4, "intrusion detection: train, attack, alerts on chain")
    learning.intrusion_detection(urls, hospitals, PrivateKey.load(homes[0].client_key("gateway")), 10, say)
    heading(5, "deterioration prediction from the on-chain model")
    learning.prediction(urls, hospitals, 5, say)
    heading(6, "crash a validator, keep going, catch up")
    asyncio.run(crash_and_catch_up(net, urls))
    heading(7, "audit: one chain")
    asyncio.run(audit(urls))


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    prepare_dir(out)
    heading(1, f"a {args.validators}-validator testnet on 127.0.0.1 (LevelDB stores under {out})")
    net = Testnet.create(args.validators, out, args.base_port)
    net.start()
    try:
        net.wait_ready(READY_TIMEOUT_S)
        say(net.table())
        story(net, args.fl_rounds)
    finally:
        codes = net.stop_all()
        say()
        say(f"stopped all validators (exit codes {sorted(set(codes.values()))}); logs in {out}/node*/node.log")
    return 0
