"""``fbci demo`` (and ``make demo``): the whole story on one machine, on real processes.

1. A 4-validator testnet on 127.0.0.1, each validator its own process and LevelDB.
2. Hospitals submit signed transactions; each is shown committed, in the same
   block, on every validator.
3. Four hospitals train the breast-cancer model through on-chain FL rounds;
   the global model's test accuracy rises round by round.
   Then one secure-aggregation round: each validator is shown to hold only
   masked inputs, none of the hospitals' updates.
   Round numbering is explained, since rounds that fail run ahead of versions.
4. The hospitals train the IoMT intrusion classifier; a gateway watches a
   simulated attack, with its precision and recall against the ground truth,
   and its alerts are committed on every validator.
5. The hospitals train the deterioration model; a ward of patients is scored
   against an alarm threshold fixed on the training hospitals, each with a
   would-alarm or missed verdict, and one score is explained.
6. The validator due to propose next is killed with SIGKILL; the view change
   its silence causes is named from the blocks' commit certificates and the
   survivors' metrics; it restarts and catches up by block sync.
7. Every validator holds the same chain.
8. With ``--keep``, the testnet (and ``fbci dashboard``, when this build has
   it) stays up, and the demo prints where to reach it and how to stop it.

Every figure printed is read back from the validators over JSON-RPC.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from core.crypto import PrivateKey
from core.errors import InvalidInput
from core.tx import Transaction
from genesis.home import HomePaths
from genesis.schema import load_genesis
from devnet import demo_ids, demo_learning as learning
from devnet import demo_secagg
from client.rpc import RpcClient
from client.text import short, table
from devnet.testnet import Testnet, describe_testnet

MARKER = ".fbci-demo"
READY_TIMEOUT_S = 90.0
DASHBOARD_LISTEN = "127.0.0.1:8080"
"""Where the kept demo's ``fbci dashboard`` listens (its default, passed explicitly so the printed address is its)."""
DASHBOARD_TIMEOUT_S = 30.0


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(step: int, title: str) -> None:
    say()
    say(f"== {step}. {title} " + "=" * max(0, 66 - len(title)))


def prepare_dir(out: Path) -> None:
    """Start from an empty demo directory; refuse to delete anything the demo did not make, or a testnet
    a ``--keep`` run left running."""
    if out.exists():
        if not (out / MARKER).exists():
            raise InvalidInput(f"{out} exists and was not made by 'fbci demo'; choose another --out")
        if describe_testnet(out) is not None:
            Testnet.remove(out)
        else:
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
    say(f"{len(committed)} transactions answered as committed, each then looked up on every validator "
        "('tx_get', 'block_get'):")
    rows = []
    reader = PrivateKey.load(HomePaths(net.specs[0].home).client_key("hospital"))  # tx_get is a private read
    for spec, url in zip(net.specs, urls):
        async with RpcClient(url, reader=reader) as node:
            found = [await node.get_tx(h) for h, _ in committed]
            heights = sorted({f.receipt.height for f in found})
            first = (await node.get_block(heights[0])).hash
        same = all(f.receipt.height == height for f, (_, height) in zip(found, committed))
        rows.append((spec.name, f"{len(found)}/{len(committed)}", "yes" if same else "NO",
                     f"{heights[0]}..{heights[-1]}", short(first)))
    say(table(("VALIDATOR", "FOUND", "SAME BLOCKS", "HEIGHTS", "FIRST BLOCK"), rows, indent="  "))


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


def view_changes(url: str) -> int | None:
    """The validator's ``fbci_view_changes`` from its /metrics (None: it does not answer)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=2.0) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("fbci_view_changes{")]
    return int(float(values[0])) if values else None


async def crash_the_primary(net: Testnet, urls: Sequence[str]) -> None:
    """SIGKILL the validator due to propose the next block, and name the view change its silence causes.

    The primary of (height, view) is ``validators[(height + view) % n]`` (genesis order), so the killed
    validator is primary again every n heights; each such height commits only after the others time out
    and move to view 1, whose primary proposes instead. That shows in the block's commit certificate.
    """
    order = [v.name for v in load_genesis(HomePaths(net.specs[0].home).genesis).validators]
    n = len(order)
    before = await heights(urls)
    top = max(before)
    victim_name = order[(top + 1) % n]
    victim = next(i for i, spec in enumerate(net.specs) if spec.name == victim_name)
    alive = [u for i, u in enumerate(urls) if i != victim]
    changes_before = [view_changes(u) for u in alive]
    net.kill(victim, signal.SIGKILL)
    say(f"SIGKILL to {victim_name} at height {top}: the primary (proposer) of height {top + 1} in view 0; "
        f"with {n} validators it is view 0's primary every {n}th height")
    during = await wait_height(alive, top + 2 * n + 1, 90)
    async with RpcClient(alive[0]) as node:
        blocks = [await node.get_block(h) for h in range(top + 1, min(during) + 1)]
    changed = [b for b in blocks if b.commit_certificate is not None and b.commit_certificate.view > 0]
    names = {bytes.fromhex(v.public_key): v.name for v in load_genesis(HomePaths(net.specs[0].home).genesis).validators}
    if changed:
        say(f"the other {len(alive)} kept committing; the heights that needed a view change, from their blocks' "
            "commit certificates:")
        say(table(("HEIGHT", "VIEW-0 PRIMARY", "COMMITTED IN VIEW", "PROPOSED BY"),
                  [(b.height, order[b.height % n], b.commit_certificate.view if b.commit_certificate else None,
                    names.get(b.proposer, short(b.proposer))) for b in changed], indent="  "))
        first = changed[0]
        view = first.commit_certificate.view if first.commit_certificate else 0
        say(f"at height {first.height} nobody heard from {order[first.height % n]}: the others' timers expired, "
            f"they moved to view {view}, and {names.get(first.proposer)}, primary of view {view}, proposed the block")
    else:
        say(f"the other {len(alive)} kept committing, and no height up to {min(during)} needed a view change")
    changes_after = [view_changes(u) for u in alive]
    say("view changes each survivor counted (fbci_view_changes on its /metrics): " + ", ".join(
        f"{net.specs[urls.index(u)].name} {b} -> {a}" for u, b, a in zip(alive, changes_before, changes_after)))
    net.restart(victim)
    net.wait_ready(READY_TIMEOUT_S, nodes=[victim])
    caught = await wait_height(urls, min(during), 60)
    say(f"{victim_name} restarted and caught up by block sync, verifying each block's certificate:")
    say(table(("VALIDATOR", "HEIGHT AT KILL", "WHILE DOWN", "AFTER RESTART"),
              [(spec.name, b, "killed" if i == victim else during[alive.index(urls[i])], c)
               for i, (spec, b, c) in enumerate(zip(net.specs, before, caught))], indent="  "))


async def audit(urls: Sequence[str]) -> None:
    common = min(await heights(urls))
    hashes = []
    for url in urls:
        async with RpcClient(url) as node:
            hashes.append([(await node.get_block(h)).hash.hex() for h in range(max(1, common - 4), common + 1)])
    identical = all(h == hashes[0] for h in hashes)
    say(f"last 5 blocks up to height {common} identical on all {len(urls)} validators: {identical}")
    say(table(("HEIGHT", "BLOCK HASH", "SAME ON ALL"),
              [(common - len(hashes[0]) + 1 + k, h, "yes" if all(v[k] == h for v in hashes) else "NO")
               for k, h in enumerate(hashes[0])], indent="  "))
    if not identical:
        raise InvalidInput("validators disagree: see the node logs")


def story(net: Testnet, fl_rounds: int) -> None:
    urls = [spec.rpc_url for spec in net.specs]
    homes = [HomePaths(spec.home) for spec in net.specs]
    hospitals = [PrivateKey.load(home.client_key("hospital")) for home in homes]
    heading(2, "signed transactions, committed on every validator")
    asyncio.run(transactions_everywhere(net, urls))
    heading(3, "federated learning on chain: breast cancer diagnosis")
    learning.breast_cancer_rounds(urls, hospitals, [Path(spec.home) for spec in net.specs], fl_rounds, say)
    say("\nsecure aggregation: the same model family, and validators see only masked updates")
    demo_secagg.secure_round(urls, [Path(spec.home) for spec in net.specs], hospitals, say)
    heading(4, "intrusion detection: train, attack, alerts on chain")
    demo_ids.intrusion_detection(urls, hospitals, PrivateKey.load(homes[0].client_key("gateway")), 10, say)
    heading(5, "deterioration prediction from the on-chain model")
    learning.prediction(urls, hospitals, 5, say)
    heading(6, "kill the primary: a view change, then catch up")
    asyncio.run(crash_the_primary(net, urls))
    heading(7, "audit: one chain")
    asyncio.run(audit(urls))


def dashboard_command(home: Path, listen: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "dashboard", "--home", str(home), "--listen", listen]


def start_dashboard(home: Path, out: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """``fbci dashboard`` beside node0 when this build has it; (process, address once it answers HTTP, else "")."""
    if importlib.util.find_spec("client.dashboard") is None:
        return None
    url = f"http://{DASHBOARD_LISTEN}"
    with open(out / "dashboard.log", "ab") as log:
        proc = subprocess.Popen(dashboard_command(home, DASHBOARD_LISTEN), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + DASHBOARD_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return proc, url
        except urllib.error.HTTPError:
            return proc, url  # it answers, if not with 200 at the root
        except OSError:
            time.sleep(0.2)  # polling another process, nothing to wait on here
    if proc.poll() is not None:
        say(f"the dashboard exited (code {proc.returncode}); see {out / 'dashboard.log'}")
        return None
    say(f"the dashboard runs but did not answer at {url} within {DASHBOARD_TIMEOUT_S:g} s; see {out / 'dashboard.log'}")
    return proc, ""


def keep_running(net: Testnet, out: Path) -> None:
    heading(8, "left running (--keep)")
    say(net.table())
    pids = [str(net.pid(i)) for i in range(len(net.specs))]
    dashboard = start_dashboard(net.specs[0].home, out)
    address = ""
    if dashboard is not None:
        proc, address = dashboard
        pids.append(str(proc.pid))
    if address:
        say(f"dashboard: {address}  (fbci dashboard --home {net.specs[0].home}; log {out / 'dashboard.log'})")
    else:
        say(("no dashboard in this build" if dashboard is None else "no dashboard address") + "; each validator's "
            f"JSON-RPC is in the RPC column above. Read the chain with: fbci status --net {out}")
        say(f"  fbci block get --rpc {net.specs[0].rpc_url}   (and: fbci fl rounds, fbci ids alerts, fbci tx get HASH)")
    (out / "pids").write_text("\n".join(pids) + "\n")
    say(f"stop everything with: kill {' '.join(pids)}    (the same ids are in {out / 'pids'})")
    say(f"start the validators again later with: fbci testnet --out {out} --resume")


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    prepare_dir(out)
    heading(1, f"a {args.validators}-validator testnet on 127.0.0.1 (LevelDB stores under {out})")
    net = Testnet.create(args.validators, out, args.base_port)
    net.start()
    kept = False
    try:
        net.wait_ready(READY_TIMEOUT_S)
        say(net.table())
        story(net, args.fl_rounds)
        if args.keep:
            keep_running(net, out)
            kept = True
    finally:
        if not kept:
            codes = net.stop_all()
            say()
            say(f"stopped all validators (exit codes {sorted(set(codes.values()))}); logs in {out}/node*/node.log")
    return 0
