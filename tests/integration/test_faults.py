"""Fault injection on four real validator processes under a steady client load.

CometBFT's e2e perturbations (kill, pause, disconnect, restart) in the
spirit of Jepsen: while clients keep submitting signed ``test.echo``
transactions with ``tx_submit_commit``, one validator is killed with
SIGKILL, paused with SIGSTOP, cut off at its links, the primary is killed
again and again to force view changes, or every validator is restarted at
once. After each fault the same three things must hold (:func:`converged`):

1. every validator has the same block hash at every height;
2. every transaction a validator acknowledged as committed is on every
   validator, at the height it was acknowledged at (DESIGN rule 6);
3. the chain keeps growing and clients keep being served.

n = 4 tolerates f = 1, so one validator is faulty at a time (except for the
restart of all, which is a crash of everyone, not a Byzantine fault).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from genesis.home import HomePaths
from genesis.schema import load_genesis
from devnet.testnet import Testnet
from tests.integration.load import (
    PROGRESS_S, READY_S, ClientLoad, converged, heights, metric, under_load, wait_growing, wait_heights, wait_until,
)

N = 4

pytestmark = pytest.mark.timeout(180)

MakeTestnet = Callable[..., Testnet]


def others(victim: int) -> list[int]:
    return [i for i in range(N) if i != victim]


def survivors_progress(net: Testnet, load: ClientLoad, victim: int, blocks: int = 3) -> None:
    """With ``victim`` down the other three still commit blocks and clients are still answered."""
    wait_growing(net, blocks, PROGRESS_S, others(victim))
    load.wait_for_more(20, PROGRESS_S)


def test_kill_9_and_restart_one_validator(testnet: MakeTestnet) -> None:
    net = testnet(N)
    with under_load(net) as load:
        net.kill(2, signal.SIGKILL)
        assert net.status(2, timeout=0.5) is None
        survivors_progress(net, load, 2)
        net.restart(2)
        net.wait_ready(READY_S, nodes=[2])
        converged(net, load)


def test_pause_and_resume_one_validator(testnet: MakeTestnet) -> None:
    net = testnet(N)
    with under_load(net) as load:
        paused_at = heights(net, [1])[1]
        net.kill(1, signal.SIGSTOP)
        try:
            survivors_progress(net, load, 1)
            assert net.status(1, timeout=0.3) is None  # stopped, not merely slow
        finally:
            net.kill(1, signal.SIGCONT)
        assert max(heights(net, others(1)).values()) > paused_at + 2
        converged(net, load)


def test_a_validator_cut_off_falls_behind_and_catches_up_after_healing(testnet: MakeTestnet) -> None:
    """CometBFT's "disconnect": node3 still answers RPC but none of its peer links carry anything."""
    net = testnet(N, proxies=True)
    assert net.proxies is not None
    with under_load(net) as load:
        net.proxies.isolate("node3")
        cut_at = heights(net, [3])[3]
        survivors_progress(net, load, 3, blocks=5)
        assert heights(net, [3])[3] <= cut_at + 1  # at most the block in flight when cut
        net.proxies.heal("node3")
        converged(net, load)


def _validator_index(net: Testnet) -> dict[str, int]:
    return {spec.name: i for i, spec in enumerate(net.specs)}


def _primary(net: Testnet, order: list[int], witness: int) -> int:
    """validators[(height + view) % n] for the height ``witness`` is deciding now."""
    status = net.status(witness)
    assert status is not None, f"{net.specs[witness].name} does not answer"
    return order[(status["height"] + 1 + status["view"]) % N]


def _certified_views(net: Testnet, node: int, heights_range: range) -> list[int]:
    from devnet.testnet import rpc_call

    url = net.specs[node].rpc_url
    return [rpc_call(url, "block_get", {"height": h}, timeout=5)["commit_certificate"]["view"] for h in heights_range]


def test_killing_the_primary_again_and_again_forces_view_changes(testnet: MakeTestnet) -> None:
    net = testnet(N)
    genesis = load_genesis(HomePaths(net.specs[0].home).genesis)
    index = _validator_index(net)
    order = [index[v.name] for v in genesis.validators]  # genesis order decides who is primary
    with under_load(net) as load:
        witness = 0
        for _ in range(3):
            victim = _primary(net, order, witness)
            witness = (victim + 1) % N
            changes_before = sum(metric(net, i, "fbci_view_changes") or 0 for i in others(victim))
            start = max(heights(net).values())
            net.kill(victim, signal.SIGKILL)
            # The dead validator is primary at view 0 of every N-th height: those heights need a view change.
            survivors_progress(net, load, victim, blocks=N + 1)
            wait_until(lambda: sum(metric(net, i, "fbci_view_changes") or 0 for i in others(victim))
                       > changes_before, PROGRESS_S, "survivors count a view change")
            top = min(heights(net, others(victim)).values())
            views = _certified_views(net, witness, range(start + 1, top + 1))
            assert max(views) >= 1, f"no block after the kill was committed in a later view: {views}"
            net.restart(victim)
            net.wait_ready(READY_S, nodes=[victim])
            # The next kill must leave a quorum: the restarted validator has to be caught up first.
            wait_heights(net, max(heights(net, others(victim)).values()), PROGRESS_S, [victim])
        converged(net, load)


def test_restart_every_validator_at_once(testnet: MakeTestnet) -> None:
    net = testnet(N)
    with under_load(net) as load:
        before = heights(net)
        for i in range(N):
            net.kill(i, signal.SIGTERM)
        codes = {i: net.stop(i) for i in range(N)}
        assert codes == {i: 0 for i in range(N)}, f"a validator did not shut down cleanly: {codes}"
        net.start()
        net.wait_ready(READY_S, min_height=min(before.values()))
        converged(net, load)
