"""Attacks by a member on real validator processes: bloating the chain, and speaking for someone else.

Each failed on the code before the fix: a member's 1 MiB transactions were all committed, a gateway could
post alerts under another hospital's name, and a validator could accuse another of equivocation with no
evidence on chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from client.session import ChainSession, load_client_key
from core.crypto import PrivateKey
from core.errors import ContractRejected, QuotaExceeded
from core.hashing import sha256
from devnet.testnet import Testnet
from genesis.home import HomePaths
from genesis.schema import ChainParams
from ids.alerts import SEVERITY_CRITICAL, TX_KIND, AlertPayload

TX_BYTES = 60_000
QUOTA = ChainParams(max_tx_bytes=100_000, member_block_bytes=200_000, member_window_bytes=400_000,
                    quota_window_blocks=1000, block_interval_ms=200)


def _alert(hospital: str, **changes: object) -> dict[str, object]:
    base = AlertPayload(hospital=hospital, subject_kind="device", subject=sha256(b"dev"), alert_class="flooding",
                        severity=3, window_start_ms=0, window_ms=60_000, count=1, score_ppm=900_000,
                        feature_digest=sha256(b"x"), model_version=0)
    return base.model_copy(update=changes).to_payload()


def test_a_member_flooding_large_transactions_is_held_to_its_window(testnet: Callable[..., Testnet]) -> None:
    net = testnet(1, params=QUOTA)
    net.wait_ready(60, min_height=1)
    url, home = net.specs[0].rpc_url, net.specs[0].home
    flooder = load_client_key("gateway", home)
    fits = QUOTA.member_window_bytes // (TX_BYTES + 200)  # 6 such transactions fill the window
    with ChainSession(url, flooder) as session:
        hashes = [session.submit("test.echo", {"msg": bytes([i]) * TX_BYTES}) for i in range(fits)]
        heights = {session.wait_committed(h, 30).receipt.height for h in hashes}
        with pytest.raises(QuotaExceeded, match="quota window") as refused:
            session.submit("test.echo", {"msg": b"\xff" * TX_BYTES})
    assert refused.value.data["limit"] == QUOTA.member_window_bytes
    assert len(heights) >= 2  # 360 kB cannot go in one block: member_block_bytes is 200 kB
    with ChainSession(url, load_client_key("hospital", home)) as honest:
        assert honest.submit_commit("test.echo", {"msg": b"still here"}, 30).receipt.ok


def test_nobody_reports_as_another_and_no_accusation_stands_without_evidence(
        testnet: Callable[..., Testnet]) -> None:
    net = testnet(1)
    net.wait_ready(60, min_height=1)
    url, home = net.specs[0].rpc_url, net.specs[0].home
    with ChainSession(url, load_client_key("gateway", home)) as gateway:
        with pytest.raises(ContractRejected, match="hospital is the reporter, the signing account 'gateway0'"):
            gateway.submit(TX_KIND, _alert("hospital1"))
        own = gateway.submit_commit(TX_KIND, _alert("gateway0"))  # its own name is fine
        assert own.receipt.ok
    validator = PrivateKey.load(HomePaths(Path(home)).node_key)
    with ChainSession(url, validator) as accuser:
        accusation = _alert("node0", subject_kind="validator", subject=b"\x09" * 32, alert_class="equivocation",
                            severity=SEVERITY_CRITICAL)
        with pytest.raises(ContractRejected, match="needs the consensus.evidence"):
            accuser.submit(TX_KIND, accusation)
