"""A chain parameter changed by the members on a real 4-validator testnet, driven by the ``fbci`` CLI.

A 6,000-byte transaction commits under genesis's ``max_tx_bytes``; the members
``fbci gov propose params-set --param max_tx_bytes --value 4096`` and approve it;
from the effective height every validator refuses the same transaction as
``too_large`` at its door, smaller ones still commit, every validator reads the
same parameter schedule from its state (a light client checks it against commit certificates), and all
hold one chain.
"""

from __future__ import annotations

import re

import pytest

import cli.main as cli
from client.session import ChainSession, load_client_key
from core.api import NoParams
from core.errors import TooLarge
from devnet.testnet import rpc_call
from genesis.params_state import CHAIN_PARAMS
from tests.integration.load import assert_same_chain, wait_heights

BIG = b"x" * 6000
NEW_LIMIT = 4096


def test_the_members_lower_max_tx_bytes_and_every_validator_follows(testnet,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    net = testnet(4, governance=True)
    net.wait_ready(60, min_height=1)
    homes = [str(spec.home) for spec in net.specs]
    urls = [spec.rpc_url for spec in net.specs]
    hospital = load_client_key("hospital", homes[0])
    with ChainSession(urls[0], hospital, verify=False) as s:
        assert s.submit_commit("test.echo", {"msg": BIG}).receipt.ok  # genesis allows 1 MiB

    assert cli.main(["gov", "propose", "params-set", "--param", "max_tx_bytes", "--value", str(NEW_LIMIT),
                     "--home", homes[0], "--expires-in", "500"]) == 0
    proposal = re.search(r"proposal (\d+) \(params\.set\)", capsys.readouterr().out)
    assert proposal is not None
    assert cli.main(["gov", "approve", proposal.group(1), "--home", homes[1]]) == 0
    shown = capsys.readouterr()
    assert f"params.set max_tx_bytes={NEW_LIMIT}" in shown.err  # what the member approves
    assert cli.main(["gov", "approve", proposal.group(1), "--home", homes[2]]) == 0
    out = capsys.readouterr().out
    found = re.search(rf"executed: params\.set; max_tx_bytes={NEW_LIMIT} from height (\d+)", out)
    assert found is not None, out
    effective = int(found.group(1))

    wait_heights(net, effective - 1, 60)  # every validator's next block runs under the new limit
    for url in urls:
        with ChainSession(url, hospital, verify=False) as s:
            with pytest.raises(TooLarge, match=f"limit is {NEW_LIMIT}"):
                s.submit("test.echo", {"msg": BIG})
    with ChainSession(urls[3], hospital, verify=False) as s:
        small = s.submit_commit("test.echo", {"msg": b"y" * 3000}).receipt
    assert small.ok and small.height >= effective

    schedules = [rpc_call(url, CHAIN_PARAMS.path, timeout=5) for url in urls]
    assert all(answer == schedules[0] for answer in schedules)
    assert [(e["start"], e["params"]["max_tx_bytes"]) for e in schedules[0]] == [(1, 1 << 20),
                                                                                 (effective, NEW_LIMIT)]
    with ChainSession(urls[2], hospital, verify=True) as s:  # checked against commit certificates
        proven = s.read(CHAIN_PARAMS, NoParams())
    assert [(e.start, e.params.max_tx_bytes) for e in proven] == [(1, 1 << 20), (effective, NEW_LIMIT)]
    assert assert_same_chain(net) >= effective  # one chain, so one state hash at every height
