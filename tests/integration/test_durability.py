"""DESIGN rule 6, "nothing acknowledged is lost", against SIGKILL in the middle of client load.

A transaction that ``tx_submit_commit`` answered as committed must survive
the validator that answered being killed with SIGKILL at any moment: after a
restart it is still there, at the same height, and the chain goes on from
where it was (no height is lost either). A lone validator has only its own
disk; in a network of four, the killed validator must also catch up on the
blocks it missed through block sync, verifying each certificate.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from devnet.testnet import Testnet
from tests.integration.load import (
    PROGRESS_S, READY_S, assert_acked_everywhere, converged, heights, under_load, wait_heights, wait_until,
)

pytestmark = pytest.mark.timeout(180)

MakeTestnet = Callable[..., Testnet]
LAG = 16


def test_a_lone_validator_killed_during_load_keeps_every_acknowledged_transaction(testnet: MakeTestnet) -> None:
    net = testnet(1)
    with under_load(net, stems=("admin", "hospital", "gateway")) as load:
        for _ in range(3):
            load.wait_for_more(40, PROGRESS_S)
            net.kill(0, signal.SIGKILL)  # mid-block most of the time: the load commits a block every few ms
            acked = load.snapshot()
            net.restart(0)
            net.wait_ready(READY_S, min_height=max(acked.values()))
            assert_acked_everywhere(net, acked)
        converged(net, load)


def test_a_validator_killed_during_load_catches_up_by_block_sync(testnet: MakeTestnet) -> None:
    net = testnet(4)
    with under_load(net) as load:
        net.kill(3, signal.SIGKILL)
        down_at = max(heights(net, [0, 1, 2]).values())
        # Every fourth height needs a view change while node3 is down (it is that height's primary),
        # so a lag of LAG blocks costs about LAG / 4 view-change timeouts.
        wait_heights(net, down_at + LAG, PROGRESS_S, [0, 1, 2])
        log_before = net.specs[3].log_path.stat().st_size
        net.restart(3)
        net.wait_ready(READY_S, nodes=[3])
        wait_heights(net, down_at + LAG, PROGRESS_S, [3])

        def synced() -> bool:  # logged once the last batch's sync on the writer thread returned
            with net.specs[3].log_path.open("rb") as log:
                log.seek(log_before)
                return b"block sync reached height" in log.read()

        wait_until(synced, PROGRESS_S, "node3 logs that block sync reached its target")
        converged(net, load)
